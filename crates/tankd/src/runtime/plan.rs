//! The plan of one container start: everything the init stage needs,
//! computed on the host side by tankd and handed to the init process as
//! JSON on an inherited fd. Pure data; the contract between
//! [`super::spawn`] (host side) and [`super::init`] (inside the new
//! namespaces).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::seccomp::SeccompProgram;

/// How the container's root filesystem is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsPlan {
    /// overlayfs: `lower` top layer first (the `lowerdir=` order), a fresh
    /// `upper` and `work` on the same filesystem.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A directory on the host used as is (`{"rootfs": "/abs/path"}`),
    /// bind-mounted recursively.
    Bind { path: PathBuf },
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path (a volume directory, a host path, a pod scratch file).
    pub source: PathBuf,
    /// Absolute path inside the container; created (as a directory, or an
    /// empty file when `source` is a file) if missing, resolved inside the
    /// rootfs so a symlink in the image cannot redirect it to the host.
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Everything the init stage does, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitPlan {
    pub pod: String,
    pub container: String,
    /// The mount point of the root filesystem (an empty directory in the
    /// container's scratch dir).
    pub rootfs_target: PathBuf,
    pub rootfs: RootfsPlan,
    /// Volumes and host paths, then resolv.conf/hosts/hostname of the pod.
    pub mounts: Vec<BindMount>,
    /// The pod's network namespace (`/run/tank/netns/<pod>`), joined before
    /// the ready checkpoint; `None` = stay in tankd's (network `host`).
    pub netns: Option<PathBuf>,
    /// UTS hostname (the pod name).
    pub hostname: String,
    /// The image/spec user, resolved against the container's own
    /// /etc/passwd and /etc/group once the rootfs is mounted.
    pub user: Option<String>,
    /// argv; `argv[0]` is looked up in the container's `PATH` when it has
    /// no `/`.
    pub argv: Vec<String>,
    /// `K=V` entries, exactly as the merge computed them.
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// Paths masked like Docker does (`/proc/kcore`, …): /dev/null over
    /// files, an empty read-only tmpfs over directories.
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only (`/proc/sys`, …).
    pub readonly_paths: Vec<PathBuf>,
    /// Capability names (`CAP_CHOWN`, …) kept in the bounding set; for uid 0
    /// also effective/permitted/inheritable. Non-root users get none in
    /// effective/permitted.
    pub capabilities: Vec<String>,
    /// Run the workload on a PTY allocated in the container's own devpts:
    /// its slave becomes fds 0, 1, 2 and the controlling terminal, its
    /// master goes to tankd ([`SyncMessage::Console`](super::channel::SyncMessage::Console)).
    #[serde(default)]
    pub tty: bool,
    /// The seccomp filter the stage loads as its last step before `execve`
    /// (after `no_new_privs`); `None`: the container is `unconfined`.
    #[serde(default)]
    pub seccomp: Option<SeccompProgram>,
    /// What the container sees at `/sys/fs/cgroup`.
    #[serde(default)]
    pub cgroup: CgroupView,
}

/// The container's view of its cgroups at `/sys/fs/cgroup`, read-only.
///
/// The init stage mounts it after `unshare(CLONE_NEWCGROUP)`, once tankd
/// has put it in its cgroup in every hierarchy listed here: a fresh cgroup
/// (v1 or v2) mount made inside a cgroup namespace shows the namespace's
/// root, i.e. the container's own cgroup, never its parents or siblings.
/// Computed once by tankd from its mounts (`Cgroups::view`), not by the
/// init stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupView {
    /// cgroup v2 host: `cgroup2` mounted on `/sys/fs/cgroup` itself.
    Unified,
    /// cgroup v1 / hybrid host: a tmpfs on `/sys/fs/cgroup` holding one
    /// mount per hierarchy and the links for co-mounted controllers
    /// (`cpu -> cpu,cpuacct`). No mounts: an empty tmpfs (a container
    /// without a cgroup of its own sees nothing).
    Hierarchies {
        mounts: Vec<CgroupMount>,
        links: Vec<CgroupLink>,
    },
}

impl Default for CgroupView {
    fn default() -> Self {
        CgroupView::Hierarchies {
            mounts: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// One hierarchy under `/sys/fs/cgroup` (v1/hybrid hosts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// Its directory in `/sys/fs/cgroup`, one path component (`memory`,
    /// `cpu,cpuacct`, `systemd`, `unified`): the host's name for it.
    pub dir: String,
    /// `cgroup2` (the unified hierarchy of a hybrid host) rather than a v1
    /// `cgroup` mount.
    pub v2: bool,
    /// The mount data that selects the host's hierarchy (`memory`,
    /// `cpu,cpuacct`, `none,name=systemd`, `xattr`, ...); empty for cgroup2.
    pub data: String,
}

/// A symbolic link `/sys/fs/cgroup/<name>` -> `<target>` (both one path
/// component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLink {
    pub name: String,
    pub target: String,
}

/// Whether `name` is one plain path component (a [`CgroupMount::dir`],
/// a [`CgroupLink`] name or target).
pub fn is_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A process started in a running container (`Exec`): what the exec stage
/// ([`super::init::exec`]) does once it has joined the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    /// argv; `argv[0]` is looked up in `PATH` of `env` when it has no `/`.
    pub argv: Vec<String>,
    /// `K=V` entries, merged already (the container's, `TERM`, overrides);
    /// `HOME` is added from the user's passwd entry when missing.
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// The container's user, resolved in the container's own /etc/passwd.
    pub user: Option<String>,
    /// The container's capabilities (as [`InitPlan::capabilities`]).
    pub capabilities: Vec<String>,
    /// Allocate a PTY in the container's devpts as the controlling
    /// terminal; the master goes to tankd ([`SyncMessage::Console`](super::channel::SyncMessage::Console)).
    pub tty: bool,
    /// The PTY's initial window size (rows, columns), so that the process
    /// sees the client's size from its first instruction.
    pub size: Option<(u16, u16)>,
    /// The container's seccomp filter (as [`InitPlan::seccomp`]).
    #[serde(default)]
    pub seccomp: Option<SeccompProgram>,
}

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
