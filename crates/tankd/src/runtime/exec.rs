//! Exec: a second process in a running container, and the terminals of
//! running containers.
//!
//! Owns the host side of an exec — the [`ExecPlan`] (the container's user,
//! env, cwd, capabilities and seccomp filter, with the caller's
//! overrides), the clone of the
//! exec stage ([`super::init::exec`]) straight into the container's PID
//! namespace, its placement in the container's cgroup at the ready
//! checkpoint, the wait for its exit — and [`Consoles`], what tankd knows
//! about each running container for exec and attach: the context its
//! PID 1 was started with (for an adopted container, the one its run
//! record kept: [`super::record`]) and, for a `tty: true` container, the
//! [`Session`] of its PTY. It never decides whether a container runs,
//! and knows nothing of the runtime manager: the manager hands it an
//! [`ExecTarget`] ([`super::manager::Runtime::exec`]).
//!
//! No fork of the multi-threaded daemon: the clone happens on a thread
//! made for it, which first `setns(CLONE_NEWPID)`s into the container
//! (that only changes the PID namespace of the thread's children) and ends
//! right after; the child performs raw system calls only until it
//! `execveat`s the tankd binary held since start (see [`super::spawn`]).
//! The exec stage joins the other namespaces through the container's
//! pidfd and makes itself non-dumpable before touching the container.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cgroup::ContainerCgroup;
use super::logs::LogSink;
use super::plan::{ExecPlan, InitPlan};
use super::seccomp::SeccompProgram;
use super::spawn::{self, Prepared, SpawnError, Spawner, Stage, Stdio};
use crate::pty::session::{ClientEnds, TerminalLog};
use crate::pty::{Session, SessionError};
use tank_api::exit::ExitStatus;

/// How long an exec may take to reach its `execve`.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("container {pod}/{container} is not running")]
    NotRunning { pod: String, container: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("exec timed out after {0:?}")]
    Timeout(Duration),
}

/// What an exec in a container inherits: the context its PID 1 was
/// started with (the merged env, the image's user, resolved again in the
/// container at each exec as at the start, the working directory and
/// capabilities), never what PID 1 made of itself since.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecContext {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub capabilities: Vec<String>,
}

impl ExecContext {
    /// The context of a container adopted from a tankd whose run record
    /// did not keep it, read from its PID 1: its environ now, its real
    /// uid and gid now, Docker's default capabilities; the working
    /// directory is `/`. Wrong for a PID 1 that rewrote its environ (nginx,
    /// redis) or switched users: only a fallback.
    pub fn from_proc(pid: u32) -> Option<ExecContext> {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let env = environ
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let real = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_owned)
        };
        Some(ExecContext {
            user: Some(format!("{}:{}", real("Uid:")?, real("Gid:")?)),
            env,
            cwd: PathBuf::from("/"),
            capabilities: super::plan::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect(),
        })
    }

    pub fn of(plan: &InitPlan) -> ExecContext {
        ExecContext {
            user: plan.user.clone(),
            env: plan.env.clone(),
            cwd: plan.cwd.clone(),
            capabilities: plan.capabilities.clone(),
        }
    }
}

/// What an exec joins: a running container's PID 1, its cgroup, and the
/// seccomp filter its processes run under (`None`: unconfined).
pub struct ExecTarget {
    pub pid: u32,
    pub pidfd: Arc<OwnedFd>,
    pub cgroup: Arc<ContainerCgroup>,
    pub seccomp: Option<SeccompProgram>,
}

/// An exec as asked for.
#[derive(Debug, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// `K=V` entries over the container's env (the last of a key wins).
    pub env: Vec<String>,
    /// Absolute; the container's working directory when `None`.
    pub cwd: Option<PathBuf>,
    pub tty: bool,
    /// Initial window size (rows, columns) of the PTY.
    pub size: Option<(u16, u16)>,
    /// The process's stdin, stdout, stderr (non-tty only); `/dev/null`
    /// where `None`.
    pub stdio: [Option<OwnedFd>; 3],
}

/// The exec context and main-process terminal of every running container.
#[derive(Default)]
pub struct Consoles {
    running: Mutex<HashMap<(String, String), Entry>>,
}

struct Entry {
    pid: u32,
    context: Arc<ExecContext>,
    main: Option<Arc<Session>>,
}

impl Consoles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A container's PID 1 started from `plan`; `pty` is the master of its
    /// terminal (`tty: true`), drained into `sink` while nobody is attached.
    pub fn started(
        &self,
        plan: &InitPlan,
        pid: u32,
        pty: Option<OwnedFd>,
        sink: Option<Arc<LogSink>>,
    ) {
        let main = pty.and_then(|master| {
            let label = format!("{}/{} (pid {pid})", plan.pod, plan.container);
            let sink = sink.map(|s| s as Arc<dyn TerminalLog>);
            Session::detached(label, master, sink)
                .map_err(|e| log::error!("{}/{}: terminal: {e}", plan.pod, plan.container))
                .ok()
        });
        self.lock().insert(
            (plan.pod.clone(), plan.container.clone()),
            Entry {
                pid,
                context: Arc::new(ExecContext::of(plan)),
                main,
            },
        );
    }

    /// The PID 1 `pid` of a container exited (`None`: with a status
    /// tankd cannot know, an adopted container's).
    pub fn exited(&self, pod: &str, container: &str, pid: u32, status: Option<ExitStatus>) {
        let key = (pod.to_owned(), container.to_owned());
        let mut running = self.lock();
        if running.get(&key).is_some_and(|e| e.pid == pid) {
            if let Some(main) = running.remove(&key).and_then(|e| e.main) {
                main.finish(status.unwrap_or(ExitStatus::Signaled(libc::SIGKILL)));
            }
        }
    }

    /// A container adopted from a previous tankd, with the context its run
    /// record kept (no terminal: a PTY master does not survive tankd).
    pub fn adopted(&self, pod: &str, container: &str, pid: u32, context: ExecContext) {
        self.lock().insert(
            (pod.to_owned(), container.to_owned()),
            Entry {
                pid,
                context: Arc::new(context),
                main: None,
            },
        );
    }

    /// The exec context of a running container (and its PID 1).
    pub fn context(&self, pod: &str, container: &str) -> Option<(u32, Arc<ExecContext>)> {
        self.lock()
            .get(&(pod.to_owned(), container.to_owned()))
            .map(|e| (e.pid, Arc::clone(&e.context)))
    }

    /// The terminal session of a running `tty: true` container's PID 1:
    /// `Some(None)` when it runs without one, `None` when it does not run.
    pub fn main_session(&self, pod: &str, container: &str) -> Option<Option<Arc<Session>>> {
        self.lock()
            .get(&(pod.to_owned(), container.to_owned()))
            .map(|e| e.main.clone())
    }
}

/// The environment of a container's process: `base`, `TERM=xterm` for a
/// terminal when `base` sets no `TERM`, then `overrides` (`K=V`; an
/// existing key is replaced in place, the last of a key wins).
pub fn merge_env(base: &[String], tty: bool, overrides: &[String]) -> Vec<String> {
    let key = |entry: &str| entry.split_once('=').map_or(entry, |(k, _)| k).to_owned();
    let mut env = base.to_vec();
    if tty && !env.iter().any(|e| key(e) == "TERM") {
        env.push("TERM=xterm".to_owned());
    }
    for entry in overrides {
        let k = key(entry);
        match env.iter_mut().find(|e| key(e) == k) {
            Some(slot) => slot.clone_from(entry),
            None => env.push(entry.clone()),
        }
    }
    env
}

/// Checks the caller's part of an exec.
fn validate(request: &ExecRequest) -> Result<(), ExecError> {
    let invalid = |m: String| Err(ExecError::InvalidArgument(m));
    if request.argv.first().is_none_or(|a| a.is_empty()) {
        return invalid("argv: a command is needed (its first word non-empty)".into());
    }
    if let Some(a) = request.argv.iter().find(|a| a.contains('\0')) {
        return invalid(format!("argv: {a:?} contains a NUL byte"));
    }
    for entry in &request.env {
        match entry.split_once('=') {
            Some((k, _)) if !k.is_empty() && !entry.contains('\0') => {}
            _ => return invalid(format!("env: {entry:?} is not K=V")),
        }
    }
    if let Some(cwd) = &request.cwd {
        if !cwd.is_absolute() || cwd.as_os_str().as_encoded_bytes().contains(&0) {
            return invalid(format!("cwd: {} is not an absolute path", cwd.display()));
        }
    }
    if request.tty && request.stdio.iter().any(Option::is_some) {
        return invalid("stdin/stdout/stderr are for an exec without a tty".into());
    }
    Ok(())
}

/// Starts `request` in the running container `pod`/`container` (`target`;
/// `None`: it does not run) with the tankd binary of `spawner`, in the exec
/// context `consoles` knows. Returns the client's ends (the PTY master, or
/// `/dev/null` without a tty, and the status socket) once the command is
/// exec'd; its exit is delivered on the status socket.
pub async fn exec(
    spawner: &Spawner,
    consoles: &Consoles,
    target: Option<ExecTarget>,
    (pod, container): (&str, &str),
    request: ExecRequest,
) -> Result<ClientEnds, ExecError> {
    validate(&request)?;
    let not_running = || ExecError::NotRunning {
        pod: pod.to_owned(),
        container: container.to_owned(),
    };
    let ExecTarget {
        pid,
        pidfd,
        cgroup,
        seccomp,
    } = target.ok_or_else(not_running)?;
    let context = match consoles.context(pod, container) {
        Some((context_pid, context)) if context_pid == pid => context,
        Some(_) => return Err(not_running()),
        // Adopted with a record of an older tankd (warned at adoption).
        None => {
            let proc_context = move || ExecContext::from_proc(pid);
            let context = tokio::task::spawn_blocking(proc_context)
                .await
                .ok()
                .flatten()
                .ok_or_else(not_running)?;
            Arc::new(context)
        }
    };
    let plan = ExecPlan {
        env: merge_env(&context.env, request.tty, &request.env),
        cwd: request.cwd.unwrap_or_else(|| context.cwd.clone()),
        user: context.user.clone(),
        capabilities: context.capabilities.clone(),
        tty: request.tty,
        size: request.size,
        argv: request.argv,
        seccomp,
    };
    let json = serde_json::to_vec(&plan).map_err(|e| SpawnError::Host {
        what: "encoding the exec plan",
        source: e.into(),
    })?;
    let [stdin, stdout, stderr] = request.stdio;
    let null = || -> Result<OwnedFd, SpawnError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|source| SpawnError::Host {
                what: "opening /dev/null",
                source,
            })
    };
    let stdio = Stdio {
        stdin: stdin.map_or_else(null, Ok)?,
        stdout: stdout.map_or_else(null, Ok)?,
        stderr: stderr.map_or_else(null, Ok)?,
        tty: false,
    };
    let container_fd = pidfd.try_clone().map_err(|source| SpawnError::Host {
        what: "duplicating the container's pidfd",
        source,
    })?;
    let (prepared, sync) = Prepared::new(spawner.exe(), &json, stdio, Stage::Exec(container_fd))?;

    // The clone, on a thread of its own (see the module doc).
    let pid_ns = pidfd.try_clone().map_err(|source| SpawnError::Host {
        what: "duplicating the container's pidfd",
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tank-exec-clone".to_owned())
        .spawn(move || {
            let _ = tx.send(prepared.clone_child_in(&pid_ns));
        })
        .map_err(|source| SpawnError::Host {
            what: "starting the clone thread",
            source,
        })?;
    let child = rx.await.map_err(|_| SpawnError::Host {
        what: "the clone thread",
        source: std::io::Error::other("ended without a result"),
    })?;
    let child = child.map_err(|e| match e {
        // The container's PID namespace has no init anymore.
        SpawnError::Clone(nix::errno::Errno::ENOMEM) => not_running(),
        e => ExecError::Spawn(e),
    })?;

    let place = move |pid: u32| cgroup.add_process(pid).map_err(|e| e.to_string());
    let started = tokio::time::timeout(EXEC_TIMEOUT, spawn::finish_start(child, sync, place))
        .await
        .map_err(|_| ExecError::Timeout(EXEC_TIMEOUT))??;
    if plan.tty && started.pty.is_none() {
        return Err(SpawnError::Protocol("the exec stage sent no terminal".into()).into());
    }
    let label = format!(
        "{pod}/{container} exec {} (pid {})",
        plan.argv[0], started.pid
    );
    log::info!("{label}: started");
    let (session, ends) = Session::leased(label.clone(), started.pty)?;
    let pidfd = started.pidfd;
    tokio::spawn(async move {
        let status = spawn::wait_exit(&pidfd)
            .await
            .unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
        log::info!("{label}: {status}");
        session.finish(status);
    });
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_merge() {
        let base = strings(&["PATH=/bin", "A=1", "B=2"]);
        assert_eq!(
            merge_env(&base, true, &strings(&["A=x", "C=3", "A=y"])),
            strings(&["PATH=/bin", "A=y", "B=2", "TERM=xterm", "C=3"])
        );
        assert_eq!(merge_env(&base, false, &[]), base);
        let with_term = strings(&["TERM=vt100"]);
        assert_eq!(merge_env(&with_term, true, &[]), with_term);
        assert_eq!(
            merge_env(&with_term, true, &strings(&["TERM=dumb"])),
            strings(&["TERM=dumb"])
        );
    }

    #[test]
    fn validation() {
        let ok = ExecRequest {
            argv: strings(&["sh"]),
            ..ExecRequest::default()
        };
        assert!(validate(&ok).is_ok());
        let bad = |r: ExecRequest| validate(&r).unwrap_err().to_string();
        assert!(bad(ExecRequest::default()).contains("a command is needed"));
        assert!(bad(ExecRequest {
            argv: strings(&["sh"]),
            env: strings(&["NOVALUE"]),
            ..ExecRequest::default()
        })
        .contains("not K=V"));
        assert!(bad(ExecRequest {
            argv: strings(&["sh"]),
            env: strings(&["=x"]),
            ..ExecRequest::default()
        })
        .contains("not K=V"));
        assert!(bad(ExecRequest {
            argv: strings(&["sh"]),
            cwd: Some("relative".into()),
            ..ExecRequest::default()
        })
        .contains("absolute"));
    }
}
