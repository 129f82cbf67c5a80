//! A crash-only tankd: after kill -9 (or a stop) the next tankd adopts the
//! containers that still run — same processes, restart counts unchanged —
//! restarts those that died meanwhile per policy, tears down what belongs
//! to no declared pod, and after a reboot brings every declared pod back.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use support::{failed, ok, SystemBus, Tankd, TankdHome, BUSYBOX};

const CONFIG: &str =
    "[reconcile]\nbackoff_base_ms = 200\nbackoff_cap_ms = 1000\nstable_after_s = 1\n";

fn pod(name: &str, restart: &str, script: &str) -> Value {
    json!({"name": name, "restart": restart, "stop_grace_period_s": 1,
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["/bin/sh", "-c", script]}]})
}

fn state(doc: &Value) -> &Value {
    &doc["status"]["containers"]["main"]
}

fn pid_of(doc: &Value) -> Option<i64> {
    state(doc)["state"]["running"]["pid"].as_i64()
}

fn restarts(doc: &Value) -> u64 {
    state(doc)["restart_count"].as_u64().unwrap()
}

fn starts(doc: &Value) -> usize {
    doc["status"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "Started")
        .count()
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z"))
        .unwrap_or(false)
}

/// The processes in a container's (v1 pids) cgroup.
fn cgroup_procs(home: &TankdHome, pod: &str) -> Option<Vec<i64>> {
    let dir = Path::new("/sys/fs/cgroup/pids")
        .join(home.v1_root())
        .join("pods")
        .join(pod)
        .join("main");
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(procs.lines().filter_map(|l| l.parse().ok()).collect())
}

fn wait_until(what: &str, secs: u64, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ticks(tankd: &Tankd, pod: &str) -> Vec<u64> {
    ok(&tankd.tankctl(&["logs", pod]))
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect()
}

#[test]
fn kill_9_of_tankd_adopts_running_containers() {
    let bus = SystemBus::start();
    let home = TankdHome::with_config(CONFIG);
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    let names = ["a", "b", "c", "d"];
    for name in names {
        tankd.apply(&pod(name, "always", "sleep 1000"));
    }
    // Writes all the time, also while no tankd reads: it must neither get
    // SIGPIPE nor lose what it wrote meanwhile.
    tankd.apply(&pod(
        "ticker",
        "always",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.02; done",
    ));
    let mut pids = Vec::new();
    for name in names.iter().chain(&["ticker"]) {
        let doc = tankd.wait_for(name, "running", 30, |d| pid_of(d).is_some());
        pids.push((*name, pid_of(&doc).unwrap()));
    }
    wait_until("output", 10, || !ticks(&tankd, "ticker").is_empty());
    tankd.kill9();
    std::thread::sleep(Duration::from_millis(500));

    // READY=1 comes after adoption: the status is already carried on.
    let tankd = Tankd::start_in(&bus, &home);
    for (name, pid) in &pids {
        let doc = tankd.get(name);
        assert_eq!(doc["phase"], "Running", "{name}: {doc:#}");
        assert_eq!(pid_of(&doc), Some(*pid), "{name}: same process: {doc:#}");
        assert_eq!(restarts(&doc), 0, "{name}: {doc:#}");
        assert_eq!(starts(&doc), 1, "{name}: started once: {doc:#}");
        assert!(alive(*pid));
        // Never two instances: the adopted process is all there is.
        let procs = cgroup_procs(&home, name).expect("cgroup kept");
        assert!(procs.contains(pid), "{name}: {procs:?}");
    }
    // The output written while tankd was down is drained, none missing.
    wait_until("output after the restart", 10, || {
        ticks(&tankd, "ticker").len() > 40
    });
    let seen = ticks(&tankd, "ticker");
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    assert_eq!(seen, expected, "every line, in order");

    // Stays adopted: the resync and a re-apply change nothing.
    tankd.apply(&pod("a", "always", "sleep 1000"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pid_of(&tankd.get("a")), Some(pids[0].1));

    // An adopted container that dies is restarted (its exit status is
    // unknown to the new tankd: a failure), counted once.
    kill(Pid::from_raw(pids[0].1 as i32), Signal::SIGKILL).unwrap();
    let doc = tankd.wait_for("a", "a restart", 20, |d| {
        pid_of(d).is_some_and(|p| p != pids[0].1)
    });
    assert_eq!(restarts(&doc), 1, "{doc:#}");
    let events = doc["status"]["events"].to_string();
    assert!(events.contains("status unknown"), "{doc:#}");

    // Deleting an adopted pod stops it.
    ok(&tankd.tankctl(&["delete", "--wait", "b"]));
    assert!(!alive(pids[1].1));
    assert!(cgroup_procs(&home, "b").is_none());
}

#[test]
fn containers_that_died_while_tankd_was_down_come_back_per_policy() {
    let bus = SystemBus::start();
    let home = TankdHome::with_config(CONFIG);
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    tankd.apply(&pod("always", "always", "sleep 1000"));
    tankd.apply(&pod("onfail", "on_failure", "sleep 1000"));
    tankd.apply(&pod("never", "never", "sleep 1000"));
    tankd.apply(&pod("done", "never", "exit 0"));
    let mut pids = Vec::new();
    for name in ["always", "onfail", "never"] {
        let doc = tankd.wait_for(name, "running", 30, |d| pid_of(d).is_some());
        pids.push(pid_of(&doc).unwrap());
    }
    tankd.wait_for("done", "success", 30, |d| d["phase"] == "Succeeded");
    tankd.kill9();
    for pid in &pids {
        kill(Pid::from_raw(*pid as i32), Signal::SIGKILL).unwrap();
    }
    wait_until("the containers to die", 10, || {
        pids.iter().all(|p| !alive(*p))
    });

    let tankd = Tankd::start_in(&bus, &home);
    // Exit status unknown = a failure: always and on_failure restart...
    for (name, old) in [("always", pids[0]), ("onfail", pids[1])] {
        let doc = tankd.wait_for(name, "a restart", 30, |d| {
            pid_of(d).is_some_and(|p| p != old)
        });
        assert_eq!(restarts(&doc), 1, "{name}: {doc:#}");
        assert_eq!(doc["phase"], "Running");
    }
    // ...never does not; a completed pod does not run again.
    let doc = tankd.wait_for("never", "failed", 30, |d| d["phase"] == "Failed");
    assert_eq!(
        state(&doc)["state"]["terminated"]["reason"],
        "ContainerStatusUnknown",
        "{doc:#}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let doc = tankd.get("done");
    assert_eq!(doc["phase"], "Succeeded", "{doc:#}");
    assert_eq!(starts(&doc), 1, "{doc:#}");
    assert_eq!(restarts(&tankd.get("never")), 0);
}

#[test]
fn leftovers_of_a_pod_deleted_before_a_crash_are_torn_down() {
    let bus = SystemBus::start();
    let home = TankdHome::with_config(CONFIG);
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    tankd.apply(&json!({"name": "stubborn", "stop_grace_period_s": 60,
        "containers": [{"name": "main", "image": BUSYBOX,
            "command": ["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait"]}]}));
    tankd.apply(&pod("kept", "always", "sleep 1000"));
    let stubborn =
        pid_of(&tankd.wait_for("stubborn", "running", 30, |d| pid_of(d).is_some())).unwrap();
    let kept = pid_of(&tankd.wait_for("kept", "running", 30, |d| pid_of(d).is_some())).unwrap();
    // Deleted, and tankd dies within the grace period.
    ok(&tankd.tankctl(&["delete", "stubborn"]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(stubborn));
    tankd.kill9();

    let tankd = Tankd::start_in(&bus, &home);
    assert!(!alive(stubborn), "leftover killed before READY");
    assert!(cgroup_procs(&home, "stubborn").is_none());
    let err = failed(&tankd.tankctl(&["get", "stubborn"]));
    assert!(err.contains("not found"), "{err}");
    assert!(!run_dir(&home).join("containers/stubborn").exists());
    assert!(!home.path().join("data/containers/stubborn").exists());
    assert_eq!(pid_of(&tankd.get("kept")), Some(kept));
}

#[test]
fn after_a_reboot_every_declared_pod_comes_back() {
    let bus = SystemBus::start();
    let home = TankdHome::with_config(CONFIG);
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    tankd.apply(&pod("web", "always", "sleep 1000"));
    tankd.apply(&pod("job", "never", "sleep 1000"));
    let mut pids = Vec::new();
    for name in ["web", "job"] {
        pids.push(pid_of(&tankd.wait_for(name, "running", 30, |d| pid_of(d).is_some())).unwrap());
    }
    // A clean stop leaves containers running (a restart adopts them)...
    assert!(tankd.stop().success());
    assert!(pids.iter().all(|p| alive(*p)));
    // ...a reboot does not: processes, cgroups, /run are gone.
    for pid in &pids {
        kill(Pid::from_raw(*pid as i32), Signal::SIGKILL).unwrap();
    }
    wait_until("the containers to die", 10, || {
        pids.iter().all(|p| !alive(*p))
    });
    let run = run_dir(&home);
    if let Ok(entries) = std::fs::read_dir(run.join("netns")) {
        for entry in entries.flatten() {
            nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
    }
    std::fs::remove_dir_all(&run).unwrap();

    let tankd = Tankd::start_in(&bus, &home);
    for name in ["web", "job"] {
        let doc = tankd.wait_for(name, "running", 30, |d| pid_of(d).is_some());
        assert_eq!(restarts(&doc), 0, "{name}: a fresh start: {doc:#}");
    }
}

#[test]
fn an_adopted_container_is_stopped_with_its_stop_signal() {
    use support::images::{busybox_layer, host_platform, image, Pushable, DEFAULT_PATH};
    let bus = SystemBus::start();
    let home = TankdHome::with_config(CONFIG);
    let tankd = Tankd::start_in(&bus, &home);
    let quit = image(
        vec![busybox_layer()],
        json!({"Cmd": ["/bin/sh"], "Env": [DEFAULT_PATH], "StopSignal": "SIGQUIT"}),
        host_platform(),
    );
    tankd.import(&[("localhost/tank/quit:1", &Pushable::Image(quit))]);
    let script = "trap 'echo got QUIT; exit 0' QUIT; trap 'echo got TERM; exit 0' TERM; \
                  echo ready; while true; do sleep 0.1; done";
    let spec = |generation: &str| {
        json!({"name": "quitter", "restart": "never", "stop_grace_period_s": 5,
            "containers": [{"name": "main", "image": "localhost/tank/quit:1",
                "env": {"GENERATION": generation},
                "command": ["/bin/sh", "-c", script]}]})
    };
    tankd.apply(&spec("1"));
    let pid = pid_of(&tankd.wait_for("quitter", "running", 30, |d| pid_of(d).is_some())).unwrap();
    wait_until("ready", 10, || {
        ok(&tankd.tankctl(&["logs", "quitter"])).contains("ready")
    });
    tankd.kill9();
    let tankd = Tankd::start_in(&bus, &home);
    assert_eq!(pid_of(&tankd.get("quitter")), Some(pid), "adopted");
    // A new generation stops the adopted one: with the image's StopSignal.
    tankd.apply(&spec("2"));
    wait_until("the new generation", 30, || {
        ok(&tankd.tankctl(&["logs", "quitter"]))
            .matches("ready")
            .count()
            == 2
    });
    let logs = ok(&tankd.tankctl(&["logs", "quitter"]));
    assert_eq!(logs, "ready\ngot QUIT\nready\n");
}

fn run_dir(home: &TankdHome) -> PathBuf {
    home.path().join("run")
}
