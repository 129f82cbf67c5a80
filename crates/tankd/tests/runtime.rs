//! Containers for real, through tankd: namespaces, rootfs, volumes,
//! identity, limits, exit reporting, logs and teardown. Images are
//! imported from OCI archives the fixtures build from busybox-static.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::images::{busybox_image, user_entrypoint_image, Pushable};
use support::{failed, ok, SystemBus, Tankd, TankdHome, BUSYBOX};

const APP: &str = "localhost/tank/app:1";

/// tankd with the test images imported.
fn tankd(bus: &SystemBus) -> Tankd {
    tankd_and_cgroup_root(bus).0
}

/// tankd with the test images imported, and the v1 cgroup root it uses.
fn tankd_and_cgroup_root(bus: &SystemBus) -> (Tankd, String) {
    let home = TankdHome::new();
    let v1_root = home.v1_root();
    let mut tankd = Tankd::start_in(bus, &home);
    tankd.import(&[
        (BUSYBOX, &Pushable::Image(busybox_image())),
        (APP, &Pushable::Image(user_entrypoint_image())),
    ]);
    tankd.keep_home(home);
    (tankd, v1_root)
}

fn container_state<'a>(doc: &'a Value, container: &str) -> &'a Value {
    &doc["status"]["containers"][container]["state"]
}

fn terminated(doc: &Value, container: &str) -> bool {
    container_state(doc, container).get("terminated").is_some()
}

fn running(doc: &Value, container: &str) -> bool {
    container_state(doc, container).get("running").is_some()
}

/// The whole output of a container that has exited.
fn run_to_end(tankd: &Tankd, name: &str, pod: Value) -> (Value, String) {
    tankd.apply(&pod);
    let doc = tankd.wait_for(name, "exit", 30, |d| terminated(d, "main"));
    let logs = ok(&tankd.tankctl(&["logs", name]));
    (doc, logs)
}

fn pod(name: &str, image: &str, script: &str) -> Value {
    serde_json::json!({
        "name": name,
        "restart": "never",
        "containers": [{"name": "main", "image": image,
                        "command": ["/bin/sh", "-c", script]}]
    })
}

#[test]
fn pid_1_hostname_and_an_isolated_filesystem() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    let marker = format!("/var/tmp/tank-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let (doc, logs) = run_to_end(
        &tankd,
        "iso",
        pod(
            "iso",
            BUSYBOX,
            &format!(
                "echo pid=$$; echo host=$(hostname); ps -o pid,comm | tail -n +2 | wc -l; \
                 test -e {marker} && echo LEAK; cat /proc/mounts; ls /"
            ),
        ),
    );
    let _ = std::fs::remove_file(&marker);
    assert_eq!(doc["phase"], "Succeeded", "{doc:#}");
    assert!(logs.contains("pid=1\n"), "{logs}");
    assert!(logs.contains("host=iso\n"), "{logs}");
    // ps, wc and sh only (the pipeline's processes): nothing of the host.
    let count: usize = logs
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("a process count");
    assert!(
        count <= 4,
        "only the container's processes: {count}\n{logs}"
    );
    assert!(!logs.contains("LEAK"), "host file visible:\n{logs}");
    assert!(logs.contains("overlay / overlay"), "{logs}");
    // Only the container's own mount points.
    let allowed = [
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
    ];
    for line in logs.lines().filter(|l| l.split(' ').count() == 6) {
        let point = line.split(' ').nth(1).unwrap();
        assert!(
            allowed.contains(&point) || point.starts_with("/proc/") || point.starts_with("/sys/"),
            "unexpected mount {point}:\n{logs}"
        );
    }
    for expected in [
        "proc /proc proc",
        "tmpfs /dev tmpfs",
        "devpts /dev/pts",
        "mqueue /dev/mqueue",
        "sysfs /sys sysfs ro",
    ] {
        assert!(logs.contains(expected), "{expected} missing:\n{logs}");
    }
}

#[test]
fn exit_codes_signals_and_logs() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    let (doc, logs) = run_to_end(
        &tankd,
        "three",
        pod("three", BUSYBOX, "echo hi; echo oops >&2; exit 3"),
    );
    assert_eq!(doc["phase"], "Failed");
    assert_eq!(container_state(&doc, "main")["terminated"]["exit_code"], 3);
    assert_eq!(
        container_state(&doc, "main")["terminated"]["reason"],
        "Error"
    );
    // Two pipes: the order across stdout and stderr is not kept (as with
    // any runtime); each stream's own order is.
    let mut lines: Vec<&str> = logs.lines().collect();
    lines.sort();
    assert_eq!(lines, ["hi", "oops"], "{logs}");
    let stamped = ok(&tankd.tankctl(&["logs", "three", "--timestamps", "--tail", "2"]));
    assert!(stamped.contains(" stderr F oops"), "{stamped}");
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert!(ps.contains("Exited(3)"), "{ps}");
    let described = ok(&tankd.tankctl(&["describe", "three"]));
    assert!(described.contains("Phase:       Failed"), "{described}");
    assert!(
        described.contains("Terminated: Error (exit code 3"),
        "{described}"
    );
    assert!(described.contains("Exited "), "{described}");

    // Killed from outside with SIGKILL.
    tankd.apply(&pod("victim", BUSYBOX, "sleep 1000"));
    let doc = tankd.wait_for("victim", "running", 30, |d| running(d, "main"));
    let pid = container_state(&doc, "main")["running"]["pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let doc = tankd.wait_for("victim", "exit", 30, |d| terminated(d, "main"));
    assert_eq!(
        container_state(&doc, "main")["terminated"]["signal"],
        9,
        "{doc:#}"
    );
    assert!(ok(&tankd.tankctl(&["ps"])).contains("Signaled(9)"));
}

#[test]
fn env_argv_cwd_and_user_from_the_image() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    // The image: User app, Entrypoint [/bin/echo, entry], Cmd [cmd-arg],
    // WorkingDir /home/app, Env FROM_IMAGE=1.
    let (_, logs) = run_to_end(
        &tankd,
        "image-defaults",
        serde_json::json!({"name": "image-defaults", "restart": "never",
            "containers": [{"name": "main", "image": APP}]}),
    );
    assert_eq!(logs, "entry cmd-arg\n");
    let (_, logs) = run_to_end(
        &tankd,
        "merged",
        serde_json::json!({"name": "merged", "restart": "never",
            "containers": [{"name": "main", "image": APP,
                "args": ["/bin/sh", "-c", "id; pwd; echo $FROM_IMAGE $EXTRA; echo \"$0|$1\"", "a b", "c"],
                "env": {"EXTRA": "x=y"}}]}),
    );
    // Entrypoint + spec args: echo prints them verbatim.
    assert_eq!(
        logs,
        "entry /bin/sh -c id; pwd; echo $FROM_IMAGE $EXTRA; echo \"$0|$1\" a b c\n"
    );
    let (_, logs) = run_to_end(
        &tankd,
        "shell",
        serde_json::json!({"name": "shell", "restart": "never",
            "containers": [{"name": "main", "image": APP,
                "command": ["/bin/sh", "-c", "id -u; id -g; pwd; echo $FROM_IMAGE $EXTRA; echo \"$0|$1\""],
                "args": ["a b", "c"], "working_dir": "/tmp",
                "env": {"EXTRA": "x=y", "FROM_IMAGE": "2"}}]}),
    );
    assert_eq!(logs, "1000\n1000\n/tmp\n2 x=y\na b|c\n");
}

#[test]
fn volumes_read_only_mounts_and_data_that_outlives_the_pod() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("config"), "from-host\n").unwrap();
    let spec = |script: &str| {
        serde_json::json!({"name": "vol", "restart": "never",
            "volumes": [{"name": "data"}, {"name": "conf", "source": {"host": host.path()}}],
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["/bin/sh", "-c", script],
                "mounts": [{"volume": "data", "path": "/var/lib/app"},
                           {"volume": "conf", "path": "/etc/app", "read_only": true}]}]})
    };
    let (_, logs) = run_to_end(
        &tankd,
        "vol",
        spec(
            "cat /etc/app/config; touch /etc/app/x 2>&1; echo kept > /var/lib/app/data; echo done",
        ),
    );
    assert!(logs.starts_with("from-host\n"), "{logs}");
    assert!(logs.contains("Read-only file system"), "{logs}");
    assert!(!host.path().join("x").exists());

    delete_and_wait(&tankd, "vol");
    let (_, logs) = run_to_end(&tankd, "vol", spec("cat /var/lib/app/data"));
    assert_eq!(logs, "kept\n", "managed volume data survives a pod delete");

    let ls = ok(&tankd.tankctl(&["volume", "ls"]));
    assert!(ls.contains("vol ") && ls.contains("data"), "{ls}");
    let err = failed(&tankd.tankctl(&["volume", "rm", "vol/data"]));
    assert!(err.contains("delete the pod first"), "{err}");
    delete_and_wait(&tankd, "vol");
    ok(&tankd.tankctl(&["volume", "rm", "vol/data"]));
    assert_eq!(ok(&tankd.tankctl(&["volume", "ls"])).lines().count(), 1);
}

fn delete_and_wait(tankd: &Tankd, pod: &str) {
    // The object stays (Terminating) until the teardown has ended.
    ok(&tankd.tankctl(&["delete", "--wait", "--timeout", "30", pod]));
    let err = failed(&tankd.tankctl(&["get", pod]));
    assert!(err.contains("not found"), "{err}");
    let netns = tankd.data_dir.parent().unwrap().join("run/netns").join(pod);
    assert!(
        !nix::sys::statfs::statfs(&netns).is_ok_and(|s| s.filesystem_type().0 == 0x6e73_6673),
        "netns of {pod} not removed"
    );
}

#[test]
fn a_failing_init_step_is_reported_with_its_cause() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.apply(&serde_json::json!({"name": "broken", "restart": "never",
            "volumes": [{"name": "gone", "source": {"host": "/nonexistent/tank-test"}}],
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["true"],
                "mounts": [{"volume": "gone", "path": "/mnt"}]}]}));
    let doc = tankd.wait_for("broken", "a failure", 30, |d| terminated(d, "main"));
    assert_eq!(
        container_state(&doc, "main")["terminated"]["reason"],
        "StartError"
    );
    let events = doc["status"]["events"].to_string();
    assert!(
        events.contains("/nonexistent/tank-test") && events.contains("ENOENT"),
        "{events}"
    );
}

#[test]
fn limits_oom_pids_and_cpu() {
    let bus = SystemBus::start();
    let (tankd, v1_root) = tankd_and_cgroup_root(&bus);

    // Memory: 32 MiB, then a 64 MiB buffer (dd fills it from /dev/zero).
    let (doc, _) = run_to_end(
        &tankd,
        "oom",
        serde_json::json!({"name": "oom", "restart": "never",
            "containers": [{"name": "main", "image": BUSYBOX, "limits": {"memory": 33554432},
                "command": ["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"]}]}),
    );
    assert_eq!(
        container_state(&doc, "main")["terminated"]["reason"],
        "OOMKilled",
        "{doc:#}"
    );
    assert!(ok(&tankd.tankctl(&["ps"])).contains("OOMKilled"));

    // pids: 10; forking 30 sleepers fails.
    let (_, logs) = run_to_end(
        &tankd,
        "pids",
        serde_json::json!({"name": "pids", "restart": "never",
            "containers": [{"name": "main", "image": BUSYBOX, "limits": {"pids": 10},
                "command": ["/bin/sh", "-c", "for i in $(seq 30); do sleep 5 & done 2>&1; echo forked"]}]}),
    );
    assert!(
        logs.contains("can't fork") || logs.contains("Resource temporarily unavailable"),
        "{logs}"
    );

    // cpu: 10 ms per 100 ms; two spinners get throttled.
    tankd.apply(&serde_json::json!({"name": "cpu", "restart": "never",
            "containers": [{"name": "main", "image": BUSYBOX,
                "limits": {"cpu": {"quota_us": 10000, "period_us": 100000}},
                "command": ["/bin/sh", "-c", "while :; do :; done & while :; do :; done"]}]}));
    tankd.wait_for("cpu", "running", 30, |d| running(d, "main"));
    let stat = Path::new("/sys/fs/cgroup/cpu")
        .join(&v1_root)
        .join("pods/cpu/main/cpu.stat");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        let throttled: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if throttled > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no throttling in {}: {text}",
            stat.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    delete_and_wait(&tankd, "cpu");
}

#[test]
fn delete_leaves_no_process_mount_or_cgroup() {
    let bus = SystemBus::start();
    let (tankd, v1_root) = tankd_and_cgroup_root(&bus);
    let data_dir = tankd.data_dir.clone();

    tankd.apply(&serde_json::json!({"name": "gone", "stop_grace_period_s": 1,
            "containers": [
                {"name": "a", "image": BUSYBOX, "command": ["/bin/sh", "-c", "trap '' TERM; sleep 1000 & wait"]},
                {"name": "b", "image": BUSYBOX, "command": ["sleep", "1000"]}]}),
    );
    let doc = tankd.wait_for("gone", "running", 30, |d| {
        running(d, "a") && running(d, "b")
    });
    assert_eq!(doc["phase"], "Running");
    let pids: Vec<i64> = ["a", "b"]
        .iter()
        .map(|c| container_state(&doc, c)["running"]["pid"].as_i64().unwrap())
        .collect();
    // Container a ignores SIGTERM: for its 1 s grace period the pod shows
    // as Terminating, then goes.
    ok(&tankd.tankctl(&["delete", "gone"]));
    let row = ok(&tankd.tankctl(&["get", "gone"]));
    assert!(row.contains("Terminating"), "{row}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tankd.tankctl(&["get", "gone"]).status.success() {
        assert!(Instant::now() < deadline, "pod object never went");
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z"),
            "process {pid} still running"
        );
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(data_dir.to_str().unwrap()),
        "{mountinfo}"
    );
    // In every hierarchy (containers join them all).
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
        let dir = hierarchy.unwrap().path().join(&v1_root).join("pods/gone");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(!data_dir.join("containers/gone").exists());
}

#[test]
fn logs_follow_streams_new_output() {
    use std::io::{BufRead, BufReader};
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.apply(&pod(
        "chatty",
        BUSYBOX,
        "echo one; sleep 1; echo two; sleep 1000",
    ));
    tankd.wait_for("chatty", "running", 30, |d| running(d, "main"));
    let mut follower = std::process::Command::new(support::tankctl_bin())
        .args(["logs", "-f", "chatty"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("earlier output");
    assert_eq!(first, "one");
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("output written later");
    assert_eq!(second, "two");
    let _ = follower.kill();
    let _ = follower.wait();
    // The container is unaffected by the follower going away.
    assert!(running(&tankd.get("chatty"), "main"));
    ok(&tankd.tankctl(&["delete", "chatty"]));
}

/// tankctl with `args` on `bus`; its output if it returned within `limit`
/// (it is killed otherwise).
fn tankctl_within(
    bus: &SystemBus,
    args: &[&str],
    limit: Duration,
) -> Result<std::process::Output, String> {
    let child = std::process::Command::new(support::tankctl_bin())
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => Ok(output.unwrap()),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let output = rx.recv().unwrap().unwrap();
            Err(format!(
                "tankctl {args:?} did not return within {limit:?}; its output so far:\n{}",
                String::from_utf8_lossy(&output.stdout)
            ))
        }
    }
}

#[test]
fn logs_follow_ends_when_the_run_ends() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.apply(&pod(
        "finite",
        BUSYBOX,
        "echo one; sleep 1; echo two; sleep 1; echo three",
    ));
    tankd.wait_for("finite", "running", 30, |d| running(d, "main"));
    // Followed while it runs: everything, then the end of the stream.
    let out = tankctl_within(&bus, &["logs", "-f", "finite"], Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    assert!(terminated(&tankd.get("finite"), "main"));
    // Followed after its end: everything, and back at once.
    let started = Instant::now();
    let out = tankctl_within(&bus, &["logs", "-f", "finite"], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let out = tankctl_within(
        &bus,
        &["logs", "-f", "--tail", "2", "finite"],
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\nthree\n");
}

#[test]
fn logs_follow_of_a_restarting_container_ends_with_the_run_it_follows() {
    let bus = SystemBus::start();
    let home =
        TankdHome::with_config("[reconcile]\nbackoff_base_ms = 2000\nbackoff_cap_ms = 2000\n");
    let mut tankd = Tankd::start_in(&bus, &home);
    tankd.import_busybox();
    tankd.keep_home(home);
    tankd.apply(&serde_json::json!({"name": "again", "restart": "always",
        "containers": [{"name": "main", "image": BUSYBOX,
            "command": ["/bin/sh", "-c", "echo start; sleep 2; echo end"]}]}));
    tankd.wait_for("again", "running", 30, |d| running(d, "main"));
    let out = tankctl_within(&bus, &["logs", "-f", "again"], Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The stream ends with the run it followed (as kubectl's): never in
    // the middle of a later run.
    assert!(text.ends_with("end\n"), "{text}");
    assert_eq!(
        text.matches("start\n").count(),
        text.matches("end\n").count(),
        "{text}"
    );
}

/// busybox whose image config sets `StopSignal` SIGQUIT.
fn quit_image() -> support::images::OciImage {
    use support::images::{busybox_layer, host_platform, image, DEFAULT_PATH};
    image(
        vec![busybox_layer()],
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": [DEFAULT_PATH], "StopSignal": "SIGQUIT"}),
        host_platform(),
    )
}

const QUIT_IMAGE: &str = "localhost/tank/quit:1";

/// A shell that reports which of QUIT and TERM arrived (and exits on it
/// when `exits`).
fn trapping(name: &str, image: &str, stop_signal: Option<Value>, exits: bool) -> Value {
    let then = if exits { "; exit 0" } else { "" };
    let script = format!(
        "trap 'echo got QUIT{then}' QUIT; trap 'echo got TERM{then}' TERM; \
         echo ready; while true; do sleep 0.1; done"
    );
    let mut doc = serde_json::json!({"name": name, "restart": "never", "stop_grace_period_s": 1,
        "containers": [{"name": "main", "image": image, "command": ["/bin/sh", "-c", script]}]});
    if let Some(signal) = stop_signal {
        doc["containers"][0]["stop_signal"] = signal;
    }
    doc
}

/// Waits until the pod's log has `needle` `times` times; returns the log.
fn wait_log(tankd: &Tankd, pod: &str, needle: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = ok(&tankd.tankctl(&["logs", pod]));
        if logs.matches(needle).count() >= times {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "not {times} times {needle:?} in the log of {pod}:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the running generation of `doc` by applying a changed spec (the
/// log survives, unlike a delete); returns the log of the stopped run.
fn replace_and_read_log(tankd: &Tankd, mut doc: Value) -> String {
    let name = doc["name"].as_str().unwrap().to_owned();
    tankd.apply(&doc);
    wait_log(tankd, &name, "ready\n", 1);
    doc["containers"][0]["env"] = serde_json::json!({"GENERATION": "2"});
    tankd.apply(&doc);
    let logs = wait_log(tankd, &name, "ready\n", 2);
    logs.split("ready\n").nth(1).unwrap().to_owned()
}

#[test]
fn stop_sends_the_images_stop_signal_or_the_specs_then_sigkill() {
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    tankd.import(&[(QUIT_IMAGE, &Pushable::Image(quit_image()))]);

    // The image's StopSignal.
    let logs = replace_and_read_log(&tankd, trapping("quit", QUIT_IMAGE, None, true));
    assert_eq!(logs, "got QUIT\n");
    // The spec's stop_signal overrides it, by name or number.
    let logs = replace_and_read_log(
        &tankd,
        trapping("term", QUIT_IMAGE, Some("TERM".into()), true),
    );
    assert_eq!(logs, "got TERM\n");
    let logs = replace_and_read_log(&tankd, trapping("number", BUSYBOX, Some(3.into()), true));
    assert_eq!(logs, "got QUIT\n");
    // No StopSignal anywhere: SIGTERM.
    let logs = replace_and_read_log(&tankd, trapping("plain", BUSYBOX, None, true));
    assert_eq!(logs, "got TERM\n");
    // A process that survives its stop signal is killed after the grace
    // period.
    let logs = replace_and_read_log(&tankd, trapping("stubborn", QUIT_IMAGE, None, false));
    assert_eq!(logs, "got QUIT\n");
    let log = std::fs::read_to_string(&tankd.log).unwrap();
    assert!(
        log.contains("stubborn/main: still running after 1s, killing"),
        "{log}"
    );

    // A bad value is refused with the field's path.
    let err = failed(&tankd.tankctl_stdin(
        &["apply", "-f", "-"],
        Some(&trapping("bad", BUSYBOX, Some("SIGNOPE".into()), true).to_string()),
    ));
    assert!(err.contains("containers[0].stop_signal"), "{err}");
}

/// tankd runs its async code on two worker threads: two volumes are
/// removed at once, so that a removal on the workers would hold both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_answers_within_50_ms_while_1_gib_of_volumes_is_removed() {
    const VOLUMES: [&str; 2] = ["one", "two"];
    const FILES: usize = 16 * 1024;
    const FILE_SIZE: usize = 32 * 1024;
    const LIMIT: Duration = Duration::from_millis(50);
    let bus = SystemBus::start();
    let tankd = tankd(&bus);
    // Managed volumes, left behind by their deleted pod...
    tankd.apply(&serde_json::json!({"name": "big", "restart": "never",
        "volumes": [{"name": "one"}, {"name": "two"}],
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["true"],
            "mounts": [{"volume": "one", "path": "/one"}, {"volume": "two", "path": "/two"}]}]}));
    tankd.wait_for("big", "exit", 30, |d| terminated(d, "main"));
    delete_and_wait(&tankd, "big");
    // ...each filled with 512 MiB in 16 Ki files, on disk.
    let volumes = tankd.data_dir.join("volumes/big");
    tokio::task::spawn_blocking(move || {
        let content = vec![0x5au8; FILE_SIZE];
        for volume in VOLUMES {
            let volume = volumes.join(volume);
            assert!(volume.is_dir(), "{}", volume.display());
            for dir in 0..FILES / 1024 {
                let dir = volume.join(format!("d{dir:02}"));
                std::fs::create_dir(&dir).unwrap();
                for file in 0..1024 {
                    std::fs::write(dir.join(format!("f{file:04}")), &content).unwrap();
                }
            }
        }
        nix::unistd::sync();
    })
    .await
    .unwrap();
    // The pod Get reads.
    tankd.apply(&serde_json::json!({"name": "other",
        "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "1000"]}]}));
    tankd.wait_for("other", "running", 30, |d| running(d, "main"));

    let manager = |conn: zbus::Connection| async move {
        zbus::Proxy::new(
            &conn,
            "org.tank.Manager",
            "/org/tank/Manager",
            "org.tank.Manager",
        )
        .await
        .unwrap()
    };
    let getter = manager(bus.connect().await).await;
    let get = || {
        let getter = getter.clone();
        async move {
            let started = Instant::now();
            let _: String = getter.call("Get", &("other",)).await.unwrap();
            started.elapsed()
        }
    };
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(get().await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let mut removals = Vec::new();
    for volume in VOLUMES {
        let remover = manager(bus.connect().await).await;
        removals.push(tokio::spawn(async move {
            let reply: zbus::Result<()> = remover.call("RemoveVolume", &("big", volume)).await;
            reply.unwrap();
        }));
    }
    // Gets while the removals run (at most 200 of them, 20 ms apart).
    let mut during = Vec::new();
    while removals.iter().any(|r| !r.is_finished()) && during.len() < 200 {
        during.push(get().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for removal in removals {
        removal.await.unwrap();
    }
    let took = started.elapsed();
    for volume in VOLUMES {
        assert!(!tankd.data_dir.join("volumes/big").join(volume).exists());
    }
    idle.sort();
    during.sort();
    let report = format!(
        "removals took {took:?}; {} Gets during them: median {:?}, max {:?}; \
         before them: median {:?}, max {:?}",
        during.len(),
        during.get(during.len() / 2),
        during.last(),
        idle[idle.len() / 2],
        idle.last().unwrap(),
    );
    eprintln!("{report}");
    assert!(*during.last().unwrap() < LIMIT, "{report}");
    // The removal itself is slow: the Gets measured overlap it.
    assert!(took > LIMIT * 10, "{report}");
    assert!(during.len() >= 10, "{report}");
}
