//! A pod's macvlan NICs: created on their parent interface (in tankd's
//! netns) directly inside the pod's netns, renamed, addressed, raised, and
//! the pod's IPv4 default route.
//!
//! Owns, inside a pod's netns: the links named like the declared NICs,
//! their IPv4 addresses, the main table's IPv4 default route, `lo` being up,
//! and leftover temporary links (`tk` + 12 hex digits) of interrupted calls.
//! It never changes anything in tankd's netns (the parent is only looked up
//! and given a child) and never creates or removes the netns itself
//! (`netns::NetnsDir` does; the NICs die with the netns).
//!
//! Every netlink request runs on a dedicated OS thread with its own
//! current-thread runtime: the thread opens a netlink socket in tankd's
//! netns (to create the macvlan, with `IFLA_NET_NS_FD` = the pod's netns,
//! under a temporary unique name so it cannot clash with an interface of
//! the host named like the NIC, as netavark does), then `setns`es into the
//! pod's netns and opens a second socket there for everything else. The
//! functions block: call them from `spawn_blocking` or a plain thread.
//!
//! A NIC's MAC address is derived from its IPv4 address ([`mac_for`]), so
//! it survives recreation. Only one default route: the one of the first
//! NIC (in declaration order) with a `gateway`; the other NICs' gateways
//! are ignored (logged).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{AddressMessageBuilder, LinkMacVlan, LinkUnspec, RouteMessageBuilder};

use super::error::errno;
use super::host::Host;
use super::rtnl::{enter_netns, on_dedicated_thread, open_netns, Link, Netlink};
use super::NetError;
use tank_api::spec::{Ipv4Cidr, Nic};

/// What a NIC looks like inside a pod's netns (drift detection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicState {
    pub name: String,
    /// A link with the NIC's name exists.
    pub present: bool,
    /// …and it is a macvlan.
    pub macvlan: bool,
    /// …and it is administratively up.
    pub up: bool,
    /// …and it carries the declared address (with its prefix length).
    pub address: bool,
    /// Every IPv4 address on the link.
    pub addresses: Vec<Ipv4Cidr>,
    /// For the NIC that carries the pod's default route (the first with a
    /// gateway): whether the route via its gateway is there. `None` for the
    /// others.
    pub default_route: Option<bool>,
}

impl NicState {
    /// Whether the NIC is exactly as declared (nothing for configure to do;
    /// a different parent is not observed).
    pub fn is_configured(&self) -> bool {
        self.present
            && self.macvlan
            && self.up
            && self.address
            && self.addresses.len() == 1
            && self.default_route != Some(false)
    }
}

/// Creates and configures the NICs of a pod inside its netns and returns
/// the pod's addresses (in NIC order).
///
/// Idempotent and repairing: a NIC that is already as declared is left
/// alone; a missing NIC is (re)created, a missing address re-added, other
/// IPv4 addresses on it removed, a down NIC raised, a wrong or missing
/// default route replaced; a macvlan NIC on another parent (or not in
/// bridge mode) is recreated. A non-macvlan interface with a NIC's name is
/// an error ([`NetError::Conflict`]).
///
/// Parents are resolved first (`"auto"` → `host.uplink()`, asked once), so
/// an absent parent ([`NetError::NoParent`]) changes nothing. When a later
/// step fails, what this call created (links, addresses it added to
/// existing NICs, a default route where there was none) is removed again.
pub fn configure_nics(
    netns: &Path,
    nics: &[Nic],
    host: &dyn Host,
) -> Result<Vec<Ipv4Addr>, NetError> {
    validate(nics)?;
    let mut uplink: Option<String> = None;
    let mut parents = Vec::with_capacity(nics.len());
    for nic in nics {
        let parent = match (nic.parent.as_str(), &uplink) {
            ("auto", Some(uplink)) => uplink.clone(),
            ("auto", None) => {
                let name = host.uplink()?;
                uplink = Some(name.clone());
                name
            }
            (parent, _) => parent.to_owned(),
        };
        parents.push(parent);
    }
    on_dedicated_thread("tank-nics", || async {
        let ns = open_netns(netns)?;
        // In tankd's netns: the parents.
        let outside = Netlink::connect()?;
        let host_links = outside.links().await?;
        let mut parent_indexes = Vec::with_capacity(nics.len());
        for (nic, parent) in nics.iter().zip(&parents) {
            let link = host_links
                .iter()
                .find(|l| &l.name == parent)
                .ok_or_else(|| NetError::NoParent {
                    nic: nic.name.clone(),
                    parent: parent.clone(),
                })?;
            if !link.up {
                log::warn!(
                    "parent interface {parent} of nic {} is down: the nic will carry no traffic until it is up",
                    nic.name
                );
            }
            parent_indexes.push(link.index);
        }
        // From here on, in the pod's netns.
        enter_netns(&ns, netns)?;
        let inside = Netlink::connect()?;
        let mut undo = Undo::default();
        let apply = Apply {
            outside: &outside,
            inside: &inside,
            ns: &ns,
            nics,
            parents: &parents,
            parent_indexes: &parent_indexes,
        };
        match apply.run(&mut undo).await {
            Ok(()) => Ok(nics.iter().map(|n| n.ip.addr).collect()),
            Err(e) => {
                undo.rollback(&inside).await;
                Err(e)
            }
        }
    })
}

/// Same as [`configure_nics`] (which repairs drift); named for the caller
/// that acts on [`observe_nics`].
pub fn repair_nics(netns: &Path, nics: &[Nic], host: &dyn Host) -> Result<Vec<Ipv4Addr>, NetError> {
    configure_nics(netns, nics, host)
}

/// The state of each declared NIC inside the pod's netns (changes nothing).
pub fn observe_nics(netns: &Path, nics: &[Nic]) -> Result<Vec<NicState>, NetError> {
    on_dedicated_thread("tank-nics-obs", || async {
        let ns = open_netns(netns)?;
        enter_netns(&ns, netns)?;
        let inside = Netlink::connect()?;
        let links = inside.links().await?;
        let routes = inside.default_routes().await?;
        let route_nic = nics.iter().position(|n| n.gateway.is_some());
        let mut states = Vec::with_capacity(nics.len());
        for (i, nic) in nics.iter().enumerate() {
            let link = links.iter().find(|l| l.name == nic.name);
            let addresses = match link {
                Some(l) => inside.addresses(l.index).await?,
                None => Vec::new(),
            };
            let default_route = (route_nic == Some(i)).then(|| {
                link.is_some_and(|l| {
                    routes
                        .iter()
                        .any(|r| r.oif == Some(l.index) && r.gateway == nic.gateway)
                })
            });
            states.push(NicState {
                name: nic.name.clone(),
                present: link.is_some(),
                macvlan: link.is_some_and(Link::is_macvlan),
                up: link.is_some_and(|l| l.up),
                address: addresses.contains(&nic.ip),
                addresses,
                default_route,
            });
        }
        Ok(states)
    })
}

/// Checks what the kernel would reject late (names) or what would make the
/// declaration ambiguous (duplicates).
fn validate(nics: &[Nic]) -> Result<(), NetError> {
    let invalid = |nic: &Nic, reason: &str| NetError::InvalidNic {
        nic: nic.name.clone(),
        reason: reason.to_owned(),
    };
    for (i, nic) in nics.iter().enumerate() {
        let name = nic.name.as_str();
        if name.is_empty() || name.len() > 15 {
            return Err(invalid(nic, "interface names have 1 to 15 bytes"));
        }
        if name == "."
            || name == ".."
            || name.contains(['/', ':'])
            || name.contains(char::is_whitespace)
        {
            return Err(invalid(nic, "not a valid interface name"));
        }
        if name == "lo" {
            return Err(invalid(nic, "\"lo\" is the pod's loopback"));
        }
        if nics[..i].iter().any(|other| other.name == nic.name) {
            return Err(invalid(nic, "declared twice"));
        }
        if nic.parent.is_empty() {
            return Err(invalid(nic, "empty parent"));
        }
    }
    for nic in nics.iter().filter(|n| n.gateway.is_some()).skip(1) {
        log::info!(
            "nic {}: gateway ignored, the pod's default route is via the first nic with a gateway",
            nic.name
        );
    }
    Ok(())
}

/// What a configure call created, removed again when it fails.
#[derive(Default)]
struct Undo {
    links: Vec<u32>,
    addresses: Vec<(u32, Ipv4Cidr)>,
    route: Option<RouteMessage>,
}

impl Undo {
    async fn rollback(self, inside: &Netlink) {
        if let Some(route) = self.route {
            if let Err(e) = inside.handle.route().del(route).execute().await {
                log::warn!("rollback: delete default route: {e}");
            }
        }
        for (index, cidr) in self.addresses {
            if let Err(e) = inside
                .handle
                .address()
                .del(address_message(index, cidr))
                .execute()
                .await
            {
                log::warn!("rollback: delete address {cidr}: {e}");
            }
        }
        for index in self.links.into_iter().rev() {
            if let Err(e) = inside.handle.link().del(index).execute().await {
                log::warn!("rollback: delete link {index}: {e}");
            }
        }
    }
}

struct Apply<'a> {
    outside: &'a Netlink,
    inside: &'a Netlink,
    ns: &'a std::fs::File,
    nics: &'a [Nic],
    parents: &'a [String],
    parent_indexes: &'a [u32],
}

impl Apply<'_> {
    async fn run(&self, undo: &mut Undo) -> Result<(), NetError> {
        let links = self.inside.links().await?;
        for link in &links {
            if link.name == "lo" && !link.up {
                self.set_up(link.index, "lo").await?;
            }
            if is_temp_name(&link.name)
                && link.is_macvlan()
                && !self.nics.iter().any(|n| n.name == link.name)
            {
                log::info!("removing leftover temporary link {}", link.name);
                self.delete_link(link.index, &link.name).await?;
            }
        }
        let mut indexes = Vec::with_capacity(self.nics.len());
        for (i, nic) in self.nics.iter().enumerate() {
            indexes.push(self.nic(i, nic, &links, undo).await?);
        }
        let route = self
            .nics
            .iter()
            .zip(&indexes)
            .find_map(|(nic, &index)| nic.gateway.map(|gw| (nic, gw, index)));
        self.default_route(route, undo).await
    }

    /// Makes NIC `i` as declared; returns its index.
    async fn nic(
        &self,
        i: usize,
        nic: &Nic,
        links: &[Link],
        undo: &mut Undo,
    ) -> Result<u32, NetError> {
        let parent = self.parent_indexes[i];
        let existing = links.iter().find(|l| l.name == nic.name);
        let (index, created, up) = match existing {
            Some(l)
                if l.is_macvlan()
                    && l.parent.is_none_or(|p| p == parent)
                    && l.macvlan_mode.is_none_or(|m| m == MacVlanMode::Bridge) =>
            {
                (l.index, false, l.up)
            }
            Some(l) if l.is_macvlan() => {
                log::info!(
                    "nic {}: not a bridge-mode macvlan on {}: recreating it",
                    nic.name,
                    self.parents[i]
                );
                self.delete_link(l.index, &l.name).await?;
                (self.create(i, nic, undo).await?, true, false)
            }
            Some(l) => {
                return Err(NetError::Conflict {
                    nic: nic.name.clone(),
                    kind: l.kind_name(),
                })
            }
            None => (self.create(i, nic, undo).await?, true, false),
        };

        let mut have = self.inside.addresses(index).await?;
        let extra: Vec<Ipv4Cidr> = have.iter().copied().filter(|a| *a != nic.ip).collect();
        if !extra.is_empty() {
            // Before adding: deleting a primary address also deletes the
            // secondaries of its subnet.
            for cidr in extra {
                log::info!("nic {}: removing undeclared address {cidr}", nic.name);
                match self
                    .inside
                    .handle
                    .address()
                    .del(address_message(index, cidr))
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    Err(e) => {
                        return Err(NetError::netlink(
                            format!("nic {}: delete address {cidr}", nic.name),
                            e,
                        ))
                    }
                }
            }
            have = self.inside.addresses(index).await?;
        }
        if !have.contains(&nic.ip) {
            self.inside
                .handle
                .address()
                .add(index, IpAddr::V4(nic.ip.addr), nic.ip.prefix_len)
                .execute()
                .await
                .map_err(|e| {
                    NetError::netlink(format!("nic {}: add address {}", nic.name, nic.ip), e)
                })?;
            if !created {
                undo.addresses.push((index, nic.ip));
            }
        }
        if !up {
            self.set_up(index, &nic.name).await?;
        }
        Ok(index)
    }

    /// Creates the macvlan of NIC `i` inside the pod's netns under a
    /// temporary name, then renames it; returns its index.
    async fn create(&self, i: usize, nic: &Nic, undo: &mut Undo) -> Result<u32, NetError> {
        let parent = &self.parents[i];
        let mut attempts = 0;
        let temp = loop {
            let temp = temp_name();
            let message = LinkMacVlan::new(&temp, self.parent_indexes[i], MacVlanMode::Bridge)
                .address(mac_for(nic.ip.addr).to_vec())
                .setns_by_fd(self.ns.as_raw_fd())
                .build();
            match self.outside.handle.link().add(message).execute().await {
                Ok(()) => break temp,
                Err(e) if errno(&e) == Some(libc::EEXIST) && attempts < 3 => attempts += 1,
                Err(e) if errno(&e) == Some(libc::ENODEV) => {
                    return Err(NetError::NoParent {
                        nic: nic.name.clone(),
                        parent: parent.clone(),
                    })
                }
                Err(e) => {
                    return Err(NetError::netlink(
                        format!("nic {}: create macvlan on {parent}", nic.name),
                        e,
                    ))
                }
            }
        };
        let index = self.inside.link_index(&temp).await?.ok_or_else(|| {
            NetError::Internal(format!(
                "nic {}: macvlan {temp} created on {parent} is not in the pod's netns",
                nic.name
            ))
        })?;
        undo.links.push(index);
        self.inside
            .handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .name(nic.name.clone())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| NetError::netlink(format!("nic {}: rename {temp}", nic.name), e))?;
        Ok(index)
    }

    async fn default_route(
        &self,
        want: Option<(&Nic, Ipv4Addr, u32)>,
        undo: &mut Undo,
    ) -> Result<(), NetError> {
        let routes = self.inside.default_routes().await?;
        let wanted = |oif: Option<u32>, gw: Option<Ipv4Addr>| {
            want.is_some_and(|(_, g, i)| oif == Some(i) && gw == Some(g))
        };
        if let Some((nic, gateway, index)) = want {
            if !routes.iter().any(|r| wanted(r.oif, r.gateway)) {
                let message = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build();
                self.inside
                    .handle
                    .route()
                    .add(message.clone())
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| {
                        NetError::netlink(
                            format!("nic {}: add default route via {gateway}", nic.name),
                            e,
                        )
                    })?;
                if routes.is_empty() {
                    undo.route = Some(message);
                }
            }
        }
        for route in routes.iter().filter(|r| !wanted(r.oif, r.gateway)) {
            // Gone already when the replace above took its place.
            match self
                .inside
                .handle
                .route()
                .del(route.message.clone())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::ESRCH) => {}
                Err(e) => return Err(NetError::netlink("delete undeclared default route", e)),
            }
        }
        Ok(())
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetError> {
        self.inside
            .handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::netlink(format!("set {name} up"), e))
    }

    async fn delete_link(&self, index: u32, name: &str) -> Result<(), NetError> {
        self.inside
            .handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| NetError::netlink(format!("delete link {name}"), e))
    }
}

fn address_message(index: u32, cidr: Ipv4Cidr) -> AddressMessage {
    AddressMessageBuilder::<Ipv4Addr>::new()
        .index(index)
        .address(cidr.addr, cidr.prefix_len)
        .build()
}

/// The MAC address of the NIC with address `ip`: locally administered,
/// unicast, `02:6b:` + the address (as Docker does), so that a NIC that is
/// recreated (repair, pod restart) keeps its MAC and the LAN's ARP caches
/// stay right.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x6b, a, b, c, d]
}

/// `tk` + 12 random hex digits (14 bytes, under IFNAMSIZ).
fn temp_name() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        bytes.copy_from_slice(&mixed.to_le_bytes()[..6]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("tk{hex}")
}

fn is_temp_name(name: &str) -> bool {
    name.len() == 14
        && name.starts_with("tk")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(name: &str) -> Nic {
        Nic {
            name: name.to_owned(),
            parent: "auto".to_owned(),
            ip: "10.0.0.2/24".parse().unwrap(),
            gateway: None,
        }
    }

    #[test]
    fn temp_names() {
        let a = temp_name();
        assert!(is_temp_name(&a), "{a}");
        assert_ne!(a, temp_name());
        assert!(!is_temp_name("eth0"));
        assert!(!is_temp_name("tk0123456789ag"));
    }

    #[test]
    fn validation() {
        assert!(validate(&[nic("eth0"), nic("eth1")]).is_ok());
        let err = |nics: &[Nic]| validate(nics).unwrap_err().to_string();
        assert_eq!(err(&[nic("eth0"), nic("eth0")]), "nic eth0: declared twice");
        assert!(err(&[nic("a-very-long-name0")]).contains("1 to 15 bytes"));
        assert!(err(&[nic("lo")]).contains("loopback"));
        assert!(err(&[nic("a/b")]).contains("not a valid"));
    }

    #[test]
    fn macs() {
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 77, 1, 11)),
            [0x02, 0x6b, 10, 77, 1, 11]
        );
    }

    #[test]
    fn errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<NetError>();
    }

    #[test]
    fn no_parent_message() {
        let e = NetError::NoParent {
            nic: "eth0".into(),
            parent: "eth9".into(),
        };
        assert_eq!(
            e.to_string(),
            "parent interface \"eth9\" of nic eth0 does not exist"
        );
    }
}
