//! The container runtime: turning a validated container spec and its image
//! into a running process — and tearing it down — with no shim: tankd is
//! the parent of every container's PID 1 and learns of exits through pidfds.
//!
//! Owns namespaces, mounts, cgroups and processes of containers. It never
//! reads or writes desired state, and never decides *whether* a container
//! should run (that is the reconciler's job): it starts, watches and stops
//! what it is told to.

pub mod cgroup;
pub mod channel;
pub mod exec;
pub mod init;
pub mod logs;
pub mod manager;
pub mod plan;
pub mod record;
pub mod seccomp;
pub mod spawn;
pub mod volumes;
