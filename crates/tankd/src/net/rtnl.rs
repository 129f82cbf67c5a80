//! Plumbing shared by the NIC and host-adapter code: a dedicated OS thread
//! with its own current-thread tokio runtime (so netlink work, and `setns`,
//! never happen on a tokio worker), entering a netns from that thread, an
//! rtnetlink connection bound to the thread's netns, and small dump helpers.
//!
//! Owns no state: every connection lives as long as the call that made it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use super::NetError;
use tank_api::spec::Ipv4Cidr;

/// Runs `f` to completion on a new OS thread with a current-thread tokio
/// runtime of its own, and waits for it. Whatever the thread does to its
/// own namespaces (`setns`) dies with it.
pub(crate) fn on_dedicated_thread<T, F, Fut>(name: &str, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T, NetError>>,
{
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| NetError::Internal(format!("{name}: tokio runtime: {e}")))?;
                runtime.block_on(f())
            })
            .map_err(|e| NetError::Internal(format!("{name}: spawn thread: {e}")))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(NetError::Internal(format!("{name}: thread panicked"))))
    })
}

/// Opens a netns file (a pinned `<run_dir>/netns/<pod>` or `/proc/PID/ns/net`).
pub(crate) fn open_netns(path: &Path) -> Result<std::fs::File, NetError> {
    std::fs::File::open(path).map_err(|source| NetError::Netns {
        path: path.to_owned(),
        op: "open",
        source,
    })
}

/// Moves the calling thread into the netns `file` (opened from `path`).
pub(crate) fn enter_netns(file: &std::fs::File, path: &Path) -> Result<(), NetError> {
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        NetError::Netns {
            path: path.to_owned(),
            op: "setns",
            source: std::io::Error::from(e),
        }
    })
}

/// An rtnetlink connection in the calling thread's netns (at creation
/// time: a netlink socket keeps the netns it was opened in). Must be made
/// inside the thread's runtime.
pub(crate) struct Netlink {
    pub handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Netlink {
    pub fn connect() -> Result<Netlink, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::Internal(format!("netlink socket: {e}")))?;
        let task = tokio::spawn(connection);
        Ok(Netlink { handle, task })
    }

    /// All links of the netns.
    pub async fn links(&self) -> Result<Vec<Link>, NetError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list links", e))?;
        Ok(messages.iter().map(Link::from_message).collect())
    }

    /// The index of the link named `name`, `None` when there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetError> {
        let result: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_collect()
            .await;
        match result {
            Ok(messages) => Ok(messages.first().map(|m| m.header.index)),
            Err(e) if super::error::errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetError::netlink(format!("look up link {name}"), e)),
        }
    }

    /// The IPv4 addresses on link `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Cidr>, NetError> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list addresses", e))?;
        Ok(messages
            .iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let address = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                local.or(address).map(|addr| Ipv4Cidr {
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    /// The IPv4 default routes of the main table.
    pub async fn default_routes(&self) -> Result<Vec<DefaultRoute>, NetError> {
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("list routes", e))?;
        Ok(messages
            .into_iter()
            .filter(|m| {
                m.header.address_family == AddressFamily::Inet
                    && m.header.destination_prefix_length == 0
                    && table(m) == u32::from(RouteHeader::RT_TABLE_MAIN)
            })
            .map(DefaultRoute::from_message)
            .collect())
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What tank looks at in a link.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    pub up: bool,
    /// IFLA_LINK: the parent's index (in the parent's netns).
    pub parent: Option<u32>,
    pub macvlan_mode: Option<MacVlanMode>,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            up: m.header.flags.contains(LinkFlags::Up),
            parent: None,
            macvlan_mode: None,
        };
        for attribute in &m.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Link(index) => link.parent = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.clone()),
                            LinkInfo::Data(InfoData::MacVlan(data)) => {
                                for d in data {
                                    if let InfoMacVlan::Mode(mode) = d {
                                        link.macvlan_mode = Some(*mode);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    pub fn is_macvlan(&self) -> bool {
        self.kind == Some(InfoKind::MacVlan)
    }

    pub fn kind_name(&self) -> String {
        self.kind
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// An IPv4 default route of the main table.
#[derive(Debug, Clone)]
pub(crate) struct DefaultRoute {
    pub gateway: Option<Ipv4Addr>,
    /// The output interface (the first next hop's for multipath routes).
    pub oif: Option<u32>,
    pub priority: u32,
    pub message: RouteMessage,
}

impl DefaultRoute {
    fn from_message(message: RouteMessage) -> DefaultRoute {
        let mut route = DefaultRoute {
            gateway: None,
            oif: None,
            priority: 0,
            message,
        };
        for attribute in &route.message.attributes {
            match attribute {
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => route.gateway = Some(*gw),
                RouteAttribute::Oif(index) => route.oif = Some(*index),
                RouteAttribute::Priority(p) => route.priority = *p,
                RouteAttribute::MultiPath(hops) => {
                    if let Some(hop) = hops.first() {
                        route.oif = route.oif.or(Some(hop.interface_index));
                        route.gateway = route.gateway.or_else(|| {
                            hop.attributes.iter().find_map(|a| match a {
                                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                                _ => None,
                            })
                        });
                    }
                }
                _ => {}
            }
        }
        route
    }
}

fn table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}
