//! Pod network setup benchmark: a fresh network namespace with one macvlan
//! NIC (static IPv4, default route), by Tank and by the `ip` commands that
//! do the same, side by side in one run. Prints medians and the ratio. Run
//! with `bench/run.sh net` (root).
//!
//! What each number includes (per pod):
//!
//! - **tank**: `NetnsDir::create` (a thread that unshares a netns, raises
//!   `lo` over rtnetlink and bind-mounts the netns file) followed by
//!   `macvlan::configure_nics` of one NIC `eth0` (parent = the uplink below,
//!   `10.79.S.x/24`, gateway `10.79.S.1`): the thread, the two netlink
//!   sockets, the macvlan created under a temporary name directly in the
//!   netns, renamed, MAC set, addressed, raised, the default route added.
//! - **ip**: `ip netns add`, `ip link add link UPLINK name TMP netns NS type
//!   macvlan mode bridge`, `ip -n NS link set TMP name eth0`, `ip -n NS addr
//!   add …/24 dev eth0`, `ip -n NS link set eth0 up`, `ip -n NS link set lo
//!   up`, `ip -n NS route add default via 10.79.S.1`: seven process spawns.
//!
//! The removal (`NetnsDir::remove`, `ip netns del`) is not timed. Each
//! contender gets one untimed warm-up, then BENCH_RUNS (default 50) rounds
//! run both in turn (alternating which goes first).
//!
//! The uplink is a veth whose peer, with the gateway address, sits in a
//! scratch namespace (this kernel has no dummy driver), as in
//! tests/pod_network.rs. Addresses live only in namespaces the bench
//! creates; no traffic is sent. Everything (pods' namespaces, the uplink,
//! the gateway namespace, the run dir) is removed by a Drop guard, also on
//! panic.

#[path = "common.rs"]
mod common;
use common::{env_usize, ms, percentile};

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tank_api::spec::{Ipv4Cidr, Nic};
use tankd::net::host::StaticHost;
use tankd::net::macvlan::configure_nics;
use tankd::net::netns::NetnsDir;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Everything the bench creates, removed on drop (absent things are fine).
struct Guard {
    id: u32,
    subnet: u8,
    uplink: String,
    gw_ns: String,
    netns: NetnsDir,
    _run_dir: tempfile::TempDir,
    /// Pods given to `NetnsDir::create`.
    pods: Vec<String>,
    /// Namespaces given to `ip netns add`.
    ip_ns: Vec<String>,
}

impl Guard {
    fn new() -> Guard {
        let id = std::process::id() % 100_000;
        let subnet = (std::process::id() % 200 + 20) as u8;
        let run_dir = tempfile::tempdir().unwrap();
        let guard = Guard {
            id,
            subnet,
            uplink: format!("tknu{id}"),
            gw_ns: format!("tkb-net-{id}"),
            netns: NetnsDir::new(run_dir.path()),
            _run_dir: run_dir,
            pods: Vec::new(),
            ip_ns: Vec::new(),
        };
        let peer = format!("tkng{id}");
        let (uplink, gw_ns) = (guard.uplink.as_str(), guard.gw_ns.as_str());
        quiet(&["ip", "link", "del", uplink]);
        quiet(&["ip", "netns", "del", gw_ns]);
        sh(&["ip", "netns", "add", gw_ns]);
        sh(&[
            "ip", "link", "add", uplink, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&["ip", "link", "set", &peer, "netns", gw_ns]);
        sh(&[
            "ip",
            "-n",
            gw_ns,
            "addr",
            "add",
            &format!("{}/24", guard.gateway()),
            "dev",
            &peer,
        ]);
        sh(&["ip", "-n", gw_ns, "link", "set", &peer, "up"]);
        sh(&["ip", "-n", gw_ns, "link", "set", "lo", "up"]);
        sh(&["ip", "link", "set", uplink, "up"]);
        guard
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 79, self.subnet, 1)
    }

    /// Distinct per run and contender (tank 2..=127, ip 128..=253), so a
    /// namespace still being torn down never holds the same address/MAC.
    fn address(&self, run: usize, tank: bool) -> Ipv4Addr {
        let host = (run % 126) as u8 + if tank { 2 } else { 128 };
        Ipv4Addr::new(10, 79, self.subnet, host)
    }

    fn tank(&mut self, run: usize, host: &StaticHost) -> Duration {
        let pod = format!("b{run}");
        self.pods.push(pod.clone());
        let nics = [Nic {
            name: "eth0".to_owned(),
            parent: self.uplink.clone(),
            ip: Ipv4Cidr {
                addr: self.address(run, true),
                prefix_len: 24,
            },
            gateway: Some(self.gateway()),
        }];
        let start = Instant::now();
        let path = self.netns.create(&pod).unwrap();
        configure_nics(&path, &nics, host).unwrap();
        let elapsed = start.elapsed();
        check(&path, &nics[0].ip, self.gateway(), run == 0);
        self.netns.remove(&pod).unwrap();
        elapsed
    }

    fn ip(&mut self, run: usize) -> Duration {
        let ns = format!("tkb{}-{run}", self.id);
        let tmp = format!("tkbm{}x{run}", self.id);
        assert!(tmp.len() <= 15, "{tmp}");
        self.ip_ns.push(ns.clone());
        let cidr = format!("{}/24", self.address(run, false));
        let gateway = self.gateway().to_string();
        let start = Instant::now();
        sh(&["ip", "netns", "add", &ns]);
        sh(&[
            "ip",
            "link",
            "add",
            "link",
            &self.uplink,
            "name",
            &tmp,
            "netns",
            &ns,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", &tmp, "name", "eth0"]);
        sh(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &ns, "route", "add", "default", "via", &gateway]);
        let elapsed = start.elapsed();
        if run == 0 {
            let path = Path::new("/run/netns").join(&ns);
            let addr = self.address(run, false);
            check(
                &path,
                &Ipv4Cidr {
                    addr,
                    prefix_len: 24,
                },
                self.gateway(),
                true,
            );
        }
        sh(&["ip", "netns", "del", &ns]);
        elapsed
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = self.netns.remove(pod);
        }
        for ns in &self.ip_ns {
            quiet(&["ip", "netns", "del", ns]);
        }
        quiet(&["ip", "link", "del", &self.uplink]);
        quiet(&["ip", "netns", "del", &self.gw_ns]);
        // run_dir (a TempDir) is removed after this, once the pins are gone.
    }
}

/// Untimed sanity check (first run of each contender): both set up the
/// same thing.
fn check(netns: &Path, ip: &Ipv4Cidr, gateway: Ipv4Addr, enabled: bool) {
    if !enabled {
        return;
    }
    let show = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(args)
            .output()
            .expect("spawn nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addr = show(&["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(
        addr.contains(&ip.to_string()),
        "{}: {addr}",
        netns.display()
    );
    let link = show(&["ip", "-o", "link", "show", "lo"]);
    assert!(link.contains(",UP"), "{}: lo: {link}", netns.display());
    let route = show(&["ip", "-4", "route", "show", "default"]);
    assert!(
        route.contains(&format!("default via {gateway} dev eth0")),
        "{}: {route}",
        netns.display()
    );
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 50).max(1);
    let mut guard = Guard::new();
    let host = StaticHost {
        uplink: Some(guard.uplink.clone()),
        dns: Vec::new(),
    };
    println!(
        "one macvlan NIC per pod on veth uplink {} (gateway {} in netns {}), {runs} runs",
        guard.uplink,
        guard.gateway(),
        guard.gw_ns
    );

    // Untimed warm-up (page cache for `ip`, first netlink/thread costs).
    guard.tank(runs, &host);
    guard.ip(runs);

    let (mut tank_t, mut ip_t) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for run_no in 0..runs {
        if run_no % 2 == 0 {
            tank_t.push(guard.tank(run_no, &host));
            ip_t.push(guard.ip(run_no));
        } else {
            ip_t.push(guard.ip(run_no));
            tank_t.push(guard.tank(run_no, &host));
        }
    }
    drop(guard);

    let (tank, ip) = (percentile(&tank_t, 50), percentile(&ip_t, 50));
    println!(
        "\n{:<40} {:>10} {:>10} {:>10}",
        "netns + 1 macvlan NIC, per pod", "median ms", "min ms", "p90 ms"
    );
    for (name, times, median) in [
        ("tank create + configure_nics", &tank_t, tank),
        ("ip netns add + 6 ip commands", &ip_t, ip),
    ] {
        println!(
            "{:<40} {:>10.2} {:>10.2} {:>10.2}",
            name,
            ms(median),
            ms(percentile(times, 0)),
            ms(percentile(times, 90))
        );
    }
    println!("\ntank / ip = {:.2}", ms(tank) / ms(ip));
    println!(
        "tank      = {:.2} ms per pod  (target <= 5 ms: {})",
        ms(tank),
        if ms(tank) <= 5.0 { "met" } else { "NOT met" }
    );
}
