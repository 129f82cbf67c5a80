//! Exec benchmark: the round trip of running `/bin/true` in a running
//! container, for Tank and its peers, side by side in one run. Prints
//! medians and ratios. Run with `bench/run.sh exec` (root).
//!
//! What each number includes (from just before the command or call to
//! the moment the requester learns the exit status):
//!
//! - **tankctl exec**: the whole `tankctl exec POD -- /bin/true` process:
//!   its start, the system-bus connection, the `Exec` call (authorization,
//!   the desired-state read, the clone of tankd's exec stage into the
//!   container's PID namespace from a fresh thread, the move into the
//!   container's cgroups, `setns` into its other namespaces, the user
//!   lookup in the container's /etc/passwd, credentials, the exec), the
//!   reply with the fds, and the wait for the status line.
//! - **Exec call**: the same `Exec` D-Bus call from a client already
//!   connected in this process, until the status line (no tankctl start,
//!   no bus connection).
//! - **podman exec**: `podman exec CTR /bin/true` against a container
//!   started with `podman run -d --network none` from the same image
//!   (private storage, crun; see `peers.rs`), until the command exits.
//! - **nsenter -a (floor)**: `nsenter -a -t PID /bin/true`, PID the tank
//!   container's PID 1: the kernel's cost of entering the namespaces plus
//!   a fork and two execs. No cgroup, no credentials, no PTY, no daemon.
//!
//! - **tankctl ps** and **busctl ListPods**: the client's start-up cost
//!   on the cheapest call: `tankctl ps` (start, bus connection, ListPods,
//!   the table) against `busctl --system call … ListPods` (systemd's own
//!   client: start, bus connection, the call, its output). The target is
//!   tankctl within 2 ms of busctl, and `tankctl exec` within 5 ms of the
//!   Exec call alone; both differences are printed.
//!
//! BENCH_RUNS (default 20) rounds after one untimed warm-up, each running
//! every contender once in turn (each round starting with the next one).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "common.rs"]
mod common;
use common::{env_usize, installed, median, ms};

#[path = "peers.rs"]
mod peers;
use peers::{host_side_paths, remove_host_side, PeerThread, Podman};

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::images::{busybox_image, Pushable};
use support::registry::Registry;
use support::{ok, SystemBus, Tankd, BUSYBOX};
use zbus::zvariant::Value;

/// The repository podman pulls from the loopback registry.
const REGISTRY_REPO: &str = "bench/busybox:1";
const TANKCTL: &str = "tankctl exec";
const CALL: &str = "Exec call";
const PODMAN: &str = "podman exec";
const FLOOR: &str = "nsenter -a (floor)";
const PS: &str = "tankctl ps";
const BUSCTL: &str = "busctl ListPods";
const CONTENDERS: [&str; 6] = [TANKCTL, CALL, PODMAN, FLOOR, PS, BUSCTL];

/// The wall-clock time of `cmd`, which must succeed with no output.
fn time(cmd: &mut Command) -> Duration {
    time_output(cmd, false)
}

/// The wall-clock time of `cmd`, which must succeed (with output to a
/// pipe when `output`, else with none).
fn time_output(cmd: &mut Command, output: bool) -> Duration {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    let elapsed = start.elapsed();
    assert!(
        out.status.success() && (output || out.stdout.is_empty()),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// One `Exec` of `/bin/true` through `manager`, until its status line.
async fn exec_call(manager: &zbus::Proxy<'_>) -> Duration {
    let start = Instant::now();
    let opts: HashMap<&str, Value<'_>> = HashMap::new();
    let (_pty, status): (zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd) = manager
        .call("Exec", &("bench", "", vec!["/bin/true"], opts))
        .await
        .expect("Exec");
    let status: OwnedFd = status.into();
    let line =
        tokio::task::spawn_blocking(move || tank_api::exit::read_status(&status).expect("status"))
            .await
            .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(line, Some(tank_api::exit::ExitStatus::Exited(0)));
    elapsed
}

#[tokio::main]
async fn main() {
    support::require_root();
    let runs = env_usize("BENCH_RUNS", 20).max(1);
    let (_, nofile) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let host_side_before = host_side_paths();
    let scratch = tempfile::Builder::new()
        .prefix("tank-bench-exec-")
        .tempdir()
        .unwrap();
    let dir = scratch.path().to_owned();

    // Tank: a sleeping pod.
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    tankd.import_busybox();
    tankd.apply(&json!({
        "name": "bench", "stop_grace_period_s": 0,
        "containers": [{"name": "main", "image": BUSYBOX,
                        "command": ["/bin/sleep", "1000000"]}]
    }));
    let doc = tankd.wait_for("bench", "running", 30, |d| {
        d["status"]["containers"]["main"]["state"]["running"]["pid"].is_u64()
    });
    let pid = doc["status"]["containers"]["main"]["state"]["running"]["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let conn = bus.connect().await;
    let manager = common::manager_proxy(&conn).await;
    let tankctl = || {
        let mut cmd = Command::new(support::tankctl_bin());
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .args(["exec", "bench", "--", "/bin/true"]);
        cmd
    };
    let ps = || {
        let mut cmd = Command::new(support::tankctl_bin());
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address).arg("ps");
        cmd
    };
    let busctl = || {
        let mut cmd = Command::new("busctl");
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address).args([
            "--system",
            "call",
            "org.tank.Manager",
            "/org/tank/Manager",
            "org.tank.Manager",
            "ListPods",
        ]);
        cmd
    };
    let nsenter = || {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-a", "-t", &pid, "/bin/true"]);
        cmd
    };

    // podman: the same image, a sleeping container.
    let (peers, _) = PeerThread::start(dir.clone());
    let podman = if installed("podman") {
        let registry = Registry::start();
        registry
            .push(REGISTRY_REPO, &Pushable::Image(busybox_image()))
            .await;
        let reference = registry.reference(REGISTRY_REPO);
        let podman = Podman::new(&dir.join("podman"), &registry.addr, nofile);
        let p = podman.clone();
        let id = peers.run(move || {
            p.pull(&reference);
            let out = p
                .command()
                .args(["run", "-d", "--network", "none", "--pull", "never"])
                .args([&reference, "/bin/sleep", "1000000"])
                .stdin(Stdio::null())
                .output()
                .expect("podman run");
            assert!(out.status.success(), "podman run -d: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        });
        drop(registry);
        Some((podman, id))
    } else {
        None
    };
    let podman_exec = |p: &Podman, id: &str| {
        let (p, id) = (p.clone(), id.to_owned());
        peers.run(move || time(p.command().args(["exec", &id, "/bin/true"])))
    };

    // Warm-up (untimed).
    time(&mut tankctl());
    exec_call(&manager).await;
    time(&mut nsenter());
    time_output(&mut ps(), true);
    time_output(&mut busctl(), true);
    if let Some((p, id)) = &podman {
        podman_exec(p, id);
    }

    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for round in 0..runs {
        for i in 0..CONTENDERS.len() {
            let contender = CONTENDERS[(round + i) % CONTENDERS.len()];
            let took = match contender {
                TANKCTL => time(&mut tankctl()),
                CALL => exec_call(&manager).await,
                FLOOR => time(&mut nsenter()),
                PS => time_output(&mut ps(), true),
                BUSCTL => time_output(&mut busctl(), true),
                _ => match &podman {
                    Some((p, id)) => podman_exec(p, id),
                    None => continue,
                },
            };
            times.entry(contender).or_default().push(took);
        }
    }

    // Cleanup: podman's container and storage, tankd and its home.
    if let Some((p, id)) = &podman {
        let (p, id) = (p.clone(), id.clone());
        peers.run(move || {
            let _ = p
                .command()
                .args(["rm", "-f", "-t", "0", &id])
                .stdin(Stdio::null())
                .output();
            p.reset();
        });
    }
    drop(peers);
    for path in host_side_paths() {
        if !host_side_before.contains(&path) {
            remove_host_side(&path);
        }
    }
    ok(&tankd.tankctl(&["delete", "bench"]));
    drop(tankd);

    println!("exec of /bin/true in a running busybox container, {runs} runs, medians:");
    let med: BTreeMap<&str, f64> = times
        .iter()
        .map(|(k, v)| (*k, ms(median(v.clone()))))
        .collect();
    for contender in CONTENDERS {
        if let Some(v) = times.get(contender) {
            println!(
                "  {contender:<20} {:>8.2} ms  (p90 {:.2} ms)",
                med[contender],
                ms(common::percentile(v, 90))
            );
        }
    }
    let floor = med[FLOOR];
    println!(
        "tankctl exec / nsenter = {:.2}   Exec call / nsenter = {:.2}",
        med[TANKCTL] / floor,
        med[CALL] / floor
    );
    println!(
        "tankctl exec - Exec call = {:+.2} ms (target <= 5)   tankctl ps - busctl ListPods = {:+.2} ms (target <= 2)",
        med[TANKCTL] - med[CALL],
        med[PS] - med[BUSCTL]
    );
    match med.get(PODMAN) {
        Some(podman) => println!(
            "tankctl exec / podman exec = {:.3}   Exec call / podman exec = {:.3}",
            med[TANKCTL] / podman,
            med[CALL] / podman
        ),
        None => println!("(podman not installed: bench/run.sh installs it)"),
    }
}
