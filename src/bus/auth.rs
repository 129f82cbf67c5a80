//! Authorization of bus callers.
//!
//! Owns the decision "may the sender of this message do that?". Root
//! (uid 0, asked of the bus daemon, never of the message) always may.
//! Everyone else is denied until polkit is wired in: the policy fails
//! closed. Methods call [`Authorizer::check`] before doing anything else;
//! this module never touches the store or the machine.

use std::fmt;

use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::Connection;

use super::error::BusError;

/// The polkit actions of `polkit/org.tank.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply and Delete pods; read their full specs (env values).
    ManagePods,
    /// Pull, import, remove and prune images.
    ManageImages,
    /// Exec into, attach to and read the logs of containers.
    ExecPods,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::ManagePods => "org.tank.pods.manage",
            Action::ManageImages => "org.tank.images.manage",
            Action::ExecPods => "org.tank.pods.exec",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Answers authorization questions about the senders of messages.
#[derive(Clone)]
pub struct Authorizer {
    dbus: DBusProxy<'static>,
}

impl Authorizer {
    pub async fn new(conn: &Connection) -> zbus::Result<Authorizer> {
        Ok(Authorizer {
            dbus: DBusProxy::new(conn).await?,
        })
    }

    /// Ok when the sender of `header` may perform `action`; otherwise
    /// `org.freedesktop.DBus.Error.AccessDenied`.
    pub async fn check(&self, header: &Header<'_>, action: Action) -> Result<(), BusError> {
        let uid = self.sender_uid(header).await?;
        if uid == 0 {
            return Ok(());
        }
        Err(BusError::access_denied(format!(
            "uid {uid} is not authorized for {action}"
        )))
    }

    /// Like [`Authorizer::check`], as a yes/no for reads that only redact.
    pub async fn allows(&self, header: &Header<'_>, action: Action) -> bool {
        self.check(header, action).await.is_ok()
    }

    async fn sender_uid(&self, header: &Header<'_>) -> Result<u32, BusError> {
        let sender = header
            .sender()
            .ok_or_else(|| BusError::access_denied("message has no sender"))?;
        self.dbus
            .get_connection_unix_user(BusName::Unique(sender.to_owned()))
            .await
            .map_err(|e| BusError::access_denied(format!("cannot identify caller: {e}")))
    }
}
