//! The init stage: tankd re-executed by [`super::spawn`] inside the
//! container's new PID, mount, UTS and IPC namespaces (`tankd --tank-init`).
//! A fresh single-threaded process: allocation is fine here. It builds the
//! container around itself and `execve`s the workload, which becomes the
//! container's PID 1.
//!
//! Inherited fds (the protocol is [`super::channel`]'s): 0, 1, 2 the
//! container's stdio, 3 the [`InitPlan`] (JSON in a sealed memfd), 4 the
//! sync socket. The steps, in order (DESIGN §6):
//! 1. read the plan; join the pod netns if any (`None` = network "host");
//! 2. send `Ready` and wait for `Go` (tankd puts us in our cgroup meanwhile);
//! 3. `unshare(CLONE_NEWCGROUP)` (so the cgroup ns root is our own cgroup);
//!    make `/` rprivate;
//! 4. the rootfs (overlay or rbind) and, inside it, `/proc`, `/sys`,
//!    `/sys/fs/cgroup` (the plan's [`CgroupView`](super::plan::CgroupView):
//!    the container's own cgroups, read-only), `/dev` (tmpfs + nodes),
//!    `/dev/pts`, `/dev/shm`, `/dev/mqueue`, the plan's bind mounts, the
//!    cwd; every destination resolved inside the rootfs ([`mounts`]);
//! 5. the user, resolved in the rootfs's own `/etc/passwd`/`/etc/group`;
//!    masked and read-only paths;
//! 6. `pivot_root(".", ".")` + detach of the old root; hostname; cwd;
//! 7. groups, gid, uid, capabilities, `no_new_privs` ([`creds`]);
//! 8. `argv[0]` looked up in the container's `PATH`; every fd ≥ 3
//!    close-on-exec, signal dispositions and mask reset, umask 022;
//! 9. the seccomp filter of the plan, if any ([`crate::runtime::seccomp`]),
//!    as the very last step: nothing but `execve` runs under it.
//!
//! Any failure is sent to tankd as `Error("<step> <path>: <ERRNO> (<text>)")`
//! and the stage exits 1. It never panics on purpose; a panic anyway is
//! caught and reported the same way.
#![allow(unsafe_code)]

mod creds;
pub mod exec;
mod mounts;

use std::convert::Infallible;
use std::ffi::{CString, OsStr};
use std::fmt::Display;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::Mode;

use super::channel::{self, StageKind, SyncMessage, SYNC_FD};
use super::plan::InitPlan;

/// The `PATH` used for the `argv[0]` lookup when the environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An init step failed: the message sent to tankd.
type Step<T> = Result<T, String>;

/// `"<step> <path>: ENOENT (No such file or directory)"`.
pub(crate) fn failed(step: &str, path: impl Display, errno: Errno) -> String {
    format!("{step} {path}: {}", errno_text(errno))
}

/// `"ENOENT (No such file or directory)"`.
pub(crate) fn errno_text(errno: Errno) -> String {
    format!("{errno:?} ({})", errno.desc())
}

/// The init stage. Never returns: it `execve`s the workload or exits 1
/// after reporting why.
pub fn main() -> ! {
    stage_main(StageKind::Init, run)
}

/// The frame of a stage (init, exec): name, sync socket check, `run`,
/// and the report of its failure.
fn stage_main(kind: StageKind, run: fn(BorrowedFd<'_>) -> Step<Infallible>) -> ! {
    // execveat(AT_EMPTY_PATH) named us after the fd number ("10"): show
    // what we are in ps until the workload's exec renames us.
    let _ = nix::sys::prctl::set_name(kind.name());
    let arg = kind.arg().to_string_lossy();
    // SAFETY: SYNC_FD was set up by spawn for this process; it stays open
    // for the whole of main (it is only ever closed by the final execve);
    // F_SETFD below fails harmlessly if it is not open.
    let sync = unsafe { BorrowedFd::borrow_raw(SYNC_FD) };
    if fcntl(sync, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        // Not started by tankd's spawn: nobody to report to.
        eprintln!("tankd {arg}: no sync socket on fd {SYNC_FD}; this mode is internal to tankd");
        std::process::exit(2);
    }
    let message = match std::panic::catch_unwind(|| run(sync)) {
        Ok(Ok(never)) => match never {},
        Ok(Err(message)) => message,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("init stage panicked: {what}")
        }
    };
    let _ = channel::send(sync, &SyncMessage::Error(message));
    std::process::exit(1)
}

fn run(sync: BorrowedFd<'_>) -> Step<Infallible> {
    // Nobody may ptrace us or open /proc/<pid>/exe (the tankd binary) while
    // we are privileged and in the container (cf. CVE-2019-5736); the exec
    // of the workload makes it dumpable again.
    nix::sys::prctl::set_dumpable(false).map_err(|e| failed("prctl", "PR_SET_DUMPABLE", e))?;
    // Modes below are exact (device nodes 0666, ...); the workload gets 022.
    nix::sys::stat::umask(Mode::empty());

    let plan: InitPlan = read_plan()?;
    // Checked now: a bad plan fails before anything is built.
    let keep = creds::capability_set(&plan.capabilities)?;

    if let Some(netns) = &plan.netns {
        let fd = nix::fcntl::open(netns, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| failed("open netns", netns.display(), e))?;
        nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| failed("join netns", netns.display(), e))?;
    }

    // The ready checkpoint.
    channel::stage_checkpoint(sync).map_err(|e| e.to_string())?;

    // tankd has put us in our cgroup: that becomes the root of our view.
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| failed("unshare", "cgroup namespace", e))?;
    // Nothing we mount may propagate to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| failed("make rprivate", "/", e))?;

    let root = mounts::mount_rootfs(&plan)?;
    mounts::mount_standard(&root, &plan)?;
    mounts::mount_binds(&root, &plan.mounts)?;

    let user = crate::image::user::resolve_user(&plan.rootfs_target, plan.user.as_deref())
        .map_err(|e| e.to_string())?;
    mounts::prepare_cwd(&root, &plan.cwd, user.uid, user.gid)?;
    mounts::mask_paths(&root, &plan.masked_paths)?;
    mounts::readonly_paths(&root, &plan.readonly_paths)?;
    mounts::pivot(&root)?;
    drop(root);

    nix::unistd::sethostname(&plan.hostname)
        .map_err(|e| failed("sethostname", &plan.hostname, e))?;
    nix::unistd::chdir(&plan.cwd).map_err(|e| failed("chdir", plan.cwd.display(), e))?;
    if plan.tty {
        console(sync, user.uid, crate::pty::alloc::DEFAULT_SIZE)?;
    }

    creds::switch_user(&user, &keep)?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| failed("prctl", "PR_SET_NO_NEW_PRIVS", e))?;

    let env = environment(&plan.env, user.home.as_deref());
    let program = resolve_program(&plan.argv, &env)?;
    exec(&program, &plan.argv, &env, plan.seccomp.as_ref())
}

/// A PTY in the devpts at `/dev/pts` (ours: we are in the container's
/// mount namespace and root) becomes our stdio and controlling terminal
/// (we lead our session since spawn's `setsid`); the slave is `uid`'s; the
/// master goes to tankd with a `Console` message.
fn console(sync: BorrowedFd<'_>, uid: u32, (rows, cols): (u16, u16)) -> Step<()> {
    let (master, slave) = crate::pty::alloc::open_pty(rows, cols)?;
    nix::unistd::fchown(&slave, Some(nix::unistd::Uid::from_raw(uid)), None)
        .map_err(|e| failed("chown", "the pty slave", e))?;
    for target in 0..3 {
        // SAFETY: dup2 onto our own stdio fds; the slave stays open.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(failed("dup2", "the pty slave", Errno::last()));
        }
    }
    drop(slave);
    // SAFETY: fd 0 is the slave, open for the rest of this process.
    crate::pty::alloc::make_controlling(unsafe { BorrowedFd::borrow_raw(0) })
        .map_err(|e| failed("TIOCSCTTY", "the pty slave", e))?;
    channel::send_console(sync, master.as_fd()).map_err(|e| failed("sync", "console", e))
}

/// The stage's plan (see [`channel::read_plan`]).
fn read_plan<T: serde::de::DeserializeOwned>() -> Step<T> {
    channel::read_plan().map_err(|e| e.to_string())
}

/// The workload's environment: the plan's, plus `HOME` from the user's
/// passwd entry (or `/`) when the plan sets none, as runc does.
pub(crate) fn environment(env: &[String], home: Option<&Path>) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home.unwrap_or(Path::new("/"));
        env.push(format!("HOME={}", home.display()));
    }
    env
}

/// The value of `name` in a `K=V` list (the first entry, as getenv).
pub(crate) fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// `argv[0]` as a path: as is when it has a `/`, else the first executable
/// regular file named so in the environment's `PATH` (or [`DEFAULT_PATH`]).
fn resolve_program(argv: &[String], env: &[String]) -> Step<PathBuf> {
    let Some(name) = argv.first() else {
        return Err("exec: empty argv".into());
    };
    if name.is_empty() {
        return Err("exec: empty argv[0]".into());
    }
    let path = env_value(env, "PATH").unwrap_or(DEFAULT_PATH);
    lookup_path(name, path, is_executable)
        .ok_or_else(|| format!("exec {name}: ENOENT (not found in PATH={path})"))
}

/// The PATH lookup of `execvp`: `name` itself when it contains a `/`; else
/// each `PATH` entry in order (an empty entry is the cwd) until `usable`.
pub(crate) fn lookup_path(
    name: &str,
    path: &str,
    usable: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| usable(candidate))
}

/// A regular file we may execute (with our final credentials).
fn is_executable(path: &Path) -> bool {
    let regular = nix::sys::stat::stat(path)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        .unwrap_or(false);
    regular && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// The last steps: fds, signals, umask, the seccomp filter, execve.
fn exec(
    program: &Path,
    argv: &[String],
    env: &[String],
    seccomp: Option<&crate::runtime::seccomp::SeccompProgram>,
) -> Step<Infallible> {
    let cstr = |s: &[u8], what: &str| {
        CString::new(s)
            .map_err(|_| format!("exec {}: {what} contains a NUL byte", program.display()))
    };
    let c_program = cstr(program.as_os_str().as_bytes(), "the path")?;
    let c_argv = argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Step<Vec<_>>>()?;
    let c_env = env
        .iter()
        .map(|e| cstr(e.as_bytes(), "an environment entry"))
        .collect::<Step<Vec<_>>>()?;

    close_other_fds();
    reset_signals();
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    if let Some(filter) = seccomp {
        if let Err(e) = crate::runtime::seccomp::load(filter) {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
            return Err(failed("load", "the seccomp filter", e));
        }
    }
    let errno = match nix::unistd::execve(&c_program, &c_argv, &c_env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    // Still here: block signals again while reporting.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    Err(failed(
        "exec",
        OsStr::new(program.as_os_str()).to_string_lossy(),
        errno,
    ))
}

/// Every fd ≥ 3 close-on-exec (the sync socket included: its closing tells
/// tankd that the exec happened).
fn close_other_fds() {
    let first: libc::c_uint = 3;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets fd flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        // Old kernel: walk our fds instead.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<RawFd> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= 3)
                .collect();
            for fd in fds {
                // SAFETY: a (possibly stale) fd number of ours; F_SETFD on
                // it either works or fails with EBADF.
                let _ = fcntl(
                    unsafe { BorrowedFd::borrow_raw(fd) },
                    FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
                );
            }
        }
    }
}

/// Default dispositions for every signal (tankd ignores SIGPIPE, and
/// ignored signals survive exec) and an empty mask (spawn blocked all of
/// them across the clone).
fn reset_signals() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL (no handler code) with an all-zero
        // sigaction; failures (glibc's reserved signals) are harmless.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup() {
        let exists = |p: &Path| p == Path::new("/usr/bin/sh") || p == Path::new("./tool");
        assert_eq!(
            lookup_path("sh", "/bin:/usr/bin", exists),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(lookup_path("sh", "/bin:/sbin", exists), None);
        // An empty entry is the cwd.
        assert_eq!(
            lookup_path("tool", "/bin::/usr/bin", exists),
            Some(PathBuf::from("./tool"))
        );
        // A name with a slash is never looked up.
        assert_eq!(
            lookup_path("/nope", "/bin", exists),
            Some(PathBuf::from("/nope"))
        );
        assert_eq!(
            lookup_path("sub/x", "/bin", exists),
            Some(PathBuf::from("sub/x"))
        );
    }

    #[test]
    fn env_helpers() {
        let env = vec!["PATHX=1".to_string(), "PATH=/a:/b".into(), "PATH=/c".into()];
        assert_eq!(env_value(&env, "PATH"), Some("/a:/b"));
        assert_eq!(env_value(&env, "HOME"), None);
        let with_home = environment(&env, Some(Path::new("/home/app")));
        assert_eq!(with_home.last().map(String::as_str), Some("HOME=/home/app"));
        assert_eq!(
            environment(&env, None).last().map(String::as_str),
            Some("HOME=/")
        );
        let set = vec!["HOME=/x".to_string()];
        assert_eq!(environment(&set, Some(Path::new("/home/app"))), set);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            failed("mount", "/var/lib/app", Errno::ENOENT),
            "mount /var/lib/app: ENOENT (No such file or directory)"
        );
        assert_eq!(
            failed("exec", "/bin/nope", Errno::EACCES),
            "exec /bin/nope: EACCES (Permission denied)"
        );
    }
}
