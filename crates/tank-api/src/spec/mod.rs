//! Desired state: the pod spec (DESIGN §3).
//!
//! This module owns the desired-state model ([`Pod`] and its parts), its
//! JSON/YAML forms and its strict validation: [`Pod::new`] accepts a document
//! only if every field is known, well typed and meaningful, and otherwise
//! names the offending field by its JSON path
//! (`containers[1].mounts[0].volume: no volume "dat" (pod defines: data, conf)`).
//! A `Pod` value that came out of `Pod::new` is valid; other modules rely on
//! that instead of re-checking.
//!
//! It is pure data: it never touches the store, the bus or the system (no
//! files, no network, no image lookups). Whether an image exists, a host path
//! is present or a parent interface is up is for the modules that act. An
//! image reference is checked against the distribution grammar by the
//! (pure) [`crate::reference::check`], so that what could never be
//! pulled is refused at Apply.
//!
//! Documents are bounded: at most [`MAX_SPEC_BYTES`] as text (checked
//! before parsing) and as canonical JSON (what the store keeps and every
//! reader of the pod's `Spec` property receives).
//!
//! Inside: the types here, the rules in `validate`, hand-written serde for
//! the string-or-object fields in `de`, [`Ipv4Cidr`] in `net`, and reading
//! JSON/YAML text (refusing repeated keys) in `text`.

mod de;
mod net;
mod signal;
mod text;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use net::{Ipv4Cidr, ParseCidrError};
pub use signal::StopSignal;

/// A pod: containers sharing a network namespace, volumes and a restart policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// A DNS-1123 label, unique among pods.
    pub name: String,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub network: Network,
    #[serde(default, deserialize_with = "de::objects")]
    pub volumes: Vec<Volume>,
    /// At least one.
    #[serde(deserialize_with = "de::objects")]
    pub containers: Vec<Container>,
    /// The containers' stop signal (SIGTERM unless the image or the
    /// container names another) → wait this long → SIGKILL.
    #[serde(default = "default_stop_grace_period_s")]
    pub stop_grace_period_s: u32,
}

/// What to do when a container exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// The pod's network: JSON `"none"`, `"host"` or `{"nics": [...], "dns": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// Own network namespace with loopback only.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Own network namespace with macvlan NICs.
    Nics(NicNetwork),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicNetwork {
    /// At least one.
    #[serde(deserialize_with = "de::objects")]
    pub nics: Vec<Nic>,
    /// Nameservers for resolv.conf; `None` = the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<Ipv4Addr>>,
}

/// A macvlan interface inside the pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Interface name inside the pod, e.g. `eth0`.
    pub name: String,
    /// Host interface to attach to; `"auto"` = the host adapter's uplink.
    #[serde(default = "default_parent")]
    pub parent: String,
    pub ip: Ipv4Cidr,
    /// Default route via this address; inside `ip`'s subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    /// `None`: a managed volume, created on first use and kept across pod restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSource>,
}

/// Serialized by hand (in `de`) as a one-entry map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// A host directory or file, bind-mounted: JSON `{"host": "/etc/api"}`.
    Host(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// A DNS-1123 label, unique within the pod.
    pub name: String,
    pub image: Image,
    /// Replaces the image's entrypoint; `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's cmd; `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `None`: the image's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBuf>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default, deserialize_with = "de::objects")]
    pub mounts: Vec<Mount>,
    #[serde(default, deserialize_with = "de::object")]
    pub limits: Limits,
    /// The system-call filter of the container's processes (DESIGN §6).
    /// Left out of the canonical form when it is the default, so that the
    /// specs stored before the field existed keep their exact bytes.
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    /// The signal that stops the container (then SIGKILL after the pod's
    /// grace period): a name (`"SIGQUIT"`, `"QUIT"`) or a number; `None`:
    /// the image's `StopSignal`, else SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<StopSignal>,
}

/// The seccomp profile of a container: JSON `"runtime/default"` (the
/// default: Tank's built-in profile) or `"unconfined"` (no filter; only
/// root may apply it). Serialized by hand (in `de`) as that string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Seccomp {
    #[default]
    RuntimeDefault,
    Unconfined,
}

impl Seccomp {
    pub fn is_default(&self) -> bool {
        *self == Seccomp::RuntimeDefault
    }

    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Seccomp::RuntimeDefault => "runtime/default",
            Seccomp::Unconfined => "unconfined",
        }
    }
}

impl fmt::Display for Seccomp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a container's root filesystem comes from: JSON `"busybox:1.36"` or
/// `{"rootfs": "/abs/path"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// An image reference, pulled from a registry if not present.
    Reference(String),
    /// A directory on the host used as the (read-only) lower layer.
    Rootfs(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Name of one of the pod's volumes.
    pub volume: String,
    /// Absolute path inside the container.
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// Resource limits; `Limits::default()` limits nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes (cgroup `memory.max`).
    #[serde(
        default,
        deserialize_with = "de::memory",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<u64>,
    /// Maximum number of processes/threads (cgroup `pids.max`).
    #[serde(
        default,
        deserialize_with = "de::pids",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<u64>,
    #[serde(
        default,
        deserialize_with = "de::optional_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<CpuLimit>,
}

/// CFS bandwidth (cgroup `cpu.max`): `quota_us` of CPU time per `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuLimit {
    #[serde(deserialize_with = "de::microseconds")]
    pub quota_us: u64,
    /// Defaults to the kernel's 100 ms.
    #[serde(
        default = "default_cpu_period_us",
        deserialize_with = "de::microseconds"
    )]
    pub period_us: u64,
}

/// A rejected spec: the JSON path of the offending field (empty for the
/// document as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            path: path.into(),
            message: message.into(),
        }
    }

    fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        // serde_path_to_error renders the document root as ".".
        let path = if err.path().iter().len() == 0 {
            String::new()
        } else {
            err.path().to_string()
        };
        SpecError::new(path, err.into_inner().to_string())
    }
}

/// The largest spec document in bytes (256 KiB), as text and as canonical
/// JSON.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Refuses a document of `len` bytes (`form`: how it was measured) above
/// [`MAX_SPEC_BYTES`].
fn within_limit(len: usize, form: &str) -> Result<(), SpecError> {
    if len > MAX_SPEC_BYTES {
        return Err(SpecError::new(
            "",
            format!("the spec is {len} bytes{form}: at most {MAX_SPEC_BYTES} (256 KiB)"),
        ));
    }
    Ok(())
}

impl Pod {
    pub const DEFAULT_STOP_GRACE_PERIOD_S: u32 = 10;
    pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
    /// The `parent` meaning "the host adapter's uplink".
    pub const AUTO_PARENT: &'static str = "auto";

    /// Deserializes (strictly: a JSON object, objects wherever a struct
    /// goes) and validates a spec document; refuses one above
    /// [`MAX_SPEC_BYTES`] as canonical JSON.
    pub fn new(doc: serde_json::Value) -> Result<Pod, SpecError> {
        let de::Object(pod): de::Object<Pod> =
            serde_path_to_error::deserialize(doc).map_err(SpecError::from_serde)?;
        pod.validate()?;
        within_limit(
            pod.to_canonical_json().len(),
            " as canonical JSON (every default written out)",
        )?;
        Ok(pod)
    }

    /// Parses JSON text (rejecting repeated keys, and documents above
    /// [`MAX_SPEC_BYTES`] before parsing), then as [`Pod::new`].
    pub fn from_json(text: &str) -> Result<Pod, SpecError> {
        within_limit(text.len(), "")?;
        Pod::new(text::parse_json(text)?)
    }

    /// Parses YAML text (rejecting repeated keys, and documents above
    /// [`MAX_SPEC_BYTES`] before parsing), then as [`Pod::new`].
    pub fn from_yaml(text: &str) -> Result<Pod, SpecError> {
        within_limit(text.len(), "")?;
        Pod::new(text::parse_yaml(text)?)
    }

    /// Checks the rules that types alone do not express; `Pod::new` already
    /// did this. Reports the first problem in document order.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate::pod(self)
    }

    /// Compact JSON with every default written out (except a container's
    /// default `seccomp`, see [`Container::seccomp`]) and maps sorted: two
    /// specs with the same meaning give the same bytes.
    ///
    /// # Panics
    /// If a path is not UTF-8, which `validate` rejects.
    pub fn to_canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a valid pod serializes to JSON")
    }

    /// # Panics
    /// If a path is not UTF-8, which `validate` rejects.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a valid pod serializes to YAML")
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The containers that run without a seccomp filter (`"unconfined"`),
    /// which only root may declare.
    pub fn unconfined_containers(&self) -> Vec<&str> {
        self.containers
            .iter()
            .filter(|c| c.seccomp == Seccomp::Unconfined)
            .map(|c| c.name.as_str())
            .collect()
    }
}

fn default_stop_grace_period_s() -> u32 {
    Pod::DEFAULT_STOP_GRACE_PERIOD_S
}

fn default_parent() -> String {
    Pod::AUTO_PARENT.to_owned()
}

fn default_cpu_period_us() -> u64 {
    Pod::DEFAULT_CPU_PERIOD_US
}

#[cfg(test)]
mod tests;
