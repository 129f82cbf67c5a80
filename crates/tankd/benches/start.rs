//! Container start benchmark: how long from "start this" to "it ran", for
//! Tank and its peers, side by side in one run on the same busybox rootfs.
//! Prints medians and ratios. Run with `bench/run.sh start` (root).
//!
//! What each number includes (every run is timed from just before the
//! request to the moment the requester learns the outcome):
//!
//! - **tank apply→exited**: a zbus client in this process calls
//!   `org.tank.Manager.Apply` for a pod `b<N>` (restart never, network none,
//!   `/bin/true`) and waits for the `PropertiesChanged` signal of
//!   `/org/tank/pod/b<N>` whose `Status` JSON has
//!   `containers.main.state.terminated` (subscribed before the Apply; no
//!   polling). Includes the D-Bus round trips (client → dbus-daemon → tankd
//!   and back), authorization, spec validation, the RocksDB write with its
//!   fsync, the object export, the reconcile pass, the pod's network
//!   namespace (loopback only) and etc files, the container's cgroups, the
//!   clone3 + re-exec of tankd's init stage, the move into the cgroups, the
//!   overlay mount of the image layers, /proc /sys /dev, pivot_root, the
//!   workload's exec and exit (which completes only once the kernel has torn
//!   down the container's mount namespace: unmounting the overlay syncs its
//!   upper filesystem), the pidfd wake-up, the removal of the container's
//!   cgroups and scratch dirs, and the status publication.
//! - **tank apply→running**: the same with `/bin/sh -c 'echo started; sleep
//!   100'`, until `containers.main.state.running` appears: tankd publishes it
//!   once the workload has been exec'd, i.e. at its first instruction. The
//!   pod gets `stop_grace_period_s: 0` so that its (untimed) deletion does
//!   not wait 10 s for a PID 1 that ignores SIGTERM.
//! - **podman run --rm**: `podman run --rm --network none --pull never` of
//!   the same image, pulled once beforehand from a loopback `docker-registry`
//!   into private storage; the whole command (podman, conmon, crun, cleanup
//!   of the container and its storage) until it exits.
//! - **crun run** / **runc run**: the OCI runtime alone on a bundle whose
//!   rootfs is the image's layer unpacked into a directory (`crun spec` with
//!   args `/bin/true`, no terminal, default namespaces including a network
//!   namespace, RLIMIT_NOFILE pinned to this process's hard limit), until the
//!   command exits (container created, run, reaped and deleted). No image
//!   store, no overlay, no daemon, no status reporting.
//! - **unshare (floor)**: `unshare --mount --pid --uts --ipc --net --fork
//!   --root ROOTFS /bin/true`: the kernel's cost of the namespaces plus a
//!   fork and two execs. No cgroup.
//!
//! On a host with cgroup v1 controllers (hybrid, as here), the first move
//! of a process into a v1 cgroup waits for an RCU grace period (~11 ms
//! measured here, the first `cgroup.procs` write; later ones are µs): tank,
//! crun, runc and podman all pay it once per start, the floor does not.
//!
//! Each measurement gets one untimed warm-up, then BENCH_RUNS (default 10)
//! rounds, each running every contender once in turn (each round starting
//! with the next one) so that noise hits all of them alike. Tank's
//! deletions and everyone's cleanup happen between the timed parts,
//! followed by a short pause.
//!
//! Cleanup: pods deleted (and torn down) after each run, tankd stopped, its
//! home (data, cgroups, netns pins) removed, podman's private storage reset
//! (`podman system reset -f`) inside the namespace its mounts live in, crun
//! and runc containers deleted from their private state dirs, the scratch
//! dir removed, `net.ipv4.ip_forward` restored if anything changed it, and
//! the host paths podman/crun create by default (see [`host_side_paths`])
//! removed if they did not exist before.
//!
//! Hybrid cgroups: crun 1.8 refuses to create containers when the cgroup2
//! hierarchy at /sys/fs/cgroup/unified has controllers enabled. crun and
//! podman are run from a dedicated thread of this process that lives in a
//! private (slave) mount namespace in which that `cgroup.controllers` file
//! is then an empty file bind-mounted over it: crun sees a host whose
//! cgroup2 has no controllers, nothing on the host changes, and the timed
//! commands carry no wrapper process. runc and the floor run in the host's
//! mount namespace.
//!
//! Environment: BENCH_RUNS (default 10); BENCH_PAUSE_MS (100) between two
//! timed starts, so that the kernel's asynchronous teardown of one (netns,
//! mounts) is not charged to the next; BENCH_VERBOSE=1 prints every Status
//! tank publishes, with the time the client received it.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "common.rs"]
mod common;
use common::{env_usize, installed, median, ms, run};

#[path = "peers.rs"]
mod peers;
use peers::{host_side_paths, remove_host_side, PeerThread, Podman};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::images::{busybox_image, busybox_layer_builder, oci_archive, Pushable};
use support::registry::Registry;
use support::{ok, SystemBus, Tankd};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value as Variant};

/// The image as tankd knows it (imported from an OCI archive).
const TANK_IMAGE: &str = "localhost/bench/busybox:1";
/// The repository podman pulls from the loopback registry.
const REGISTRY_REPO: &str = "bench/busybox:1";
/// The contenders, as labelled in the report.
const TANK_EXITED: &str = "tank apply→exited";
const TANK_RUNNING: &str = "tank apply→running";
const PODMAN: &str = "podman run --rm";
const CRUN: &str = "crun run";
const RUNC: &str = "runc run";
const FLOOR: &str = "unshare (floor)";
const CONTENDERS: [&str; 6] = [TANK_EXITED, TANK_RUNNING, PODMAN, CRUN, RUNC, FLOOR];
/// Longest wait for any single step before the bench gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The wall-clock time of `cmd`, which must succeed.
fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    run(cmd);
    start.elapsed()
}

// ---------------------------------------------------------------- tank

/// A tankd on a private bus, driven over D-Bus from this process.
struct Tank {
    manager: zbus::Proxy<'static>,
    removed: zbus::fdo::InterfacesRemovedStream,
    conn: zbus::Connection,
    /// Whether tankd logs "<pod>: stopped and removed" (see `delete`).
    logs_teardown: bool,
    // Dropped last, in this order: tankd (and its home), then the bus.
    tankd: Option<Tankd>,
    _bus: SystemBus,
}

/// When, after the Apply call started, the client saw each step.
#[derive(Default, Clone)]
struct Milestones {
    /// The Apply reply.
    applied: Duration,
    /// First Status with the container running (None if it was never
    /// published as running before it terminated).
    running: Option<Duration>,
    /// First Status with the container terminated.
    terminated: Option<Duration>,
    /// Status signals received until the wanted state.
    signals: usize,
}

impl Tank {
    async fn start(scratch: &Path) -> Tank {
        let bus = SystemBus::start();
        let tankd = Tankd::start(&bus);
        let archive = scratch.join("busybox.oci.tar");
        std::fs::write(
            &archive,
            oci_archive(&[(TANK_IMAGE, &Pushable::Image(busybox_image()))]),
        )
        .unwrap();
        ok(&tankd.tankctl(&["image", "import", archive.to_str().unwrap()]));
        let conn = bus.connect().await;
        let manager = common::manager_proxy(&conn).await;
        let objects = zbus::fdo::ObjectManagerProxy::builder(&conn)
            .destination("org.tank.Manager")
            .unwrap()
            .path("/org/tank")
            .unwrap()
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .unwrap();
        let removed = objects.receive_interfaces_removed().await.unwrap();
        Tank {
            manager,
            removed,
            conn,
            logs_teardown: true,
            tankd: Some(tankd),
            _bus: bus,
        }
    }

    fn log(&self) -> String {
        let path = &self.tankd.as_ref().unwrap().log;
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Applies `pod` and waits for the Status signal in which container
    /// `main` has the state `want` ("running" or "terminated").
    async fn apply_until(&self, pod: &Value, want: &str) -> Milestones {
        let name = pod["name"].as_str().unwrap();
        let properties = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.tank.Manager")
            .unwrap()
            .path(format!("/org/tank/pod/{name}"))
            .unwrap()
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .unwrap();
        let mut changes = properties.receive_properties_changed().await.unwrap();
        let spec = pod.to_string();

        let start = Instant::now();
        let _path: OwnedObjectPath = self
            .manager
            .call("Apply", &(spec.as_str(),))
            .await
            .unwrap_or_else(|e| panic!("Apply {name}: {e}"));
        let mut seen = Milestones {
            applied: start.elapsed(),
            ..Milestones::default()
        };
        loop {
            let signal = tokio::time::timeout(TIMEOUT, changes.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{name}: no Status with state {want} within {TIMEOUT:?}; tankd log:\n{}",
                        self.log()
                    )
                })
                .expect("PropertiesChanged stream ended");
            let at = start.elapsed();
            let args = signal.args().unwrap();
            let Some(status) = args.changed_properties().get("Status") else {
                continue;
            };
            let Variant::Str(status) = status else {
                panic!("{name}: Status is not a string: {status:?}");
            };
            seen.signals += 1;
            let status: Value = serde_json::from_str(status.as_str()).unwrap();
            let state = &status["containers"]["main"]["state"];
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                println!("  {name} +{:.2} ms: {status}", ms(at));
            }
            if state.get("running").is_some() && seen.running.is_none() {
                seen.running = Some(at);
            }
            if let Some(terminated) = state.get("terminated") {
                seen.terminated = Some(at);
                assert!(
                    want == "terminated" && terminated["exit_code"] == 0,
                    "{name}: container terminated unexpectedly: {status:#}"
                );
            }
            if state.get(want).is_some() {
                return seen;
            }
        }
    }

    /// Deletes pod `name` and waits until its object is gone, ListPods no
    /// longer has it and tankd has finished tearing it down (its log says
    /// so; if that line never comes, a warning and no such wait from then
    /// on), so that nothing of it overlaps the next timed run.
    async fn delete(&mut self, name: &str) {
        let path = format!("/org/tank/pod/{name}");
        let () = self
            .manager
            .call("Delete", &(name,))
            .await
            .unwrap_or_else(|e| panic!("Delete {name}: {e}"));
        loop {
            let signal = tokio::time::timeout(TIMEOUT, self.removed.next())
                .await
                .unwrap_or_else(|_| panic!("{name}: no InterfacesRemoved within {TIMEOUT:?}"))
                .expect("InterfacesRemoved stream ended");
            if signal.args().unwrap().object_path().as_str() == path {
                break;
            }
        }
        let pods: Vec<(String, OwnedObjectPath, String)> =
            self.manager.call("ListPods", &()).await.unwrap();
        assert!(
            pods.iter().all(|(n, _, _)| n != name),
            "{name} still listed after its deletion: {pods:?}"
        );
        // Untimed quiescence: the reconcile task stops the container and
        // removes the sandbox after the object is gone.
        let done = format!("{name}: stopped and removed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.logs_teardown && !self.log().contains(&done) {
            if Instant::now() > deadline {
                eprintln!(
                    "warning: tankd did not log {done:?} within 5 s: \
                     no longer waiting for its teardowns to finish"
                );
                self.logs_teardown = false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `tankctl logs NAME` (for checking the workload really ran).
    fn logs(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.tankd.as_ref().unwrap().tankctl(&["logs", name]).stdout)
            .into_owned()
    }

    /// Stops tankd (SIGTERM) and removes its home; the bus goes on drop.
    fn stop(&mut self) {
        if let Some(tankd) = self.tankd.take() {
            let status = tankd.stop();
            if !status.success() {
                eprintln!("tankd exited with {status}");
            }
        }
    }
}

fn exit_pod(name: &str) -> Value {
    json!({
        "name": name,
        "restart": "never",
        "containers": [{"name": "main", "image": TANK_IMAGE, "command": ["/bin/true"]}]
    })
}

fn running_pod(name: &str) -> Value {
    json!({
        "name": name,
        "restart": "never",
        "stop_grace_period_s": 0,
        "containers": [{"name": "main", "image": TANK_IMAGE,
                        "command": ["/bin/sh", "-c", "echo started; sleep 100"]}]
    })
}

/// `podman run --rm` of `/bin/true`, timed.
fn podman_run_true(podman: &Podman, reference: &str) -> Duration {
    time(podman.command().args([
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        reference,
        "/bin/true",
    ]))
}

// ------------------------------------------------------------ OCI bundle

/// Unpacks the busybox image's layer into `rootfs` (owners and modes kept).
fn unpack_rootfs(rootfs: &Path) {
    std::fs::create_dir_all(rootfs).unwrap();
    let tar = busybox_layer_builder().tar_bytes();
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.unpack(rootfs).unwrap();
}

/// `crun spec` in `bundle`, edited: `/bin/true`, no terminal, the rootfs at
/// `rootfs`, RLIMIT_NOFILE at `nofile` (soft = hard). Namespaces as crun's
/// default (pid, network, ipc, uts, mount).
fn make_bundle(bundle: &Path, rootfs: &Path, nofile: u64) {
    std::fs::create_dir_all(bundle).unwrap();
    run(Command::new("crun").arg("spec").arg("--bundle").arg(bundle));
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["args"] = json!(["/bin/true"]);
    config["process"]["terminal"] = json!(false);
    config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]);
    config["root"]["path"] = json!(rootfs);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// `RUNTIME --root STATE run --bundle BUNDLE ID`, timed; then a forced
/// delete of whatever is left (untimed).
fn oci_run(runtime: &str, state: &Path, bundle: &Path, id: &str) -> Duration {
    let took = time(
        Command::new(runtime)
            .arg("--root")
            .arg(state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id),
    );
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .args(["delete", "-f", id])
        .stdin(Stdio::null())
        .output();
    took
}

fn unshare_floor(rootfs: &Path) -> Duration {
    time(
        Command::new("unshare")
            .args([
                "--mount", "--pid", "--uts", "--ipc", "--net", "--fork", "--root",
            ])
            .arg(rootfs)
            .arg("/bin/true"),
    )
}

/// A pause between two timed starts: lets the kernel finish tearing down
/// the previous one (network namespaces and mounts are released
/// asynchronously, after RCU grace periods) so that it is not charged to
/// the next contender.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(
        env_usize("BENCH_PAUSE_MS", 100) as u64
    ))
    .await;
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() {
    support::require_root();
    let runs = env_usize("BENCH_RUNS", 10).max(1);
    let (_, nofile) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let ip_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok();
    let host_side_before = host_side_paths();
    let scratch = tempfile::Builder::new()
        .prefix("tank-bench-start-")
        .tempdir()
        .unwrap();
    let dir = scratch.path().to_owned();

    // Peers: the rootfs and bundle, podman's image pulled once.
    let rootfs = dir.join("rootfs");
    unpack_rootfs(&rootfs);
    let bundle = dir.join("bundle");
    make_bundle(&bundle, &rootfs, nofile);
    let crun_state = dir.join("crun-state");
    let runc_state = dir.join("runc-state");
    let (peers, hidden) = PeerThread::start(dir.clone());
    let podman = if installed("podman") {
        let registry = Registry::start();
        registry
            .push(REGISTRY_REPO, &Pushable::Image(busybox_image()))
            .await;
        let reference = registry.reference(REGISTRY_REPO);
        let podman = Podman::new(&dir.join("podman"), &registry.addr, nofile);
        let p = podman.clone();
        let r = reference.clone();
        peers.run(move || p.pull(&r));
        // Runs use --pull never: the registry is not needed any more.
        drop(registry);
        Some((podman, reference))
    } else {
        None
    };
    let runc = installed("runc");
    println!(
        "busybox rootfs {}; RLIMIT_NOFILE {nofile}; podman network backend {}; crun/podman {}",
        rootfs.display(),
        Podman::network_backend(),
        if hidden {
            "in a private mount namespace hiding the hybrid cgroup2 controllers"
        } else {
            "in a private mount namespace"
        }
    );

    let mut tank = Tank::start(&dir).await;

    // Warm-up (untimed): every path once, caches filled, podman's first-run
    // setup done; the running pod also proves the workload really runs.
    tank.apply_until(&exit_pod("w0"), "terminated").await;
    tank.delete("w0").await;
    tank.apply_until(&running_pod("w1"), "running").await;
    let deadline = Instant::now() + TIMEOUT;
    while !tank.logs("w1").contains("started") {
        assert!(Instant::now() < deadline, "w1 never printed 'started'");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tank.delete("w1").await;
    if let Some((podman, reference)) = &podman {
        let (p, r) = (podman.clone(), reference.clone());
        peers.run(move || podman_run_true(&p, &r));
    }
    {
        let (s, b) = (crun_state.clone(), bundle.clone());
        peers.run(move || oci_run("crun", &s, &b, "tank-bench-warm"));
    }
    if runc {
        oci_run("runc", &runc_state, &bundle, "tank-bench-warm");
    }
    unshare_floor(&rootfs);

    let mut t: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut exited_steps = Vec::new();
    let contenders: Vec<&str> = CONTENDERS
        .iter()
        .copied()
        .filter(|c| match *c {
            PODMAN => podman.is_some(),
            RUNC => runc,
            _ => true,
        })
        .collect();
    for n in 0..runs {
        // Every round starts with the next contender: none always runs
        // right after the same neighbour.
        for i in 0..contenders.len() {
            let contender = contenders[(i + n) % contenders.len()];
            settle().await;
            let took = match contender {
                TANK_EXITED => {
                    let name = format!("b{n}");
                    let seen = tank.apply_until(&exit_pod(&name), "terminated").await;
                    tank.delete(&name).await;
                    exited_steps.push(seen.clone());
                    seen.terminated.unwrap()
                }
                TANK_RUNNING => {
                    let name = format!("r{n}");
                    let seen = tank.apply_until(&running_pod(&name), "running").await;
                    tank.delete(&name).await;
                    seen.running.unwrap()
                }
                PODMAN => {
                    let (p, r) = podman.clone().unwrap();
                    peers.run(move || podman_run_true(&p, &r))
                }
                CRUN => {
                    let (s, b) = (crun_state.clone(), bundle.clone());
                    let id = format!("tank-bench-{n}");
                    peers.run(move || oci_run("crun", &s, &b, &id))
                }
                RUNC => oci_run("runc", &runc_state, &bundle, &format!("tank-bench-{n}")),
                _ => unshare_floor(&rootfs),
            };
            t.entry(contender).or_default().push(took);
        }
    }

    // Cleanup: tankd and its home, podman's storage (inside the namespace
    // its mounts live in), the namespace, the scratch dir.
    tank.stop();
    drop(tank);
    if let Some((podman, _)) = &podman {
        let p = podman.clone();
        peers.run(move || p.reset());
    }
    drop(peers);
    for path in host_side_paths() {
        if !host_side_before.contains(&path) {
            remove_host_side(&path);
        }
    }
    if let Some(before) = ip_forward {
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok() != Some(before.clone()) {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", before);
        }
    }
    drop(scratch);

    // Report.
    let min: BTreeMap<&str, f64> = t
        .iter()
        .map(|(k, v)| (*k, ms(*v.iter().min().unwrap())))
        .collect();
    let med: BTreeMap<&str, f64> = t.into_iter().map(|(k, v)| (k, ms(median(v)))).collect();
    println!("\nstart→outcome over {runs} runs");
    println!("{:<26} {:>11} {:>9}", "", "median ms", "min ms");
    for name in CONTENDERS {
        if let Some(v) = med.get(name) {
            println!("{name:<26} {v:>11.2} {:>9.2}", min[name]);
        }
    }
    let pick = |f: fn(&Milestones) -> Option<Duration>| {
        let v: Vec<Duration> = exited_steps.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| ms(median(v)))
    };
    println!("\ntank apply→exited, client-side milestones (median ms after the Apply call):");
    if let Some(v) = pick(|m| Some(m.applied)) {
        println!("  Apply reply                {v:>9.2}");
    }
    if let Some(v) = pick(|m| m.running) {
        println!("  Status running             {v:>9.2}");
    }
    if let Some(v) = pick(|m| m.terminated) {
        println!("  Status terminated          {v:>9.2}");
    }
    let signals: Vec<usize> = exited_steps.iter().map(|m| m.signals).collect();
    println!("  Status signals per run     {signals:?}");

    let tank_exit = med[TANK_EXITED];
    println!();
    if let Some(p) = med.get(PODMAN) {
        println!(
            "tank(apply→exited) / podman run = {:.3}  (target <= 0.1)",
            tank_exit / p
        );
    } else {
        println!("(podman not installed: bench/run.sh installs it)");
    }
    let c = med[CRUN];
    println!(
        "tank(apply→exited) / crun run   = {:.2}   (target <= 1.5)",
        tank_exit / c
    );
    if let Some(r) = med.get(RUNC) {
        println!("tank(apply→exited) / runc run   = {:.2}", tank_exit / r);
    }
    println!(
        "tank(apply→exited) / floor      = {:.2}",
        tank_exit / med[FLOOR]
    );
}
