//! The D-Bus surface of tankd (zbus): `org.tank.Manager`, the per-pod
//! `org.tank.Pod` objects, the ObjectManager, named errors and caller
//! authorization.
//!
//! Owns everything that crosses the bus boundary and nothing behind it:
//! methods translate into store writes and reads; errors of the library are
//! mapped to named D-Bus errors here. The introspection XML in `dbus/` is
//! the contract these interfaces must match.
//!
//! Nothing tankd sends may break its connection, nothing it receives goes
//! unchecked: every string in a reply, property or signal is a
//! [`text::BusText`] and every error message passes [`text::bus_message`]
//! (no NUL, which would get tankd disconnected); every method call is
//! checked against the method's signature by [`strict::Strict`] (a wrong
//! type or an extra argument is `org.freedesktop.DBus.Error.InvalidArgs`);
//! [`watch`] notices when tankd is no longer on the bus.

pub mod auth;
pub mod error;
pub mod exec;
pub mod images;
pub mod logs;
pub mod manager;
pub mod pod;
pub mod strict;
pub mod text;
pub mod watch;

pub use error::BusError;
pub use text::BusText;

pub use tank_api::bus::{BUS_NAME, MANAGER_PATH, ROOT_PATH};
