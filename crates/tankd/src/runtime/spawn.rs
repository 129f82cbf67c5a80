//! The host side of a container start: `clone3` into new namespaces, the
//! ready checkpoint, and the pidfd the container's PID 1 is watched through.
//!
//! [`Spawner::spawn`] prepares everything first (argv, the serialized
//! [`InitPlan`] in a sealed memfd, a `SOCK_SEQPACKET` socketpair for the
//! sync protocol, every fd the child needs duplicated above the range it
//! will be moved into), then calls `clone3(CLONE_NEWPID | CLONE_NEWNS |
//! CLONE_NEWUTS | CLONE_NEWIPC | CLONE_PIDFD)` without `CLONE_VM` (fork
//! semantics: the child is a copy of the calling thread only). The child
//! performs raw, async-signal-safe system calls only — `dup2` the fds into
//! place ([`super::channel`]: 0, 1, 2 stdio, 3 plan, 4 sync), `setsid` (+ `TIOCSCTTY` for a
//! tty), mark every other fd close-on-exec — and `execveat`s the tankd binary
//! held open since daemon start ([`Spawner::new`]; cf. CVE-2019-5736) in its
//! hidden init mode ([`super::init`], started by argv alone). It never allocates nor takes a lock.
//!
//! The protocol with the stage (argv, fds, messages, the ready checkpoint)
//! is [`super::channel`]'s; this module is its host side: at `Ready` it
//! calls `place` with the child's pid (the caller puts it in its cgroup)
//! and sends `Go`; EOF then means "started". A child that dies without a
//! word is reported with its exit status. On every host-side
//! failure — and when the `spawn` future is dropped half-way — the child is
//! SIGKILLed and reaped: no leaked process, no zombie.
//!
//! No `CLONE_NEWCGROUP` here (unlike DESIGN §6 step 1): the init stage
//! unshares its cgroup namespace itself after `Go`, once `place` has put it
//! in its cgroup, so that the namespace's root is the container's cgroup.
//! An init stage that dies between `Go` and its exec without a message is
//! indistinguishable from a workload that exits at once: both look started,
//! and [`wait_exit`] reports the status.
//!
//! Requirements on the rest of tankd: never set SIGCHLD to `SIG_IGN` (nor
//! `SA_NOCLDWAIT`) and never `waitpid(-1)`: either would reap containers
//! behind the pidfds' back and lose their exit statuses.
//!
//! The same machinery starts the exec stage ([`Stage::Exec`], see
//! [`super::exec`]): no new namespaces (the clone is made from a thread
//! that joined the container's PID namespace), the container's pidfd as
//! fd 5, `tankd --tank-exec`. For a tty plan, after `Go` the stage sends
//! `Console` with the PTY master it opened in the container's devpts
//! attached (`SCM_RIGHTS`); [`Started::pty`] holds it.
//!
//! Exits are observed with [`wait_exit`]: the pidfd becomes readable when
//! the process exits, then `waitid(P_PIDFD)` reaps it. No SIGCHLD handler,
//! no polling, no pid reuse races.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;
use rustix::process::{WaitId, WaitIdOptions};
use tank_api::exit::ExitStatus;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::channel::{
    self, ChannelError, StageKind, SyncMessage, MAX_STAGE_FDS, PLAN_FD, STDIO_FDS, SYNC_FD,
};
use super::plan::InitPlan;

/// Every fd handed to the child is first duplicated to at least this
/// number, so that moving them into 0..MAX_STAGE_FDS can never overwrite
/// one another.
const HIGH_FD: RawFd = 10;
const _: () = assert!(HIGH_FD as usize >= MAX_STAGE_FDS);

/// How long a child that closed the sync socket before the checkpoint may
/// take to actually exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The container's fds 0, 1, 2.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// `stdin` is a pty slave: make it the controlling terminal of the
    /// container's session (`setsid` + `TIOCSCTTY`).
    pub tty: bool,
}

/// A started container: its PID 1 (host pid) and a pidfd for it.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub pidfd: OwnedFd,
    /// The master of the PTY the process runs on, allocated by the stage
    /// in the container's own devpts and passed back on the sync socket
    /// (`tty` plans only).
    pub pty: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The init stage's own message, e.g. `mount /var/lib/app: ENOENT (No
    /// such file or directory)`.
    #[error("{0}")]
    Init(String),
    /// The child exited (or was killed) without reporting anything.
    #[error("the container's init stage {status} {when}")]
    Died {
        status: ExitStatus,
        when: &'static str,
    },
    /// The `place` callback refused the child.
    #[error("placing the container's process: {0}")]
    Place(String),
    /// Host-side preparation failed (memfd, socketpair, fds, ...).
    #[error("{what}: {source}")]
    Host {
        what: &'static str,
        source: io::Error,
    },
    #[error("clone3: {0}")]
    Clone(Errno),
    /// The sync protocol was violated.
    #[error("sync protocol: {0}")]
    Protocol(String),
    /// The channel broke, or carried something the protocol does not allow.
    #[error("{0}")]
    Channel(#[from] ChannelError),
    #[error("waiting for the process: {0}")]
    Wait(Errno),
    #[error("signaling the process: {0}")]
    Signal(Errno),
}

impl SpawnError {
    fn host(what: &'static str) -> impl FnOnce(Errno) -> SpawnError {
        move |e| SpawnError::Host {
            what,
            source: e.into(),
        }
    }
}

/// Starts containers from one tankd binary held open for the daemon's
/// whole life.
#[derive(Debug)]
pub struct Spawner {
    exe: OwnedFd,
}

impl Spawner {
    /// Opens `/proc/self/exe` now (call it once, at daemon start): later
    /// containers run this very binary even if the file on disk is replaced.
    pub fn new() -> Result<Spawner, SpawnError> {
        Self::with_exe(Path::new("/proc/self/exe"))
    }

    /// A spawner running `path` as the init stage (tests: the tankd binary).
    pub fn with_exe(path: &Path) -> Result<Spawner, SpawnError> {
        let exe = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(SpawnError::host("opening the tankd binary"))?;
        Ok(Spawner { exe })
    }

    /// Starts a container: `clone3` + exec of tankd's init stage in new
    /// PID, mount, UTS and IPC namespaces. `stdio` become the container's
    /// fds 0, 1, 2. `place` is called at the ready checkpoint with the
    /// child's host pid (the caller puts it in its cgroup there); then the
    /// init stage goes on. Returns once the workload is exec'd, or with the
    /// init stage's error. On any error the child is killed and reaped.
    ///
    /// No timeout of its own: wrap it in `tokio::time::timeout`; dropping
    /// the future kills and reaps the child.
    pub async fn spawn(
        &self,
        plan: &InitPlan,
        stdio: Stdio,
        place: impl FnOnce(u32) -> Result<(), String> + Send,
    ) -> Result<Started, SpawnError> {
        let json = serde_json::to_vec(plan).map_err(|e| SpawnError::Host {
            what: "encoding the init plan",
            source: e.into(),
        })?;
        let (prepared, sync) = Prepared::new(&self.exe, &json, stdio, Stage::Init)?;
        let child = tokio::task::spawn_blocking(move || prepared.clone_child())
            .await
            .map_err(|e| SpawnError::Host {
                what: "the clone task",
                source: io::Error::other(e.to_string()),
            })??;
        finish_start(child, sync, place).await
    }

    /// The tankd binary, for the other stages ([`super::exec`]).
    pub(crate) fn exe(&self) -> &OwnedFd {
        &self.exe
    }
}

/// The checkpoint of a freshly cloned child; on failure it is killed and
/// reaped.
pub(crate) async fn finish_start(
    child: Child,
    sync: OwnedFd,
    place: impl FnOnce(u32) -> Result<(), String>,
) -> Result<Started, SpawnError> {
    match checkpoint(&child, sync, place).await {
        Ok(pty) => Ok(child.into_started(pty)),
        Err(e) => {
            child.kill_and_reap().await;
            Err(e)
        }
    }
}

/// The ready checkpoint, from the host side. Returns the PTY master the
/// stage sent after `Go`, if any.
async fn checkpoint(
    child: &Child,
    sync: OwnedFd,
    place: impl FnOnce(u32) -> Result<(), String>,
) -> Result<Option<OwnedFd>, SpawnError> {
    let sync = channel::host_end(sync)?;

    match channel::recv(&sync).await?.0 {
        Some(SyncMessage::Ready) => {}
        Some(SyncMessage::Error(message)) => return Err(SpawnError::Init(message)),
        Some(other) => {
            return Err(SpawnError::Protocol(format!(
                "expected ready, got {other:?}"
            )))
        }
        None => return Err(died(child, "before the ready checkpoint").await),
    }

    place(child.pid).map_err(SpawnError::Place)?;

    match channel::send(sync.get_ref().as_fd(), &SyncMessage::Go) {
        Ok(_) => {}
        Err(Errno::EPIPE | Errno::ECONNRESET) => {
            return Err(died(child, "at the ready checkpoint").await)
        }
        Err(e) => return Err(SpawnError::host("sending go")(e)),
    }

    let mut pty = None;
    loop {
        match channel::recv(&sync).await? {
            // Close-on-exec closed the stage's end: the workload runs.
            (None, _) => return Ok(pty),
            (Some(SyncMessage::Error(message)), _) => return Err(SpawnError::Init(message)),
            (Some(SyncMessage::Console), Some(master)) if pty.is_none() => {
                crate::pty::check_master(&master).map_err(|e| {
                    SpawnError::Protocol(format!("the console is not a pty master: {e}"))
                })?;
                pty = Some(master);
            }
            (Some(other), _) => {
                return Err(SpawnError::Protocol(format!(
                    "expected the exec, got {other:?}"
                )))
            }
        }
    }
}

/// The child closed the sync socket without a word: wait (briefly) for its
/// exit status.
async fn died(child: &Child, when: &'static str) -> SpawnError {
    match tokio::time::timeout(EXIT_GRACE, wait_exit(child.pidfd())).await {
        Ok(Ok(status)) => SpawnError::Died { status, when },
        Ok(Err(e)) => e,
        Err(_) => SpawnError::Protocol(format!(
            "the init stage closed the sync socket {when} but did not exit"
        )),
    }
}

/// Waits for the process behind `pidfd` to exit and reaps it: the pidfd
/// becomes readable on exit (tokio `AsyncFd`), then `waitid(P_PIDFD,
/// WEXITED)`. Only the process's parent (tankd) can reap it.
pub async fn wait_exit(pidfd: &OwnedFd) -> Result<ExitStatus, SpawnError> {
    // A private duplicate to register: epoll keys on the fd number, so
    // several waiters on one pidfd do not collide.
    let watch = dup_cloexec(pidfd.as_fd(), 0).map_err(SpawnError::Wait)?;
    let watch = register(watch)
        .map_err(|e| SpawnError::Wait(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    loop {
        let mut guard = watch.readable().await.map_err(|e| {
            SpawnError::Wait(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
        match reap(pidfd.as_fd(), true) {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => guard.clear_ready(),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(SpawnError::Wait(e)),
        }
    }
}

/// `pidfd_open(2)`: a pidfd of a process tankd did not start (a container
/// adopted from a previous tankd).
pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Waits until the process of `pidfd` has exited, for a process tankd is
/// not the parent of (a container adopted from a previous tankd): its
/// pidfd becomes readable, but its exit status goes to its parent.
pub async fn wait_gone(pidfd: &OwnedFd) -> Result<(), SpawnError> {
    let watch = dup_cloexec(pidfd.as_fd(), 0).map_err(SpawnError::Wait)?;
    let watch = register(watch)
        .map_err(|e| SpawnError::Wait(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let _ready = watch
        .readable()
        .await
        .map_err(|e| SpawnError::Wait(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    Ok(())
}

/// `waitid(P_PIDFD, fd, WEXITED)` (with `WNOHANG` if `nohang`): the
/// status, or `None` if the process still runs.
fn reap(pidfd: BorrowedFd<'_>, nohang: bool) -> Result<Option<ExitStatus>, Errno> {
    let mut options = WaitIdOptions::EXITED;
    if nohang {
        options |= WaitIdOptions::NOHANG;
    }
    let status = rustix::process::waitid(WaitId::PidFd(pidfd), options)
        .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
    Ok(status.map(|status| match status.exit_status() {
        Some(code) => ExitStatus::Exited(code),
        // Killed or dumped: WEXITED reports nothing else.
        None => ExitStatus::Signaled(status.terminating_signal().unwrap_or(libc::SIGKILL)),
    }))
}

/// Sends `signal` to the process behind `pidfd` (`pidfd_send_signal`): no
/// pid reuse race. A process that already exited gives `ESRCH`.
pub fn send_signal(pidfd: &OwnedFd, signal: Signal) -> Result<(), SpawnError> {
    let signal = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or(SpawnError::Signal(Errno::EINVAL))?;
    raw_send_signal(pidfd.as_fd(), signal).map_err(SpawnError::Signal)
}

fn raw_send_signal(pidfd: BorrowedFd<'_>, signal: rustix::process::Signal) -> Result<(), Errno> {
    rustix::process::pidfd_send_signal(pidfd, signal).map_err(|e| Errno::from_raw(e.raw_os_error()))
}

/// Registers `fd` with tokio's reactor for readability.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and
    // keeps returning the same number, until the AsyncFd owning it drops.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// `fcntl(F_DUPFD_CLOEXEC, min)`.
fn dup_cloexec(fd: BorrowedFd<'_>, min: RawFd) -> Result<OwnedFd, Errno> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

// --- the child process ---------------------------------------------------------

/// A cloned child not yet handed to the caller: killed and reaped when
/// dropped (a host-side error, or the spawn future dropped).
pub(crate) struct Child {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl Child {
    fn pidfd(&self) -> &OwnedFd {
        // Only `into_started` and `kill_and_reap` take it, both consuming.
        self.pidfd
            .as_ref()
            .expect("pidfd present until the child is consumed")
    }

    fn into_started(mut self, pty: Option<OwnedFd>) -> Started {
        let pidfd = self.pidfd.take().expect("pidfd present");
        Started {
            pid: self.pid,
            pidfd,
            pty,
        }
    }

    /// SIGKILL and reap without blocking the runtime. Idempotent: an
    /// already exited (`ESRCH`) or reaped (`ECHILD`) child is fine.
    async fn kill_and_reap(mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = raw_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
            let _ = wait_exit(&pidfd).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        let _ = raw_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
        // SIGKILLed: the exit is imminent; reap it off the async threads.
        let reap_blocking = move || {
            let _ = reap(pidfd.as_fd(), false);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(reap_blocking);
            }
            Err(_) => reap_blocking(),
        }
    }
}

/// `struct clone_args` of `clone3(2)` (v2, with `set_tid` and `cgroup`);
/// libc has no definition of it for glibc on every architecture.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the clone becomes.
pub(crate) enum Stage {
    /// A container's PID 1: new PID, mount, UTS and IPC namespaces, then
    /// the init stage.
    Init,
    /// A process joining the running container whose pidfd becomes the
    /// child's [`channel::CONTAINER_FD`]: the exec stage ([`super::init::exec`]). The clone
    /// itself is made in the container's PID namespace
    /// ([`Prepared::clone_child_in`]).
    Exec(OwnedFd),
}

/// Everything the child needs, prepared (allocated, opened) before the
/// clone. Dropping it closes the parent's copies of the child's fds.
pub(crate) struct Prepared {
    exe: OwnedFd,
    /// In the order of the child's fds 0..: stdin, stdout, stderr, plan,
    /// sync (and the container's pidfd for an exec), as
    /// [`super::channel`] numbers them. All numbered >= HIGH_FD.
    fds: Vec<OwnedFd>,
    tty: bool,
    kind: StageKind,
}

impl Prepared {
    /// `plan` is the serialized plan of the stage. Also returns tankd's
    /// end of the sync socket.
    pub(crate) fn new(
        exe: &OwnedFd,
        plan: &[u8],
        stdio: Stdio,
        stage: Stage,
    ) -> Result<(Prepared, OwnedFd), SpawnError> {
        let plan_fd = channel::plan_memfd(plan)?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(SpawnError::host("creating the sync socketpair"))?;
        let high = |fd: &OwnedFd| {
            dup_cloexec(fd.as_fd(), HIGH_FD).map_err(SpawnError::host("duplicating an fd"))
        };
        let mut fds = vec![
            high(&stdio.stdin)?,
            high(&stdio.stdout)?,
            high(&stdio.stderr)?,
            high(&plan_fd)?,
            high(&theirs)?,
        ];
        debug_assert_eq!(fds.len(), STDIO_FDS.len() + 2);
        debug_assert_eq!((PLAN_FD, SYNC_FD), (3, 4));
        let kind = match stage {
            Stage::Init => StageKind::Init,
            Stage::Exec(container) => {
                fds.push(high(&container)?);
                StageKind::Exec
            }
        };
        debug_assert_eq!(fds.len(), kind.nfds());
        let prepared = Prepared {
            exe: high(exe)?,
            fds,
            tty: stdio.tty,
            kind,
        };
        Ok((prepared, ours))
    }

    /// For [`Stage::Exec`]: clone3 (and exec in the child) from a thread
    /// of its own that first joins the container's PID namespace for its
    /// children (`setns(pidfd, CLONE_NEWPID)` only changes the calling
    /// thread's `pid_for_children`; the thread ends right after, so no
    /// other clone of tankd is affected). Not for a thread that lives on.
    pub(crate) fn clone_child_in(self, container: &OwnedFd) -> Result<Child, SpawnError> {
        nix::sched::setns(container, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(SpawnError::host("joining the container's PID namespace"))?;
        self.clone_child()
    }

    /// Runs on a blocking thread: clone3, and exec in the child.
    pub(crate) fn clone_child(self) -> Result<Child, SpawnError> {
        let argv: [*const libc::c_char; 3] = [
            self.kind.name().as_ptr(),
            self.kind.arg().as_ptr(),
            std::ptr::null(),
        ];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        let mut fds: [RawFd; MAX_STAGE_FDS] = [-1; MAX_STAGE_FDS];
        for (slot, fd) in fds.iter_mut().zip(&self.fds) {
            *slot = fd.as_raw_fd();
        }
        let child_args = ChildArgs {
            fds,
            nfds: self.fds.len().min(MAX_STAGE_FDS),
            exe: self.exe.as_raw_fd(),
            tty: self.tty,
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
        };
        let mut pidfd: libc::c_int = -1;
        let namespaces = match self.kind {
            StageKind::Exec => 0,
            StageKind::Init => {
                libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC
            }
        };
        let args = CloneArgs {
            flags: (namespaces | libc::CLONE_PIDFD) as u64,
            pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };

        // Block every signal across the clone: no handler of the daemon may
        // run in the child before its exec (the mask survives the exec; the
        // init stage clears it right before exec'ing the workload).
        let mut old_mask = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old_mask),
        )
        .map_err(SpawnError::host("blocking signals"))?;
        // SAFETY: clone3 with a valid, fully initialised clone_args of the
        // size passed, without CLONE_VM: the child gets a copy-on-write copy
        // of this thread's memory (fork semantics) and `pidfd` is written in
        // the parent. The child only runs `child_after_clone`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                std::ptr::addr_of!(args),
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret == 0 {
            // SAFETY: we are the freshly cloned child; `child_args` points
            // into our own (copied) stack and static data, all valid.
            unsafe { child_after_clone(&child_args) }
        }
        let clone_errno = Errno::last();
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
        if ret < 0 {
            return Err(SpawnError::Clone(clone_errno));
        }
        // SAFETY: CLONE_PIDFD stored a new pidfd (O_CLOEXEC) that we own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Ok(Child {
            pid: ret as u32,
            pidfd: Some(pidfd),
        })
        // `self` is dropped here: the parent's copies of the child's fds
        // close, so the sync socket sees EOF once the child's copy closes.
    }
}

/// What the child reads, all prepared by the parent.
struct ChildArgs {
    /// The first `nfds` become the child's 0, 1, ...
    fds: [RawFd; MAX_STAGE_FDS],
    nfds: usize,
    exe: RawFd,
    tty: bool,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
}

/// The child between clone3 and exec: raw async-signal-safe system calls
/// only, no allocation, no locks, no panics. Exit status 126: setting up
/// the fds failed; 127: the exec failed.
///
/// # Safety
/// Must only be called in the child right after clone3 (fork semantics),
/// with `args` valid.
unsafe fn child_after_clone(args: &ChildArgs) -> ! {
    // Every source fd is >= HIGH_FD and every target < HIGH_FD, so no dup2
    // clobbers a source still needed. dup2 clears close-on-exec on the copy.
    for (target, &src) in (0..).zip(args.fds.iter().take(args.nfds)) {
        // SAFETY: plain system calls on fds of this process.
        if unsafe { libc::dup2(src, target) } < 0 {
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(126) }
        }
    }
    // A session of its own (detached from tankd's process group and
    // terminal); with a tty, the pty slave on fd 0 becomes its controlling
    // terminal.
    // rustix makes the system calls directly: no allocation, no lock.
    // SAFETY: fd 0 was just set up by the dup2 above and stays open.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    if rustix::process::setsid().is_err()
        || (args.tty && rustix::process::ioctl_tiocsctty(stdin).is_err())
    {
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(126) }
    }
    // Everything else (the daemon's fds, the >= HIGH_FD copies, the exe)
    // closes at the exec. Failure (an old kernel) is tolerable: the daemon's
    // fds are close-on-exec already.
    let first = args.nfds as libc::c_uint;
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: argv/envp are NULL-terminated arrays of NUL-terminated
    // strings prepared before the clone; "" with AT_EMPTY_PATH executes the
    // file `exe` refers to.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            args.exe,
            c"".as_ptr(),
            args.argv,
            args.envp,
            libc::AT_EMPTY_PATH,
        );
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn died_display() {
        let e = SpawnError::Died {
            status: ExitStatus::Exited(127),
            when: "before the ready checkpoint",
        };
        assert_eq!(
            e.to_string(),
            "the container's init stage exited 127 before the ready checkpoint"
        );
    }

    #[test]
    fn clone_args_is_the_v2_struct() {
        // CLONE_ARGS_SIZE_VER2 = 88 bytes.
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }
}
