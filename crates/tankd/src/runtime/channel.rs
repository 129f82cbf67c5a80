//! The child-process protocol: everything tankd and the stages it
//! re-executes itself as agree on, and both ends of their channel. The
//! host side ([`super::spawn`], [`super::exec`]) and the stage side
//! ([`super::init`], [`super::init::exec`]) use these definitions only;
//! neither knows the other.
//!
//! A stage is the tankd binary itself, `execveat`ed (from the fd opened at
//! daemon start) by a child that `clone3` made:
//!
//! 1. **argv**: `[tank-init, --tank-init]` for the init stage (a new
//!    container's PID 1), `[tank-exec, --tank-exec]` for the exec stage (a
//!    second process in a running container); no environment. tankd's
//!    `main` checks argv\[1\] ([`INIT_ARG`], [`EXEC_ARG`]) before anything
//!    else and runs the stage instead of the daemon.
//! 2. **fds**: 0, 1, 2 the process's stdio; [`PLAN_FD`] (3) the stage's
//!    plan (`InitPlan` or `ExecPlan`, JSON, at most [`MAX_PLAN`] bytes) in a
//!    sealed memfd positioned at its start ([`plan_memfd`], [`read_plan`]);
//!    [`SYNC_FD`] (4) the stage's end of a `SOCK_SEQPACKET` socketpair;
//!    for the exec stage only, [`CONTAINER_FD`] (5) a pidfd of the
//!    container's PID 1. Every other fd is close-on-exec.
//! 3. **messages**: one JSON [`SyncMessage`] per packet, at most
//!    [`MAX_MESSAGE`] bytes ([`encode`] shortens a longer `Error` text);
//!    a `Console` packet carries one fd (`SCM_RIGHTS`).
//! 4. **the ready checkpoint**: the stage sends `Ready` once it has joined
//!    the pod's network namespace (init) or read its plan (exec) and blocks
//!    on the socket; tankd puts the child in its cgroup and sends `Go`
//!    ([`stage_checkpoint`] is the stage's side of it).
//! 5. **after `Go`**: a tty stage sends `Console` with the PTY master it
//!    opened in the container's devpts ([`send_console`]); then it `execve`s
//!    the workload, which closes its end of the socket (close-on-exec):
//!    tankd reads EOF, meaning "started".
//! 6. **failure**: any failed step is sent as `Error("<step> <path>: <ERRNO>
//!    (<text>)")` and the stage exits 1. A child that closes the socket
//!    without a word before `Go` died: tankd reports its exit status.
//!
//! Host side: [`recv`] (async, with the passed fd) and [`send`] (`Go`).
//! Stage side: [`stage_checkpoint`], [`send`], [`send_console`],
//! [`read_plan`]. This module owns the protocol and nothing else: what
//! the stages do with their plans, and when tankd starts them, live in
//! the modules named above.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::MsgFlags;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// argv\[1\] that makes tankd run the init stage instead of the daemon.
pub const INIT_ARG: &str = "--tank-init";
/// argv\[1\] that makes tankd run the exec stage.
pub const EXEC_ARG: &str = "--tank-exec";

/// The fds 0, 1, 2 of a stage: the process's stdin, stdout, stderr.
pub const STDIO_FDS: [RawFd; 3] = [0, 1, 2];
/// The fd the stage's plan arrives on.
pub const PLAN_FD: RawFd = 3;
/// The stage's end of the sync socket.
pub const SYNC_FD: RawFd = 4;
/// The exec stage's pidfd of the container's PID 1.
pub const CONTAINER_FD: RawFd = 5;
/// The most fds a stage gets (0 ..= [`CONTAINER_FD`]).
pub const MAX_STAGE_FDS: usize = CONTAINER_FD as usize + 1;

/// The largest sync message (an error message is a line of text).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The largest plan a stage accepts.
pub const MAX_PLAN: u64 = 16 << 20;

/// What a clone becomes: its argv and its fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// A container's PID 1: fds 0 ..= [`SYNC_FD`].
    Init,
    /// A second process of a running container: fds 0 ..= [`CONTAINER_FD`].
    Exec,
}

impl StageKind {
    /// argv\[0\]: the stage's name in `ps` until the workload's exec.
    pub fn name(self) -> &'static CStr {
        match self {
            StageKind::Init => c"tank-init",
            StageKind::Exec => c"tank-exec",
        }
    }

    /// argv\[1\]: [`INIT_ARG`] or [`EXEC_ARG`].
    pub fn arg(self) -> &'static CStr {
        match self {
            StageKind::Init => c"--tank-init",
            StageKind::Exec => c"--tank-exec",
        }
    }

    /// How many fds the stage gets (0 .. this).
    pub fn nfds(self) -> usize {
        match self {
            StageKind::Init => SYNC_FD as usize + 1,
            StageKind::Exec => CONTAINER_FD as usize + 1,
        }
    }
}

/// Messages of the sync socket between tankd and a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMessage {
    /// stage → tankd: ready at the checkpoint.
    Ready,
    /// tankd → stage: placed in its cgroup; go on.
    Go,
    /// stage → tankd, after `Go` and only for a tty plan: the PTY master
    /// travels with this message (`SCM_RIGHTS`).
    Console,
    /// stage → tankd: a step failed (`mount /var/lib/app: ENOENT`); the
    /// stage exits after sending it.
    Error(String),
}

/// A broken channel or a violated protocol.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A system call on the channel failed.
    #[error("{what}: {errno:?} ({})", errno.desc())]
    Sys { what: &'static str, errno: Errno },
    /// A packet longer than [`MAX_MESSAGE`].
    #[error("sync protocol: a message of {0} bytes (at most {MAX_MESSAGE})")]
    TooLarge(usize),
    #[error("sync protocol: undecodable message: {0}")]
    Undecodable(#[source] serde_json::Error),
    #[error("sync protocol: expected {expected}, got {got:?}")]
    Unexpected {
        expected: &'static str,
        got: SyncMessage,
    },
    #[error("sync protocol: tankd closed the sync socket before go")]
    Closed,
    /// Writing or reading the plan.
    #[error("{what}: {source}")]
    Plan {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("read plan: larger than {MAX_PLAN} bytes")]
    PlanTooLarge,
    #[error("decode plan: {0}")]
    BadPlan(#[source] serde_json::Error),
}

impl ChannelError {
    fn sys(what: &'static str) -> impl FnOnce(Errno) -> ChannelError {
        move |errno| ChannelError::Sys { what, errno }
    }
}

/// The packet of `message`; an `Error` longer than [`MAX_MESSAGE`] is cut
/// (at a char boundary, with `…`), any other message fits.
pub fn encode(message: &SyncMessage) -> Vec<u8> {
    // Serializing this enum (strings and unit variants) cannot fail.
    let data = serde_json::to_vec(message).unwrap_or_default();
    if data.len() <= MAX_MESSAGE {
        return data;
    }
    let SyncMessage::Error(text) = message else {
        return data;
    };
    let mut cut = MAX_MESSAGE / 2;
    loop {
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let short = SyncMessage::Error(format!("{}…", &text[..cut]));
        let data = serde_json::to_vec(&short).unwrap_or_default();
        // JSON escaping can grow text up to six-fold: halve until it fits.
        if data.len() <= MAX_MESSAGE || cut == 0 {
            return data;
        }
        cut /= 2;
    }
}

/// The message of a packet of `len` bytes (`len` is the packet's full
/// length: more than `data.len()` if it was truncated).
pub fn decode(data: &[u8], len: usize) -> Result<SyncMessage, ChannelError> {
    if len > MAX_MESSAGE || len > data.len() {
        return Err(ChannelError::TooLarge(len));
    }
    serde_json::from_slice(&data[..len]).map_err(ChannelError::Undecodable)
}

/// Sends one message (either end). A peer that is gone gives `EPIPE` or
/// `ECONNRESET`, never `SIGPIPE`.
pub fn send(sync: BorrowedFd<'_>, message: &SyncMessage) -> Result<(), Errno> {
    let data = encode(message);
    loop {
        match nix::sys::socket::send(sync.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Stage side: `Console` with `master` attached (`SCM_RIGHTS`).
pub fn send_console(sync: BorrowedFd<'_>, master: BorrowedFd<'_>) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage};
    let data = encode(&SyncMessage::Console);
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [io::IoSlice::new(&data)];
    loop {
        match sendmsg::<()>(sync.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// `recvmsg` of one packet with room for one passed fd (received
/// close-on-exec): its full length (`MSG_TRUNC`, 0 at EOF) and the fd.
fn recv_packet(sync: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sync.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut passed = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor in our
                // table for this message; nothing else owns it (a second
                // one is closed right away by dropping it).
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if passed.is_none() {
                    passed = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, passed))
}

/// Host side: tankd's end of the sync socket, non-blocking and registered
/// with tokio (for [`recv`]).
pub fn host_end(sync: OwnedFd) -> Result<AsyncFd<OwnedFd>, ChannelError> {
    fcntl(&sync, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(ChannelError::sys("the sync socket"))?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and
    // keeps its number, until the AsyncFd owning it drops.
    unsafe { AsyncFd::register_with_interest(sync, Interest::READABLE) }.map_err(|e| {
        ChannelError::Sys {
            what: "registering the sync socket",
            errno: io_errno(&e.into_parts().1),
        }
    })
}

/// Host side: the next message and the fd passed with it, or `None` at EOF
/// (the stage exec'd or died). `sync` is non-blocking, registered with
/// tokio.
pub async fn recv(
    sync: &AsyncFd<OwnedFd>,
) -> Result<(Option<SyncMessage>, Option<OwnedFd>), ChannelError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut passed = None;
    let n = loop {
        let mut guard = sync.readable().await.map_err(|e| ChannelError::Sys {
            what: "waiting on the sync socket",
            errno: io_errno(&e),
        })?;
        let result = guard.try_io(|fd| {
            let (n, fd) = recv_packet(fd.get_ref().as_fd(), &mut buf)?;
            passed = fd;
            Ok(n)
        });
        match result {
            Ok(Ok(n)) => break n,
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNRESET) => break 0,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => {
                return Err(ChannelError::Sys {
                    what: "reading the sync socket",
                    errno: io_errno(&e),
                })
            }
            Err(_would_block) => continue,
        }
    };
    if n == 0 {
        return Ok((None, None));
    }
    Ok((Some(decode(&buf, n)?), passed))
}

/// Stage side, blocking: the next message, or `None` at EOF.
pub fn recv_blocking(sync: BorrowedFd<'_>) -> Result<Option<SyncMessage>, ChannelError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        match recv_packet(sync, &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => break 0,
            Err(e) => return Err(ChannelError::sys("sync recv")(io_errno(&e))),
            // A stray fd (tankd sends none) is closed by dropping it.
            Ok((n, _)) => break n,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    decode(&buf, n).map(Some)
}

/// Stage side of the ready checkpoint: `Ready`, then wait for `Go`.
pub fn stage_checkpoint(sync: BorrowedFd<'_>) -> Result<(), ChannelError> {
    send(sync, &SyncMessage::Ready).map_err(ChannelError::sys("sync ready"))?;
    match recv_blocking(sync)? {
        Some(SyncMessage::Go) => Ok(()),
        Some(got) => Err(ChannelError::Unexpected {
            expected: "go",
            got,
        }),
        None => Err(ChannelError::Closed),
    }
}

/// Host side: a sealed memfd holding `plan`, positioned at its start
/// (the stage's [`PLAN_FD`]).
pub fn plan_memfd(plan: &[u8]) -> Result<OwnedFd, ChannelError> {
    let fd = memfd_create(
        c"tank-init-plan",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(ChannelError::sys("creating the plan memfd"))?;
    let mut file = File::from(fd);
    let written = file.write_all(plan).and_then(|()| file.rewind());
    written.map_err(|source| ChannelError::Plan {
        what: "writing the plan memfd",
        source,
    })?;
    let fd = OwnedFd::from(file);
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))
        .map_err(ChannelError::sys("sealing the plan memfd"))?;
    Ok(fd)
}

/// Stage side: the plan from [`PLAN_FD`] (closed afterwards). Call once.
pub fn read_plan<T: serde::de::DeserializeOwned>() -> Result<T, ChannelError> {
    // SAFETY: spawn handed us PLAN_FD for the plan; nothing else in this
    // process owns it (std never touches fds above 2), and F_GETFD only
    // reads its flags.
    let fd = unsafe { BorrowedFd::borrow_raw(PLAN_FD) };
    fcntl(fd, FcntlArg::F_GETFD).map_err(ChannelError::sys("read plan: fd 3"))?;
    // SAFETY: checked open just above; ownership moves here, once (this
    // function is called once per stage).
    let file = File::from(unsafe { OwnedFd::from_raw_fd(PLAN_FD) });
    let mut data = Vec::new();
    file.take(MAX_PLAN + 1)
        .read_to_end(&mut data)
        .map_err(|source| ChannelError::Plan {
            what: "read plan",
            source,
        })?;
    if data.len() as u64 > MAX_PLAN {
        return Err(ChannelError::PlanTooLarge);
    }
    serde_json::from_slice(&data).map_err(ChannelError::BadPlan)
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn messages_round_trip() {
        for message in [
            SyncMessage::Ready,
            SyncMessage::Go,
            SyncMessage::Console,
            SyncMessage::Error("mount /var/lib/app: ENOENT (No such file)".into()),
        ] {
            let data = encode(&message);
            assert!(data.len() <= MAX_MESSAGE);
            assert_eq!(decode(&data, data.len()).unwrap(), message);
        }
    }

    #[test]
    fn the_wire_format_is_json() {
        assert_eq!(encode(&SyncMessage::Ready), br#""ready""#);
        assert_eq!(encode(&SyncMessage::Error("x".into())), br#"{"error":"x"}"#);
    }

    #[test]
    fn a_long_error_is_cut_to_fit() {
        // Control characters are escaped six-fold: the worst case.
        for text in ["é".repeat(MAX_MESSAGE), "\u{1}".repeat(MAX_MESSAGE)] {
            let data = encode(&SyncMessage::Error(text.clone()));
            assert!(data.len() <= MAX_MESSAGE, "{} bytes", data.len());
            let SyncMessage::Error(cut) = decode(&data, data.len()).unwrap() else {
                panic!("not an error");
            };
            assert!(cut.ends_with('…'));
            assert!(text.starts_with(cut.trim_end_matches('…')));
        }
    }

    #[test]
    fn oversized_and_garbage_packets_are_refused() {
        let big = vec![b' '; MAX_MESSAGE + 1];
        assert!(matches!(
            decode(&big, big.len()),
            Err(ChannelError::TooLarge(n)) if n == MAX_MESSAGE + 1
        ));
        // Truncated by recv (MSG_TRUNC reports the full length).
        assert!(matches!(
            decode(b"\"re", 10),
            Err(ChannelError::TooLarge(10))
        ));
        assert!(matches!(
            decode(b"\"launch\"", 8),
            Err(ChannelError::Undecodable(_))
        ));
    }

    #[test]
    fn checkpoint_over_a_socketpair() {
        let (host, stage) = pair();
        let stage_side =
            std::thread::spawn(move || stage_checkpoint(stage.as_fd()).map(|()| stage));
        assert_eq!(
            recv_blocking(host.as_fd()).unwrap(),
            Some(SyncMessage::Ready)
        );
        send(host.as_fd(), &SyncMessage::Go).unwrap();
        let stage = stage_side.join().unwrap().unwrap();
        drop(stage);
        // The stage's end is closed: EOF.
        assert_eq!(recv_blocking(host.as_fd()).unwrap(), None);
    }

    #[test]
    fn checkpoint_fails_when_tankd_hangs_up() {
        let (host, stage) = pair();
        drop(host);
        assert!(stage_checkpoint(stage.as_fd()).is_err());
    }

    #[tokio::test]
    async fn console_passes_an_fd() {
        let (host, stage) = pair();
        let host = host_end(host).unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        send_console(stage.as_fd(), r.as_fd()).unwrap();
        let (message, fd) = recv(&host).await.unwrap();
        assert_eq!(message, Some(SyncMessage::Console));
        let fd = fd.expect("an fd passed");
        let flags = fcntl(&fd, FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "received close-on-exec");
        drop(stage);
        assert!(recv(&host).await.unwrap().0.is_none());
    }

    #[test]
    fn plan_round_trips_through_a_sealed_memfd() {
        let fd = plan_memfd(br#"{"a":1}"#).unwrap();
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        let mut text = String::new();
        File::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, r#"{"a":1}"#);
    }

    #[test]
    fn stage_argv_and_fds() {
        assert_eq!(StageKind::Init.arg().to_str().unwrap(), INIT_ARG);
        assert_eq!(StageKind::Exec.arg().to_str().unwrap(), EXEC_ARG);
        assert_eq!(StageKind::Init.nfds(), 5);
        assert_eq!(StageKind::Exec.nfds(), MAX_STAGE_FDS);
        assert_eq!(STDIO_FDS.len() as RawFd, PLAN_FD);
    }
}
