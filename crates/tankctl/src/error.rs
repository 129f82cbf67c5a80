//! tankctl's errors and how a failed call is told: one line, by the D-Bus
//! error name tankd answered with ([`ErrorName`] for tankd's own).
//!
//! Owns the wording of failures; the names are tank-api's, the messages
//! tankd's.

use tank_api::bus::{ErrorName, BUS_NAME};
use tank_api::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading the user's input failed.
    #[error("{0}")]
    Input(String),
    /// The pod document was refused by tank-api's reader, exactly as tankd
    /// refuses it (the same code, the same message).
    #[error("invalid spec: {0}")]
    Spec(#[from] SpecError),
    #[error("cannot connect to the system bus: {0}")]
    Connect(zbus::Error),
    /// A call to tankd failed; the message is already user-facing.
    #[error("{0}")]
    Call(String),
    #[error("unexpected reply from tankd: {0}")]
    Reply(String),
    /// Writing man pages or completions failed.
    #[error(transparent)]
    Docs(#[from] crate::docs::DocsError),
}

impl From<zbus::Error> for ClientError {
    fn from(err: zbus::Error) -> Self {
        ClientError::Call(describe(&err))
    }
}

impl From<zbus::fdo::Error> for ClientError {
    fn from(err: zbus::fdo::Error) -> Self {
        ClientError::Call(describe(&zbus::Error::FDO(Box::new(err))))
    }
}

/// One line for a failed call, by D-Bus error name.
pub fn describe(err: &zbus::Error) -> String {
    let (name, message) = match err {
        zbus::Error::MethodError(name, message, _) => {
            (name.to_string(), message.as_deref().unwrap_or(""))
        }
        zbus::Error::FDO(fdo) => {
            let fdo: &zbus::fdo::Error = fdo;
            (
                zbus::DBusError::name(fdo).to_string(),
                zbus::DBusError::description(fdo).unwrap_or(""),
            )
        }
        other => return other.to_string(),
    };
    if let Some(kind) = ErrorName::from_name(&name) {
        return match kind {
            ErrorName::InvalidSpec => format!("invalid spec: {message}"),
            ErrorName::ImportFailed => format!("import failed: {message}"),
            ErrorName::Failed => format!("{name}: {message}"),
            ErrorName::NotFound
            | ErrorName::NotRunning
            | ErrorName::NotATty
            | ErrorName::Busy
            | ErrorName::ExecFailed
            | ErrorName::InUse
            | ErrorName::ImagePull
            | ErrorName::InvalidArgument => message.to_owned(),
        };
    }
    match name.as_str() {
        "org.freedesktop.DBus.Error.AccessDenied" => format!("access denied: {message}"),
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => format!(
            "interactive authentication required: {message} (run tankctl on a terminal, \
             without --no-ask-password)"
        ),
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            format!("tankd is not running ({BUS_NAME} is not on the system bus)")
        }
        other => format!("{other}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_error(name: &str, message: &str) -> zbus::Error {
        let call = zbus::Message::method_call("/org/tank/Manager", "Apply")
            .and_then(|b| b.destination(BUS_NAME))
            .and_then(|b| b.build(&()))
            .expect("a call");
        let reply = zbus::Message::error(&call.header(), name)
            .and_then(|b| b.build(&(message,)))
            .expect("an error reply");
        zbus::Error::from(reply)
    }

    #[test]
    fn failures_are_told_by_their_names() {
        assert_eq!(
            describe(&method_error(ErrorName::InvalidSpec.as_str(), "name: bad")),
            "invalid spec: name: bad"
        );
        assert_eq!(
            describe(&method_error(
                ErrorName::NotFound.as_str(),
                "pod \"x\" not found"
            )),
            "pod \"x\" not found"
        );
        assert_eq!(
            describe(&method_error(
                "org.freedesktop.DBus.Error.ServiceUnknown",
                ""
            )),
            "tankd is not running (org.tank.Manager is not on the system bus)"
        );
        assert_eq!(
            describe(&method_error("org.example.Odd", "why")),
            "org.example.Odd: why"
        );
    }
}
