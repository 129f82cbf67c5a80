//! tankd, Tank's daemon: a declarative, single-node container orchestrator
//! for Linux, as a D-Bus system service.
//!
//! Desired state in a durable store is the only input; one reconcile loop is
//! the only thing that touches the machine. What tankd shares with its
//! client — the spec model and its strict parser, observed status types,
//! the D-Bus names and proxies, the exit-status line and log-record format —
//! is the `tank_api` crate; this crate is everything else, and the only one
//! that links RocksDB. The crate map:
//!
//! - [`store`]: the RocksDB desired-state store, its change feed and boot
//!   seeding.
//! - [`config`]: tankd's operational configuration (`tankd.toml`);
//!   [`state_dir`]: the privacy of its state on the host (modes, umask).
//! - [`bus`]: the D-Bus API (`org.tank.Manager`, `org.tank.Pod`), the
//!   mapping of errors to their names, caller authorization.
//! - [`image`]: references, pulls, the content store, layer unpacking.
//! - [`runtime`]: containers (clone3, the child-process channel, init and
//!   exec stages, cgroups, logs); [`pty`]: their terminals (allocation in
//!   the container's devpts, attach leases, draining while detached).
//! - [`net`]: pod network namespaces, macvlan NICs, host facts.
//! - [`reconcile`]: the loop converging the machine to the store.
//! - [`daemon`]: tankd's wiring and its life cycle under systemd
//!   ([`notify`]: sd_notify).
#![deny(unsafe_code)]

pub mod bus;
pub mod config;
pub mod daemon;
pub mod image;
pub mod net;
pub mod notify;
pub mod pty;
pub mod reconcile;
pub mod runtime;
pub mod state_dir;
pub mod store;
