//! The exec stage: tankd re-executed (`tankd --tank-exec`) by
//! [`crate::runtime::exec`] as a child already in the container's PID
//! namespace, to become a second process of a running container.
//!
//! Inherited fds ([`crate::runtime::channel`]): 0, 1, 2 the process's stdio (the client's own fds for a
//! non-tty exec, `/dev/null` until the PTY exists for a tty one), 3 the
//! [`ExecPlan`], 4 the sync socket, 5 a pidfd of the container's PID 1.
//! Steps:
//! 1. non-dumpable first (nobody in the container may ptrace us or open
//!    `/proc/<pid>/exe`, the tankd binary: cf. CVE-2019-5736); read the
//!    plan;
//! 2. `Ready`, wait for `Go` (tankd puts us in the container's cgroup);
//! 3. `setns(pidfd, mnt | net | uts | ipc | cgroup)`: the container's root
//!    becomes ours;
//! 4. the user, resolved in the container's `/etc/passwd`; for a tty, a PTY
//!    in the container's devpts becomes our stdio and controlling terminal
//!    and its master goes to tankd (`Console`);
//! 5. groups, ids, capabilities (the container's bounding set), cwd (as the
//!    user), `no_new_privs`;
//! 6. `PATH` lookup, fds, signals, umask, the container's seccomp filter
//!    (none if it is `unconfined`) and `execve`, as the init stage does
//!    (the exec makes us dumpable again, as any process).
//!
//! Failures are reported like the init stage's (`Error(...)`, exit 1).

use std::convert::Infallible;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use super::{
    console, creds, environment, exec, failed, read_plan, resolve_program, stage_main, Step,
};
use crate::runtime::channel::{self, StageKind, CONTAINER_FD};
use crate::runtime::plan::ExecPlan;

/// The exec stage. Never returns.
pub fn main() -> ! {
    stage_main(StageKind::Exec, run)
}

fn run(sync: BorrowedFd<'_>) -> Step<Infallible> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| failed("prctl", "PR_SET_DUMPABLE", e))?;
    nix::sys::stat::umask(Mode::empty());

    // SAFETY: spawn handed us fd 5 (the container's pidfd) for this stage;
    // nothing else in this process owns it.
    let container = unsafe { BorrowedFd::borrow_raw(CONTAINER_FD) };
    fcntl(container, FcntlArg::F_GETFD).map_err(|e| failed("container pidfd", "fd 5", e))?;
    // SAFETY: checked open just above; ownership moves here, once.
    let container = unsafe { OwnedFd::from_raw_fd(CONTAINER_FD) };

    let plan: ExecPlan = read_plan()?;
    let keep = creds::capability_set(&plan.capabilities)?;

    channel::stage_checkpoint(sync).map_err(|e| e.to_string())?;

    // Atomically, through the pidfd: no pid reuse race. Our root and cwd
    // become the container's root.
    nix::sched::setns(
        &container,
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(|e| failed("join", "the container's namespaces", e))?;
    drop(container);

    let user = crate::image::user::resolve_user(Path::new("/"), plan.user.as_deref())
        .map_err(|e| e.to_string())?;
    if plan.tty {
        let size = plan.size.unwrap_or(crate::pty::alloc::DEFAULT_SIZE);
        console(sync, user.uid, size)?;
    }
    creds::switch_user(&user, &keep)?;
    nix::unistd::chdir(&plan.cwd).map_err(|e| failed("chdir", plan.cwd.display(), e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| failed("prctl", "PR_SET_NO_NEW_PRIVS", e))?;

    let env = environment(&plan.env, user.home.as_deref());
    let program = resolve_program(&plan.argv, &env)?;
    exec(&program, &plan.argv, &env, plan.seccomp.as_ref())
}
