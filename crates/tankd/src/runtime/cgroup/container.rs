//! One container's cgroup: processes, limits, statistics, killing and
//! removal.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{ControllIdentifier, Controller, MaxValue, Subsystem};
use cgroups_rs::{CgroupPid, FreezerState};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    io_err, parse, parse_err, read, rmdir_retrying, CgroupError, CpuStat, Result, KILL_TIMEOUT,
    RMDIR_TIMEOUT,
};
use tank_api::spec::{CpuLimit, Limits};

/// One container's cgroup (in every joined hierarchy on v1).
#[derive(Debug)]
pub struct ContainerCgroup {
    pub(super) cg: Cgroup,
    /// v2: the directory; v1: None.
    pub(super) v2_dir: Option<PathBuf>,
    /// v1 on a hybrid host: the directory in the unified hierarchy (no
    /// controllers; joined so that the container's view of it is its own).
    pub(super) unified_dir: Option<PathBuf>,
    /// For messages: the v2 directory, or `<v1_root>/pods/<pod>/<container>`.
    pub(super) name: PathBuf,
}

/// Removes a v2 cgroup and any cgroups the container made below it.
fn remove_tree(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("listing cgroup", dir)(e)),
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_err("listing cgroup", dir))?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path())?;
                }
            }
        }
    }
    rmdir_retrying(dir)
}

impl ContainerCgroup {
    /// The directories of this cgroup: one per joined v1 hierarchy
    /// (deduplicated: co-mounted controllers share one) and the unified one
    /// of a hybrid host, or the v2 one.
    fn dirs(&self) -> Vec<PathBuf> {
        if let Some(dir) = &self.v2_dir {
            return vec![dir.clone()];
        }
        let mut dirs: Vec<PathBuf> = vec![];
        for sub in self.cg.subsystems() {
            let p = sub.to_controller().path().to_path_buf();
            if !dirs.contains(&p) {
                dirs.push(p);
            }
        }
        dirs.extend(self.unified_dir.iter().cloned());
        dirs
    }

    pub(super) fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// The cgroups-rs controller of type `T` if this cgroup has `name`
    /// (v1: its hierarchy is mounted; v2: it is in `cgroup.controllers`).
    fn controller<'a, T>(&'a self, name: &str) -> Result<Option<&'a T>>
    where
        &'a T: From<&'a Subsystem>,
        T: Controller + ControllIdentifier,
    {
        if let Some(dir) = &self.v2_dir {
            let path = dir.join("cgroup.controllers");
            if !read(&path)?.split_whitespace().any(|c| c == name) {
                return Ok(None);
            }
        }
        Ok(self.cg.controller_of::<T>())
    }

    /// Like `controller`, but an error if the controller is missing and
    /// `needed` (a limit is to be set); Ok(None) if missing and not needed.
    fn controller_for<'a, T>(
        &'a self,
        name: &'static str,
        needed: bool,
        what: &'static str,
    ) -> Result<Option<&'a T>>
    where
        &'a T: From<&'a Subsystem>,
        T: Controller + ControllIdentifier,
    {
        match self.controller::<T>(name)? {
            None if needed => Err(CgroupError::ControllerMissing {
                cgroup: self.name.clone(),
                controller: name,
                what,
            }),
            c => Ok(c),
        }
    }

    fn lib_err(&self, op: String) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError + '_ {
        move |source| CgroupError::Controller {
            cgroup: self.name.clone(),
            op,
            source,
        }
    }

    /// A cgroups-rs error of one controller, named by its directory.
    fn ctl_err(
        dir: &Path,
        op: String,
    ) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError + '_ {
        move |source| CgroupError::Controller {
            cgroup: dir.to_path_buf(),
            op,
            source,
        }
    }

    fn invalid(&self, reason: String) -> CgroupError {
        CgroupError::InvalidLimit {
            cgroup: self.name.clone(),
            reason,
        }
    }

    /// Moves process `pid` (all its threads) into this cgroup: every
    /// hierarchy's `cgroup.procs` on v1 (and the unified one of a hybrid
    /// host), the one `cgroup.procs` on v2.
    ///
    /// v1: only the hierarchies in which this cgroup exists. A container
    /// started by an older tankd, which joined fewer hierarchies, has none
    /// in the others: there a process exec'd into it stays in tankd's
    /// cgroup, where the container's PID 1 is too (and its cgroup
    /// namespace's root). Missing everywhere is an error.
    pub fn add_process(&self, pid: u32) -> Result<()> {
        let tgid = CgroupPid::from(u64::from(pid));
        if self.v2_dir.is_some() {
            return self
                .cg
                .add_task_by_tgid(tgid)
                .map_err(self.lib_err(format!("adding process {pid}")));
        }
        let mut joined = 0;
        for sub in self.cg.subsystems() {
            let controller = sub.to_controller();
            if !controller.path().is_dir() {
                continue;
            }
            controller.add_task_by_tgid(&tgid).map_err(Self::ctl_err(
                controller.path(),
                format!("adding process {pid}"),
            ))?;
            joined += 1;
        }
        if let Some(dir) = self.unified_dir.as_ref().filter(|d| d.is_dir()) {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .map_err(io_err(format!("adding process {pid} to"), &procs))?;
            joined += 1;
        }
        if joined == 0 {
            return Err(CgroupError::Io {
                op: format!("adding process {pid} to"),
                path: self.name.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        Ok(())
    }

    /// The processes in this cgroup (the union over the hierarchies on v1),
    /// sorted. A vanished cgroup has none.
    pub fn procs(&self) -> Result<Vec<u32>> {
        let mut all = BTreeSet::new();
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            match std::fs::read_to_string(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("reading", &path)(e)),
                Ok(text) => all.extend(parse::procs(&text).map_err(parse_err(&path))?),
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Whether any process is in this cgroup (v2 `cgroup.events`; v1: a
    /// non-empty `cgroup.procs` — container cgroups are leaves).
    pub fn is_populated(&self) -> Result<bool> {
        match &self.v2_dir {
            Some(dir) => {
                let path = dir.join("cgroup.events");
                parse::populated(&read(&path)?).map_err(parse_err(&path))
            }
            None => Ok(!self.procs()?.is_empty()),
        }
    }

    /// A file of controller `name`, if the controller is there.
    fn controller_file(&self, name: &str, file: &str) -> Result<Option<PathBuf>> {
        let dir = match &self.v2_dir {
            Some(dir) => dir.clone(),
            None => match self
                .cg
                .subsystems()
                .iter()
                .find(|s| s.controller_name() == name)
            {
                Some(s) => s.to_controller().path().to_path_buf(),
                None => return Ok(None),
            },
        };
        let path = dir.join(file);
        Ok(path.exists().then_some(path))
    }

    /// Processes killed by the OOM killer in this cgroup so far (v2
    /// `memory.events`, v1 `memory.oom_control`: `oom_kill`); 0 without the
    /// memory controller.
    pub fn oom_kills(&self) -> Result<u64> {
        let file = if self.v2_dir.is_some() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        match self.controller_file("memory", file)? {
            Some(path) => parse::oom_kill(&read(&path)?).map_err(parse_err(&path)),
            None => Ok(0),
        }
    }

    /// CFS bandwidth statistics; zeros without the cpu controller.
    pub fn cpu_stat(&self) -> Result<CpuStat> {
        match self.controller_file("cpu", "cpu.stat")? {
            Some(path) => parse::cpu_stat(&read(&path)?).map_err(parse_err(&path)),
            None => Ok(CpuStat::default()),
        }
    }

    /// The limits in force (for drift detection). A controller that is not
    /// there reads as "no limit".
    pub fn limits(&self) -> Result<Limits> {
        let v2 = self.v2_dir.is_some();
        let read_opt = |name: &str, file: &str| -> Result<Option<(PathBuf, String)>> {
            match self.controller_file(name, file)? {
                Some(path) => Ok(Some((path.clone(), read(&path)?))),
                None => Ok(None),
            }
        };
        let memory = match read_opt(
            "memory",
            if v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            },
        )? {
            None => None,
            Some((path, text)) if v2 => parse::max_value(&text).map_err(parse_err(&path))?,
            Some((path, text)) => parse::v1_memory_limit(&text).map_err(parse_err(&path))?,
        };
        let pids = match read_opt("pids", "pids.max")? {
            None => None,
            Some((path, text)) => parse::max_value(&text).map_err(parse_err(&path))?,
        };
        let cpu = if v2 {
            match read_opt("cpu", "cpu.max")? {
                None => None,
                Some((path, text)) => parse::cpu_max(&text).map_err(parse_err(&path))?,
            }
        } else {
            match (
                read_opt("cpu", "cpu.cfs_quota_us")?,
                read_opt("cpu", "cpu.cfs_period_us")?,
            ) {
                (Some((path, quota)), Some((_, period))) => {
                    parse::v1_cpu_limit(&quota, &period).map_err(parse_err(&path))?
                }
                _ => None,
            }
        };
        Ok(Limits { memory, pids, cpu })
    }

    /// Sets the limits; `None` clears one ("max"/-1). Memory includes swap
    /// where the kernel accounts it (v2 `memory.swap.max` = 0, v1
    /// `memory.memsw.limit_in_bytes` = the limit), so the limit is real.
    pub fn set_limits(&self, limits: &Limits) -> Result<()> {
        let memory = limits
            .memory
            .map(i64::try_from)
            .transpose()
            .map_err(|_| self.invalid(format!("memory {:?} is too large", limits.memory)))?;
        let pids = limits
            .pids
            .map(i64::try_from)
            .transpose()
            .map_err(|_| self.invalid(format!("pids {:?} is too large", limits.pids)))?;
        let cpu = match limits.cpu {
            None => None,
            Some(CpuLimit { quota_us: 0, .. }) => {
                // cgroups-rs would write 0 to v2 cpu.max as "max".
                return Err(self.invalid("cpu quota 0".into()));
            }
            Some(CpuLimit {
                quota_us,
                period_us,
            }) => Some((
                i64::try_from(quota_us)
                    .map_err(|_| self.invalid(format!("cpu quota {quota_us} µs is too large")))?,
                period_us,
            )),
        };
        self.set_memory(memory)?;
        self.set_pids(pids)?;
        self.set_cpu(cpu)
    }

    fn set_memory(&self, limit: Option<i64>) -> Result<()> {
        let Some(mem) =
            self.controller_for::<MemController>("memory", limit.is_some(), "a memory limit")?
        else {
            return Ok(());
        };
        let v2 = self.v2_dir.is_some();
        let swap_file = if v2 {
            "memory.swap.max"
        } else {
            "memory.memsw.limit_in_bytes"
        };
        let swap = mem.path().join(swap_file).exists();
        let set_swap = |v: i64| {
            mem.set_memswap_limit(v).map_err(Self::ctl_err(
                mem.path(),
                format!("setting {swap_file} to {v}"),
            ))
        };
        let main_file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let set_main = |v: i64| {
            mem.set_limit(v).map_err(Self::ctl_err(
                mem.path(),
                format!("setting {main_file} to {v}"),
            ))
        };
        if v2 {
            set_main(limit.unwrap_or(-1))?;
            if swap {
                set_swap(if limit.is_some() { 0 } else { -1 })?;
            }
        } else {
            // v1 needs memsw >= limit at every step: lift memsw, set the
            // limit, then bring memsw down to it.
            if swap {
                set_swap(-1)?;
            }
            set_main(limit.unwrap_or(-1))?;
            if let (true, Some(v)) = (swap, limit) {
                set_swap(v)?;
            }
        }
        Ok(())
    }

    fn set_pids(&self, limit: Option<i64>) -> Result<()> {
        let Some(pids) =
            self.controller_for::<PidController>("pids", limit.is_some(), "a pids limit")?
        else {
            return Ok(());
        };
        let value = limit.map_or(MaxValue::Max, MaxValue::Value);
        pids.set_pid_max(value).map_err(Self::ctl_err(
            pids.path(),
            format!("setting pids.max to {value}"),
        ))
    }

    fn set_cpu(&self, limit: Option<(i64, u64)>) -> Result<()> {
        let Some(cpu) =
            self.controller_for::<CpuController>("cpu", limit.is_some(), "a cpu limit")?
        else {
            return Ok(());
        };
        let (quota, period) = limit.unwrap_or((-1, parse::DEFAULT_CPU_PERIOD_US));
        cpu.set_cfs_quota_and_period(Some(quota), Some(period))
            .map_err(Self::ctl_err(
                cpu.path(),
                format!("setting cpu quota {quota} µs per period {period} µs"),
            ))
    }

    /// Kills every process in the cgroup and waits until it is empty. v2:
    /// `cgroup.kill`. v1 (and v2 before 5.14): freeze, SIGKILL every
    /// process, thaw — repeated until empty, so forks cannot escape.
    pub fn kill_all(&self) -> Result<()> {
        if self.v2_dir.is_some() && self.exists() {
            match self.cg.kill() {
                Ok(()) => return self.wait_empty(),
                Err(e) if *e.kind() == cgroups_rs::fs::error::ErrorKind::InvalidOperation => {}
                Err(e) => return Err(self.lib_err("writing cgroup.kill".into())(e)),
            }
        }
        self.kill_loop()
    }

    fn wait_empty(&self) -> Result<()> {
        let start = Instant::now();
        loop {
            if !self.exists() || !self.is_populated()? {
                return Ok(());
            }
            if start.elapsed() >= KILL_TIMEOUT {
                return Err(self.not_empty(start.elapsed())?);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn not_empty(&self, waited: Duration) -> Result<CgroupError> {
        Ok(CgroupError::NotEmpty {
            cgroup: self.name.clone(),
            pids: self.procs()?,
            waited,
        })
    }

    fn kill_loop(&self) -> Result<()> {
        let start = Instant::now();
        let freezer = self.cg.controller_of::<FreezerController>();
        let mut pause = Duration::from_millis(5);
        loop {
            if self.procs()?.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= KILL_TIMEOUT {
                return Err(self.not_empty(start.elapsed())?);
            }
            let frozen = freezer.is_some_and(|f| self.freeze(f));
            // Read again once frozen: nothing can fork any more.
            let killed = self.procs().map(|pids| {
                for pid in pids {
                    let Ok(raw) = i32::try_from(pid) else {
                        continue;
                    };
                    match kill(Pid::from_raw(raw), Signal::SIGKILL) {
                        Ok(()) | Err(Errno::ESRCH) => {}
                        Err(e) => log::warn!("cgroup {}: kill {pid}: {e}", self.name.display()),
                    }
                }
            });
            if frozen {
                if let Some(f) = freezer {
                    // Killed tasks of a frozen v1 cgroup die once thawed.
                    f.thaw()
                        .map_err(Self::ctl_err(f.path(), "thawing".into()))?;
                }
            }
            killed?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Freezes; waits briefly for it to take. False if freezing failed.
    fn freeze(&self, f: &FreezerController) -> bool {
        if let Err(e) = f.freeze() {
            log::debug!("cgroup {}: freeze: {e}", self.name.display());
            return false;
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            if matches!(f.state(), Ok(FreezerState::Frozen)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Removes the cgroup (in every hierarchy on v1, with any child cgroups),
    /// retrying EBUSY briefly. Call after `kill_all`.
    pub fn delete(self) -> Result<()> {
        self.remove()
    }

    pub(super) fn remove(&self) -> Result<()> {
        match &self.v2_dir {
            Some(dir) => remove_tree(dir),
            None => {
                let deadline = Instant::now() + RMDIR_TIMEOUT;
                loop {
                    match self.cg.delete() {
                        Ok(()) => break,
                        Err(e) if Instant::now() < deadline && is_busy(&e) => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => return Err(self.lib_err("removing it".into())(e)),
                    }
                }
                match &self.unified_dir {
                    Some(dir) => remove_tree(dir),
                    None => Ok(()),
                }
            }
        }
    }

    /// v2: the cgroup's directory (for `CLONE_INTO_CGROUP`); None on v1.
    pub fn v2_dir(&self) -> Option<PathBuf> {
        self.v2_dir.clone()
    }

    /// Every `cgroup.procs` a process must be written to, to join this
    /// cgroup (v1: one per hierarchy; v2: one) — for exec and the init child.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }
}

fn is_busy(e: &cgroups_rs::fs::error::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
}
