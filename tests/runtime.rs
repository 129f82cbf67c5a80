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
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_tankctl"))
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
