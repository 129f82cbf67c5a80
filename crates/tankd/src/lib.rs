//! Tank: a declarative, single-node container orchestrator for Linux.
//!
//! Desired state in a durable store is the only input; one reconcile loop is
//! the only thing that touches the machine. The crate map:
//!
//! - [`spec`]: the desired-state model (pods, containers, volumes, network)
//!   and its strict validation.
//! - [`store`]: the RocksDB desired-state store, its change feed and boot
//!   seeding.
//! - [`config`]: tankd's operational configuration (`tankd.toml`);
//!   [`state_dir`]: the privacy of its state on the host (modes, umask).
//! - [`bus`]: the D-Bus API (`org.tank.Manager`, `org.tank.Pod`), named
//!   errors and caller authorization.
//! - [`runtime`]: containers (clone3, init and exec stages, cgroups, logs);
//!   [`pty`]: their terminals (allocation in the container's devpts,
//!   attach leases, draining while detached).
//! - [`daemon`]: tankd's wiring and its life cycle under systemd;
//!   [`daemon_cli`]: its command line.
//! - [`client`]: tankctl, the command-line client.
#![deny(unsafe_code)]

pub mod bus;
pub mod client;
pub mod config;
pub mod daemon;
pub mod daemon_cli;
pub mod image;
pub mod net;
pub mod notify;
pub mod pty;
pub mod reconcile;
pub mod runtime;
pub mod spec;
pub mod state_dir;
pub mod store;
