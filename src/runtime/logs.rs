//! Container output: the stdout/stderr of containers (and what `tty: true`
//! containers print while nobody is attached) drained into
//! size-capped per-container log files (CRI format: `<RFC 3339 time>
//! <stream> <F|P> <text>`), copied to the journal with pod and container
//! fields when tankd logs there, and streamed to followers.
//!
//! Owns `<data_dir>/logs/<pod>/<container>.log` (and one rotated `.log.1`).
//! It never blocks a container: pipes are always drained, and a slow or
//! gone follower only loses its own copy.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

/// Default cap of one log file; one rotated file is kept besides it.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Longer lines are split into partial (`P`) records.
const MAX_LINE: usize = 16 << 10;
/// How much of a container's output is read at a time.
const READ_CHUNK: usize = 16 << 10;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where one container's output goes.
pub struct LogSink {
    inner: Mutex<SinkFile>,
    journal: Option<systemd_journal_logger::JournalLog>,
}

struct SinkFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    /// Made when the first follower comes (most containers never have
    /// one: its ring of slots is not paid for by every container).
    followers: Option<broadcast::Sender<Arc<str>>>,
}

impl LogSink {
    /// Opens (appending) the log of one container.
    pub fn open(
        path: &Path,
        max: u64,
        pod: &str,
        container: &str,
    ) -> std::io::Result<Arc<LogSink>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::state_dir::PRIVATE_FILE)
            .open(path)?;
        let size = file.metadata()?.len();
        let journal = if systemd_journal_logger::connected_to_journal() {
            systemd_journal_logger::JournalLog::new().ok().map(|j| {
                j.with_extra_fields([("TANK_POD", pod), ("TANK_CONTAINER", container)])
                    .with_syslog_identifier(format!("tank/{pod}/{container}"))
            })
        } else {
            None
        };
        Ok(Arc::new(LogSink {
            inner: Mutex::new(SinkFile {
                path: path.to_owned(),
                file,
                size,
                max,
                followers: None,
            }),
            journal,
        }))
    }

    /// Appends one record (a line without its newline, or a part of one).
    pub fn write(&self, stream: Stream, text: &[u8], partial: bool) {
        let stamp = humantime::format_rfc3339_nanos(SystemTime::now());
        let text = String::from_utf8_lossy(text);
        let record = format!(
            "{stamp} {} {} {text}\n",
            stream.name(),
            if partial { 'P' } else { 'F' }
        );
        {
            let mut sink = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if sink.size + record.len() as u64 > sink.max {
                sink.rotate();
            }
            if sink.file.write_all(record.as_bytes()).is_ok() {
                sink.size += record.len() as u64;
            }
            if let Some(followers) = &sink.followers {
                if followers.send(Arc::from(record.as_str())).is_err() {
                    // Every follower went away.
                    sink.followers = None;
                }
            }
        }
        if let Some(journal) = &self.journal {
            let level = match stream {
                Stream::Stdout => log::Level::Info,
                Stream::Stderr => log::Level::Warn,
            };
            let _ = journal.journal_send(
                &log::Record::builder()
                    .args(format_args!("{text}"))
                    .level(level)
                    .build(),
            );
        }
    }

    /// The last `tail` records (0 = all) and, atomically with it, a
    /// subscription to every later record.
    pub fn snapshot(&self, tail: usize) -> (Vec<String>, broadcast::Receiver<Arc<str>>) {
        let mut sink = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = match &sink.followers {
            Some(followers) => followers.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(1024);
                sink.followers = Some(sender);
                receiver
            }
        };
        (read_records(&sink.path, tail), receiver)
    }
}

impl SinkFile {
    fn rotate(&mut self) {
        let rotated = rotated_path(&self.path);
        if std::fs::rename(&self.path, &rotated).is_err() {
            return;
        }
        if let Ok(file) = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::state_dir::PRIVATE_FILE)
            .open(&self.path)
        {
            self.file = file;
            self.size = 0;
        }
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The last `tail` records (0 = all) of the log at `path`, rotated part
/// first.
pub fn read_records(path: &Path, tail: usize) -> Vec<String> {
    let mut records = Vec::new();
    for file in [rotated_path(path), path.to_owned()] {
        if let Ok(f) = File::open(&file) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                records.push(line + "\n");
            }
        }
    }
    if tail > 0 && records.len() > tail {
        records.drain(..records.len() - tail);
    }
    records
}

/// Drains `fd` (a pipe or FIFO of the container's `stream`) into `sink`
/// until the writer side is closed (the container and everything it
/// started exited). A quiet container costs no buffer: one is allocated
/// only while there is output to read.
pub async fn drain(fd: OwnedFd, stream: Stream, sink: Arc<LogSink>) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        log::error!("cannot watch a container output pipe");
        return;
    };
    let mut line: Vec<u8> = Vec::new();
    'wakeups: loop {
        if pipe.readable().await.is_err() {
            break;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = match pipe.try_read(&mut buf) {
                Ok(0) => break 'wakeups,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break 'wakeups,
            };
            for chunk in buf[..n].split_inclusive(|b| *b == b'\n') {
                if chunk.last() == Some(&b'\n') {
                    line.extend_from_slice(&chunk[..chunk.len() - 1]);
                    sink.write(stream, &line, false);
                    line.clear();
                } else {
                    line.extend_from_slice(chunk);
                    while line.len() >= MAX_LINE {
                        let rest = line.split_off(MAX_LINE);
                        sink.write(stream, &line, true);
                        line = rest;
                    }
                }
            }
        }
        if line.is_empty() && line.capacity() > READ_CHUNK {
            line = Vec::new();
        }
    }
    if !line.is_empty() {
        sink.write(stream, &line, false);
    }
}

/// The text of a CRI record (`<time> <stream> <F|P> <text>`), with its
/// newline unless it is a partial record.
pub fn record_text(record: &str) -> String {
    let mut parts = record.splitn(4, ' ');
    let (_time, _stream, flag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    let text = text.unwrap_or("").trim_end_matches('\n');
    if flag == Some("P") {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rotation_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web/app.log");
        let sink = LogSink::open(&path, 400, "web", "app").unwrap();
        for i in 0..20 {
            sink.write(Stream::Stdout, format!("line {i}").as_bytes(), false);
        }
        sink.write(Stream::Stderr, b"oops", false);
        assert!(rotated_path(&path).exists(), "rotated at the cap");
        assert!(std::fs::metadata(&path).unwrap().len() <= 400);
        let last = read_records(&path, 2);
        assert_eq!(last.len(), 2);
        assert_eq!(record_text(&last[0]), "line 19\n");
        assert!(last[1].contains(" stderr F oops"));
        assert_eq!(record_text(&last[1]), "oops\n");
    }

    #[tokio::test]
    async fn drain_splits_lines_and_followers_see_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(&dir.path().join("a.log"), DEFAULT_MAX_BYTES, "p", "c").unwrap();
        let (_, mut follower) = sink.snapshot(0);
        let (reader, writer) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            &reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let task = tokio::spawn(drain(reader, Stream::Stdout, Arc::clone(&sink)));
        let mut w = File::from(writer);
        w.write_all(b"hello\nwor").unwrap();
        w.write_all(b"ld\nno newline").unwrap();
        drop(w);
        task.await.unwrap();
        let texts: Vec<String> = read_records(&dir.path().join("a.log"), 0)
            .iter()
            .map(|r| record_text(r))
            .collect();
        assert_eq!(texts, ["hello\n", "world\n", "no newline\n"]);
        assert_eq!(record_text(&follower.recv().await.unwrap()), "hello\n");
    }

    #[test]
    fn long_lines_become_partial_records() {
        assert_eq!(record_text("t stdout P abc"), "abc");
        assert_eq!(record_text("t stdout F abc\n"), "abc\n");
    }
}
