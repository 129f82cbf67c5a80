//! The peers of the benchmarks (included with `#[path]`): podman with
//! private configuration and storage, and a thread whose mount namespace
//! lets crun and podman run on this hybrid-cgroup host without changing
//! it; the host paths they may create anyway.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::common::run;

/// The file crun 1.8 refuses to run with when it is not empty.
pub const UNIFIED_CONTROLLERS: &str = "/sys/fs/cgroup/unified/cgroup.controllers";
/// Where podman 4.3 records blob locations on every pull (no setting for
/// it in that version).
pub const BLOB_INFO_CACHE: &str = "/var/lib/containers/cache";

// ------------------------------------------------- the peers' namespace

type Job = Box<dyn FnOnce() + Send>;

/// A thread that runs jobs (crun, podman) in its own mount namespace
/// (slave propagation: host mounts still come in, none of ours go out), in
/// which
/// - [`UNIFIED_CONTROLLERS`] is an empty file when the host's hybrid cgroups
///   would make crun refuse to work;
/// - an existing [`BLOB_INFO_CACHE`] is a private directory, so podman's
///   pull does not write to the host's shared cache.
///
/// Processes spawned from the thread inherit that namespace; mounts made in
/// there (podman's overlays) never reach the host and vanish with the
/// thread.
pub struct PeerThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeerThread {
    /// Starts the thread with its private files under `dir`; true if the
    /// cgroup2 controllers are hidden.
    pub fn start(dir: PathBuf) -> (PeerThread, bool) {
        let hide = std::fs::read_to_string(UNIFIED_CONTROLLERS)
            .map(|c| !c.trim().is_empty())
            .unwrap_or(false);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::spawn(move || {
            let _ = ready_tx.send(private_namespace(&dir, hide));
            for job in queue {
                job();
            }
        });
        if let Err(e) = ready.recv().unwrap() {
            panic!("cannot prepare the peers' mount namespace: {e}");
        }
        (
            PeerThread {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            hide,
        )
    }

    /// Runs `job` on the thread and returns its result.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .unwrap();
        rx.recv()
            .expect("the peers' thread died (see the panic above)")
    }
}

impl Drop for PeerThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The calling thread into the namespace [`PeerThread`] describes, its
/// private files under `dir`.
fn private_namespace(dir: &Path, hide_controllers: bool) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let bind = |source: &Path, target: &str| {
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind {} over {target}: {e}", source.display()))
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("make / rslave: {e}"))?;
    if hide_controllers {
        let empty = dir.join("empty-controllers");
        std::fs::write(&empty, "").map_err(|e| format!("{}: {e}", empty.display()))?;
        bind(&empty, UNIFIED_CONTROLLERS)?;
    }
    if Path::new(BLOB_INFO_CACHE).is_dir() {
        let cache = dir.join("blob-info-cache");
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        bind(&cache, BLOB_INFO_CACHE)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- podman

/// podman with its configuration, storage and state under `dir`: nothing
/// in /etc or podman's default storage is used or changed.
#[derive(Clone)]
pub struct Podman {
    dir: PathBuf,
    vars: Vec<(String, PathBuf)>,
}

impl Podman {
    pub fn new(dir: &Path, registry: &str, nofile: u64) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        let backend = Podman::network_backend();
        let containers = dir.join("containers.conf");
        // No CAP_SYS_RESOURCE here: ulimits must not exceed the hard limits
        // (podman lowers its own RLIMIT_NPROC to 32768). No systemd: cgroupfs
        // and a file events log. The network backend pinned (netavark when
        // installed, else CNI) with a private config dir; with `--network
        // none` neither sets anything up.
        std::fs::write(
            &containers,
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=32768:32768\"]\n\
                 log_driver = \"k8s-file\"\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{0}/events.log\"\ntmp_dir = \"{0}/libpod\"\n\
                 image_copy_tmp_dir = \"{0}\"\n\
                 runtime = \"crun\"\n\
                 [network]\nnetwork_backend = \"{backend}\"\n\
                 network_config_dir = \"{0}/networks\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let storage = dir.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{0}/runroot\"\n\
                 graphroot = \"{0}/root\"\n[storage.options.overlay]\nmountopt = \"nodev\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let registries = super::common::podman_registries_conf(dir, registry);
        Podman {
            dir: dir.to_owned(),
            vars: vec![
                ("CONTAINERS_CONF".into(), containers),
                ("CONTAINERS_STORAGE_CONF".into(), storage),
                ("CONTAINERS_REGISTRIES_CONF".into(), registries),
                // Its scratch files (default /var/tmp) stay private too.
                ("TMPDIR".into(), dir.to_owned()),
            ],
        }
    }

    /// "netavark" if podman can find it (its helper directories), else "cni".
    pub fn network_backend() -> &'static str {
        let dirs = [
            "/usr/local/libexec/podman",
            "/usr/local/lib/podman",
            "/usr/libexec/podman",
            "/usr/lib/podman",
        ];
        if dirs.iter().any(|d| Path::new(d).join("netavark").exists()) {
            "netavark"
        } else {
            "cni"
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        cmd
    }

    pub fn pull(&self, reference: &str) {
        run(self
            .command()
            .args(["pull", "-q", "--tls-verify=false", reference]));
    }

    /// Removes every container, image and the storage itself.
    pub fn reset(&self) {
        let out = self
            .command()
            .args(["system", "reset", "-f"])
            .stdin(Stdio::null())
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("podman system reset failed: {out:?}");
        }
    }
}

/// Host paths podman 4.3 and crun may create outside the private
/// directories this bench gives them: crun's default state dir (podman runs
/// crun without `--root`), podman's cgroupfs parent in every hierarchy, and
/// /var/lib/containers for [`BLOB_INFO_CACHE`] (hidden by a private dir when
/// it exists, see [`PeerThread`], but created on the host when it does
/// not). Those that did not exist before the bench are removed after it.
pub fn host_side_paths() -> Vec<PathBuf> {
    let mut paths = vec![
        PathBuf::from("/run/crun"),
        PathBuf::from("/var/lib/containers"),
    ];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                paths.push(entry.path().join("libpod_parent"));
            }
        }
    }
    paths.retain(|p| p.exists());
    paths
}

/// Removes `path` (created by this bench): a cgroup tree bottom-up with
/// rmdir only (fails if anything still runs in it), crun's state dir only if
/// empty, /var/lib/containers entirely.
pub fn remove_host_side(path: &Path) {
    fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&entry.path())?;
            }
        }
        std::fs::remove_dir(dir)
    }
    let result = if path.starts_with("/sys/fs/cgroup") {
        rmdir_tree(path)
    } else if path == Path::new("/var/lib/containers") {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_dir(path)
    };
    if let Err(e) = result {
        eprintln!("cannot remove {} (made by this bench): {e}", path.display());
    }
}
