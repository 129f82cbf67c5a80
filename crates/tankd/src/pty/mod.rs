//! Terminals of containers: PTY allocation inside a container's own devpts,
//! and the sessions tankd keeps for every PTY it holds the master of.
//!
//! Owns the PTY masters tankd holds (a `tty: true` container's main
//! process, every tty `Exec`), who may use them (one attached client at a
//! time: a *lease* made of the master fd handed out plus a status socket),
//! and draining them whenever nobody is attached, so that a process never
//! blocks on a full terminal. It never starts or stops processes and never
//! decides what runs on a terminal: [`crate::runtime`] does, and tells a
//! session when its process ended.
//!
//! - [`alloc`]: `open("/dev/pts/ptmx")` + `TIOCGPTPEER`, run by the init
//!   and exec stages *inside* the container, so the PTY belongs to the
//!   container's devpts instance (`/dev/pts/N` there) and its master can be
//!   passed to tankd and on to clients.
//! - [`session`]: the lease, the drain thread (into a bounded [`ring`] and,
//!   for a container's main process, the container log), the status line.

pub mod alloc;
pub mod ring;
pub mod session;

pub use alloc::check_master;
pub use session::{Session, SessionError};
