//! `Logs`: a container's output streamed to the caller through a pipe
//! whose read end is passed over D-Bus. Owns only the copying; the records
//! come from the runtime's log sinks and files (read on blocking threads,
//! as the pipe is written).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::runtime::logs::{read_records, Follow, LogSink, Snapshot};

/// Records written to the pipe at a time while following.
const BATCH: usize = 256;

/// Copies the last `tail` records (0 = all) of a container's log and,
/// with `follow`, every later one of the run going on, into a new pipe;
/// returns its read end. Copying stops when the reader goes away or, when
/// following, when that run has ended (its container exited and its
/// output was drained) — at once if none goes on.
pub async fn stream(
    path: std::path::PathBuf,
    sink: Option<Arc<LogSink>>,
    tail: usize,
    follow: bool,
) -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let snapshot = tokio::task::spawn_blocking(move || match sink {
        Some(sink) => sink.snapshot(tail, follow),
        None => Snapshot {
            records: read_records(&path, tail),
            follow: None,
        },
    })
    .await
    .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let out = std::fs::File::from(write);
        let Some(out) = write_records(out, snapshot.records).await else {
            return;
        };
        if let Some(follow) = snapshot.follow {
            follow_run(out, follow).await;
        }
    });
    Ok(read)
}

/// Writes `records` on a blocking thread; `None` once the reader is gone.
async fn write_records(mut out: std::fs::File, records: Vec<String>) -> Option<std::fs::File> {
    if records.is_empty() {
        return Some(out);
    }
    tokio::task::spawn_blocking(move || {
        for record in records {
            out.write_all(record.as_bytes()).ok()?;
        }
        Some(out)
    })
    .await
    .ok()
    .flatten()
}

/// Copies the records of one run until it ends (or a later one begins:
/// its end was lost to a lag).
async fn follow_run(mut out: std::fs::File, mut follow: Follow) {
    loop {
        let mut batch = Vec::new();
        let mut ended = false;
        let mut next = match follow.events.recv().await {
            Ok(event) => Some(event),
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return,
        };
        while let Some(event) = next.take() {
            // Stragglers of an earlier run (its drains may end after this
            // run began) are not this run's; a later run means this one
            // ended.
            if event.run < follow.run {
            } else if let (Some(record), true) = (event.record, event.run == follow.run) {
                batch.push(record.to_string());
            } else {
                ended = true;
                break;
            }
            if batch.len() >= BATCH {
                break;
            }
            next = match follow.events.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty | TryRecvError::Closed) => None,
            };
        }
        match write_records(out, batch).await {
            Some(o) if !ended => out = o,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logs::DEFAULT_MAX_BYTES;
    use std::io::Read;
    use std::time::Duration;
    use tank_api::log_record::{record_text, Stream};

    /// Everything the pipe delivers until its writer lets go.
    async fn read_all(fd: OwnedFd) -> Vec<String> {
        let text = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                std::fs::File::from(fd).read_to_string(&mut text).unwrap();
                text
            }),
        )
        .await
        .expect("the stream ended")
        .unwrap();
        text.lines()
            .map(|l| record_text(&format!("{l}\n")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_ends_with_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let sink = LogSink::open(&path, DEFAULT_MAX_BYTES, "p", "c").unwrap();
        // Nothing runs: the log, and the end.
        sink.write(Stream::Stdout, b"before", false);
        let fd = stream(path.clone(), Some(Arc::clone(&sink)), 0, true)
            .await
            .unwrap();
        assert_eq!(read_all(fd).await, ["before\n"]);

        // Its run ends: the follower gets everything up to the end.
        let run = sink.begin_run();
        let fd = stream(path.clone(), Some(Arc::clone(&sink)), 1, true)
            .await
            .unwrap();
        run.write_all(Stream::Stdout, &[(b"one".to_vec(), false)]);
        drop(run);
        assert_eq!(read_all(fd).await, ["before\n", "one\n"]);

        // A restart before the old run's drains let go: the old run's
        // follower gets its stragglers and ends at the next run's first
        // record; the next run's follower does not get them.
        let old = sink.begin_run();
        let fd = stream(path.clone(), Some(Arc::clone(&sink)), 1, true)
            .await
            .unwrap();
        old.write_all(Stream::Stdout, &[(b"two".to_vec(), false)]);
        let new = sink.begin_run();
        let fd_new = stream(path.clone(), Some(Arc::clone(&sink)), 1, true)
            .await
            .unwrap();
        old.write_all(Stream::Stdout, &[(b"straggler".to_vec(), false)]);
        new.write_all(Stream::Stdout, &[(b"three".to_vec(), false)]);
        assert_eq!(read_all(fd).await, ["one\n", "two\n", "straggler\n"]);
        drop(old);
        drop(new);
        assert_eq!(read_all(fd_new).await, ["two\n", "three\n"]);
        // Without follow: the tail, at once.
        let fd = stream(path, None, 2, false).await.unwrap();
        assert_eq!(read_all(fd).await, ["straggler\n", "three\n"]);
    }
}
