//! Container cgroups: owns the cgroups of containers under tankd's subtree
//! (`pods/<pod>/<container>`) and never touches cgroups outside its root.
//!
//! Two modes, chosen by [`Cgroups::detect`]:
//!
//! - **cgroup v2** (`/sys/fs/cgroup` is cgroup2; real hosts, systemd with
//!   `Delegate=yes`): the root is the delegated scope `<unit>-pods.scope`
//!   that [`scope::prepare`] makes beside tankd's service under systemd (so
//!   tankd's service cgroup never enables a controller and a restart of it
//!   works on every systemd version); elsewhere tankd's own cgroup (`0::/…`
//!   in `/proc/self/cgroup`; its parent if tankd already runs in
//!   `supervisor`). Because of the no-internal-processes rule every process
//!   of the root (the scope's pause process, or tankd) is moved into a
//!   `supervisor` leaf, then memory, pids and cpu (those in
//!   `cgroup.controllers`) are enabled in the `cgroup.subtree_control` of
//!   the root, of `pods` and of each `pods/<pod>`.
//! - **cgroup v1 / hybrid** (this development machine): the root is
//!   `<v1_root>` (configurable, default `tank`) at the top of every mounted
//!   v1 hierarchy cgroups-rs knows (memory, pids, cpu, cpuacct, freezer,
//!   cpuset, devices, blkio, …, and `name=systemd`) and, on a hybrid host,
//!   of the unified hierarchy too (no controller is enabled there); a
//!   container joins all of them. Limits are set in memory, pids and cpu
//!   only; the others are joined so that the container's cgroup namespace
//!   has the container's own cgroup as its root in every hierarchy it can
//!   see (see below). A hierarchy cgroups-rs does not know (`misc`, another
//!   named one) is left alone and stays invisible to containers.
//!
//! What containers see of it ([`Cgroups::view`], mounted by the init stage
//! on `/sys/fs/cgroup` after it unshared its cgroup namespace, once tankd
//! has placed it): on v2 the `cgroup2` root, on v1/hybrid one mount per
//! joined hierarchy, named as on the host (parsed from tankd's
//! `/proc/self/mountinfo` once, at start). Every joined hierarchy is also a
//! visible one: a hierarchy a container had not joined would show, at its
//! namespace root, tankd's own cgroup and whatever is below it.
//!
//! What cgroups-rs (0.5) does here, and where plain file I/O is used instead:
//!
//! - cgroups-rs: mode detection (`is_cgroup2_unified_mode`), v1 hierarchy
//!   discovery (`hierarchies::V1`), creating v1 cgroups in every joined
//!   hierarchy and removing them (its rmdir retries), writing limits through
//!   the typed controller setters (`set_limit`, `set_memswap_limit`,
//!   `set_pid_max`, `set_cfs_quota_and_period`), attaching processes
//!   (`add_task_by_tgid`), the freezer, and v2 `cgroup.kill` (`Cgroup::kill`).
//! - Not `Cgroup::create` on v2: it writes `+controller` into the
//!   `subtree_control` of every ancestor from the cgroupfs root down and
//!   ignores failures — that is systemd's part of the tree, and a missing
//!   controller would go unnoticed. tankd makes its v2 directories and
//!   enables controllers itself, only at and below its own cgroup, checking
//!   every write.
//! - Not `CgroupBuilder`/`Cgroup::apply`: the memory controller's `apply`
//!   discards write errors, so a refused memory limit would pass silently.
//! - Reading is plain file I/O with the parsers in `parse` (unit-tested):
//!   cgroups-rs turns read errors into 0/"max"/an empty pid list (which would
//!   make `kill_all` believe a cgroup is empty), parses `memory.oom_control`
//!   by position (and panics on surprises), and has no v2 `oom_kill`.
//!   OOM kills are counted with `oom_kill`, not `failcnt`: on this kernel a
//!   memsw limit leaves `failcnt` at 0 (testenv NOTES §5).
//!
//! Memory limits read back rounded down to a multiple of the page size (the
//! kernel keeps pages, on v1 and v2): compare accordingly.

mod container;
mod parse;
pub mod scope;

pub use container::ContainerCgroup;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::hierarchies::{self, V1, V2};
use cgroups_rs::fs::Hierarchy;

use crate::runtime::plan::CgroupView;
use tank_api::spec::Limits;

/// The subtree of tankd's cgroup that holds the pods.
const PODS: &str = "pods";
/// The v2 leaf that holds tankd's own processes.
const SUPERVISOR: &str = "supervisor";
/// v2 controllers enabled for the pods.
const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// How long `kill_all` keeps killing before giving up.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `delete`/`remove_pod` retry EBUSY.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);

/// The `[cgroups]` section of `tankd.toml`.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// v1/hybrid hosts: the cgroup name under every v1 hierarchy that holds
    /// tank's pods (default "tank"). A relative path; unused on cgroup v2.
    pub v1_root: String,
    /// cgroup v2: the pods' delegated cgroup (relative to the cgroup2
    /// mount) when it is not tankd's own — the systemd scope of
    /// [`scope::prepare`]. Not configurable: found at start.
    #[serde(skip)]
    pub v2_base: Option<PathBuf>,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            v1_root: "tank".into(),
            v2_base: None,
        }
    }
}

/// A failed cgroup operation; the message names the cgroup (or the file in
/// it) and the controller or file involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid [cgroups] configuration: {0}")]
    Config(String),
    #[error("cannot set up cgroups: {0}")]
    Setup(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {}: {op}: {source}", cgroup.display())]
    Controller {
        cgroup: PathBuf,
        op: String,
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    #[error("{}: cannot parse: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("cgroup {}: the {controller} controller is not available (needed for {what})", cgroup.display())]
    ControllerMissing {
        cgroup: PathBuf,
        controller: &'static str,
        what: &'static str,
    },
    #[error("cgroup {}: invalid limit: {reason}", cgroup.display())]
    InvalidLimit { cgroup: PathBuf, reason: String },
    #[error("cgroup {} still holds the container cgroups {containers:?}", dir.display())]
    PodNotEmpty {
        dir: PathBuf,
        containers: Vec<String>,
    },
    #[error("cgroup {}: processes {pids:?} still there after SIGKILL for {waited:?}", cgroup.display())]
    NotEmpty {
        cgroup: PathBuf,
        pids: Vec<u32>,
        waited: Duration,
    },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// CFS bandwidth statistics (`cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

/// tankd's cgroup root; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cgroups {
    inner: Arc<Mode>,
}

#[derive(Debug)]
enum Mode {
    V1 {
        hier: V1,
        /// `v1_root`, relative to each hierarchy.
        root: PathBuf,
        /// The cgroups-rs names of the controllers (and `name=systemd`)
        /// whose hierarchies a container joins.
        controllers: Vec<String>,
        /// A hybrid host's unified (cgroup2) mount point, joined too.
        unified: Option<PathBuf>,
        /// `<mount>/<v1_root>/pods` of every joined hierarchy, deduplicated.
        pods_dirs: Vec<PathBuf>,
        /// What containers see at /sys/fs/cgroup.
        view: CgroupView,
    },
    V2 {
        /// tankd's delegated cgroup, relative to the cgroup2 mount.
        base_rel: PathBuf,
        /// Its directory.
        base: PathBuf,
        /// Controllers enabled for the pods.
        controllers: Vec<&'static str>,
    },
}

fn io_err(op: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    let op = op.into();
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io_err("reading", path))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(io_err(format!("writing {value:?} to"), path))
}

fn parse_err(path: &Path) -> impl FnOnce(String) -> CgroupError + '_ {
    move |reason| CgroupError::Parse {
        path: path.to_path_buf(),
        reason,
    }
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_err("creating cgroup", path)(e))
        }
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<()> {
    parse::check_name(name).map_err(|reason| CgroupError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Enables `wanted` (those available) in `dir`'s `cgroup.subtree_control`;
/// returns the ones not available.
fn enable_controllers(dir: &Path, wanted: &[&'static str]) -> Result<Vec<&'static str>> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let control = dir.join("cgroup.subtree_control");
    let (enable, missing) = parse::controllers_to_enable(wanted, &available, &read(&control)?);
    for c in enable {
        write(&control, &format!("+{c}"))?;
    }
    Ok(missing)
}

/// rmdir, retrying EBUSY (processes that are still exiting) for a while;
/// an absent directory is fine.
fn rmdir_retrying(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + RMDIR_TIMEOUT;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(io_err("removing cgroup", dir)(e)),
        }
    }
}

/// Names of the subdirectories of `dir` that are acceptable cgroup names
/// (empty if `dir` does not exist).
fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        r => r.map_err(io_err("listing", dir))?,
    };
    let mut names = vec![];
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if parse::check_name(&name).is_ok() => names.push(name),
            name => log::warn!("ignoring cgroup {:?} in {}", name, dir.display()),
        }
    }
    Ok(names)
}

impl Cgroups {
    /// Detects the host's mode and prepares tankd's cgroup root. On cgroup
    /// v2 this moves tankd's own processes into the `supervisor` leaf and
    /// enables the controllers; on v1 it only finds the hierarchies
    /// (directories are made by [`Cgroups::create`]).
    pub fn detect(config: &CgroupConfig) -> Result<Cgroups> {
        parse::check_v1_root(&config.v1_root).map_err(CgroupError::Config)?;
        let mode = if hierarchies::is_cgroup2_unified_mode() {
            Self::detect_v2(config.v2_base.as_deref())?
        } else {
            Self::detect_v1(&config.v1_root)?
        };
        Ok(Cgroups {
            inner: Arc::new(mode),
        })
    }

    fn detect_v1(v1_root: &str) -> Result<Mode> {
        let hier = V1::new();
        let root = PathBuf::from(v1_root);
        // Every v1 hierarchy cgroups-rs finds (it matches the same
        // mountinfo by controller name) is joined.
        let subsystems = hier.subsystems();
        let mut controllers: Vec<String> = vec![];
        let mut mount_points: Vec<PathBuf> = vec![];
        for sub in &subsystems {
            controllers.push(sub.controller_name());
            let point = sub.to_controller().path().to_path_buf();
            if !mount_points.contains(&point) {
                mount_points.push(point);
            }
        }
        for c in ["memory", "pids", "cpu"] {
            if !controllers.iter().any(|f| f == c) {
                log::warn!("cgroup v1: no {c} hierarchy is mounted: {c} limits will fail");
            }
        }
        if mount_points.is_empty() {
            return Err(CgroupError::Setup(format!(
                "neither cgroup v2 at {} nor any v1 hierarchy is mounted",
                hierarchies::UNIFIED_MOUNTPOINT
            )));
        }
        let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
        let mounted = parse::cgroup_hierarchies(&mountinfo);
        let unified = mounted.iter().find(|h| h.v2).map(|h| h.mount_point.clone());
        let view = parse::v1_view(&mounted, |h| h.v2 || mount_points.contains(&h.mount_point));
        let mut pods_dirs: Vec<PathBuf> = mount_points
            .iter()
            .map(|m| m.join(&root).join(PODS))
            .collect();
        pods_dirs.extend(unified.iter().map(|m| m.join(&root).join(PODS)));
        Ok(Mode::V1 {
            hier,
            root,
            controllers,
            unified,
            pods_dirs,
            view,
        })
    }

    /// `scope`: the pods' own delegated cgroup (under systemd); else
    /// tankd's own cgroup.
    fn detect_v2(scope: Option<&Path>) -> Result<Mode> {
        let base_rel = match scope {
            Some(scope) => scope.to_path_buf(),
            None => {
                let proc_cgroup = read(Path::new("/proc/self/cgroup"))?;
                let own = parse::unified_path(&proc_cgroup).ok_or_else(|| {
                    CgroupError::Setup("no cgroup v2 entry (0::) in /proc/self/cgroup".into())
                })?;
                PathBuf::from(parse::delegated_base(own, SUPERVISOR).map_err(CgroupError::Setup)?)
            }
        };
        let base = Path::new(hierarchies::UNIFIED_MOUNTPOINT).join(&base_rel);
        // The real root cgroup has no cgroup.type and may hold processes
        // beside enabled controllers: nothing (of other programs) is moved.
        if base.join("cgroup.type").exists() {
            let supervisor = base.join(SUPERVISOR);
            mkdir(&supervisor)?;
            move_processes(&base, &supervisor)?;
        }
        let missing = enable_controllers(&base, &V2_CONTROLLERS)?;
        let pods = base.join(PODS);
        mkdir(&pods)?;
        enable_controllers(&pods, &V2_CONTROLLERS)?;
        for c in &missing {
            log::warn!(
                "cgroup v2: the {c} controller is not available in {} (not delegated?): {c} limits will fail",
                base.display()
            );
        }
        let controllers = V2_CONTROLLERS
            .into_iter()
            .filter(|c| !missing.contains(c))
            .collect();
        Ok(Mode::V2 {
            base_rel,
            base,
            controllers,
        })
    }

    pub fn is_v2(&self) -> bool {
        matches!(*self.inner, Mode::V2 { .. })
    }

    /// What a container sees at `/sys/fs/cgroup` (for its
    /// [`InitPlan`](crate::runtime::plan::InitPlan)): the hierarchies it
    /// joins, as the host mounted them; computed once, at start.
    pub fn view(&self) -> CgroupView {
        match &*self.inner {
            Mode::V1 { view, .. } => view.clone(),
            Mode::V2 { .. } => CgroupView::Unified,
        }
    }

    /// One line for the log: mode, root and controllers.
    pub fn describe(&self) -> String {
        match &*self.inner {
            Mode::V1 { pods_dirs, .. } => format!(
                "cgroup v1: pods in {}",
                pods_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Mode::V2 {
                base, controllers, ..
            } => format!(
                "cgroup v2: pods in {}/{PODS}, controllers {}",
                base.display(),
                controllers.join(" ")
            ),
        }
    }

    fn rel(&self, pod: &str, container: &str) -> PathBuf {
        let root = match &*self.inner {
            Mode::V1 { root, .. } => root,
            Mode::V2 { base_rel, .. } => base_rel,
        };
        root.join(PODS).join(pod).join(container)
    }

    fn handle(&self, pod: &str, container: &str) -> ContainerCgroup {
        let rel = self.rel(pod, container);
        match &*self.inner {
            Mode::V1 {
                hier,
                controllers,
                unified,
                ..
            } => ContainerCgroup {
                cg: load_v1(hier, &rel, controllers),
                v2_dir: None,
                unified_dir: unified.as_ref().map(|m| m.join(&rel)),
                name: rel,
            },
            Mode::V2 { base, .. } => {
                let dir = base.join(PODS).join(pod).join(container);
                ContainerCgroup {
                    cg: Cgroup::load(Box::new(V2::new()), &rel),
                    v2_dir: Some(dir.clone()),
                    unified_dir: None,
                    name: dir,
                }
            }
        }
    }

    /// Creates (or opens, if it exists) `pods/<pod>/<container>` with these
    /// limits. A cgroup made here is removed again if its limits fail.
    pub fn create(&self, pod: &str, container: &str, limits: &Limits) -> Result<ContainerCgroup> {
        check_name(pod)?;
        check_name(container)?;
        let cgroup = self.handle(pod, container);
        let existed = cgroup.exists();
        match &*self.inner {
            Mode::V1 { controllers, .. } => {
                cgroup
                    .cg
                    .create()
                    .map_err(|source| CgroupError::Controller {
                        cgroup: cgroup.name.clone(),
                        op: format!("creating it in the hierarchies {controllers:?}"),
                        source,
                    })?;
                if let Some(dir) = &cgroup.unified_dir {
                    std::fs::create_dir_all(dir).map_err(io_err("creating cgroup", dir))?;
                }
            }
            Mode::V2 {
                base, controllers, ..
            } => {
                let pod_dir = base.join(PODS).join(pod);
                mkdir(&pod_dir)?;
                enable_controllers(&pod_dir, controllers)?;
                mkdir(&cgroup.name)?;
            }
        }
        if let Err(e) = cgroup.set_limits(limits) {
            if !existed {
                if let Err(e2) = cgroup.remove() {
                    log::warn!("{e2}");
                }
            }
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Opens an existing container cgroup (daemon restart, adoption); None
    /// if there is none.
    pub fn open(&self, pod: &str, container: &str) -> Result<Option<ContainerCgroup>> {
        check_name(pod)?;
        check_name(container)?;
        let cgroup = self.handle(pod, container);
        Ok(cgroup.exists().then_some(cgroup))
    }

    fn pods_dirs(&self) -> Vec<PathBuf> {
        match &*self.inner {
            Mode::V1 { pods_dirs, .. } => pods_dirs.clone(),
            Mode::V2 { base, .. } => vec![base.join(PODS)],
        }
    }

    /// Every (pod, container) that has a cgroup now (in any hierarchy on v1),
    /// sorted.
    pub fn list(&self) -> Result<Vec<(String, String)>> {
        let mut all = BTreeSet::new();
        for pods in self.pods_dirs() {
            for pod in subdirs(&pods)? {
                for container in subdirs(&pods.join(&pod))? {
                    all.insert((pod.clone(), container));
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Removes `pods/<pod>` once its containers' cgroups are gone (an error
    /// names the directory if some are left). Absent is fine.
    pub fn remove_pod(&self, pod: &str) -> Result<()> {
        check_name(pod)?;
        for pods in self.pods_dirs() {
            let dir = pods.join(pod);
            // (rmdir would say EBUSY, like for processes.)
            let containers = subdirs(&dir)?;
            if !containers.is_empty() {
                return Err(CgroupError::PodNotEmpty { dir, containers });
            }
            rmdir_retrying(&dir)?;
        }
        Ok(())
    }
}

fn load_v1(hier: &V1, rel: &Path, controllers: &[String]) -> Cgroup {
    Cgroup::load_with_specified_controllers(Box::new(hier.clone()), rel, controllers.to_vec())
}

/// Moves every process in `from` to `to` (v2 `cgroup.procs` moves whole
/// processes), until `from` is empty.
fn move_processes(from: &Path, to: &Path) -> Result<()> {
    let src = from.join("cgroup.procs");
    let dst = to.join("cgroup.procs");
    for _ in 0..20 {
        let pids = parse::procs(&read(&src)?).map_err(parse_err(&src))?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match std::fs::write(&dst, pid.to_string()) {
                // Exited meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                r => r.map_err(io_err(format!("moving process {pid} into"), &dst))?,
            }
        }
    }
    Err(CgroupError::Setup(format!(
        "processes keep appearing in {}; cannot make it a parent of {SUPERVISOR} and {PODS}",
        from.display()
    )))
}
