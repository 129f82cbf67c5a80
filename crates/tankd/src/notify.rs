//! sd_notify messages (STATUS=, WATCHDOG=1) sent from async code without
//! ever blocking it: a datagram send to `NOTIFY_SOCKET` blocks while the
//! receiver's queue is full, so messages go through a small bounded queue
//! to one thread that does the sending. When even that queue is full, the
//! message is dropped (the next one supersedes it).
//!
//! Owns nothing but that thread; what to say is the caller's business.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::Duration;

/// A message, and who wants to know when it has been sent.
type Item = (String, Option<SyncSender<()>>);

static QUEUE: OnceLock<Option<SyncSender<Item>>> = OnceLock::new();

fn queue() -> Option<&'static SyncSender<Item>> {
    QUEUE
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Item>(16);
            std::thread::Builder::new()
                .name("sd-notify".to_owned())
                .spawn(move || {
                    for (message, sent) in rx {
                        if let Err(e) =
                            sd_notify::notify(&[sd_notify::NotifyState::Custom(&message)])
                        {
                            log::debug!("sd_notify: {e}");
                        }
                        if let Some(sent) = sent {
                            let _ = sent.try_send(());
                        }
                    }
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

/// Queues one `KEY=VALUE` message; a no-op without `NOTIFY_SOCKET`.
pub fn send(message: impl Into<String>) {
    if let Some(queue) = queue() {
        let _ = queue.try_send((message.into(), None));
    }
}

/// Sends `message` (lines of `KEY=VALUE`) and waits until it has gone out,
/// at most `timeout`: for READY=1 and STOPPING=1, which matter, from code
/// that must still never hang on a receiver that does not read. Returns
/// whether it was sent in time.
pub fn send_and_wait(message: impl Into<String>, timeout: Duration) -> bool {
    let Some(queue) = queue() else {
        return true;
    };
    let (sent_tx, sent_rx) = sync_channel(1);
    if queue.try_send((message.into(), Some(sent_tx))).is_err() {
        return false;
    }
    sent_rx.recv_timeout(timeout).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_socket_nothing_happens() {
        // NOTIFY_SOCKET is not set for unit tests.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            send("STATUS=x");
            assert!(queue().is_none());
        }
    }
}
