//! The errors tankd answers on the bus.
//!
//! Owns the mapping from library errors to named D-Bus errors
//! (`org.tank.Error.*`, named by tank-api's
//! [`ErrorName`](tank_api::bus::ErrorName), and the standard
//! `org.freedesktop.DBus.Error.*` for authorization). Every error a method returns goes through here, so a
//! client always sees a precise name and a one-line message.
//!
//! [`zbus::DBusError`] is implemented by hand rather than derived: the
//! derive sends every standard error under the catch-all name
//! `org.freedesktop.zbus.Error`, and clients must see
//! `org.freedesktop.DBus.Error.AccessDenied` itself. The message of every
//! reply goes through [`bus_message`]: a NUL from a spec key or a
//! registry's text is escaped (it would get tankd disconnected) and a
//! message is at most a few KiB.

use std::fmt;

use zbus::fdo;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

use super::text::bus_message;
use crate::store::StoreError;
use tank_api::bus::ErrorName as TankErrorName;
use tank_api::spec::SpecError;

/// A D-Bus error returned by tankd's methods.
#[derive(Debug)]
pub enum BusError {
    /// Standard errors (`org.freedesktop.DBus.Error.*`) pass through under
    /// their own names.
    ZBus(zbus::Error),
    /// The spec was rejected; the message names the offending field path.
    InvalidSpec(String),
    /// No pod (or container, image…) of that name.
    NotFound(String),
    /// tankd failed internally (e.g. the store could not be written).
    Failed(String),
    /// An argument is malformed (e.g. an image reference).
    InvalidArgument(String),
    /// The thing is used (e.g. an image by a declared pod).
    InUse(String),
    /// An image could not be pulled (registry, platform, digest, unpack).
    ImagePull(String),
    /// An image archive could not be imported.
    ImportFailed(String),
    /// The container is declared but not running (Exec, Attach).
    NotRunning(String),
    /// Attach to a container without `tty: true`.
    NotATty(String),
    /// Another client is attached to the container's terminal.
    Busy(String),
    /// The command of an Exec could not be started (not found, cwd
    /// missing, ...): the message says which step failed.
    ExecFailed(String),
}

/// What a zbus error that is not a D-Bus error (I/O, serialization…) is
/// sent as.
const FAILED: &str = "org.freedesktop.DBus.Error.Failed";

impl BusError {
    /// The `org.tank.Error.*` name and the message of tank's own errors.
    fn tank(&self) -> Option<(&'static str, &str)> {
        let (name, message) = match self {
            BusError::ZBus(_) => return None,
            BusError::InvalidSpec(m) => (TankErrorName::InvalidSpec, m),
            BusError::NotFound(m) => (TankErrorName::NotFound, m),
            BusError::Failed(m) => (TankErrorName::Failed, m),
            BusError::InvalidArgument(m) => (TankErrorName::InvalidArgument, m),
            BusError::InUse(m) => (TankErrorName::InUse, m),
            BusError::ImagePull(m) => (TankErrorName::ImagePull, m),
            BusError::ImportFailed(m) => (TankErrorName::ImportFailed, m),
            BusError::NotRunning(m) => (TankErrorName::NotRunning, m),
            BusError::NotATty(m) => (TankErrorName::NotATty, m),
            BusError::Busy(m) => (TankErrorName::Busy, m),
            BusError::ExecFailed(m) => (TankErrorName::ExecFailed, m),
        };
        let name = name.as_str();
        Some((name, message.as_str()))
    }
}

impl zbus::DBusError for BusError {
    fn name(&self) -> ErrorName<'_> {
        if let Some((name, _)) = self.tank() {
            return ErrorName::from_static_str_unchecked(name);
        }
        match self {
            BusError::ZBus(zbus::Error::FDO(e)) => e.name(),
            BusError::ZBus(zbus::Error::MethodError(name, _, _)) => name.inner().clone(),
            _ => ErrorName::from_static_str_unchecked(FAILED),
        }
    }

    fn description(&self) -> Option<&str> {
        if let Some((_, message)) = self.tank() {
            return Some(message);
        }
        match self {
            BusError::ZBus(zbus::Error::FDO(e)) => e.description(),
            BusError::ZBus(zbus::Error::MethodError(_, message, _)) => message.as_deref(),
            _ => None,
        }
    }

    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        let message = match self.description() {
            Some(message) => bus_message(message),
            None => bus_message(&self.to_string()),
        };
        Message::error(call, self.name())?.build(&(message,))
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use zbus::DBusError;
        match (self, self.description()) {
            (_, Some(message)) => write!(f, "{}: {message}", self.name()),
            (BusError::ZBus(e), None) => write!(f, "{e}"),
            (_, None) => write!(f, "{}", self.name()),
        }
    }
}

impl std::error::Error for BusError {}

impl From<zbus::Error> for BusError {
    fn from(err: zbus::Error) -> Self {
        BusError::ZBus(err)
    }
}

impl BusError {
    /// `org.freedesktop.DBus.Error.AccessDenied`.
    pub fn access_denied(message: impl Into<String>) -> BusError {
        BusError::ZBus(zbus::Error::FDO(Box::new(fdo::Error::AccessDenied(
            message.into(),
        ))))
    }

    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`: the
    /// caller could be authorized by authenticating, but its message did not
    /// allow tankd to ask.
    pub fn interactive_authorization_required(message: impl Into<String>) -> BusError {
        BusError::ZBus(zbus::Error::FDO(Box::new(
            fdo::Error::InteractiveAuthorizationRequired(message.into()),
        )))
    }

    pub fn pod_not_found(name: &str) -> BusError {
        BusError::NotFound(format!("pod {name:?} not found"))
    }
}

impl From<SpecError> for BusError {
    fn from(err: SpecError) -> Self {
        BusError::InvalidSpec(err.to_string())
    }
}

impl From<StoreError> for BusError {
    fn from(err: StoreError) -> Self {
        log::error!("{err}");
        BusError::Failed(err.to_string())
    }
}

impl From<fdo::Error> for BusError {
    fn from(err: fdo::Error) -> Self {
        BusError::ZBus(zbus::Error::FDO(Box::new(err)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    /// The error name and message `err` is sent with, as a reply.
    fn on_the_wire(err: BusError) -> (String, String) {
        let call = Message::method_call("/org/tank/Manager", "Apply")
            .and_then(|b| b.destination(crate::bus::BUS_NAME))
            .and_then(|b| b.build(&()))
            .expect("a method call");
        let reply = err.create_reply(&call.header()).expect("an error reply");
        let name = reply
            .header()
            .error_name()
            .expect("an error name")
            .to_string();
        let message: String = reply.body().deserialize().expect("a message");
        (name, message)
    }

    #[test]
    fn standard_errors_keep_their_names() {
        assert_eq!(
            on_the_wire(BusError::access_denied("uid 7 is not authorized")),
            (
                "org.freedesktop.DBus.Error.AccessDenied".to_owned(),
                "uid 7 is not authorized".to_owned()
            )
        );
        assert_eq!(
            on_the_wire(BusError::interactive_authorization_required("authenticate")).0,
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        );
        // Not a D-Bus error at all: a generic failure with zbus's text.
        let (name, message) = on_the_wire(BusError::ZBus(zbus::Error::InvalidField));
        assert_eq!(name, FAILED);
        assert!(!message.is_empty());
    }

    #[test]
    fn messages_on_the_wire_carry_no_nul_and_are_bounded() {
        // A spec key echoed by serde, a registry's error body.
        let (name, message) = on_the_wire(BusError::InvalidSpec(
            "unknown field `x\0y`, expected `name`".into(),
        ));
        assert_eq!(name, "org.tank.Error.InvalidSpec");
        assert_eq!(message, "unknown field `x\\u0000y`, expected `name`");
        let (_, message) = on_the_wire(BusError::ImagePull(format!(
            "registry says: {}",
            "bad\0news ".repeat(100_000)
        )));
        assert!(!message.contains('\0'));
        assert!(message.starts_with("registry says: bad\\u0000news"));
        assert!(message.len() <= crate::bus::text::MAX_MESSAGE_BYTES);
        // Standard errors too.
        let (_, message) = on_the_wire(BusError::access_denied("a\0b"));
        assert_eq!(message, "a\\u0000b");
    }

    #[test]
    fn tank_errors_are_named_under_org_tank_error() {
        let (name, message) = on_the_wire(BusError::pod_not_found("web"));
        assert_eq!(name, "org.tank.Error.NotFound");
        assert_eq!(message, "pod \"web\" not found");
        assert_eq!(
            BusError::InvalidSpec("x".into()).to_string(),
            "org.tank.Error.InvalidSpec: x"
        );
    }
}
