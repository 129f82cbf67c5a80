//! One process's terminal as tankd holds it: who is attached, and the drain
//! while nobody is.
//!
//! A client is attached through a *lease*: a duplicate of the PTY master
//! (the client pumps it itself) and the client's end of a status socket (a
//! unix stream socket used as a one-way pipe). The lease ends when the
//! client closes its end (detach, exit, crash: the kernel closes it) — that
//! is the only detach signal, so a client killed with SIGKILL detaches like
//! any other. While a lease is held tankd never reads the master (the
//! client gets every byte); without one, a drain thread reads it into a
//! bounded [`Ring`] (and, for a container's main process, into the
//! container log), so the process never blocks on a full terminal. The
//! ring's content is replayed to the next client (written to the slave, so
//! the client reads it first from the master): what it missed, at most
//! [`RING_BYTES`].
//!
//! When the process ends, the lease holder gets one line on the status
//! socket, `exited N` or `signaled N` ([`tank_api::exit`]), then EOF. Draining resumes once the
//! client is gone and lasts until the master reports EIO (no process has
//! the slave open anymore); then the master is closed.
//!
//! One lease at a time: a second [`Session::attach`] while a live client
//! holds one fails with [`SessionError::Busy`] (a client that already
//! closed its end does not count, even if tankd has not noticed yet).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, send, shutdown, socketpair, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ring::Ring;
use tank_api::exit::ExitStatus;

/// Output kept (and replayed) while nobody is attached.
pub const RING_BYTES: usize = 8 << 10;
/// How long an attach waits for the drain thread to let go of the master.
const DRAIN_STOP_WAIT: Duration = Duration::from_secs(1);
/// Longer log lines are written as partial records.
const MAX_LOG_LINE: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the process has ended")]
    Ended,
    #[error("another client is attached (one at a time; it must detach first)")]
    Busy,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(Errno) -> SessionError {
    move |e| SessionError::Io {
        what,
        source: e.into(),
    }
}

/// What a client gets: the PTY master (or `/dev/null` for a process
/// without a terminal) and its end of the status socket.
#[derive(Debug)]
pub struct ClientEnds {
    pub pty: OwnedFd,
    pub status: OwnedFd,
}

/// Where a main process's terminal output goes while nobody is attached:
/// the container's log (the runtime's `LogSink` implements it; this module
/// knows no more of logs than this).
pub trait TerminalLog: Send + Sync {
    /// One line of terminal output (without its end of line); `partial`:
    /// a piece of a line too long for one record, more follows.
    fn line(&self, text: &[u8], partial: bool);
}

/// A process's terminal and its lease.
pub struct Session {
    /// `pod/container` (and what runs), for log messages.
    label: String,
    master: Option<Arc<OwnedFd>>,
    /// The container log, for a container's main process.
    sink: Option<Arc<dyn TerminalLog>>,
    ring: Mutex<Ring>,
    /// An incomplete output line waiting for its end (log only).
    line: Mutex<Vec<u8>>,
    /// The master reported EIO: no process has the slave open.
    hung_up: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    next_lease: u64,
    ended: Option<ExitStatus>,
    drain: Option<Drain>,
}

struct Lease {
    id: u64,
    /// tankd's end of the status socket.
    status: Arc<OwnedFd>,
}

/// A running drain thread.
struct Drain {
    stop: Arc<AtomicBool>,
    /// Writing a byte wakes the thread out of its poll.
    wake: OwnedFd,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Session {
    fn new(
        label: String,
        master: Option<OwnedFd>,
        sink: Option<Arc<dyn TerminalLog>>,
    ) -> Arc<Session> {
        Arc::new(Session {
            label,
            master: master.map(Arc::new),
            sink,
            ring: Mutex::new(Ring::new(RING_BYTES)),
            line: Mutex::new(Vec::new()),
            hung_up: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        })
    }

    /// A session nobody is attached to yet (a `tty: true` container's main
    /// process): draining starts now, into `sink` too.
    pub fn detached(
        label: String,
        master: OwnedFd,
        sink: Option<Arc<dyn TerminalLog>>,
    ) -> Result<Arc<Session>, SessionError> {
        let session = Session::new(label, Some(master), sink);
        {
            let mut state = session.lock();
            session.start_drain(&mut state)?;
        }
        Ok(session)
    }

    /// A session leased from the start (an `Exec`): `master` is `None` for
    /// a process without a terminal. Must be called within a tokio runtime.
    pub fn leased(
        label: String,
        master: Option<OwnedFd>,
    ) -> Result<(Arc<Session>, ClientEnds), SessionError> {
        let session = Session::new(label, master, None);
        let ends = {
            let mut state = session.lock();
            session.new_lease(&mut state)?
        };
        Ok((session, ends))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the process has ended (and how).
    pub fn ended(&self) -> Option<ExitStatus> {
        self.lock().ended
    }

    /// Attaches a client: stops the drain, replays what was drained since
    /// the last client, and hands out a lease. [`SessionError::Busy`] while
    /// another client is attached, [`SessionError::Ended`] once the process
    /// has ended.
    pub async fn attach(self: &Arc<Self>) -> Result<ClientEnds, SessionError> {
        let (ends, drain) = {
            let mut state = self.lock();
            if state.ended.is_some() {
                return Err(SessionError::Ended);
            }
            if let Some(lease) = &state.lease {
                if client_alive(lease.status.as_fd()) {
                    return Err(SessionError::Busy);
                }
                state.lease = None;
            }
            let ends = self.new_lease(&mut state)?;
            (ends, state.drain.take())
        };
        if let Some(drain) = drain {
            drain.stop().await;
        }
        self.replay();
        Ok(ends)
    }

    /// The process ended: the attached client (if any) gets the status
    /// line, then EOF.
    pub fn finish(&self, status: ExitStatus) {
        let mut state = self.lock();
        if state.ended.is_some() {
            return;
        }
        state.ended = Some(status);
        if let Some(lease) = &state.lease {
            let line = status.line();
            let fd = lease.status.as_raw_fd();
            if let Err(e) = send(fd, line.as_bytes(), MsgFlags::MSG_NOSIGNAL) {
                log::debug!("{}: status not delivered: {e}", self.label);
            }
            let _ = shutdown(fd, Shutdown::Write);
        }
    }

    /// A new lease (the caller checked that none is held).
    fn new_lease(self: &Arc<Self>, state: &mut State) -> Result<ClientEnds, SessionError> {
        let pty = match &self.master {
            Some(master) => master.try_clone().map_err(|source| SessionError::Io {
                what: "duplicating the pty master",
                source,
            })?,
            None => std::fs::File::open("/dev/null")
                .map_err(|source| SessionError::Io {
                    what: "opening /dev/null",
                    source,
                })?
                .into(),
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io_err("creating the status socket"))?;
        nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(io_err("the status socket"))?;
        let watch = ours.try_clone().map_err(|source| SessionError::Io {
            what: "duplicating the status socket",
            source,
        })?;
        // SAFETY: an OwnedFd is a valid open descriptor that stays open,
        // with the same number, until the AsyncFd owning it drops.
        let watch =
            unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) }.map_err(|e| {
                SessionError::Io {
                    what: "watching the status socket",
                    source: e.into_parts().1,
                }
            })?;
        state.next_lease += 1;
        let id = state.next_lease;
        state.lease = Some(Lease {
            id,
            status: Arc::new(ours),
        });
        tokio::spawn(Arc::clone(self).watch_lease(id, watch));
        Ok(ClientEnds {
            pty,
            status: theirs,
        })
    }

    /// Waits for the client to close its end, then takes the PTY back.
    async fn watch_lease(self: Arc<Self>, id: u64, watch: AsyncFd<OwnedFd>) {
        let mut buf = [0u8; 64];
        loop {
            let Ok(mut guard) = watch.readable().await else {
                break;
            };
            match guard.try_io(|fd| {
                recv(fd.get_ref().as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from)
            }) {
                // EOF (or a reset): the client is gone.
                Ok(Ok(0)) | Ok(Err(_)) => break,
                // A client that writes anyway: ignored.
                Ok(Ok(_)) => continue,
                Err(_would_block) => continue,
            }
        }
        let mut state = self.lock();
        if state.lease.as_ref().is_some_and(|l| l.id == id) {
            state.lease = None;
            log::debug!("{}: client detached", self.label);
            if let Err(e) = self.start_drain(&mut state) {
                log::error!("{}: cannot drain the terminal: {e}", self.label);
            }
        }
    }

    /// Starts the drain thread unless there is nothing (left) to drain.
    fn start_drain(self: &Arc<Self>, state: &mut State) -> Result<(), SessionError> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        if state.drain.is_some() || self.hung_up.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(io_err("creating the drain's wake pipe"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let this = Arc::clone(self);
        let master = Arc::clone(master);
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("tank-pty-drain".to_owned())
            .spawn(move || {
                this.drain(master.as_fd(), wake_r.as_fd(), &thread_stop);
                let _ = done_tx.send(());
            })
            .map_err(|source| SessionError::Io {
                what: "starting the drain thread",
                source,
            })?;
        state.drain = Some(Drain {
            stop,
            wake: wake_w,
            done: done_rx,
        });
        Ok(())
    }

    /// The drain thread: reads the master until told to stop or EIO.
    fn drain(&self, master: BorrowedFd<'_>, wake: BorrowedFd<'_>, stop: &AtomicBool) {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let mut fds = [
                PollFd::new(master, PollFlags::POLLIN),
                PollFd::new(wake, PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    log::error!("{}: polling the terminal: {e}", self.label);
                    return;
                }
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if fds[0].revents().is_none_or(|r| r.is_empty()) {
                continue;
            }
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => break,
                Ok(n) => self.drained(&buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("{}: reading the terminal: {e}", self.label);
                    break;
                }
            }
        }
        // EIO: nobody has the slave open anymore.
        self.hung_up.store(true, Ordering::SeqCst);
        let rest = std::mem::take(&mut *self.line.lock().unwrap_or_else(|e| e.into_inner()));
        if let (Some(sink), false) = (&self.sink, rest.is_empty()) {
            sink.line(&rest, false);
        }
        log::debug!("{}: terminal closed", self.label);
    }

    /// Output read while nobody is attached: into the ring and the log.
    fn drained(&self, data: &[u8]) {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(data);
        let Some(sink) = &self.sink else {
            return;
        };
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            if let Some(text) = chunk.strip_suffix(b"\n") {
                line.extend_from_slice(text);
                let text = line.strip_suffix(b"\r").unwrap_or(&line);
                sink.line(text, false);
                line.clear();
            } else {
                line.extend_from_slice(chunk);
                while line.len() >= MAX_LOG_LINE {
                    let rest = line.split_off(MAX_LOG_LINE);
                    sink.line(&line, true);
                    *line = rest;
                }
            }
        }
    }

    /// Writes what was drained since the last client into the slave, so
    /// that the new client reads it first. Best effort (non-blocking).
    fn replay(&self) {
        let (Some(master), false) = (&self.master, self.hung_up.load(Ordering::SeqCst)) else {
            return;
        };
        let backlog = self.ring.lock().unwrap_or_else(|e| e.into_inner()).take();
        if backlog.is_empty() {
            return;
        }
        match super::alloc::open_slave(master.as_fd()) {
            Ok(slave) => {
                if let Err(e) = nix::unistd::write(&slave, &backlog) {
                    log::debug!("{}: replay not written: {e}", self.label);
                }
            }
            Err(e) => log::debug!("{}: no replay: {e}", self.label),
        }
    }
}

impl Drain {
    /// Stops the thread and waits (a bounded time) until it let go.
    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake, b"x");
        let _ = tokio::time::timeout(DRAIN_STOP_WAIT, self.done).await;
    }
}

/// Whether the client end of a status socket is still open.
fn client_alive(ours: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8; 1];
    match recv(
        ours.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => false,
        Ok(_) | Err(Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_pty() -> (OwnedFd, OwnedFd) {
        let master = nix::fcntl::open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        super::super::alloc::unlock(master.as_fd()).unwrap();
        let slave = super::super::alloc::open_slave(master.as_fd()).unwrap();
        (master, slave)
    }

    #[tokio::test]
    async fn lease_status_detach_drain_and_replay() {
        let (master, slave) = host_pty();
        let (session, ends) = Session::leased("test".into(), Some(master)).unwrap();
        // A second client while the first one is attached: busy.
        assert!(matches!(session.attach().await, Err(SessionError::Busy)));
        // The client detaches; the drain takes over and the writer never
        // blocks, even far beyond the terminal's buffer.
        drop(ends);
        let writer = std::thread::spawn(move || {
            // The slave is non-blocking: a full terminal buffer (the drain
            // is slower under load) answers EAGAIN, never blocks.
            let write_all = |mut rest: &[u8]| {
                while !rest.is_empty() {
                    match nix::unistd::write(&slave, rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                        Err(e) => panic!("{e}"),
                    }
                }
            };
            let chunk = [b'x'; 4096];
            for _ in 0..64 {
                write_all(&chunk);
            }
            write_all(b"\r\nlast line\r\n");
            slave
        });
        let slave = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Re-attach: the newest drained output is replayed, whole lines.
        let ends = session.attach().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("last line") {
            let n = nix::unistd::read(&ends.pty, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.len() <= RING_BYTES * 2, "{}", got.len());
        session.finish(ExitStatus::Exited(3));
        assert_eq!(
            tank_api::exit::read_status(&ends.status).unwrap(),
            Some(ExitStatus::Exited(3))
        );
        assert!(matches!(session.attach().await, Err(SessionError::Ended)));
        drop(slave);
    }
}
