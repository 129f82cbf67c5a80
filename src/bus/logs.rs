//! `Logs`: a container's output streamed to the caller through a pipe
//! whose read end is passed over D-Bus. Owns only the copying; the records
//! come from the runtime's log sinks and files.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::runtime::logs::{read_records, LogSink};

/// Starts copying the last `tail` records (0 = all) of a container's log,
/// and with `follow` every later one, into a new pipe; returns its read
/// end. Copying stops when the reader goes away or, when following, when
/// the container's output ends.
pub fn stream(
    path: std::path::PathBuf,
    sink: Option<Arc<LogSink>>,
    tail: usize,
    follow: bool,
) -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (records, receiver) = match (&sink, follow) {
        (Some(sink), true) => {
            let (records, receiver) = sink.snapshot(tail);
            (records, Some(receiver))
        }
        _ => (read_records(&path, tail), None),
    };
    tokio::spawn(async move {
        let mut out = std::fs::File::from(write);
        let written = tokio::task::spawn_blocking(move || {
            for record in records {
                out.write_all(record.as_bytes())?;
            }
            Ok::<_, std::io::Error>(out)
        })
        .await;
        let (Ok(Ok(mut out)), Some(mut receiver)) = (written, receiver) else {
            return;
        };
        drop(sink);
        loop {
            match receiver.recv().await {
                Ok(record) => {
                    let result = tokio::task::spawn_blocking(move || {
                        out.write_all(record.as_bytes()).map(|_| out)
                    })
                    .await;
                    match result {
                        Ok(Ok(o)) => out = o,
                        _ => return,
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(read)
}
