//! The D-Bus surface of tankd (zbus): `org.tank.Manager`, the per-pod
//! `org.tank.Pod` objects, the ObjectManager, named errors and caller
//! authorization.
//!
//! Owns everything that crosses the bus boundary and nothing behind it:
//! methods translate into store writes and reads; errors of the library are
//! mapped to named D-Bus errors here. The introspection XML in `dbus/` is
//! the contract these interfaces must match.

pub mod auth;
pub mod error;
pub mod exec;
pub mod images;
pub mod logs;
pub mod manager;
pub mod path;
pub mod pod;

pub use error::BusError;

/// The well-known name tankd owns on the system bus.
pub const BUS_NAME: &str = "org.tank.Manager";
/// Object path of the Manager interface.
pub const MANAGER_PATH: &str = "/org/tank/Manager";
/// Object path of the ObjectManager (parent of every tank object).
pub const ROOT_PATH: &str = "/org/tank";
