//! The host adapters: what the host's network looks like to tank — the
//! uplink interface NICs with `parent: auto` attach to, and the DNS servers
//! pods without their own `dns` get.
//!
//! - [`StaticHost`]: both from tankd.toml.
//! - [`AutoHost`]: the interface of the IPv4 default route (rtnetlink, on a
//!   dedicated thread) and `/etc/resolv.conf` (loopback stubs skipped, then
//!   systemd-resolved's upstream list).
//! - [`NetworkManagerHost`]: NetworkManager's primary connection over the
//!   system bus.
//!
//! [`HostConfig`] (`[host]` in tankd.toml) picks one. Adapters only read:
//! they never change the host's interfaces, routes or files.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::etc::Resolv;
use super::rtnl::{enter_netns, on_dedicated_thread, open_netns, Netlink};
use super::NetError;

/// The host's network as tank needs it. Calls block (briefly): call them
/// from `spawn_blocking` or a plain thread, not from a tokio worker.
pub trait Host: Send + Sync {
    /// The interface NICs with `parent: auto` attach to.
    fn uplink(&self) -> Result<String, NetError>;
    /// IPv4 DNS servers reachable from pods (no loopback stubs).
    fn dns(&self) -> Result<Vec<Ipv4Addr>, NetError>;
}

/// Uplink and DNS from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticHost {
    pub uplink: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

impl Host for StaticHost {
    fn uplink(&self) -> Result<String, NetError> {
        self.uplink
            .clone()
            .ok_or(NetError::NoUplink { key: "host.uplink" })
    }

    fn dns(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        Ok(self.dns.clone())
    }
}

/// Uplink = the interface of the IPv4 default route (lowest metric) of
/// tankd's netns, or of `netns` when set; DNS from resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoHost {
    /// Look in this netns instead of the calling thread's (tests, or a
    /// tankd that manages another netns's uplink).
    pub netns: Option<PathBuf>,
    /// Normally `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Normally `/run/systemd/resolve/resolv.conf`: used when `resolv_conf`
    /// lists only loopback stubs.
    pub upstream_resolv_conf: PathBuf,
}

impl Default for AutoHost {
    fn default() -> AutoHost {
        AutoHost {
            netns: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            upstream_resolv_conf: PathBuf::from("/run/systemd/resolve/resolv.conf"),
        }
    }
}

impl AutoHost {
    /// The default-route interface, read from `netns` (a netns file).
    pub fn in_netns(netns: &Path) -> AutoHost {
        AutoHost {
            netns: Some(netns.to_owned()),
            ..AutoHost::default()
        }
    }
}

impl Host for AutoHost {
    fn uplink(&self) -> Result<String, NetError> {
        let netns = self.netns.as_deref();
        on_dedicated_thread("tank-uplink", || async move {
            if let Some(path) = netns {
                let file = open_netns(path)?;
                enter_netns(&file, path)?;
            }
            let netlink = Netlink::connect()?;
            let mut routes = netlink.default_routes().await?;
            routes.retain(|r| r.oif.is_some());
            routes.sort_by_key(|r| r.priority);
            let where_ = || match netns {
                Some(path) => format!("netns {}", path.display()),
                None => "tankd's netns".to_owned(),
            };
            let oif = routes
                .first()
                .and_then(|r| r.oif)
                .ok_or_else(|| NetError::NoDefaultRoute { netns: where_() })?;
            netlink
                .links()
                .await?
                .into_iter()
                .find(|l| l.index == oif)
                .map(|l| l.name)
                .ok_or_else(|| {
                    NetError::Internal(format!(
                        "the default route's interface (index {oif}) vanished in {}",
                        where_()
                    ))
                })
        })
    }

    fn dns(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        let resolv = Resolv::for_pods_from(&self.resolv_conf, &self.upstream_resolv_conf);
        Ok(ipv4_servers(&resolv.nameservers))
    }
}

/// IPv4, non-loopback servers of a nameserver list (IPv6 and junk skipped).
fn ipv4_servers(servers: &[String]) -> Vec<Ipv4Addr> {
    servers
        .iter()
        .filter_map(|s| s.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

const NM_BUS: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const NM_IFACE: &str = "org.freedesktop.NetworkManager";
const NM_ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const NM_DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const NM_IP4: &str = "org.freedesktop.NetworkManager.IP4Config";

/// Uplink and DNS of NetworkManager's primary connection: its first
/// device's `Interface`, and that device's `Ip4Config` name servers.
///
/// Runs each query on a dedicated thread with a runtime of its own. With a
/// connection given, that connection's own runtime (tankd's multi-thread
/// runtime) must keep running meanwhile, since it reads the socket; without
/// one, the system bus is connected to for each query. Async code holding a
/// connection can use [`NetworkManagerHost::query_uplink`] /
/// [`NetworkManagerHost::query_dns`] directly instead.
#[derive(Debug, Clone)]
pub struct NetworkManagerHost {
    bus: Option<zbus::Connection>,
    /// Per query (all its calls).
    pub timeout: Duration,
}

impl NetworkManagerHost {
    pub fn new(system_bus: Option<zbus::Connection>) -> NetworkManagerHost {
        NetworkManagerHost {
            bus: system_bus,
            timeout: Duration::from_secs(5),
        }
    }

    /// The primary connection's first device's interface name.
    pub async fn query_uplink(bus: &zbus::Connection) -> Result<String, NetError> {
        let device = primary_device(bus).await?;
        let name: String = get(bus, device.as_str(), NM_DEVICE, "Interface").await?;
        if name.is_empty() {
            return Err(NetError::NetworkManager(format!(
                "device {} of the primary connection has no interface name",
                device.as_str()
            )));
        }
        Ok(name)
    }

    /// The IPv4 name servers of the primary connection's first device:
    /// `NameserverData` (NM ≥ 1.14), else the older `Nameservers`.
    pub async fn query_dns(bus: &zbus::Connection) -> Result<Vec<Ipv4Addr>, NetError> {
        let device = primary_device(bus).await?;
        let config: OwnedObjectPath = get(bus, device.as_str(), NM_DEVICE, "Ip4Config").await?;
        if config.as_str() == "/" {
            log::warn!(
                "NetworkManager: device {} has no IPv4 configuration: no DNS servers",
                device.as_str()
            );
            return Ok(Vec::new());
        }
        let data: Result<Vec<HashMap<String, OwnedValue>>, NetError> =
            get(bus, config.as_str(), NM_IP4, "NameserverData").await;
        let mut servers: Vec<String> = Vec::new();
        let data_failed = match data {
            Ok(entries) => {
                for entry in entries {
                    if let Some(address) = entry.get("address") {
                        if let Ok(address) = String::try_from(address.clone()) {
                            servers.push(address);
                        }
                    }
                }
                None
            }
            Err(e) => Some(e),
        };
        if servers.is_empty() {
            match get::<Vec<u32>>(bus, config.as_str(), NM_IP4, "Nameservers").await {
                // In network byte order: the u32's bytes in memory are the address.
                Ok(raw) => servers.extend(
                    raw.into_iter()
                        .map(|v| Ipv4Addr::from(v.to_ne_bytes()).to_string()),
                ),
                Err(e) => return Err(data_failed.unwrap_or(e)),
            }
        }
        Ok(ipv4_servers(&servers))
    }

    fn run<T: Send>(
        &self,
        what: &str,
        query: impl AsyncFnOnce(&zbus::Connection) -> Result<T, NetError> + Send,
    ) -> Result<T, NetError> {
        let timeout = self.timeout;
        let bus = self.bus.clone();
        on_dedicated_thread("tank-nm", || async move {
            let bus = match bus {
                Some(bus) => bus,
                None => zbus::Connection::system()
                    .await
                    .map_err(|source| NetError::dbus("connect to the system bus", source))?,
            };
            tokio::time::timeout(timeout, query(&bus))
                .await
                .unwrap_or_else(|_| {
                    Err(NetError::NetworkManager(format!(
                        "{what}: no answer within {timeout:?}"
                    )))
                })
        })
    }
}

impl Host for NetworkManagerHost {
    fn uplink(&self) -> Result<String, NetError> {
        self.run("uplink", async |bus| Self::query_uplink(bus).await)
    }

    fn dns(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        self.run("dns", async |bus| Self::query_dns(bus).await)
    }
}

/// The first device of NetworkManager's primary connection.
async fn primary_device(bus: &zbus::Connection) -> Result<OwnedObjectPath, NetError> {
    let primary: OwnedObjectPath = get(bus, NM_PATH, NM_IFACE, "PrimaryConnection").await?;
    if primary.as_str() == "/" {
        return Err(NetError::NetworkManager(
            "no primary connection (PrimaryConnection is \"/\"): NetworkManager has no default route; set `host.uplink` in tankd.toml or name the nic's parent".to_owned(),
        ));
    }
    let devices: Vec<OwnedObjectPath> = get(bus, primary.as_str(), NM_ACTIVE, "Devices").await?;
    devices.into_iter().next().ok_or_else(|| {
        NetError::NetworkManager(format!(
            "primary connection {} has no devices",
            primary.as_str()
        ))
    })
}

/// `org.freedesktop.DBus.Properties.Get` on NetworkManager.
async fn get<T>(
    bus: &zbus::Connection,
    path: &str,
    interface: &str,
    property: &str,
) -> Result<T, NetError>
where
    T: TryFrom<OwnedValue>,
    T::Error: std::fmt::Display,
{
    let what = || format!("read {interface}.{property} of {path}");
    let reply = bus
        .call_method(
            Some(NM_BUS),
            path,
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(interface, property),
        )
        .await
        .map_err(|source| NetError::dbus(what(), source))?;
    let value: OwnedValue = reply
        .body()
        .deserialize()
        .map_err(|source| NetError::dbus(what(), source))?;
    T::try_from(value)
        .map_err(|e| NetError::NetworkManager(format!("{}: unexpected type: {e}", what())))
}

/// `[host]` of tankd.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub adapter: HostAdapter,
    /// The uplink; required by `static`, overrides the other adapters'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// DNS servers; used by `static`, override the other adapters' when
    /// not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostAdapter {
    Static,
    #[default]
    Auto,
    NetworkManager,
}

impl HostConfig {
    /// The configured adapter. `system_bus` is used by `networkmanager`
    /// (`None`: it connects to the system bus per query).
    pub fn build(&self, system_bus: Option<zbus::Connection>) -> Box<dyn Host> {
        let adapter: Box<dyn Host> = match self.adapter {
            HostAdapter::Static => {
                return Box::new(StaticHost {
                    uplink: self.uplink.clone(),
                    dns: self.dns.clone(),
                })
            }
            HostAdapter::Auto => Box::new(AutoHost::default()),
            HostAdapter::NetworkManager => Box::new(NetworkManagerHost::new(system_bus)),
        };
        if self.uplink.is_none() && self.dns.is_empty() {
            return adapter;
        }
        Box::new(Overridden {
            adapter,
            uplink: self.uplink.clone(),
            dns: self.dns.clone(),
        })
    }
}

/// An adapter with the configured uplink and/or DNS taking precedence.
struct Overridden {
    adapter: Box<dyn Host>,
    uplink: Option<String>,
    dns: Vec<Ipv4Addr>,
}

impl Host for Overridden {
    fn uplink(&self) -> Result<String, NetError> {
        match &self.uplink {
            Some(uplink) => Ok(uplink.clone()),
            None => self.adapter.uplink(),
        }
    }

    fn dns(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        if self.dns.is_empty() {
            self.adapter.dns()
        } else {
            Ok(self.dns.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config() {
        let c: HostConfig = toml::from_str("").unwrap();
        assert_eq!(c.adapter, HostAdapter::Auto);
        let c: HostConfig =
            toml::from_str("adapter = \"networkmanager\"\ndns = [\"10.0.0.1\"]\n").unwrap();
        assert_eq!(c.adapter, HostAdapter::NetworkManager);
        assert_eq!(c.dns, [Ipv4Addr::new(10, 0, 0, 1)]);
        assert!(toml::from_str::<HostConfig>("adapter = \"nm\"").is_err());
        assert!(toml::from_str::<HostConfig>("uplinks = \"eth0\"").is_err());

        let c: HostConfig = toml::from_str("adapter = \"static\"").unwrap();
        let err = c.build(None).uplink().unwrap_err().to_string();
        assert!(err.contains("`host.uplink`"), "{err}");
        let c: HostConfig =
            toml::from_str("adapter = \"auto\"\nuplink = \"br0\"\ndns = [\"10.0.0.1\"]").unwrap();
        let host = c.build(None);
        assert_eq!(host.uplink().unwrap(), "br0");
        assert_eq!(host.dns().unwrap(), [Ipv4Addr::new(10, 0, 0, 1)]);
    }

    #[test]
    fn auto_dns_skips_stubs() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("resolv.conf");
        let upstream = dir.path().join("upstream.conf");
        let host = AutoHost {
            netns: None,
            resolv_conf: etc.clone(),
            upstream_resolv_conf: upstream.clone(),
        };
        std::fs::write(
            &etc,
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
        )
        .unwrap();
        std::fs::write(
            &upstream,
            "nameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.2\n",
        )
        .unwrap();
        assert_eq!(
            host.dns().unwrap(),
            [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        std::fs::write(&etc, "nameserver 127.0.0.1\nnameserver 198.51.100.7\n").unwrap();
        assert_eq!(host.dns().unwrap(), [Ipv4Addr::new(198, 51, 100, 7)]);
        std::fs::remove_file(&upstream).unwrap();
        std::fs::write(&etc, "nameserver 127.0.0.53\n").unwrap();
        assert!(host.dns().unwrap().is_empty());
    }
}
