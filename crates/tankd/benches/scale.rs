//! Reconcile-loop benchmark: many pods at once, an idle daemon, and the
//! crash → restart latency. Run with `bench/run.sh scale` (root).
//!
//! - **N pods → Running** (`BENCH_PODS`, default 200): N `Apply` calls are
//!   issued at once over one D-Bus connection (network none, busybox
//!   `sleep`, image imported beforehand); the clock stops when `ListPods`
//!   (polled every 20 ms by this client, not by tankd) shows all N Running.
//!   Up to 100 calls are in flight (the bus caps pending replies per
//!   connection).
//!   (Per-container peer figures — podman run, crun run — come from
//!   `bench/run.sh start`; podman has no declarative "N at once".)
//! - **tankd RSS** (`VmRSS`) with the N pods running, and its **CPU while
//!   idle**: user+system ticks over `BENCH_IDLE_S` (default 10) seconds with
//!   nothing changing. Nothing polls: the only wake-ups are the resync
//!   timer (`resync_s`, 30 s by default).
//! - **exit → restart**: one pod (restart always, after a stable run, so no
//!   backoff) has its PID 1 SIGKILLed from outside; the clock stops when its
//!   cgroup holds a new process (this client spins on `cgroup.procs`).
//!   `BENCH_RUNS` (default 10) rounds, median and worst.
//!
//! Targets (the brief): 500 pods → all running ≤ 10 s, RSS ≤ 30 MiB with 500
//! pods, idle CPU ≈ 0, first restart ≤ 10 ms.

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{env_usize, median, ms, percentile};
use futures_util::StreamExt;
use serde_json::json;
use support::{ok, SystemBus, Tankd, TankdHome, BUSYBOX};
use zbus::zvariant::OwnedObjectPath;

fn pod(name: &str) -> String {
    json!({"name": name, "restart": "always", "stop_grace_period_s": 0,
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "100000"]}]})
    .to_string()
}

/// (utime + stime) of `pid` in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 (utime, stime), counted from field 3 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn procs(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

async fn list_pods(manager: &zbus::Proxy<'_>) -> Vec<(String, OwnedObjectPath, String)> {
    manager.call("ListPods", &()).await.unwrap()
}

#[tokio::main]
async fn main() {
    support::require_root();
    let pods = env_usize("BENCH_PODS", 200);
    let runs = env_usize("BENCH_RUNS", 10).max(1);
    let idle = Duration::from_secs(env_usize("BENCH_IDLE_S", 10) as u64);

    let bus = SystemBus::start();
    // Stable after 1 s: each measured restart is a first restart (no
    // backoff) when rounds are more than a second apart.
    let home = TankdHome::with_config("[reconcile]\nstable_after_s = 1\n");
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    let tankd_pid = tankd.pid().as_raw();
    let conn = bus.connect().await;
    let manager = common::manager_proxy(&conn).await;
    println!(
        "tankd pid {tankd_pid}, RSS before any pod: {:.1} MiB",
        rss_kib(tankd_pid) as f64 / 1024.0
    );

    // N pods at once.
    let specs: Vec<String> = (0..pods).map(|i| pod(&format!("p{i:04}"))).collect();
    let start = Instant::now();
    // As many calls in flight as the bus allows one connection (its
    // max_replies_per_connection is 128 in the system bus's defaults).
    futures_util::stream::iter(specs.iter())
        .for_each_concurrent(100, |spec| {
            let manager = manager.clone();
            async move {
                let _: OwnedObjectPath = manager.call("Apply", &(spec.as_str(),)).await.unwrap();
            }
        })
        .await;
    let applied = start.elapsed();
    let converged = loop {
        let list = list_pods(&manager).await;
        if list.len() == pods && list.iter().all(|(_, _, phase)| phase == "Running") {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not all Running after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_kib(tankd_pid);
    let ticks_before = cpu_ticks(tankd_pid);
    tokio::time::sleep(idle).await;
    let idle_ticks = cpu_ticks(tankd_pid) - ticks_before;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100) as f64;
    let idle_cpu = idle_ticks as f64 / hz / idle.as_secs_f64() * 100.0;

    // Exit → restart.
    let procs_file: PathBuf = Path::new("/sys/fs/cgroup/pids")
        .join(home.v1_root())
        .join("pods/p0000/main/cgroup.procs");
    let mut restarts = Vec::new();
    for _ in 0..runs {
        let before = procs(&procs_file);
        assert_eq!(before.len(), 1, "{before:?}");
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(before[0] as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        loop {
            let now = procs(&procs_file);
            if now.len() == 1 && now[0] != before[0] {
                restarts.push(start.elapsed());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no restart");
            std::hint::spin_loop();
        }
        // Untimed: the status says running, then the run becomes stable.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let doc = ok(&tankd.tankctl(&["get", "p0000", "-o", "json"]));
            if doc.contains("\"running\"") {
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let first_restart = restarts[0];

    println!();
    println!("{pods} pods applied at once (network none, cached image):");
    println!(
        "  tank: all Apply calls answered in {:.0} ms, all Running in {:.2} s ({:.1} ms/pod)",
        ms(applied),
        converged.as_secs_f64(),
        ms(converged) / pods as f64
    );
    println!(
        "tankd with {pods} running pods: RSS {:.1} MiB, idle CPU {:.3}% over {} s ({idle_ticks} ticks)",
        rss as f64 / 1024.0,
        idle_cpu,
        idle.as_secs()
    );
    println!(
        "exit → restart (SIGKILL of PID 1 → new PID 1 in its cgroup): first {:.2} ms, median {:.2} ms, p90 {:.2} ms over {runs} rounds",
        ms(first_restart),
        ms(median(restarts.clone())),
        ms(percentile(&restarts, 90))
    );

    // Cleanup: containers keep running past a stopped tankd (adoption), so
    // the home's drop kills what is left in its cgroups.
    drop(manager);
    let status = tankd.stop();
    assert!(status.success(), "tankd exited with {status}");
    drop(home);
}
