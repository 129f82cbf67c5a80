//! The errors tankd answers on the bus.
//!
//! Owns the mapping from library errors to named D-Bus errors
//! (`org.tank.Error.*`, and the standard `org.freedesktop.DBus.Error.*` for
//! authorization). Every error a method returns goes through here, so a
//! client always sees a precise name and a one-line message.

use zbus::fdo;

use crate::spec::SpecError;
use crate::store::StoreError;

/// A D-Bus error returned by tankd's methods.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.tank.Error")]
pub enum BusError {
    /// Standard errors (`org.freedesktop.DBus.Error.*`) pass through as is.
    #[zbus(error)]
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
