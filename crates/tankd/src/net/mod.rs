//! Pod networking: the pod's network namespace and the files that describe
//! its network to containers (resolv.conf, hosts, hostname).
//!
//! Owns `<run_dir>/netns/<pod>` (a netns kept alive by a bind mount, like
//! `ip netns add`) and what is configured inside it. Netlink work inside a
//! netns runs on a dedicated thread that entered it, never on a tokio
//! worker. It never starts processes or touches mounts of containers.
//!
//! - [`netns`]: the pinned namespaces.
//! - [`macvlan`]: the NICs inside them ([`macvlan::configure_nics`]).
//! - [`host`]: the host adapters (uplink, DNS) and `[host]` of tankd.toml.
//! - [`etc`]: resolv.conf, hosts, hostname.

mod error;
pub mod etc;
pub mod host;
pub mod macvlan;
pub mod netns;
mod rtnl;

pub use error::NetError;
