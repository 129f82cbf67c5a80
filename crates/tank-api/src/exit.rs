//! How a process ended, and the *status line* that says it: `exited N` or
//! `signaled N`, one line, written by tankd on the status socket of an
//! Exec or Attach session when the process ends, read by the client
//! (tankctl, tests, benches).
//!
//! Owns the type and both ends of the line's format; nothing here knows
//! sockets beyond reading one line from an fd.

use std::fmt;
use std::io::Read;
use std::os::fd::OwnedFd;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

/// The most a status line is read before giving up on its newline.
pub const MAX_STATUS_LINE: usize = 256;

impl fmt::Display for ExitStatus {
    /// `exited N` / `signaled N`: the status line without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited {code}"),
            ExitStatus::Signaled(signal) => write!(f, "signaled {signal}"),
        }
    }
}

impl ExitStatus {
    /// The status line as sent: `exited 3\n`.
    pub fn line(self) -> String {
        format!("{self}\n")
    }

    /// `exited N` / `signaled N` (the first line of `text`); `None` for
    /// anything else, an empty text included.
    pub fn parse_line(text: &str) -> Option<ExitStatus> {
        let line = text.lines().next()?;
        let (kind, number) = line.trim().split_once(' ')?;
        let number: i32 = number.parse().ok()?;
        match kind {
            "exited" => Some(ExitStatus::Exited(number)),
            "signaled" => Some(ExitStatus::Signaled(number)),
            _ => None,
        }
    }
}

/// Reads the status line from a client's end of a status socket:
/// `Some(status)`, or `None` when the socket closed without one. Blocking.
pub fn read_status(status: &OwnedFd) -> std::io::Result<Option<ExitStatus>> {
    let mut socket = std::fs::File::from(status.try_clone()?);
    let mut text = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if text.contains(&b'\n') || text.len() > MAX_STATUS_LINE {
            break;
        }
    }
    Ok(ExitStatus::parse_line(&String::from_utf8_lossy(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(ExitStatus::Exited(3).to_string(), "exited 3");
        assert_eq!(ExitStatus::Signaled(9).line(), "signaled 9\n");
        assert_eq!(
            ExitStatus::parse_line("exited 3\n"),
            Some(ExitStatus::Exited(3))
        );
        assert_eq!(
            ExitStatus::parse_line("signaled 9"),
            Some(ExitStatus::Signaled(9))
        );
        assert_eq!(ExitStatus::parse_line(""), None);
        assert_eq!(ExitStatus::parse_line("exited x\n"), None);
        assert_eq!(ExitStatus::parse_line("stopped 1\n"), None);
        for status in [ExitStatus::Exited(0), ExitStatus::Signaled(15)] {
            assert_eq!(ExitStatus::parse_line(&status.line()), Some(status));
        }
    }

    #[test]
    fn reads_the_line_from_a_socket() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        ours.write_all(b"exited 7\n").unwrap();
        assert_eq!(
            read_status(&OwnedFd::from(theirs)).unwrap(),
            Some(ExitStatus::Exited(7))
        );
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(ours);
        assert_eq!(read_status(&OwnedFd::from(theirs)).unwrap(), None);
    }
}
