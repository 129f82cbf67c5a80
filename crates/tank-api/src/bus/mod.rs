//! tankd's D-Bus surface as a client sees it: the names (service, object
//! paths, interfaces), the names of the errors tankd answers with, and the
//! client proxies of its interfaces ([`proxy`]). The introspection XML in
//! `dbus/` is the contract all of these follow.
//!
//! Owns names and signatures only: the interfaces themselves, and the
//! mapping of tankd's errors to these names, are the daemon's (`tankd::bus`).

pub mod path;
pub mod proxy;

use std::fmt;

/// The well-known name tankd owns on the system bus.
pub const BUS_NAME: &str = "org.tank.Manager";
/// Object path of the Manager interface.
pub const MANAGER_PATH: &str = "/org/tank/Manager";
/// Object path of the ObjectManager (parent of every tank object).
pub const ROOT_PATH: &str = "/org/tank";
/// The interface of tankd's Manager object.
pub const MANAGER_INTERFACE: &str = "org.tank.Manager";
/// The interface of every pod object.
pub const POD_INTERFACE: &str = "org.tank.Pod";

/// The errors tankd's methods answer with under `org.tank.Error.*`, by
/// name. (Authorization answers with the standard
/// `org.freedesktop.DBus.Error.AccessDenied` and
/// `…InteractiveAuthorizationRequired`; a call that does not match its
/// method's signature with `org.freedesktop.DBus.Error.InvalidArgs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorName {
    /// The spec was rejected; the message names the offending field path.
    InvalidSpec,
    /// No pod (or container, image, volume…) of that name.
    NotFound,
    /// tankd failed internally (e.g. the store could not be written).
    Failed,
    /// An argument is malformed (e.g. an image reference).
    InvalidArgument,
    /// The thing is used (e.g. an image by a declared pod).
    InUse,
    /// An image could not be pulled (registry, platform, digest, unpack).
    ImagePull,
    /// An image archive could not be imported.
    ImportFailed,
    /// The container is declared but not running (Exec, Attach).
    NotRunning,
    /// Attach to a container without `tty: true`.
    NotATty,
    /// Another client is attached to the container's terminal.
    Busy,
    /// The command of an Exec could not be started (not found, cwd
    /// missing, …): the message says which step failed.
    ExecFailed,
}

impl ErrorName {
    /// Every name, in the order of the contract.
    pub const ALL: [ErrorName; 11] = [
        ErrorName::InvalidSpec,
        ErrorName::NotFound,
        ErrorName::Failed,
        ErrorName::InvalidArgument,
        ErrorName::InUse,
        ErrorName::ImagePull,
        ErrorName::ImportFailed,
        ErrorName::NotRunning,
        ErrorName::NotATty,
        ErrorName::Busy,
        ErrorName::ExecFailed,
    ];

    /// The D-Bus error name, `org.tank.Error.<Kind>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorName::InvalidSpec => "org.tank.Error.InvalidSpec",
            ErrorName::NotFound => "org.tank.Error.NotFound",
            ErrorName::Failed => "org.tank.Error.Failed",
            ErrorName::InvalidArgument => "org.tank.Error.InvalidArgument",
            ErrorName::InUse => "org.tank.Error.InUse",
            ErrorName::ImagePull => "org.tank.Error.ImagePull",
            ErrorName::ImportFailed => "org.tank.Error.ImportFailed",
            ErrorName::NotRunning => "org.tank.Error.NotRunning",
            ErrorName::NotATty => "org.tank.Error.NotATty",
            ErrorName::Busy => "org.tank.Error.Busy",
            ErrorName::ExecFailed => "org.tank.Error.ExecFailed",
        }
    }

    /// The kind a D-Bus error name stands for; `None` for any name outside
    /// `org.tank.Error.*`.
    pub fn from_name(name: &str) -> Option<ErrorName> {
        ErrorName::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_round_trip() {
        for kind in ErrorName::ALL {
            assert_eq!(ErrorName::from_name(kind.as_str()), Some(kind));
            assert!(kind.as_str().starts_with("org.tank.Error."));
        }
        assert_eq!(ErrorName::from_name("org.tank.Error.Nope"), None);
        assert_eq!(
            ErrorName::from_name("org.freedesktop.DBus.Error.AccessDenied"),
            None
        );
    }

    /// Every name is declared in the contract, and every name the
    /// contract declares is here.
    #[test]
    fn error_names_are_the_contracts() {
        let contract = include_str!("../../../../dbus/org.tank.Manager.xml");
        for kind in ErrorName::ALL {
            assert!(contract.contains(kind.as_str()), "{kind} not in the XML");
        }
        let mut rest = contract;
        while let Some(at) = rest.find("org.tank.Error.") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            assert!(
                ErrorName::from_name(name.trim_end_matches('.')).is_some(),
                "{name} of the XML is not an ErrorName"
            );
            rest = &rest[at + name.len()..];
        }
    }
}
