//! `NetError`: what pod networking (macvlan NICs) and the host adapters
//! report. Owns only the error type and its messages; no I/O.

use std::path::PathBuf;

/// An error of the pod network (NICs inside a pod's netns) or of a host
/// adapter (uplink, DNS).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The NIC's parent interface does not exist in tankd's netns.
    #[error("parent interface {parent:?} of nic {nic} does not exist")]
    NoParent { nic: String, parent: String },
    /// The NIC declaration cannot be applied (bad name, duplicate…).
    #[error("nic {nic}: {reason}")]
    InvalidNic { nic: String, reason: String },
    /// The pod's netns holds an interface with the NIC's name that tank did
    /// not make (not a macvlan).
    #[error("nic {nic}: the pod's netns already has an interface named {nic} that is not a macvlan (kind {kind})")]
    Conflict { nic: String, kind: String },
    /// A netlink request failed.
    #[error("netlink: {op}: {}", describe(.source))]
    Netlink {
        op: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// The pod's netns could not be opened or entered.
    #[error("netns {path}: {op}: {source}")]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The static host adapter has no uplink in its configuration.
    #[error("host adapter \"static\": no uplink configured: set `{key}` in tankd.toml")]
    NoUplink { key: &'static str },
    /// The auto host adapter found no IPv4 default route.
    #[error("host adapter \"auto\": no IPv4 default route in {netns}: cannot pick an uplink (set `host.uplink` in tankd.toml or name the nic's parent)")]
    NoDefaultRoute { netns: String },
    /// A D-Bus call of the NetworkManager adapter failed.
    #[error("host adapter \"networkmanager\": {what}: {source}")]
    Dbus {
        what: String,
        #[source]
        source: Box<zbus::Error>,
    },
    /// NetworkManager answered, but not with what the adapter needs.
    #[error("host adapter \"networkmanager\": {0}")]
    NetworkManager(String),
    /// Thread, runtime or socket plumbing failed.
    #[error("{0}")]
    Internal(String),
}

impl NetError {
    pub(crate) fn dbus(what: impl Into<String>, source: zbus::Error) -> NetError {
        NetError::Dbus {
            what: what.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, source: rtnetlink::Error) -> NetError {
        NetError::Netlink {
            op: op.into(),
            source: Box::new(source),
        }
    }

    /// The errno of a failed netlink request (positive, e.g. `libc::ENODEV`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { source, .. } => errno(source),
            _ => None,
        }
    }
}

/// The errno carried by a netlink error answer (positive).
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}
