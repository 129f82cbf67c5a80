//! Pod networking on the real kernel (root): macvlan NICs made by
//! `tankd::net::macvlan` on veth "uplinks" whose peers sit in scratch
//! gateway namespaces, and the host adapters (static, auto, NetworkManager
//! against a fake NM on a private bus).
//!
//! Topology per uplink (all names unique per process and test):
//!
//! ```text
//!   gw netns  : tkg<pid><u>  10.77.<u>.1/24           (the LAN / gateway)
//!                  | veth
//!   test netns: tku<pid><u>  no address, up           (the uplink = parent)
//!                  +-- macvlan bridge -> pod netns eth0 10.77.<u>.11/24 ...
//! ```
//!
//! Traffic only ever goes to addresses inside these namespaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;

use tank_api::spec::Nic;
use tankd::net::host::{AutoHost, Host, HostConfig, NetworkManagerHost, StaticHost};
use tankd::net::macvlan::{configure_nics, observe_nics, repair_nics};
use tankd::net::netns::NetnsDir;
use tankd::net::NetError;

static NEXT: AtomicUsize = AtomicUsize::new(1);

fn pid4() -> u32 {
    std::process::id() % 10000
}

fn output(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs `cmd`, panics with its output when it fails; returns stdout.
fn sh(cmd: &[&str]) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nsenter_args<'a>(netns: &'a str, cmd: &[&'a str]) -> Vec<String> {
    let mut args = vec!["nsenter".to_owned(), format!("--net={netns}")];
    args.extend(cmd.iter().map(|s| s.to_string()));
    args
}

/// `cmd` inside netns `path` (nsenter: no new mount namespace).
fn ns_output(path: &Path, cmd: &[&str]) -> Output {
    let args = nsenter_args(path.to_str().unwrap(), cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    output(&args)
}

fn ns_sh(path: &Path, cmd: &[&str]) -> String {
    let args = nsenter_args(path.to_str().unwrap(), cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sh(&args)
}

/// busybox ping from inside `from`; a few tries (ARP, DAD settle).
fn ping(from: &Path, to: Ipv4Addr) -> bool {
    let to = to.to_string();
    (0..3).any(|_| {
        ns_output(from, &["/bin/busybox", "ping", "-c1", "-W2", &to])
            .status
            .success()
    })
}

fn nic(name: &str, parent: &str, ip: &str, gateway: Option<Ipv4Addr>) -> Nic {
    Nic {
        name: name.to_owned(),
        parent: parent.to_owned(),
        ip: ip.parse().unwrap(),
        gateway,
    }
}

/// A veth uplink in the test's netns with its peer in a gateway netns.
struct Uplink {
    name: String,
    /// `10.77.<u>`
    net: String,
    gw_netns: PathBuf,
}

impl Uplink {
    fn gateway(&self) -> Ipv4Addr {
        format!("{}.1", self.net).parse().unwrap()
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.net)
    }
}

/// Everything a test builds, torn down in `Drop` even when it fails.
struct Lab {
    tmp: tempfile::TempDir,
    dir: NetnsDir,
    netns: Vec<String>,
    host_links: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn new() -> Lab {
        support::require_root();
        let tmp = tempfile::Builder::new()
            .prefix("tank-net-")
            .tempdir()
            .unwrap();
        Lab {
            dir: NetnsDir::new(tmp.path()),
            tmp,
            netns: Vec::new(),
            host_links: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A pinned netns (pods, gateways, scratch), removed on drop.
    fn netns(&mut self, name: &str) -> PathBuf {
        let path = self.dir.create(name).expect("create netns");
        self.netns.push(name.to_owned());
        path
    }

    fn uplink(&mut self) -> Uplink {
        let u = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(u < 250, "too many uplinks");
        let name = format!("tku{:04}{u}", pid4());
        let peer = format!("tkg{:04}{u}", pid4());
        let gw_netns = self.netns(&format!("tkt-{}-{u}-gw", std::process::id()));
        let net = format!("10.77.{u}");
        sh(&[
            "ip",
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            gw_netns.to_str().unwrap(),
        ]);
        self.host_links.push(name.clone());
        // No IPv6 chatter on the test's side of the uplink.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        ns_sh(
            &gw_netns,
            &["ip", "addr", "add", &format!("{net}.1/24"), "dev", &peer],
        );
        ns_sh(&gw_netns, &["ip", "link", "set", &peer, "up"]);
        sh(&["ip", "link", "set", &name, "up"]);
        Uplink {
            name,
            net,
            gw_netns,
        }
    }

    fn pod(&mut self, name: &str) -> PathBuf {
        self.netns(&format!("tkt-{}-{name}", std::process::id()))
    }

    fn remove_pod(&mut self, path: &Path) {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        self.dir.remove(&name).unwrap();
        self.netns.retain(|n| *n != name);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for link in &self.host_links {
            let _ = output(&["ip", "link", "del", link]);
        }
        for name in &self.netns {
            let _ = self.dir.remove(name);
        }
    }
}

/// The host adapter the NIC tests use: the uplink from "config".
fn static_host(uplink: &Uplink) -> StaticHost {
    StaticHost {
        uplink: Some(uplink.name.clone()),
        dns: Vec::new(),
    }
}

/// Index and names of the links inside a netns, as `ip -o link` prints them.
fn link_names(netns: &Path) -> Vec<String> {
    ns_sh(netns, &["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_owned())
        .collect()
}

fn link_index(netns: &Path, name: &str) -> String {
    ns_sh(netns, &["ip", "-o", "link", "show", name])
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

/// The MAC of a link inside a netns (not from /sys: nsenter keeps the
/// host's sysfs).
fn mac_of(netns: &Path, name: &str) -> String {
    let out = ns_sh(netns, &["ip", "-o", "link", "show", name]);
    let mut words = out.split_whitespace();
    words.find(|w| *w == "link/ether");
    words.next().unwrap_or_default().to_owned()
}

#[test]
fn two_pods_talk_to_each_other_and_the_gateway() {
    let mut lab = Lab::new();
    let up = lab.uplink();
    let host = static_host(&up);
    let a = lab.pod("a");
    let b = lab.pod("b");
    let nics_a = [nic(
        "eth0",
        "auto",
        &format!("{}/24", up.ip(11)),
        Some(up.gateway()),
    )];
    let nics_b = [nic(
        "eth0",
        "auto",
        &format!("{}/24", up.ip(12)),
        Some(up.gateway()),
    )];
    let t0 = Instant::now();
    let addrs = configure_nics(&a, &nics_a, &host).unwrap();
    eprintln!("configure_nics (1 nic): {:?}", t0.elapsed());
    assert_eq!(addrs, [nics_a[0].ip.addr]);
    configure_nics(&b, &nics_b, &host).unwrap();

    // Declared default route, lo up.
    let route = ns_sh(&a, &["ip", "-4", "route", "show", "default"]);
    assert_eq!(
        route.trim(),
        format!("default via {} dev eth0 proto static", up.gateway()),
        "{route}"
    );
    assert!(ping(&a, Ipv4Addr::LOCALHOST));

    assert!(ping(&a, nics_b[0].ip.addr), "pod a -> pod b");
    assert!(ping(&b, nics_a[0].ip.addr), "pod b -> pod a");
    assert!(ping(&a, up.gateway()), "pod a -> gateway");
    assert!(ping(&up.gw_netns, nics_b[0].ip.addr), "gateway -> pod b");

    // HTTP from pod b to busybox httpd in pod a.
    let www = lab.tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from pod a\n").unwrap();
    let listen = format!("{}:8080", up.ip(11));
    let httpd = Command::new("nsenter")
        .arg(format!("--net={}", a.display()))
        .args(["/bin/busybox", "httpd", "-f", "-p", &listen, "-h"])
        .arg(&www)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    lab.children.push(httpd);
    let url = format!("http://{listen}/index.html");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let out = ns_output(
            &b,
            &[
                "timeout",
                "5",
                "/bin/busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &url,
            ],
        );
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "wget {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body, "hello from pod a\n");

    // Idempotent: nothing changes.
    let index = link_index(&a, "eth0");
    assert_eq!(configure_nics(&a, &nics_a, &host).unwrap(), addrs);
    assert_eq!(link_index(&a, "eth0"), index);
    assert_eq!(link_names(&a), ["lo", "eth0"]);
    let state = observe_nics(&a, &nics_a).unwrap();
    assert!(state[0].is_configured(), "{state:?}");

    // Removing the netns removes its NIC: pod a stops answering, b still does.
    for child in &mut lab.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    lab.children.clear();
    lab.remove_pod(&a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns_output(
        &up.gw_netns,
        &["/bin/busybox", "ping", "-c1", "-W1", &up.ip(11)],
    )
    .status
    .success()
    {
        assert!(Instant::now() < deadline, "pod a's NIC outlived its netns");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ping(&up.gw_netns, nics_b[0].ip.addr),
        "gateway -> pod b after a went"
    );
}

#[test]
fn pod_with_two_nics_on_two_uplinks() {
    let mut lab = Lab::new();
    let up1 = lab.uplink();
    let up2 = lab.uplink();
    let pod = lab.pod("two");
    let nics = [
        nic(
            "eth0",
            &up1.name,
            &format!("{}/24", up1.ip(21)),
            Some(up1.gateway()),
        ),
        // A second gateway is ignored: one default route, the first NIC's.
        nic(
            "eth1",
            &up2.name,
            &format!("{}/24", up2.ip(21)),
            Some(up2.gateway()),
        ),
    ];
    // No "auto" parent: the host adapter is never asked.
    let addrs = configure_nics(&pod, &nics, &StaticHost::default()).unwrap();
    assert_eq!(addrs, [nics[0].ip.addr, nics[1].ip.addr]);
    let routes = ns_sh(&pod, &["ip", "-4", "route", "show", "default"]);
    assert_eq!(
        routes.trim(),
        format!("default via {} dev eth0 proto static", up1.gateway())
    );
    assert!(ping(&pod, up1.gateway()), "eth0 -> gateway 1");
    assert!(ping(&pod, up2.gateway()), "eth1 -> gateway 2");
    let addrs = ns_sh(&pod, &["ip", "-4", "-o", "addr", "show", "dev", "eth1"]);
    assert!(addrs.contains(&format!("{}/24", up2.ip(21))), "{addrs}");
    let state = observe_nics(&pod, &nics).unwrap();
    assert_eq!(state[0].default_route, Some(true));
    assert_eq!(state[1].default_route, None);
    assert!(state.iter().all(|s| s.is_configured()), "{state:?}");
}

#[test]
fn drift_is_observed_and_repaired() {
    let mut lab = Lab::new();
    let up = lab.uplink();
    let host = static_host(&up);
    let pod = lab.pod("drift");
    let cidr = format!("{}/24", up.ip(31));
    let nics = [nic("eth0", "auto", &cidr, Some(up.gateway()))];
    configure_nics(&pod, &nics, &host).unwrap();
    assert!(observe_nics(&pod, &nics).unwrap()[0].is_configured());

    // The address goes (and the default route with it).
    ns_sh(&pod, &["ip", "addr", "del", &cidr, "dev", "eth0"]);
    let state = &observe_nics(&pod, &nics).unwrap()[0];
    assert!(state.present && state.up && !state.address, "{state:?}");
    assert_eq!(state.default_route, Some(false));
    repair_nics(&pod, &nics, &host).unwrap();
    assert!(observe_nics(&pod, &nics).unwrap()[0].is_configured());
    assert!(ping(&pod, up.gateway()));

    // An undeclared address replaces the declared one.
    ns_sh(&pod, &["ip", "addr", "flush", "dev", "eth0"]);
    ns_sh(
        &pod,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", up.ip(99)),
            "dev",
            "eth0",
        ],
    );
    let state = &observe_nics(&pod, &nics).unwrap()[0];
    assert!(!state.address && !state.is_configured(), "{state:?}");
    configure_nics(&pod, &nics, &host).unwrap();
    let state = &observe_nics(&pod, &nics).unwrap()[0];
    assert_eq!(state.addresses, [nics[0].ip], "{state:?}");

    // Down.
    ns_sh(&pod, &["ip", "link", "set", "eth0", "down"]);
    assert!(!observe_nics(&pod, &nics).unwrap()[0].up);
    configure_nics(&pod, &nics, &host).unwrap();
    assert!(observe_nics(&pod, &nics).unwrap()[0].is_configured());

    // The NIC goes; it comes back with the same MAC (ARP caches stay right).
    let mac = mac_of(&pod, "eth0");
    ns_sh(&pod, &["ip", "link", "del", "eth0"]);
    let state = &observe_nics(&pod, &nics).unwrap()[0];
    assert!(!state.present && !state.address, "{state:?}");
    repair_nics(&pod, &nics, &host).unwrap();
    let state = &observe_nics(&pod, &nics).unwrap()[0];
    assert!(state.is_configured(), "{state:?}");
    assert_eq!(link_names(&pod), ["lo", "eth0"]);
    let octets = nics[0].ip.addr.octets();
    assert_eq!(
        mac,
        format!(
            "02:6b:{:02x}:{:02x}:{:02x}:{:02x}",
            octets[0], octets[1], octets[2], octets[3]
        )
    );
    assert_eq!(mac_of(&pod, "eth0"), mac);
    assert!(ping(&pod, up.gateway()), "repaired NIC carries traffic");
    assert!(
        ping(&up.gw_netns, nics[0].ip.addr),
        "gateway -> repaired NIC"
    );
}

#[test]
fn failures_leave_nothing_behind() {
    let mut lab = Lab::new();
    let up = lab.uplink();
    let host = static_host(&up);
    let pod = lab.pod("fail");
    let missing = format!("tkm{:04}x", pid4());

    // A missing parent: a clear error, nothing created.
    let nics = [
        nic(
            "eth0",
            "auto",
            &format!("{}/24", up.ip(41)),
            Some(up.gateway()),
        ),
        nic("eth1", &missing, "10.78.0.41/24", None),
    ];
    let err = configure_nics(&pod, &nics, &host).unwrap_err();
    assert!(matches!(err, NetError::NoParent { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("parent interface \"{missing}\" of nic eth1 does not exist")
    );
    assert_eq!(link_names(&pod), ["lo"]);

    // A failure after the NICs were made (a gateway the kernel cannot
    // reach): what this call created is removed again.
    let nics = [
        nic("eth0", "auto", &format!("{}/24", up.ip(41)), None),
        nic(
            "eth1",
            "auto",
            &format!("{}/24", up.ip(42)),
            Some("10.99.0.1".parse().unwrap()),
        ),
    ];
    let err = configure_nics(&pod, &nics, &host).unwrap_err();
    assert!(err.to_string().contains("default route"), "{err}");
    assert_eq!(link_names(&pod), ["lo"]);

    // "auto" without an uplink in the config.
    let err = configure_nics(&pod, &nics[..1], &StaticHost::default()).unwrap_err();
    assert!(matches!(err, NetError::NoUplink { .. }), "{err}");
    assert!(err.to_string().contains("host.uplink"), "{err}");

    // An interface tank did not make holds the NIC's name.
    ns_sh(
        &pod,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    let err = configure_nics(&pod, &nics[..1], &host).unwrap_err();
    assert!(matches!(err, NetError::Conflict { .. }), "{err}");
    let mut names = link_names(&pod);
    names.sort();
    assert_eq!(names, ["eth0", "eth0p", "lo"]);

    // And it all works once the way is clear.
    ns_sh(&pod, &["ip", "link", "del", "eth0"]);
    configure_nics(&pod, &nics[..1], &host).unwrap();
    assert!(ping(&pod, up.gateway()));
}

#[test]
fn auto_host_picks_the_default_route_interface() {
    let mut lab = Lab::new();
    let u = NEXT.fetch_add(1, Ordering::SeqCst);
    let scratch = lab.netns(&format!("tkt-{}-{u}", std::process::id()));
    let host = AutoHost::in_netns(&scratch);
    let err = host.uplink().unwrap_err();
    assert!(matches!(err, NetError::NoDefaultRoute { .. }), "{err}");

    let (a, b) = (
        format!("tka{:04}{u}", pid4()),
        format!("tkb{:04}{u}", pid4()),
    );
    ns_sh(
        &scratch,
        &["ip", "link", "add", &a, "type", "veth", "peer", "name", &b],
    );
    for (dev, net) in [(&a, 1), (&b, 2)] {
        ns_sh(
            &scratch,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.79.{net}.2/24"),
                "dev",
                dev,
            ],
        );
        ns_sh(&scratch, &["ip", "link", "set", dev, "up"]);
    }
    ns_sh(
        &scratch,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "10.79.1.1",
            "dev",
            &a,
            "metric",
            "100",
        ],
    );
    assert_eq!(host.uplink().unwrap(), a);
    // The lowest metric wins.
    ns_sh(
        &scratch,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "10.79.2.1",
            "dev",
            &b,
            "metric",
            "50",
        ],
    );
    assert_eq!(host.uplink().unwrap(), b);
}

/// A fake NetworkManager serving exactly the properties the adapter reads,
/// under their real interface and property names.
mod fake_nm {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

    pub fn path(s: &str) -> OwnedObjectPath {
        OwnedObjectPath::try_from(s).unwrap()
    }

    pub struct Manager {
        pub primary: OwnedObjectPath,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager")]
    impl Manager {
        #[zbus(property)]
        fn primary_connection(&self) -> OwnedObjectPath {
            self.primary.clone()
        }
    }

    pub struct Active {
        pub devices: Vec<OwnedObjectPath>,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager.Connection.Active")]
    impl Active {
        #[zbus(property)]
        fn devices(&self) -> Vec<OwnedObjectPath> {
            self.devices.clone()
        }
    }

    pub struct Device {
        pub interface: String,
        pub ip4: OwnedObjectPath,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
    impl Device {
        #[zbus(property)]
        fn interface(&self) -> String {
            self.interface.clone()
        }

        #[zbus(property, name = "Ip4Config")]
        fn ip4_config(&self) -> OwnedObjectPath {
            self.ip4.clone()
        }
    }

    fn network_order(ip: &Ipv4Addr) -> u32 {
        u32::from_ne_bytes(ip.octets())
    }

    /// NM >= 1.14: NameserverData (and the deprecated Nameservers).
    pub struct Ip4Config {
        pub servers: Vec<Ipv4Addr>,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager.IP4Config")]
    impl Ip4Config {
        #[zbus(property)]
        fn nameserver_data(&self) -> Vec<HashMap<String, OwnedValue>> {
            self.servers
                .iter()
                .map(|ip| {
                    HashMap::from([(
                        "address".to_owned(),
                        OwnedValue::try_from(Value::from(ip.to_string())).unwrap(),
                    )])
                })
                .collect()
        }

        #[zbus(property)]
        fn nameservers(&self) -> Vec<u32> {
            self.servers.iter().map(network_order).collect()
        }
    }

    /// Older NM: only Nameservers.
    pub struct OldIp4Config {
        pub servers: Vec<Ipv4Addr>,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager.IP4Config")]
    impl OldIp4Config {
        #[zbus(property)]
        fn nameservers(&self) -> Vec<u32> {
            self.servers.iter().map(network_order).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networkmanager_host_reads_the_primary_connection() {
    use fake_nm::*;
    support::require_root();
    // NetworkManager's own bus policy on a deny-by-default system bus.
    let bus = support::SystemBus::start_with_policy(
        r#"<policy user="root"><allow own="org.freedesktop.NetworkManager"/></policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.NetworkManager"/>
  </policy>"#,
    );
    let nm = "/org/freedesktop/NetworkManager";
    let server = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.NetworkManager")
        .unwrap()
        .serve_at(nm, Manager { primary: path("/") })
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/ActiveConnection/1",
            Active {
                devices: vec![path("/org/freedesktop/NetworkManager/Devices/3")],
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/ActiveConnection/2",
            Active {
                devices: vec![path("/org/freedesktop/NetworkManager/Devices/4")],
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/Devices/3",
            Device {
                interface: "enp1s0".into(),
                ip4: path("/org/freedesktop/NetworkManager/IP4Config/5"),
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/Devices/4",
            Device {
                interface: "wlan0".into(),
                ip4: path("/org/freedesktop/NetworkManager/IP4Config/6"),
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/IP4Config/5",
            Ip4Config {
                servers: vec![
                    Ipv4Addr::new(192, 0, 2, 53),
                    Ipv4Addr::new(127, 0, 0, 53),
                    Ipv4Addr::new(198, 51, 100, 1),
                ],
            },
        )
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/IP4Config/6",
            OldIp4Config {
                servers: vec![Ipv4Addr::new(203, 0, 113, 9)],
            },
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    let set_primary = async |p: &str| {
        server
            .object_server()
            .interface::<_, Manager>(nm)
            .await
            .unwrap()
            .get_mut()
            .await
            .primary = path(p);
    };

    let client = bus.connect().await;
    let config: HostConfig = toml::from_str("adapter = \"networkmanager\"").unwrap();
    let host: std::sync::Arc<dyn Host> = config.build(Some(client.clone())).into();
    // The trait blocks: call it as tankd will, off the runtime's workers.
    let blocking = |host: std::sync::Arc<dyn Host>| async move {
        tokio::task::spawn_blocking(move || (host.uplink(), host.dns()))
            .await
            .unwrap()
    };

    // No primary connection: a clear error.
    let (uplink, dns) = blocking(host.clone()).await;
    let err = uplink.unwrap_err().to_string();
    assert!(err.contains("no primary connection"), "{err}");
    assert!(dns.is_err());

    set_primary("/org/freedesktop/NetworkManager/ActiveConnection/1").await;
    let (uplink, dns) = blocking(host.clone()).await;
    assert_eq!(uplink.unwrap(), "enp1s0");
    assert_eq!(
        dns.unwrap(),
        [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(198, 51, 100, 1)]
    );

    // An older NM without NameserverData.
    set_primary("/org/freedesktop/NetworkManager/ActiveConnection/2").await;
    let (uplink, dns) = blocking(host.clone()).await;
    assert_eq!(uplink.unwrap(), "wlan0");
    assert_eq!(dns.unwrap(), [Ipv4Addr::new(203, 0, 113, 9)]);

    // The async queries, for callers on the runtime.
    assert_eq!(
        NetworkManagerHost::query_uplink(&client).await.unwrap(),
        "wlan0"
    );

    // Nobody owns the name: a D-Bus error, not a hang.
    drop(server);
    let nm_host = NetworkManagerHost::new(Some(client));
    let err = tokio::task::spawn_blocking(move || nm_host.uplink())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, NetError::Dbus { .. }), "{err}");
}

#[test]
fn static_host_is_the_config() {
    let host = StaticHost {
        uplink: Some("br0".into()),
        dns: vec![Ipv4Addr::new(10, 0, 0, 1)],
    };
    assert_eq!(host.uplink().unwrap(), "br0");
    assert_eq!(host.dns().unwrap(), [Ipv4Addr::new(10, 0, 0, 1)]);
    let err = StaticHost::default().uplink().unwrap_err().to_string();
    assert!(err.contains("`host.uplink`"), "{err}");
}
