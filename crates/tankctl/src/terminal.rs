//! The local end of an interactive session: the user's terminal in raw
//! mode, pumped to and from a PTY master tankd passed over the bus.
//!
//! Owns the user's terminal settings while tankctl runs — raw mode is
//! restored on every way out: a normal return and a panic (a guard plus a
//! panic hook), a terminating signal (handled, then restored) — the
//! window size of the remote PTY (set on the master with `TIOCSWINSZ`
//! initially and on every SIGWINCH), the detach keys, and the end of a
//! session (EIO on the master, the status line). It never talks to tankd
//! beyond the two fds it was handed.
#![allow(unsafe_code)]

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

use tank_api::exit::ExitStatus;

/// Docker's and podman's default detach keys.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// How long output is still read after the status line arrived while the
/// terminal stays open (a background process may keep it open forever).
const OUTPUT_GRACE: Duration = Duration::from_millis(200);
/// How long tankd may take to send the status after the terminal closed.
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// A detach key sequence, as bytes (`ctrl-p,ctrl-q` = `[0x10, 0x11]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl DetachKeys {
    /// Docker's syntax: comma-separated keys, each a single character or
    /// `ctrl-<x>` with `<x>` in `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`. An
    /// empty string disables detaching.
    pub fn parse(text: &str) -> Result<DetachKeys, String> {
        if text.is_empty() {
            return Ok(DetachKeys(Vec::new()));
        }
        text.split(',')
            .map(|key| {
                let lower = key.to_ascii_lowercase();
                if let Some(x) = lower.strip_prefix("ctrl-") {
                    match x.as_bytes() {
                        [c @ b'a'..=b'z'] => Ok(c - b'a' + 1),
                        [b'@'] => Ok(0),
                        [c @ (b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(c - b'[' + 27),
                        _ => Err(format!("detach keys: {key:?} is not a ctrl key")),
                    }
                } else {
                    match key.as_bytes() {
                        [c] if c.is_ascii() => Ok(*c),
                        _ => Err(format!(
                            "detach keys: {key:?}: a single character or ctrl-<x>"
                        )),
                    }
                }
            })
            .collect::<Result<Vec<u8>, String>>()
            .map(DetachKeys)
    }
}

/// Finds the detach sequence in keyboard input. Bytes that turn out not to
/// be part of it are delivered, in order, as soon as that is known: a
/// lone Ctrl-P followed by any other key reaches the program (unlike
/// podman#4208).
#[derive(Debug)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    /// How many of `keys` the latest input bytes match.
    held: usize,
}

impl DetachMatcher {
    pub fn new(keys: &DetachKeys) -> DetachMatcher {
        DetachMatcher {
            keys: keys.0.clone(),
            held: 0,
        }
    }

    /// Feeds input; what to send to the program is appended to `out`.
    /// True when the sequence is complete (input after it is dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return false;
        }
        for &byte in input {
            let mut pending = self.keys[..self.held].to_vec();
            pending.push(byte);
            // The longest tail of the pending bytes that may still become
            // the sequence stays held; what is before it is delivered.
            let start = (0..=pending.len())
                .find(|&s| self.keys.starts_with(&pending[s..]))
                .unwrap_or(pending.len());
            out.extend_from_slice(&pending[..start]);
            self.held = pending.len() - start;
            if self.held == self.keys.len() {
                self.held = 0;
                return true;
            }
        }
        false
    }
}

// --- raw mode --------------------------------------------------------------

/// The settings to restore, for the panic hook and signal paths.
static SAVED: Mutex<Option<(i32, libc::termios)>> = Mutex::new(None);

/// Raw mode on a terminal until dropped (or until a panic, through the
/// hook installed by [`RawMode::enable`]).
pub struct RawMode {
    fd: i32,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode.
    pub fn enable(fd: BorrowedFd<'_>) -> io::Result<RawMode> {
        let saved = termios::tcgetattr(fd)?;
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((fd.as_raw_fd(), libc::termios::from(saved.clone())));
        install_panic_hook();
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw)?;
        Ok(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the fd is the terminal given to enable(), one of our
        // stdio fds, open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSADRAIN, &self.saved);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Restores the saved terminal settings, if raw mode is on.
fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((fd, settings)) = saved {
        // SAFETY: tcsetattr reads the termios we saved, a valid value; the
        // fd is one of our stdio fds.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &settings) };
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
    });
}

// --- the pump ---------------------------------------------------------------

/// How a session ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The process ended.
    Exited(ExitStatus),
    /// The user pressed the detach keys.
    Detached,
    /// A signal told tankctl to stop (the process keeps running).
    Interrupted(i32),
    /// The session ended without a status (tankd went away).
    Lost,
}

impl Outcome {
    /// tankctl's exit status: the command's code, 128 + its signal, 0 for
    /// a detach, 128 + tankctl's own terminating signal, 255 when lost.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Exited(ExitStatus::Exited(code)) => (code & 0xff) as u8,
            Outcome::Exited(ExitStatus::Signaled(signal)) | Outcome::Interrupted(signal) => {
                (128 + signal).clamp(0, 255) as u8
            }
            Outcome::Detached => 0,
            Outcome::Lost => 255,
        }
    }
}

/// The window size of the user's terminal (stdin, else stdout), if any.
pub fn local_size() -> Option<(u16, u16)> {
    let (stdin, stdout) = (io::stdin(), io::stdout());
    let size = [stdin.as_fd(), stdout.as_fd()]
        .into_iter()
        .find_map(|fd| rustix::termios::tcgetwinsize(fd).ok())?;
    Some((size.ws_row, size.ws_col)).filter(|(rows, cols)| *rows > 0 && *cols > 0)
}

/// Sets the window size of the remote PTY (`TIOCSWINSZ` on its master).
fn set_size(master: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, size).map_err(io::Error::from)
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    nonblocking(&fd)?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, with
    // the same number, until the AsyncFd owning it drops.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

/// The status line, once the status socket has one (or EOF).
struct StatusReader {
    fd: AsyncFd<OwnedFd>,
    text: Vec<u8>,
}

impl StatusReader {
    /// `Some(Some(status))`: the line; `Some(None)`: EOF without one;
    /// `None`: not yet (call again after readiness).
    fn poll_line(fd: &OwnedFd, text: &mut Vec<u8>) -> io::Result<Option<Option<ExitStatus>>> {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => return Ok(Some(ExitStatus::parse_line(&String::from_utf8_lossy(text)))),
                Ok(n) => {
                    text.extend_from_slice(&buf[..n]);
                    if text.contains(&b'\n') {
                        return Ok(Some(ExitStatus::parse_line(&String::from_utf8_lossy(text))));
                    }
                }
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn line(&mut self) -> io::Result<Option<ExitStatus>> {
        loop {
            let mut guard = self.fd.readable().await?;
            if let Some(status) = Self::poll_line(guard.get_inner(), &mut self.text)? {
                return Ok(status);
            }
            guard.clear_ready();
        }
    }
}

/// Copies everything readable from the master to stdout now. `Ok(false)`
/// at EIO (nobody has the slave open: the end of the session).
fn copy_output(master: &AsyncFd<OwnedFd>, out: &mut Output) -> io::Result<bool> {
    let mut buf = [0u8; 16 << 10];
    loop {
        match nix::unistd::read(master.get_ref(), &mut buf) {
            Ok(0) | Err(Errno::EIO) => return Ok(false),
            Ok(n) => out.write(&buf[..n])?,
            Err(Errno::EAGAIN) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// stdout, remembering whether the last byte ended a line.
struct Output {
    at_line_start: bool,
}

impl Output {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(data)?;
        stdout.flush()?;
        if let Some(last) = data.last() {
            self.at_line_start = *last == b'\n';
        }
        Ok(())
    }
}

/// Writes all of `data` to the (non-blocking) master.
async fn write_master(master: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Keyboard input, read on a thread of its own (blocking reads: the
/// user's terminal is never switched to non-blocking, which would leak
/// into the shell after tankctl). `None` at EOF.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("tankctl-stdin".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            let stdin = io::stdin();
            loop {
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(Errno::EINTR | Errno::EAGAIN) => continue,
                    Err(_) => return,
                }
            }
        });
    if spawned.is_err() {
        let (_, rx) = tokio::sync::mpsc::channel(1);
        return rx;
    }
    rx
}

/// A session's pump: the master to stdout, stdin (when `input`) to the
/// master through the detach keys, SIGWINCH to `TIOCSWINSZ`, until the
/// process ends, the user detaches, or a signal stops tankctl. Raw mode is
/// the caller's (see [`RawMode`]).
pub async fn pump(
    master: OwnedFd,
    status: OwnedFd,
    input: bool,
    keys: &DetachKeys,
) -> io::Result<Outcome> {
    let master = register(master, Interest::READABLE | Interest::WRITABLE)?;
    let mut status = StatusReader {
        fd: register(status, Interest::READABLE)?,
        text: Vec::new(),
    };
    let mut out = Output {
        at_line_start: true,
    };
    if let Some((rows, cols)) = local_size() {
        let _ = set_size(master.get_ref().as_fd(), rows, cols);
    }
    let mut winch = signal(SignalKind::window_change())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut keyboard = if input { Some(stdin_chunks()) } else { None };
    let mut matcher = DetachMatcher::new(keys);

    let outcome = loop {
        tokio::select! {
            guard = master.readable() => {
                let mut guard = guard?;
                if !copy_output(&master, &mut out)? {
                    // EIO: the terminal is closed; the status follows.
                    break match tokio::time::timeout(STATUS_WAIT, status.line()).await {
                        Ok(Ok(Some(s))) => Outcome::Exited(s),
                        _ => Outcome::Lost,
                    };
                }
                guard.clear_ready();
            }
            line = status.line() => {
                // Ended (or tankd went away): the output written before the
                // end may still be on its way.
                let deadline = tokio::time::Instant::now() + OUTPUT_GRACE;
                while let Ok(guard) = tokio::time::timeout_at(deadline, master.readable()).await {
                    let mut guard = guard?;
                    if !copy_output(&master, &mut out)? {
                        break;
                    }
                    guard.clear_ready();
                }
                break match line? {
                    Some(s) => Outcome::Exited(s),
                    None => Outcome::Lost,
                };
            }
            chunk = async {
                match keyboard.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match chunk {
                    Some(chunk) => {
                        let mut send = Vec::with_capacity(chunk.len());
                        let detach = matcher.feed(&chunk, &mut send);
                        write_master(&master, &send).await?;
                        if detach {
                            break Outcome::Detached;
                        }
                    }
                    // EOF on stdin: keep showing output.
                    None => keyboard = None,
                }
            }
            _ = winch.recv() => {
                if let Some((rows, cols)) = local_size() {
                    let _ = set_size(master.get_ref().as_fd(), rows, cols);
                }
            }
            _ = term.recv() => break Outcome::Interrupted(libc::SIGTERM),
            _ = int.recv() => break Outcome::Interrupted(libc::SIGINT),
            _ = hup.recv() => break Outcome::Interrupted(libc::SIGHUP),
        }
    };
    if outcome == Outcome::Detached && !out.at_line_start {
        out.write(b"\r\n")?;
    }
    Ok(outcome)
}

/// Waits for the status line alone (an exec without a terminal), or a
/// terminating signal.
pub async fn wait_status(status: OwnedFd) -> io::Result<Outcome> {
    let mut status = StatusReader {
        fd: register(status, Interest::READABLE)?,
        text: Vec::new(),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::select! {
        line = status.line() => match line? {
            Some(s) => Outcome::Exited(s),
            None => Outcome::Lost,
        },
        _ = term.recv() => Outcome::Interrupted(libc::SIGTERM),
        _ = int.recv() => Outcome::Interrupted(libc::SIGINT),
        _ = hup.recv() => Outcome::Interrupted(libc::SIGHUP),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> DetachKeys {
        DetachKeys::parse(text).unwrap()
    }

    fn run(keys: &DetachKeys, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut matcher = DetachMatcher::new(keys);
        let mut out = Vec::new();
        for chunk in chunks {
            if matcher.feed(chunk, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn parse_keys() {
        assert_eq!(keys(DEFAULT_DETACH_KEYS).0, vec![0x10, 0x11]);
        assert_eq!(keys("ctrl-a,d").0, vec![0x01, b'd']);
        assert_eq!(keys("CTRL-@,ctrl-[,ctrl-_").0, vec![0, 27, 31]);
        assert_eq!(keys("").0, Vec::<u8>::new());
        assert!(DetachKeys::parse("ctrl-").is_err());
        assert!(DetachKeys::parse("ctrl-1").is_err());
        assert!(DetachKeys::parse("ab").is_err());
        assert!(DetachKeys::parse("a,,b").is_err());
    }

    #[test]
    fn the_sequence_detaches_and_is_not_delivered() {
        let k = keys(DEFAULT_DETACH_KEYS);
        assert_eq!(run(&k, &[b"ls\r\x10\x11"]), (b"ls\r".to_vec(), true));
        // Split across reads.
        assert_eq!(run(&k, &[b"\x10", b"\x11"]), (Vec::new(), true));
        // Input after the sequence in the same read is dropped.
        assert_eq!(run(&k, &[b"\x10\x11after"]), (Vec::new(), true));
    }

    #[test]
    fn a_lone_ctrl_p_is_delivered_with_the_next_key() {
        let k = keys(DEFAULT_DETACH_KEYS);
        // Held while it may start the sequence...
        assert_eq!(run(&k, &[b"\x10"]), (Vec::new(), false));
        // ...and delivered, in order, once the next key says it does not.
        assert_eq!(run(&k, &[b"\x10", b"a"]), (b"\x10a".to_vec(), false));
        assert_eq!(run(&k, &[b"\x10\r"]), (b"\x10\r".to_vec(), false));
        // Ctrl-P Ctrl-P Ctrl-Q: the first Ctrl-P is the program's.
        assert_eq!(run(&k, &[b"\x10\x10\x11"]), (b"\x10".to_vec(), true));
        // Ctrl-Q alone is just a key.
        assert_eq!(run(&k, &[b"\x11x"]), (b"\x11x".to_vec(), false));
    }

    #[test]
    fn overlapping_sequences_and_disabled_keys() {
        let k = keys("a,a,b");
        assert_eq!(run(&k, &[b"aaab"]), (b"a".to_vec(), true));
        assert_eq!(run(&k, &[b"aacaab"]), (b"aac".to_vec(), true));
        let none = keys("");
        assert_eq!(run(&none, &[b"\x10\x11"]), (b"\x10\x11".to_vec(), false));
        let one = keys("ctrl-x");
        assert_eq!(run(&one, &[b"ab\x18c"]), (b"ab".to_vec(), true));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::Exited(ExitStatus::Exited(3)).exit_code(), 3);
        assert_eq!(Outcome::Exited(ExitStatus::Signaled(9)).exit_code(), 137);
        assert_eq!(Outcome::Detached.exit_code(), 0);
        assert_eq!(Outcome::Interrupted(libc::SIGTERM).exit_code(), 143);
        assert_eq!(Outcome::Lost.exit_code(), 255);
    }
}
