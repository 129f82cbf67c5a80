//! [`Runtime`]: starts, watches and stops the containers of pods.
//!
//! Owns the live containers (their pidfds, cgroups, output drains and
//! scratch directories) and each pod's sandbox (network namespace, etc
//! files). A container's life: scratch dirs and cgroup → log pipes →
//! spawn (placed in its cgroup at the ready checkpoint) → run record
//! (exec context and stop signal, for a later tankd) → watched through
//! its pidfd → on exit, everything it had is torn down and an
//! [`RuntimeEvent::Exited`] is published. Stopping sends its stop signal
//! (the image's `StopSignal` or the spec's `stop_signal`, else SIGTERM),
//! then SIGKILL after the grace period. It never decides whether a
//! container should run: the reconciler calls it.
//!
//! File system and cgroup work (scratch and run dirs, cgroups, volumes,
//! log files, teardown) runs on blocking threads, never on the async
//! workers; only [`Runtime::adopt`], at startup before READY=1, reads its
//! small records and cgroup files in place.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{broadcast, watch};

use super::cgroup::{CgroupConfig, Cgroups, ContainerCgroup};
use super::exec::{ExecContext, ExecError, ExecRequest, ExecTarget};
use super::logs::{self, LogRun, LogSink};
use super::plan::{
    BindMount, InitPlan, RootfsPlan, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
};
use super::record::{ContainerRecord, RunDir};
use super::seccomp::{SeccompError, SeccompProgram};
use super::spawn::{self, Spawner, Stdio};
use super::volumes::{VolumeError, Volumes};
use crate::image::runconfig::RunConfig;
use crate::net::etc::{write_pod_etc, PodEtc, Resolv};
use crate::net::host::Host;
use crate::net::macvlan::{configure_nics, observe_nics};
use crate::net::netns::NetnsDir;
use tank_api::exit::ExitStatus;
use tank_api::log_record::Stream;
use tank_api::spec::{Container, Network, Pod, Seccomp, StopSignal, VolumeSource};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Spawn(#[from] super::spawn::SpawnError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    #[error("network: {0}")]
    Netns(#[from] crate::net::netns::NetnsError),
    #[error("network: {0}")]
    Net(#[from] crate::net::NetError),
    #[error("volume: {0}")]
    Volume(#[from] super::volumes::VolumeError),
    #[error("{0}")]
    Seccomp(#[from] SeccompError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {pod}/{container} is already running")]
    AlreadyRunning { pod: String, container: String },
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the runtime keeps things.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub cgroups: CgroupConfig,
    pub log_max_bytes: u64,
}

/// A pod's sandbox: what its containers share.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: Option<PathBuf>,
    pub etc: PodEtc,
    /// The pod's addresses (its NICs'), in NIC order.
    pub ips: Vec<Ipv4Addr>,
}

/// How a container's root filesystem is made.
#[derive(Debug, Clone)]
pub enum RootfsSource {
    /// Unpacked image layers, top first.
    Layers(Vec<PathBuf>),
    /// A host directory (`{"rootfs": …}`).
    Path(PathBuf),
}

/// Something that happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Exited {
        pod: String,
        container: String,
        pid: u32,
        /// `None` for a container adopted from a previous tankd: only a
        /// parent learns how its child ended.
        status: Option<ExitStatus>,
        oom_killed: bool,
        finished_at: SystemTime,
    },
}

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub started_at: SystemTime,
}

struct Live {
    pid: u32,
    pidfd: Arc<OwnedFd>,
    cgroup: Arc<ContainerCgroup>,
    /// The profile its processes (and so its execs) run under.
    seccomp: Seccomp,
    /// What stops it (before SIGKILL).
    stop_signal: Signal,
    /// Flips to true once the watcher has torn the container down.
    gone: watch::Receiver<bool>,
}

pub struct Runtime {
    config: RuntimeConfig,
    host: Arc<dyn Host>,
    spawner: Spawner,
    cgroups: Cgroups,
    volumes: Volumes,
    netns: NetnsDir,
    live: Mutex<HashMap<(String, String), Live>>,
    /// Containers being started right now.
    starting: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    logs: Mutex<HashMap<(String, String), Arc<LogSink>>>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Exec contexts and terminals of running containers.
    consoles: super::exec::Consoles,
    /// The compiled `runtime/default` seccomp filter.
    seccomp: SeccompProgram,
}

impl Runtime {
    /// `host` answers `parent: "auto"` and the default DNS of pods.
    pub fn new(config: RuntimeConfig, host: Arc<dyn Host>) -> Result<Arc<Runtime>, RuntimeError> {
        Self::with_spawner(config, host, Spawner::new()?)
    }

    /// With an explicit spawner (tests run the tankd binary by path).
    pub fn with_spawner(
        config: RuntimeConfig,
        host: Arc<dyn Host>,
        spawner: Spawner,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let cgroups = Cgroups::detect(&config.cgroups)?;
        // Compiled now (once per process): a libseccomp problem stops
        // tankd at start instead of failing every container.
        let seccomp = super::seccomp::default_program()?.clone();
        for dir in [config.data_dir.join("containers"), config.run_dir.clone()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Arc::new(Runtime {
            volumes: Volumes::new(&config.data_dir.join("volumes")),
            netns: NetnsDir::new(&config.run_dir),
            config,
            host,
            spawner,
            cgroups,
            live: Mutex::new(HashMap::new()),
            starting: Default::default(),
            logs: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            consoles: Default::default(),
            seccomp,
        }))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    /// tankd's runtime directory (`/run/tank`): gone after a reboot.
    pub fn run_dir(&self) -> &Path {
        &self.config.run_dir
    }

    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.config.data_dir.join("containers").join(pod)
    }

    fn container_dir(&self, pod: &str, container: &str) -> PathBuf {
        self.pod_dir(pod).join(container)
    }

    /// Where running containers leave their records and output FIFOs.
    fn run_containers_dir(&self) -> PathBuf {
        self.config.run_dir.join("containers")
    }

    fn container_run_dir(&self, pod: &str, container: &str) -> RunDir {
        RunDir::new(&self.run_containers_dir(), pod, container)
    }

    pub fn log_path(&self, pod: &str, container: &str) -> PathBuf {
        self.config
            .data_dir
            .join("logs")
            .join(pod)
            .join(format!("{container}.log"))
    }

    /// The log sink of a container that ran since tankd started, if any.
    pub fn log_sink(&self, pod: &str, container: &str) -> Option<Arc<LogSink>> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pod.to_owned(), container.to_owned()))
            .cloned()
    }

    /// Creates (or finds, repairing drift) the sandbox of `pod`: its
    /// network namespace (none for network `host`) with its NICs
    /// configured, and its etc files.
    pub async fn ensure_sandbox(&self, pod: &Pod) -> Result<Sandbox, RuntimeError> {
        let netns = match pod.network {
            Network::Host => None,
            _ => {
                let netns = self.netns.clone();
                let name = pod.name.clone();
                Some(
                    tokio::task::spawn_blocking(move || netns.create(&name))
                        .await
                        .map_err(|e| RuntimeError::Other(e.to_string()))??,
                )
            }
        };
        let ips = match (&pod.network, &netns) {
            (Network::Nics(network), Some(path)) => {
                let (path, nics, host) =
                    (path.clone(), network.nics.clone(), Arc::clone(&self.host));
                tokio::task::spawn_blocking(move || configure_nics(&path, &nics, host.as_ref()))
                    .await
                    .map_err(|e| RuntimeError::Other(e.to_string()))??
            }
            _ => Vec::new(),
        };
        let resolv = match &pod.network {
            Network::Nics(network) => {
                let servers = match &network.dns {
                    Some(dns) => dns.clone(),
                    None => {
                        let host = Arc::clone(&self.host);
                        tokio::task::spawn_blocking(move || host.dns())
                            .await
                            .map_err(|e| RuntimeError::Other(e.to_string()))??
                    }
                };
                Resolv {
                    nameservers: servers.iter().map(|ip| ip.to_string()).collect(),
                    ..Resolv::default()
                }
            }
            // Network none has no DNS to reach, host shares the host's.
            _ => Resolv::for_pods_from_host(),
        };
        let dir = self.pod_dir(&pod.name).join("etc");
        let (name, addresses) = (pod.name.clone(), ips.clone());
        let etc = tokio::task::spawn_blocking(move || {
            write_pod_etc(&dir, &name, &resolv, &addresses).map_err(io_err(&dir))
        })
        .await??;
        Ok(Sandbox { netns, etc, ips })
    }

    /// Whether the NICs of `pod` are as declared (drift detection); `None`
    /// for pods without NICs.
    pub async fn nics_drifted(&self, pod: &Pod) -> Option<bool> {
        let Network::Nics(network) = &pod.network else {
            return None;
        };
        let path = self.netns.path(&pod.name);
        let nics = network.nics.clone();
        let states = tokio::task::spawn_blocking(move || observe_nics(&path, &nics))
            .await
            .ok()?;
        Some(match states {
            Ok(states) => states.iter().any(|s| !s.is_configured()),
            Err(_) => true,
        })
    }

    /// Repairs drift of a running pod that needs no restart: cgroup limits
    /// changed from outside are set back, and a netns pin unmounted while
    /// containers still run in it is mounted again from one of them (so a
    /// later `ensure_sandbox` finds their namespace, not a new one).
    /// Returns what was repaired.
    pub fn repair_drift(&self, pod: &Pod) -> Vec<String> {
        let mut repaired = Vec::new();
        let live: Vec<(String, u32, Arc<ContainerCgroup>)> = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            pod.containers
                .iter()
                .filter_map(|c| {
                    live.get(&(pod.name.clone(), c.name.clone()))
                        .map(|l| (c.name.clone(), l.pid, Arc::clone(&l.cgroup)))
                })
                .collect()
        };
        for (name, _, cgroup) in &live {
            let Some(want) = pod.container(name).map(|c| &c.limits) else {
                continue;
            };
            match cgroup.limits() {
                Ok(have) if have == *want => {}
                Ok(have) => match cgroup.set_limits(want) {
                    Ok(()) => repaired.push(format!("limits of {name} restored (were {have:?})")),
                    Err(e) => log::warn!("{}/{name}: cannot restore limits: {e}", pod.name),
                },
                Err(e) => log::warn!("{}/{name}: cannot read limits: {e}", pod.name),
            }
        }
        if pod.network != Network::Host && !self.netns.exists(&pod.name) {
            if let Some((_, pid, _)) = live.first() {
                match self.netns.repin(&pod.name, *pid) {
                    Ok(_) => repaired.push("network namespace pinned again".to_owned()),
                    Err(e) => log::warn!("{}: {e}", pod.name),
                }
            }
        }
        repaired
    }

    /// Tears down what `ensure_sandbox` made (call once no container of the
    /// pod runs). Managed volumes are kept.
    pub async fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError> {
        let netns = self.netns.clone();
        let name = pod.to_owned();
        tokio::task::spawn_blocking(move || netns.remove(&name))
            .await
            .map_err(|e| RuntimeError::Other(e.to_string()))??;
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _), _| p != pod);
        let cgroups = self.cgroups.clone();
        let name = pod.to_owned();
        // A pod's output goes with it (managed volumes stay).
        let logs = self.config.data_dir.join("logs").join(pod);
        let run = self.run_containers_dir().join(pod);
        let dir = self.pod_dir(pod);
        tokio::task::spawn_blocking(move || {
            cgroups.remove_pod(&name)?;
            for leftover in [&logs, &run] {
                if let Err(e) = std::fs::remove_dir_all(leftover) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log::warn!("{name}: cannot remove {}: {e}", leftover.display());
                    }
                }
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(&dir)(e)),
            }
        })
        .await?
    }

    /// Deletes a managed volume and its data (see [`Volumes::remove`]), on
    /// a blocking thread: a large volume takes seconds.
    pub async fn remove_volume(
        &self,
        pod: &str,
        volume: &str,
        declared: bool,
    ) -> Result<(), VolumeError> {
        let volumes = self.volumes.clone();
        let (pod, volume) = (pod.to_owned(), volume.to_owned());
        tokio::task::spawn_blocking(move || volumes.remove(&pod, &volume, declared)).await?
    }

    /// Pods that have a sandbox or container cgroups now (for cleanup of
    /// leftovers of pods deleted while tankd was down).
    pub fn pods_on_machine(&self) -> Result<Vec<String>, RuntimeError> {
        let mut pods: Vec<String> = self.netns.list();
        pods.extend(self.cgroups.list()?.into_iter().map(|(pod, _)| pod));
        for dir in [
            self.config.data_dir.join("containers"),
            self.run_containers_dir(),
        ] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                pods.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
        pods.sort();
        pods.dedup();
        Ok(pods)
    }

    pub fn is_running(&self, pod: &str, container: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(pod.to_owned(), container.to_owned()))
    }

    /// Starts `container` of `pod` in `sandbox`.
    pub async fn start(
        self: &Arc<Self>,
        pod: &Pod,
        container: &Container,
        run: &RunConfig,
        rootfs: RootfsSource,
        sandbox: &Sandbox,
    ) -> Result<Started, RuntimeError> {
        let key = (pod.name.clone(), container.name.clone());
        // One start of a container at a time, and none while it lives.
        let _starting = StartGuard::claim(&self.starting, &key).ok_or_else(|| {
            RuntimeError::AlreadyRunning {
                pod: key.0.clone(),
                container: key.1.clone(),
            }
        })?;
        if self.is_running(&key.0, &key.1) {
            return Err(RuntimeError::AlreadyRunning {
                pod: key.0,
                container: key.1,
            });
        }
        let prepared = {
            let this = Arc::clone(self);
            let (pod, container) = (pod.clone(), container.clone());
            let (run, sandbox) = (run.clone(), sandbox.clone());
            tokio::task::spawn_blocking(move || {
                this.prepare(&pod, &container, &run, rootfs, &sandbox)
            })
            .await??
        };
        let Prepared {
            plan,
            cgroup,
            run_dir,
            stdio,
            sink,
            readers,
        } = prepared;
        let log_run = start_drains(&sink, readers);

        let placed = Arc::clone(&cgroup);
        let spawned = self
            .spawner
            .spawn(&plan, stdio, move |pid| {
                placed.add_process(pid).map_err(|e| e.to_string())
            })
            .await;
        let started = match spawned {
            Ok(started) => started,
            Err(e) => {
                let dir = self.container_dir(&pod.name, &container.name);
                let cleanup = tokio::task::spawn_blocking(move || {
                    let _ = cgroup.kill_all();
                    if let Ok(cg) = Arc::try_unwrap(cgroup) {
                        let _ = cg.delete();
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    run_dir.remove();
                });
                if let Err(e) = cleanup.await {
                    log::warn!("{}/{}: cleanup: {e}", pod.name, container.name);
                }
                return Err(e.into());
            }
        };
        let started_at = SystemTime::now();
        let pid = started.pid;
        let context = ExecContext::of(&plan);
        let stop_signal = run.stop_signal;
        let seccomp = container.seccomp;
        // For a later tankd (before the watcher could remove the run dir).
        let recorded = {
            let context = context.clone();
            tokio::task::spawn_blocking(move || {
                // None: it exited already, and the watcher reaps it at once.
                let Some(mut record) = ContainerRecord::of(pid, started_at) else {
                    return Ok(());
                };
                record.exec = Some(context);
                record.stop_signal = Some(stop_signal);
                record.seccomp = seccomp;
                run_dir.write_record(&record)
            })
            .await
        };
        if let Err(e) = recorded.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            log::warn!(
                "{}/{}: no record for a later tankd: {e}",
                pod.name,
                container.name
            );
        }
        self.consoles.started(&plan, pid, started.pty, Some(sink));
        self.watch(
            key,
            Watched {
                pid,
                pidfd: started.pidfd,
                cgroup,
                child: true,
                stop_signal: stop_signal.signal(),
                seccomp,
                log_run: Some(log_run),
            },
        );
        log::info!(
            "{}/{}: started, pid {pid}, stop signal {stop_signal}",
            pod.name,
            container.name
        );
        Ok(Started { pid, started_at })
    }

    /// The host side of a start, blocking: a fresh scratch dir (upper
    /// layer), volumes, the cgroup, the run dir with its FIFOs, the log
    /// sink; the init plan. A cgroup made here is removed again if a later
    /// step fails.
    fn prepare(
        &self,
        pod: &Pod,
        container: &Container,
        run: &RunConfig,
        rootfs: RootfsSource,
        sandbox: &Sandbox,
    ) -> Result<Prepared, RuntimeError> {
        let key = (pod.name.clone(), container.name.clone());
        let dir = self.container_dir(&pod.name, &container.name);
        // A fresh upper layer for every start.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let target = dir.join("rootfs");
        std::fs::create_dir_all(&target).map_err(io_err(&target))?;
        let rootfs = match rootfs {
            RootfsSource::Layers(lower) => {
                let (upper, work) = (dir.join("upper"), dir.join("work"));
                for d in [&upper, &work] {
                    std::fs::create_dir_all(d).map_err(io_err(d))?;
                }
                // The upper dir's root is the container's `/`: open to its
                // users whatever tankd's umask (its parents keep the host out).
                std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&upper))?;
                RootfsPlan::Overlay { lower, upper, work }
            }
            RootfsSource::Path(path) => RootfsPlan::Bind { path },
        };
        let plan = InitPlan {
            pod: pod.name.clone(),
            container: container.name.clone(),
            rootfs_target: target,
            rootfs,
            mounts: self.mounts(pod, container, sandbox)?,
            netns: sandbox.netns.clone(),
            hostname: pod.name.clone(),
            user: run.user.clone(),
            argv: run.argv.clone(),
            env: super::exec::merge_env(&run.env, container.tty, &[]),
            cwd: run.working_dir.clone(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            tty: container.tty,
            seccomp: self.seccomp_program(container.seccomp),
            cgroup: self.cgroups.view(),
        };

        let cgroup = Arc::new(self.cgroups.create(
            &pod.name,
            &container.name,
            &container.limits,
        )?);
        let run_dir = self.container_run_dir(&pod.name, &container.name);
        let rest = || -> Result<(Stdio, Arc<LogSink>, [OwnedFd; 2]), RuntimeError> {
            let (stdout_w, stderr_w) = run_dir.create().map_err(io_err(run_dir.path()))?;
            let (sink, readers) = self.open_output(&key, &run_dir)?;
            let stdin = std::fs::File::open("/dev/null").map_err(io_err(Path::new("/dev/null")))?;
            let stdio = Stdio {
                stdin: stdin.into(),
                stdout: stdout_w,
                stderr: stderr_w,
                tty: false,
            };
            Ok((stdio, sink, readers))
        };
        match rest() {
            Ok((stdio, sink, readers)) => Ok(Prepared {
                plan,
                cgroup,
                run_dir,
                stdio,
                sink,
                readers,
            }),
            Err(e) => {
                if let Ok(cg) = Arc::try_unwrap(cgroup) {
                    if let Err(e) = cg.delete() {
                        log::warn!("{}/{}: {e}", pod.name, container.name);
                    }
                }
                run_dir.remove();
                Err(e)
            }
        }
    }

    /// Takes over a container a previous tankd started, if it still runs:
    /// its record names a live process (same pid and start time) inside
    /// its cgroup. Its output FIFOs are drained again, its exit watched
    /// through a pidfd (the exit status stays unknown: tankd is not its
    /// parent), and exec and stop use the context and stop signal its
    /// record kept (a record of an older tankd has neither: exec falls
    /// back to `/proc`, stop to SIGTERM). `None` when there is nothing to
    /// adopt.
    pub fn adopt(self: &Arc<Self>, pod: &str, container: &str) -> Option<Started> {
        let key = (pod.to_owned(), container.to_owned());
        if self.is_running(pod, container) {
            return None;
        }
        let run_dir = self.container_run_dir(pod, container);
        let record = run_dir.read_record()?;
        let cgroup = self.cgroups.open(pod, container).ok()??;
        if !record.is_alive() || !cgroup.procs().ok()?.contains(&record.pid) {
            return None;
        }
        let pidfd = match spawn::pidfd_open(record.pid) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("{pod}/{container}: pidfd_open({}): {e}", record.pid);
                return None;
            }
        };
        // The pid could have been recycled between the check and the open.
        if !record.is_alive() {
            return None;
        }
        let log_run = match self.open_output(&key, &run_dir) {
            Ok((sink, readers)) => Some(start_drains(&sink, readers)),
            Err(e) => {
                log::warn!("{pod}/{container}: output not drained: {e}");
                None
            }
        };
        match record.exec.clone() {
            Some(context) => self.consoles.adopted(pod, container, record.pid, context),
            None => log::warn!(
                "{pod}/{container}: its run record has no exec context (written by an older \
                 tankd): an exec reads it from /proc/{} (wrong if PID 1 rewrote its environ \
                 or switched users)",
                record.pid
            ),
        }
        let stop_signal = record.stop_signal.unwrap_or(StopSignal::DEFAULT);
        self.watch(
            key,
            Watched {
                pid: record.pid,
                pidfd,
                cgroup: Arc::new(cgroup),
                child: false,
                stop_signal: stop_signal.signal(),
                seccomp: record.seccomp,
                log_run,
            },
        );
        log::info!("{pod}/{container}: adopted, pid {}", record.pid);
        Some(Started {
            pid: record.pid,
            started_at: record.started_at(),
        })
    }

    /// The log sink of a container (the one it had since tankd started,
    /// else a new one) and tankd's (reading) ends of its FIFOs. Blocking.
    fn open_output(
        &self,
        key: &(String, String),
        run_dir: &RunDir,
    ) -> Result<(Arc<LogSink>, [OwnedFd; 2]), RuntimeError> {
        let sink = match self.log_sink(&key.0, &key.1) {
            Some(sink) => sink,
            None => {
                let path = self.log_path(&key.0, &key.1);
                let sink = LogSink::open(&path, self.config.log_max_bytes, &key.0, &key.1)
                    .map_err(io_err(&path))?;
                self.logs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), Arc::clone(&sink));
                sink
            }
        };
        let open = |stream| run_dir.open_reader(stream).map_err(io_err(run_dir.path()));
        Ok((sink, [open(Stream::Stdout)?, open(Stream::Stderr)?]))
    }

    /// Records a live container and watches its pidfd until it exits.
    fn watch(self: &Arc<Self>, key: (String, String), watched: Watched) {
        let Watched {
            pid,
            pidfd,
            cgroup,
            child,
            stop_signal,
            seccomp,
            log_run,
        } = watched;
        let pidfd = Arc::new(pidfd);
        let (gone_tx, gone_rx) = watch::channel(false);
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key.clone(),
            Live {
                pid,
                pidfd: Arc::clone(&pidfd),
                cgroup: Arc::clone(&cgroup),
                seccomp,
                stop_signal,
                gone: gone_rx,
            },
        );
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let status = if child {
                Some(
                    spawn::wait_exit(&pidfd)
                        .await
                        .unwrap_or(ExitStatus::Signaled(Signal::SIGKILL as i32)),
                )
            } else {
                if let Err(e) = spawn::wait_gone(&pidfd).await {
                    log::warn!("{}/{}: watching the pidfd: {e}", key.0, key.1);
                }
                None
            };
            this.consoles.exited(&key.0, &key.1, pid, status);
            let dir = this.container_dir(&key.0, &key.1);
            this.torn_down(key, pid, status, cgroup, dir).await;
            let _ = gone_tx.send(true);
            drop(log_run);
        });
    }

    /// After the container's PID 1 exited: kill what is left in its cgroup,
    /// remove the cgroup and the scratch dirs, publish the exit.
    async fn torn_down(
        &self,
        key: (String, String),
        pid: u32,
        status: Option<ExitStatus>,
        cgroup: Arc<ContainerCgroup>,
        dir: PathBuf,
    ) {
        let cgroups = self.cgroups.clone();
        let run_dir = self.container_run_dir(&key.0, &key.1);
        let (pod, container) = key.clone();
        let teardown = tokio::task::spawn_blocking(move || {
            let oom_killed = cgroup.oom_kills().map(|n| n > 0).unwrap_or(false)
                && matches!(status, Some(ExitStatus::Signaled(9)) | None);
            if let Err(e) = cgroup.kill_all() {
                log::warn!("{pod}/{container}: {e}");
            }
            // Other handles (a concurrent stop) may still exist: delete
            // through a fresh one.
            drop(cgroup);
            match cgroups.open(&pod, &container) {
                Ok(Some(cgroup)) => {
                    if let Err(e) = cgroup.delete() {
                        log::warn!("{pod}/{container}: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("{pod}/{container}: {e}"),
            }
            let _ = std::fs::remove_dir_all(dir);
            run_dir.remove();
            oom_killed
        });
        let oom_killed = match teardown.await {
            Ok(oom_killed) => oom_killed,
            Err(e) => {
                log::error!("{}/{}: teardown: {e}", key.0, key.1);
                false
            }
        };
        // Only now is the name free: a start of the same container (a
        // restart, a new generation) must not race this teardown.
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        log::info!(
            "{}/{}: exited ({}{})",
            key.0,
            key.1,
            status.map_or("status unknown".to_owned(), |s| s.to_string()),
            if oom_killed { ", OOM killed" } else { "" }
        );
        let _ = self.events.send(RuntimeEvent::Exited {
            pod: key.0,
            container: key.1,
            pid,
            status,
            oom_killed,
            finished_at: SystemTime::now(),
        });
    }

    /// Stops a container: `signal` (`None`: its own stop signal — the
    /// image's `StopSignal` or the spec's `stop_signal` as resolved at its
    /// start and kept in its run record, else SIGTERM) to its PID 1, up to
    /// `grace`, then SIGKILL of everything in its cgroup. Returns once it
    /// is torn down. A container that is not running is fine.
    pub async fn stop(
        &self,
        pod: &str,
        container: &str,
        signal: Option<Signal>,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let entry = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.get(&(pod.to_owned(), container.to_owned())).map(|l| {
                (
                    Arc::clone(&l.pidfd),
                    Arc::clone(&l.cgroup),
                    l.gone.clone(),
                    l.stop_signal,
                )
            })
        };
        let Some((pidfd, cgroup, mut gone, own)) = entry else {
            return Ok(());
        };
        let signal = signal.unwrap_or(own);
        log::info!("{pod}/{container}: stopping with {}", signal.as_str());
        let _ = spawn::send_signal(&pidfd, signal);
        let exited = tokio::time::timeout(grace, gone.wait_for(|g| *g))
            .await
            .is_ok();
        if !exited {
            log::info!("{pod}/{container}: still running after {grace:?}, killing");
            let _ = spawn::send_signal(&pidfd, Signal::SIGKILL);
            tokio::task::spawn_blocking(move || cgroup.kill_all()).await??;
            let _ = gone.wait_for(|g| *g).await;
        }
        Ok(())
    }

    /// The pid of a running container.
    pub fn pid(&self, pod: &str, container: &str) -> Option<u32> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pod.to_owned(), container.to_owned()))
            .map(|l| l.pid)
    }

    /// What an exec into a running container joins.
    pub fn exec_target(&self, pod: &str, container: &str) -> Option<ExecTarget> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pod.to_owned(), container.to_owned()))
            .map(|l| ExecTarget {
                pid: l.pid,
                pidfd: Arc::clone(&l.pidfd),
                cgroup: Arc::clone(&l.cgroup),
                seccomp: self.seccomp_program(l.seccomp),
            })
    }

    /// The filter a profile stands for (`None`: unconfined).
    fn seccomp_program(&self, profile: Seccomp) -> Option<SeccompProgram> {
        match profile {
            Seccomp::RuntimeDefault => Some(self.seccomp.clone()),
            Seccomp::Unconfined => None,
        }
    }

    /// Starts `request` in the running container `pod`/`container` (see
    /// [`super::exec::exec`]).
    pub async fn exec(
        &self,
        pod: &str,
        container: &str,
        request: ExecRequest,
    ) -> Result<crate::pty::session::ClientEnds, ExecError> {
        let target = self.exec_target(pod, container);
        super::exec::exec(
            &self.spawner,
            &self.consoles,
            target,
            (pod, container),
            request,
        )
        .await
    }

    /// Exec contexts and terminals of the running containers.
    pub fn consoles(&self) -> &super::exec::Consoles {
        &self.consoles
    }

    /// The spawner (the tankd binary held since start).
    pub fn spawner(&self) -> &Spawner {
        &self.spawner
    }

    /// Bind mounts of a container: its volumes, then the pod's etc files.
    fn mounts(
        &self,
        pod: &Pod,
        container: &Container,
        sandbox: &Sandbox,
    ) -> Result<Vec<BindMount>, RuntimeError> {
        let mut mounts = Vec::new();
        for mount in &container.mounts {
            let volume = pod
                .volumes
                .iter()
                .find(|v| v.name == mount.volume)
                .ok_or_else(|| RuntimeError::Other(format!("no volume {:?}", mount.volume)))?;
            let source = match &volume.source {
                Some(VolumeSource::Host(path)) => path.clone(),
                None => self.volumes.ensure(&pod.name, &volume.name)?,
            };
            mounts.push(BindMount {
                source,
                destination: mount.path.clone(),
                read_only: mount.read_only,
            });
        }
        for (source, destination) in [
            (&sandbox.etc.resolv_conf, "/etc/resolv.conf"),
            (&sandbox.etc.hosts, "/etc/hosts"),
            (&sandbox.etc.hostname, "/etc/hostname"),
        ] {
            mounts.push(BindMount {
                source: source.clone(),
                destination: PathBuf::from(destination),
                read_only: false,
            });
        }
        Ok(mounts)
    }
}

/// What the host side of a start made ([`Runtime::prepare`]).
struct Prepared {
    plan: InitPlan,
    cgroup: Arc<ContainerCgroup>,
    run_dir: RunDir,
    /// The container's stdio (its ends of the FIFOs).
    stdio: Stdio,
    sink: Arc<LogSink>,
    /// tankd's ends of the FIFOs: stdout, stderr.
    readers: [OwnedFd; 2],
}

/// A container to watch ([`Runtime::watch`]).
struct Watched {
    pid: u32,
    pidfd: OwnedFd,
    cgroup: Arc<ContainerCgroup>,
    /// tankd is its parent and learns its exit status.
    child: bool,
    stop_signal: Signal,
    /// The profile its processes (and so its execs) run under.
    seccomp: Seccomp,
    /// Its output's run, let go of once it is torn down.
    log_run: Option<Arc<LogRun>>,
}

/// A new run of `sink`, drained from `readers` (stdout, stderr).
fn start_drains(sink: &Arc<LogSink>, readers: [OwnedFd; 2]) -> Arc<LogRun> {
    let run = sink.begin_run();
    for (fd, stream) in readers.into_iter().zip([Stream::Stdout, Stream::Stderr]) {
        tokio::spawn(logs::drain(fd, stream, Arc::clone(&run)));
    }
    run
}

/// Marks a container as being started until dropped.
struct StartGuard {
    set: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
    key: (String, String),
}

impl StartGuard {
    fn claim(
        set: &Arc<Mutex<std::collections::HashSet<(String, String)>>>,
        key: &(String, String),
    ) -> Option<StartGuard> {
        let mut starting = set.lock().unwrap_or_else(|e| e.into_inner());
        starting.insert(key.clone()).then(|| StartGuard {
            set: Arc::clone(set),
            key: key.clone(),
        })
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}
