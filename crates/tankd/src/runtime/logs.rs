//! Container output: the stdout/stderr of containers (and what `tty: true`
//! containers print while nobody is attached) drained into
//! size-capped per-container log files (CRI format: `<RFC 3339 time>
//! <stream> <F|P> <text>`, [`tank_api::log_record`]), copied to the
//! journal with pod and container fields when tankd logs there, and
//! streamed to followers.
//!
//! Owns `<data_dir>/logs/<pod>/<container>.log` (and one rotated `.log.1`).
//! It never blocks a container: pipes are always drained, and a slow or
//! gone follower only loses its own copy. Nor an async worker: the files
//! are written ([`drain`]) and read ([`LogSink::snapshot`],
//! [`read_records`]) on blocking threads, and a tail is read backwards
//! from the end of the file, in memory bounded by the lines it returns.
//!
//! Runs: each start (or adoption) of the container is a [`LogRun`] of its
//! sink. A run ends once the container's PID 1 was torn down and its
//! output drained (every holder of the run's handle let go); followers
//! get [`LogEvent`]s tagged with their run and stop at its end, as
//! `kubectl logs -f` does: a follower never goes on into the next run.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tank_api::log_record::{self, Stream};
use tokio::sync::broadcast;

/// Default cap of one log file; one rotated file is kept besides it.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Longer lines are split into partial (`P`) records.
const MAX_LINE: usize = 16 << 10;
/// How much of a container's output is read at a time.
const READ_CHUNK: usize = 16 << 10;
/// How much output a drain reads before it writes it out.
const MAX_BATCH: usize = 16 * READ_CHUNK;
/// How much of a log file is read at a time when reading it backwards.
const TAIL_BLOCK: u64 = 64 << 10;

/// What a follower receives: a record of run `run`, or (`record: None`)
/// the end of that run.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub run: u64,
    pub record: Option<Arc<str>>,
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
    followers: Option<broadcast::Sender<LogEvent>>,
    /// The latest run (0: none yet) and whether it goes on.
    run: u64,
    running: bool,
}

/// One run of a container's output; the run ends when the last clone of
/// its `Arc` is dropped (the drains of its FIFOs and the watcher of its
/// PID 1 each hold one).
pub struct LogRun {
    sink: Arc<LogSink>,
    id: u64,
}

impl LogRun {
    /// Appends records (as [`LogSink::write`]) of this run, in order.
    /// Blocking.
    pub fn write_all(&self, stream: Stream, records: &[(Vec<u8>, bool)]) {
        for (text, partial) in records {
            self.sink
                .write_record(Some(self.id), stream, text, *partial);
        }
    }
}

impl Drop for LogRun {
    fn drop(&mut self) {
        self.sink.end_run(self.id);
    }
}

/// A log as of one moment: its records and, to follow it, a subscription
/// to every later event of the run going on then.
pub struct Snapshot {
    pub records: Vec<String>,
    pub follow: Option<Follow>,
}

/// A subscription to one run's records.
pub struct Follow {
    pub events: broadcast::Receiver<LogEvent>,
    pub run: u64,
}

impl LogSink {
    /// Opens (appending) the log of one container. Blocking.
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
                run: 0,
                running: false,
            }),
            journal,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkFile> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new run of the container begins (its start or adoption).
    pub fn begin_run(self: &Arc<Self>) -> Arc<LogRun> {
        let mut sink = self.lock();
        sink.run += 1;
        sink.running = true;
        Arc::new(LogRun {
            sink: Arc::clone(self),
            id: sink.run,
        })
    }

    fn end_run(&self, id: u64) {
        let mut sink = self.lock();
        if sink.run == id {
            sink.running = false;
        }
        sink.send(LogEvent {
            run: id,
            record: None,
        });
    }

    /// Appends one record (a line without its newline, or a part of one)
    /// of the current run. Blocking: file and journal writes.
    pub fn write(&self, stream: Stream, text: &[u8], partial: bool) {
        self.write_record(None, stream, text, partial);
    }

    /// Appends one record of run `run` (`None`: the current one).
    fn write_record(&self, run: Option<u64>, stream: Stream, text: &[u8], partial: bool) {
        let text = String::from_utf8_lossy(text);
        let record = log_record::record(SystemTime::now(), stream, partial, &text);
        {
            let mut sink = self.lock();
            if sink.size + record.len() as u64 > sink.max {
                sink.rotate();
            }
            if sink.file.write_all(record.as_bytes()).is_ok() {
                sink.size += record.len() as u64;
            }
            let run = run.unwrap_or(sink.run);
            sink.send(LogEvent {
                run,
                record: Some(Arc::from(record.as_str())),
            });
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

    /// The last `tail` records (0 = all) and, when `follow` and a run goes
    /// on, atomically with them, a subscription to every later event.
    /// Blocking: reads the files (outside the lock: writers go on).
    pub fn snapshot(&self, tail: usize, follow: bool) -> Snapshot {
        let (files, follow) = {
            let mut sink = self.lock();
            // The current file is read up to what is written now; a
            // rotation meanwhile renames, our open files stay valid.
            let mut files = Vec::with_capacity(2);
            if let Ok(rotated) = File::open(rotated_path(&sink.path)) {
                files.push((rotated, u64::MAX));
            }
            if let Ok(current) = File::open(&sink.path) {
                files.push((current, sink.size));
            }
            let follow = (follow && sink.running).then(|| Follow {
                events: sink.subscribe(),
                run: sink.run,
            });
            (files, follow)
        };
        Snapshot {
            records: records_of(files, tail),
            follow,
        }
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

    fn subscribe(&mut self) -> broadcast::Receiver<LogEvent> {
        match &self.followers {
            Some(followers) => followers.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(1024);
                self.followers = Some(sender);
                receiver
            }
        }
    }

    fn send(&mut self, event: LogEvent) {
        if let Some(followers) = &self.followers {
            if followers.send(event).is_err() {
                // Every follower went away.
                self.followers = None;
            }
        }
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// A `tty: true` container's terminal output: stdout records.
impl crate::pty::session::TerminalLog for LogSink {
    fn line(&self, text: &[u8], partial: bool) {
        self.write(Stream::Stdout, text, partial);
    }
}

/// The last `tail` records (0 = all) of the log at `path`, rotated part
/// first. Blocking.
pub fn read_records(path: &Path, tail: usize) -> Vec<String> {
    let files = [rotated_path(path), path.to_owned()]
        .iter()
        .filter_map(|p| File::open(p).ok())
        .map(|f| (f, u64::MAX))
        .collect();
    records_of(files, tail)
}

/// The last `tail` records (0 = all) of `files` (oldest first), each read
/// up to its limit.
fn records_of(files: Vec<(File, u64)>, tail: usize) -> Vec<String> {
    let line = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    };
    if tail == 0 {
        let mut records = Vec::new();
        for (file, limit) in files {
            let mut reader = BufReader::new(file.take(limit));
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                records.push(line(&buf));
                buf.clear();
            }
        }
        return records;
    }
    let mut records: Vec<String> = Vec::new();
    for (file, limit) in files.into_iter().rev() {
        let wanted = tail - records.len();
        if wanted == 0 {
            break;
        }
        match last_lines(file, limit, wanted) {
            Ok(lines) => {
                let mut older: Vec<String> = lines.iter().map(|l| line(l)).collect();
                older.append(&mut records);
                records = older;
            }
            Err(e) => log::warn!("reading a log backwards: {e}"),
        }
    }
    records
}

/// The last `n` (≥ 1) lines of the first `limit` bytes of `file`, each
/// with its newline (a last line without one counts as a line), read
/// backwards block by block: what is kept is the lines returned, plus
/// at most one block.
fn last_lines(mut file: File, limit: u64, n: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let end = file.metadata()?.len().min(limit);
    // Blocks read so far, last block first.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut pos = end;
    let mut newlines = 0;
    let mut needed = None;
    let mut start_in_first = None;
    while pos > 0 {
        let len = TAIL_BLOCK.min(pos);
        pos -= len;
        let mut block = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut block)?;
        // A trailing newline ends the last line; it starts none.
        let needed = *needed.get_or_insert(n + usize::from(block.last() == Some(&b'\n')));
        for i in (0..block.len()).rev() {
            if block[i] == b'\n' {
                newlines += 1;
                if newlines == needed {
                    start_in_first = Some(i + 1);
                    break;
                }
            }
        }
        blocks.push(block);
        if start_in_first.is_some() {
            break;
        }
    }
    let mut bytes = Vec::new();
    for (i, block) in blocks.iter().rev().enumerate() {
        let from = if i == 0 {
            start_in_first.unwrap_or(0)
        } else {
            0
        };
        bytes.extend_from_slice(&block[from..]);
    }
    Ok(bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect())
}

/// Drains `fd` (a pipe or FIFO of the container's `stream`) into the
/// sink of `run` until the writer side is closed (the container and
/// everything it started exited), then lets go of `run`. A quiet container costs no
/// buffer: one is allocated only while there is output to read. What is
/// read is written out on a blocking thread, in batches.
pub async fn drain(fd: OwnedFd, stream: Stream, run: Arc<LogRun>) {
    let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        log::error!("cannot watch a container output pipe");
        return;
    };
    let write = |records: Vec<(Vec<u8>, bool)>| {
        let run = Arc::clone(&run);
        async move {
            if !records.is_empty() {
                let written = tokio::task::spawn_blocking(move || run.write_all(stream, &records));
                if let Err(e) = written.await {
                    log::error!("writing container output: {e}");
                }
            }
        }
    };
    let mut line: Vec<u8> = Vec::new();
    'wakeups: loop {
        if pipe.readable().await.is_err() {
            break;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        let mut records = Vec::new();
        let mut batch = 0;
        let mut closed = false;
        while batch < MAX_BATCH {
            let n = match pipe.try_read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            };
            batch += n;
            split_records(&buf[..n], &mut line, &mut records);
        }
        write(records).await;
        if closed {
            break 'wakeups;
        }
        if line.is_empty() && line.capacity() > READ_CHUNK {
            line = Vec::new();
        }
    }
    if !line.is_empty() {
        write(vec![(line, false)]).await;
    }
    drop(run);
}

/// Cuts `data` into records: complete lines go to `records`, the rest
/// stays in `line` (split into partial records at [`MAX_LINE`]).
fn split_records(data: &[u8], line: &mut Vec<u8>, records: &mut Vec<(Vec<u8>, bool)>) {
    for chunk in data.split_inclusive(|b| *b == b'\n') {
        if chunk.last() == Some(&b'\n') {
            line.extend_from_slice(&chunk[..chunk.len() - 1]);
            records.push((std::mem::take(line), false));
        } else {
            line.extend_from_slice(chunk);
            while line.len() >= MAX_LINE {
                let rest = line.split_off(MAX_LINE);
                records.push((std::mem::replace(line, rest), true));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tank_api::log_record::record_text;

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
        // Across the rotation: the tail is the end of everything kept.
        let all = read_records(&path, 0);
        assert!(all.len() > 5 && all.len() < 21, "{}", all.len());
        for n in 1..=all.len() + 3 {
            let tail = read_records(&path, n);
            assert_eq!(tail, all[all.len().saturating_sub(n)..], "tail {n}");
        }
        assert_eq!(sink.snapshot(3, false).records, all[all.len() - 3..]);
    }

    #[test]
    fn a_tail_is_read_backwards_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        // Lines of every length around the block size, the last one
        // without its newline.
        let mut text = Vec::new();
        let mut lines = Vec::new();
        for i in 0..40usize {
            let len = (i * 7919) % (TAIL_BLOCK as usize + 100);
            let line = format!("{i} {}\n", "x".repeat(len));
            text.extend_from_slice(line.as_bytes());
            lines.push(line);
        }
        text.pop();
        std::fs::write(&path, &text).unwrap();
        for n in [1, 2, 3, 17, 39, 40, 41, 1000] {
            let got = read_records(&path, n);
            let want = &lines[lines.len().saturating_sub(n)..];
            assert_eq!(got.len(), want.len(), "tail {n}");
            assert!(got == want, "tail {n}");
        }
        // Only what is asked for is read: a limit hides later bytes.
        let file = File::open(&path).unwrap();
        let first = lines[0].len() as u64 + lines[1].len() as u64;
        let got = last_lines(file, first, 5).unwrap();
        assert_eq!(got, [lines[0].as_bytes(), lines[1].as_bytes()]);
        assert_eq!(
            read_records(&dir.path().join("none.log"), 5),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn drain_splits_lines_and_followers_see_new_records() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(&dir.path().join("a.log"), DEFAULT_MAX_BYTES, "p", "c").unwrap();
        let run = sink.begin_run();
        let Some(mut follow) = sink.snapshot(0, true).follow else {
            panic!("a run goes on: it can be followed");
        };
        let (reader, writer) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            &reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let task = tokio::spawn(drain(reader, Stream::Stdout, Arc::clone(&run)));
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
        let event = follow.events.recv().await.unwrap();
        assert_eq!(event.run, follow.run);
        assert_eq!(record_text(&event.record.unwrap()), "hello\n");
        // The drain let go of the run; the end comes when its last holder
        // does, after every record.
        for _ in 0..2 {
            assert!(follow.events.recv().await.unwrap().record.is_some());
        }
        assert!(follow.events.try_recv().is_err());
        drop(run);
        let end = follow.events.recv().await.unwrap();
        assert_eq!((end.run, end.record), (follow.run, None));
        // Once it ended, there is nothing to follow.
        let after = sink.snapshot(0, true);
        assert!(after.follow.is_none());
        assert_eq!(after.records.len(), 3);
    }

    #[test]
    fn runs_are_numbered_and_end_once_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(&dir.path().join("a.log"), DEFAULT_MAX_BYTES, "p", "c").unwrap();
        assert!(sink.snapshot(0, true).follow.is_none(), "never ran");
        let first = sink.begin_run();
        let mut follow = sink.snapshot(0, true).follow.unwrap();
        assert_eq!(follow.run, 1);
        sink.write(Stream::Stdout, b"one", false);
        drop(first);
        let second = sink.begin_run();
        sink.write(Stream::Stdout, b"two", false);
        let events: Vec<(u64, Option<String>)> =
            std::iter::from_fn(|| follow.events.try_recv().ok())
                .map(|e| (e.run, e.record.map(|r| record_text(&r))))
                .collect();
        assert_eq!(
            events,
            [
                (1, Some("one\n".into())),
                (1, None),
                (2, Some("two\n".into()))
            ]
        );
        assert_eq!(sink.snapshot(0, true).follow.unwrap().run, 2);
        drop(second);
        assert!(sink.snapshot(0, true).follow.is_none());
    }

    #[test]
    fn long_lines_become_partial_records() {
        assert_eq!(record_text("t stdout P abc"), "abc");
        assert_eq!(record_text("t stdout F abc\n"), "abc\n");
        let mut line = Vec::new();
        let mut records = Vec::new();
        let long = vec![b'a'; MAX_LINE * 2 + 5];
        split_records(&long, &mut line, &mut records);
        split_records(b"b\nc", &mut line, &mut records);
        let lens: Vec<(usize, bool)> = records.iter().map(|(t, p)| (t.len(), *p)).collect();
        assert_eq!(lens, [(MAX_LINE, true), (MAX_LINE, true), (6, false)]);
        assert_eq!(line, b"c");
    }
}
