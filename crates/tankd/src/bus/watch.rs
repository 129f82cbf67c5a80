//! Whether tankd is still reachable on the bus.
//!
//! tankd is useless without its name on the bus, yet nothing else in it
//! would notice losing it: when dbus-daemon restarts, or drops tankd for a
//! message it finds invalid, the store and the reconcile loop go on,
//! systemd sees a running service whose watchdog is fed, and the API is
//! gone until someone restarts tankd by hand. [`BusWatch`] notices the
//! connection closing, `NameLost`, and the name passing to another owner,
//! and says why; the daemon then exits non-zero, so that systemd
//! (`Restart=on-failure`) starts a new tankd, which adopts the running
//! containers.
//!
//! Owns only the noticing; what to do about it is the daemon's.

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

use super::BUS_NAME;

/// Why tankd is no longer reachable as [`BUS_NAME`].
#[derive(Debug, thiserror::Error)]
pub enum BusLost {
    #[error("the connection to the bus failed: {0}")]
    Failed(#[source] zbus::Error),
    #[error("the connection to the bus closed")]
    Closed,
    #[error("the bus took {BUS_NAME} away (NameLost)")]
    NameLost,
    #[error("{BUS_NAME} passed from tankd ({ours}) to {new}")]
    OwnerChanged { ours: String, new: String },
}

/// Watches tankd's connection and name; [`BusWatch::lost`] completes when
/// either is gone.
pub struct BusWatch {
    name_lost: MessageStream,
    owner_changed: MessageStream,
    ours: String,
}

impl BusWatch {
    /// Subscribes to the bus's signals about [`BUS_NAME`]; call it before
    /// requesting the name, so that nothing can slip by.
    pub async fn start(conn: &Connection) -> zbus::Result<BusWatch> {
        let rule = |member: &'static str| {
            MatchRule::builder()
                .msg_type(Type::Signal)
                .sender("org.freedesktop.DBus")?
                .interface("org.freedesktop.DBus")?
                .member(member)?
                .arg(0, BUS_NAME)
                .map(|b| b.build())
        };
        let name_lost = MessageStream::for_match_rule(rule("NameLost")?, conn, None).await?;
        let owner_changed =
            MessageStream::for_match_rule(rule("NameOwnerChanged")?, conn, None).await?;
        let ours = conn
            .unique_name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        Ok(BusWatch {
            name_lost,
            owner_changed,
            ours,
        })
    }

    /// Completes when tankd is no longer reachable as [`BUS_NAME`].
    pub async fn lost(mut self) -> BusLost {
        loop {
            // A failed connection ends every stream, after an error.
            let event = tokio::select! {
                m = self.name_lost.next() => m.map(|m| m.map(|_| Some(BusLost::NameLost))),
                m = self.owner_changed.next() => m.map(|m| {
                    m.map(|msg| {
                        let (_, _, new): (String, String, String) =
                            msg.body().deserialize().ok()?;
                        owner_changed(&self.ours, &new)
                    })
                }),
            };
            match event {
                None => return BusLost::Closed,
                Some(Err(e)) => return BusLost::Failed(e),
                Some(Ok(Some(lost))) => return lost,
                Some(Ok(None)) => {}
            }
        }
    }
}

/// What a `NameOwnerChanged` of [`BUS_NAME`] to `new` means for the
/// connection `ours`: nothing if the name is (still) ours, else that it is
/// gone.
fn owner_changed(ours: &str, new: &str) -> Option<BusLost> {
    (new != ours).then(|| BusLost::OwnerChanged {
        ours: ours.to_owned(),
        new: if new.is_empty() {
            "no one".to_owned()
        } else {
            new.to_owned()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_coming_to_us_is_no_loss() {
        assert!(owner_changed(":1.4", ":1.4").is_none());
        assert_eq!(
            owner_changed(":1.4", ":1.9").unwrap().to_string(),
            "org.tank.Manager passed from tankd (:1.4) to :1.9"
        );
        assert_eq!(
            owner_changed(":1.4", "").unwrap().to_string(),
            "org.tank.Manager passed from tankd (:1.4) to no one"
        );
    }
}
