//! The reconcile loop through tankd: restart policies, backoff and its
//! reset, outside kills, replacement on a spec change, idempotent apply.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use support::{ok, SystemBus, Tankd, TankdHome, BUSYBOX};

/// tankd with small backoff settings and the busybox image imported.
fn tankd(bus: &SystemBus) -> Tankd {
    let home = TankdHome::with_config(
        "[reconcile]\nbackoff_base_ms = 500\nbackoff_cap_ms = 2000\nstable_after_s = 1\n",
    );
    let mut tankd = Tankd::start_in(bus, &home);
    tankd.import_busybox();
    tankd.keep_home(home);
    tankd
}

fn pod(name: &str, restart: &str, script: &str) -> Value {
    json!({"name": name, "restart": restart, "stop_grace_period_s": 1,
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["/bin/sh", "-c", script]}]})
}

fn main_state(doc: &Value) -> &Value {
    &doc["status"]["containers"]["main"]
}

fn running_pid(doc: &Value) -> Option<i64> {
    main_state(doc)["state"]["running"]["pid"].as_i64()
}

fn restarts(doc: &Value) -> u64 {
    main_state(doc)["restart_count"].as_u64().unwrap_or(0)
}

/// Times of the pod's events with this reason.
fn event_times(doc: &Value, reason: &str) -> Vec<SystemTime> {
    doc["status"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason)
        .map(|e| humantime::parse_rfc3339(e["time"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn never_and_on_failure_policies() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.apply(&pod("ok-never", "never", "exit 0"));
    tankd.apply(&pod("bad-never", "never", "exit 1"));
    tankd.apply(&pod("ok-onfail", "on_failure", "exit 0"));
    let done = |d: &Value| main_state(d)["state"].get("terminated").is_some();
    assert_eq!(
        tankd.wait_for("ok-never", "exit", 20, done)["phase"],
        "Succeeded"
    );
    assert_eq!(
        tankd.wait_for("bad-never", "exit", 20, done)["phase"],
        "Failed"
    );
    let doc = tankd.wait_for("ok-onfail", "exit", 20, done);
    assert_eq!(doc["phase"], "Succeeded");
    // Nothing restarts them, even across a resync-worthy wait.
    std::thread::sleep(Duration::from_millis(1500));
    for name in ["ok-never", "bad-never", "ok-onfail"] {
        let doc = tankd.get(name);
        assert_eq!(restarts(&doc), 0, "{name}: {doc:#}");
        assert_eq!(event_times(&doc, "Started").len(), 1, "{name}: {doc:#}");
    }
    // on_failure restarts a failure.
    tankd.apply(&pod("bad-onfail", "on_failure", "exit 1"));
    tankd.wait_for("bad-onfail", "a restart", 20, |d| restarts(d) >= 1);
}

#[test]
fn crash_loop_backoff_follows_the_formula() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.apply(&pod("crasher", "always", "exit 1"));
    // Starts: t0; restarts after 0, 0.5, 1, 2, 2 s (base 0.5 s, cap 2 s).
    let doc = tankd.wait_for("crasher", "6 starts", 30, |d| {
        event_times(d, "Started").len() >= 6
    });
    // The backoff runs from an exit to the next start: measure exactly that
    // (the run of `exit 1` itself takes longer on a loaded machine).
    let starts = event_times(&doc, "Started");
    let exits = event_times(&doc, "Exited");
    let gaps: Vec<f64> = starts[1..]
        .iter()
        .map(|start| {
            let exit = exits.iter().rev().find(|e| *e <= start).unwrap();
            start.duration_since(*exit).unwrap().as_secs_f64()
        })
        .collect();
    let expected = [0.0, 0.5, 1.0, 2.0, 2.0];
    for (gap, want) in gaps.iter().zip(expected) {
        // Within 20% of the formula, or of the cost of a start.
        let slack = (want * 0.2_f64).max(0.15);
        assert!(
            (gap - want).abs() <= slack,
            "gaps {gaps:?}, expected {expected:?}"
        );
    }
    assert!(ok(&tankd.tankctl(&["ps"])).contains("crasher"));
    assert!(!event_times(&doc, "BackOff").is_empty());
    assert!(restarts(&doc) >= 5);
}

#[test]
fn backoff_resets_after_a_stable_run() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    // Each run lasts 1.3 s > stable_after (1 s): every restart is immediate.
    tankd.apply(&pod("steady", "always", "sleep 1.3; exit 1"));
    let doc = tankd.wait_for("steady", "4 starts", 30, |d| {
        event_times(d, "Started").len() >= 4
    });
    let starts = event_times(&doc, "Started");
    for w in starts.windows(2) {
        let gap = w[1].duration_since(w[0]).unwrap().as_secs_f64();
        assert!(
            (1.2..1.8).contains(&gap),
            "gap {gap} (run 1.3 s, no backoff)"
        );
    }
    assert!(event_times(&doc, "BackOff").is_empty(), "{doc:#}");
}

#[test]
fn killed_from_outside_is_restarted_and_reapply_is_idempotent() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    let spec = pod("server", "always", "sleep 1000");
    tankd.apply(&spec);
    let doc = tankd.wait_for("server", "running", 20, |d| running_pid(d).is_some());
    let pid = running_pid(&doc).unwrap();

    // The same spec again: no new generation, no restart.
    tankd.apply(&spec);
    std::thread::sleep(Duration::from_millis(500));
    let doc = tankd.get("server");
    assert_eq!(doc["generation"], 1);
    assert_eq!(running_pid(&doc), Some(pid));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let doc = tankd.wait_for("server", "a new process", 20, |d| {
        running_pid(d).is_some_and(|p| p != pid)
    });
    assert_eq!(restarts(&doc), 1);

    // A changed spec replaces the pod.
    let pid = running_pid(&doc).unwrap();
    tankd.apply(&pod("server", "always", "sleep 2000"));
    let doc = tankd.wait_for("server", "the new generation running", 20, |d| {
        d["status"]["observed_generation"] == 2 && running_pid(d).is_some_and(|p| p != pid)
    });
    assert_eq!(
        restarts(&doc),
        0,
        "a new generation starts counting afresh: {doc:#}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    ok(&tankd.tankctl(&["delete", "server"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_backoff_recovers_when_the_image_appears() {
    use support::images::{busybox_image, Pushable};
    let registry = support::registry::Registry::start();
    let bus = SystemBus::start();
    let home = TankdHome::with_config(&format!(
        "[registries]\ninsecure = [\"{}\"]\n[reconcile]\nbackoff_base_ms = 300\nbackoff_cap_ms = 1000\n",
        registry.addr
    ));
    let mut tankd = Tankd::start_in(&bus, &home);
    tankd.keep_home(home);
    let reference = registry.reference("late:1");
    tankd.apply(
        &json!({"name": "late", "containers": [{"name": "main", "image": reference,
        "command": ["sleep", "1000"]}]}),
    );
    let doc = tankd.wait_for("late", "ImagePullBackOff", 30, |d| {
        main_state(d)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let message = main_state(&doc)["state"]["waiting"]["message"].to_string();
    assert!(message.contains("retrying in"), "{message}");
    // Still backing off a little later (it keeps retrying, never runs).
    std::thread::sleep(Duration::from_millis(800));
    assert!(running_pid(&tankd.get("late")).is_none());

    registry
        .push("late:1", &Pushable::Image(busybox_image()))
        .await;
    let doc = tankd.wait_for("late", "running once the image exists", 30, |d| {
        running_pid(d).is_some()
    });
    assert_eq!(restarts(&doc), 0, "pull retries are not restarts");
    ok(&tankd.tankctl(&["delete", "late"]));
}

#[test]
fn apply_wait_blocks_until_converged_or_times_out() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    let out = ok(&tankd.tankctl_stdin(
        &["apply", "--wait", "-f", "-"],
        Some(&pod("waiter", "always", "sleep 1000").to_string()),
    ));
    assert_eq!(
        out,
        "pod/waiter applied (generation 1)\npod/waiter Running\n"
    );
    assert!(running_pid(&tankd.get("waiter")).is_some());

    let unpullable = json!({"name": "stuck", "containers": [{"name": "main",
        "image": format!("{}/nothing:1", support::NO_REGISTRY)}]});
    let started = std::time::Instant::now();
    let err = support::failed(&tankd.tankctl_stdin(
        &["apply", "--wait", "--timeout", "2", "-f", "-"],
        Some(&unpullable.to_string()),
    ));
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        err,
        "tankctl: timed out after 2s: pod is Pending (ImagePullBackOff)\n"
    );
}

#[test]
fn systemd_status_and_watchdog_from_the_loop() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let mut tankd = Tankd::spawn_with_env(&bus, &home, &[("WATCHDOG_USEC", "400000")]);
    tankd.wait_ready().unwrap();
    tankd.import_busybox();
    // WATCHDOG=1 keeps coming while nothing happens (every 0.2 s here).
    for _ in 0..3 {
        assert!(
            tankd
                .notify_message("WATCHDOG=1", Duration::from_secs(2))
                .is_some(),
            "no WATCHDOG=1 from the loop"
        );
    }
    tankd.apply(&pod("counted", "always", "sleep 1000"));
    let status = tankd
        .notify_message("STATUS=1 pods: 1 running", Duration::from_secs(20))
        .expect("STATUS= with the pod counts");
    assert!(status.contains("0 failed"), "{status}");
    ok(&tankd.tankctl(&["delete", "counted"]));
    tankd.keep_home(home);
}

#[test]
fn resync_repairs_limits_and_the_netns_pin_without_a_restart() {
    use std::os::unix::fs::MetadataExt;
    let bus = SystemBus::start();
    let home = TankdHome::with_config("[reconcile]\nresync_s = 1\n");
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    tankd.apply(
        &json!({"name": "drifty", "containers": [{"name": "main", "image": BUSYBOX,
        "command": ["sleep", "1000"], "limits": {"memory": 67108864, "pids": 50}}]}),
    );
    let pid = running_pid(&tankd.wait_for("drifty", "running", 30, |d| running_pid(d).is_some()))
        .unwrap();
    let cgroup = |controller: &str, file: &str| {
        std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(home.v1_root())
            .join("pods/drifty/main")
            .join(file)
    };
    let memory = cgroup("memory", "memory.limit_in_bytes");
    let pids = cgroup("pids", "pids.max");
    assert_eq!(std::fs::read_to_string(&memory).unwrap().trim(), "67108864");
    // Someone loosens the limits and unmounts the namespace pin.
    // Where swap is accounted, memsw bounds the memory limit: raise it first.
    let memsw = cgroup("memory", "memory.memsw.limit_in_bytes");
    if memsw.exists() {
        std::fs::write(&memsw, "134217728").unwrap();
    }
    std::fs::write(&memory, "134217728").unwrap();
    std::fs::write(&pids, "max").unwrap();
    let pin = home.path().join("run/netns/drifty");
    nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH).unwrap();

    let doc = tankd.wait_for("drifty", "the repair", 10, |d| {
        d["status"]["events"]
            .to_string()
            .contains("network namespace pinned again")
    });
    assert_eq!(std::fs::read_to_string(&memory).unwrap().trim(), "67108864");
    assert_eq!(std::fs::read_to_string(&pids).unwrap().trim(), "50");
    assert!(
        doc["status"]["events"]
            .to_string()
            .contains("limits of main restored"),
        "{doc:#}"
    );
    // The pin is the container's own namespace again, and nothing restarted.
    let pinned = std::fs::metadata(&pin).unwrap().ino();
    let in_container = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(pinned, in_container);
    assert_eq!(running_pid(&doc), Some(pid));
    assert_eq!(restarts(&doc), 0);
}
