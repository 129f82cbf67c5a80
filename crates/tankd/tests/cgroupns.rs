//! What a container sees of its cgroups, through tankd on this hybrid host
//! (v1 memory, pids, cpu, cpuacct, … hierarchies and a unified one without
//! controllers): its own cgroup namespace, whose root is its own cgroup in
//! every hierarchy, and a read-only `/sys/fs/cgroup` showing exactly that —
//! its limits at the top, nothing of the host's tree (no parent, no other
//! pod) — for its PID 1 and for processes exec'd into it, with the pod
//! network "none" (a sysfs of its own) and "host" (the host's sysfs bound
//! in). The cgroup v2 view is checked in the VM
//! (`tests/vm/guest-cgroup-v2.sh`).

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::{ok, SystemBus, Tankd, TankdHome, BUSYBOX};

const MIB: u64 = 1 << 20;

/// Prints what the container sees, one `key=value` per line.
const PROBE: &str = r#"
c=/sys/fs/cgroup
echo "memory=$(cat $c/memory/memory.limit_in_bytes)"
echo "pids=$(cat $c/pids/pids.max)"
echo "quota=$(cat $c/cpu/cpu.cfs_quota_us)"
echo "period=$(cat $c/cpu/cpu.cfs_period_us)"
echo "ls=$(ls $c | tr '\n' ' ')"
echo "subdirs=$(find $c -mindepth 2 -type d | tr '\n' ' ')"
echo "self=$(tr '\n' ' ' < /proc/self/cgroup)"
echo "procs=$(tr '\n' ' ' < $c/memory/cgroup.procs)"
echo "mounts=$(grep " $c" /proc/self/mountinfo | cut -d' ' -f4,5,6 | tr '\n' ';')"
echo "write=$( (echo 5 > $c/pids/pids.max) 2>&1)"
echo "mkdir=$(mkdir $c/memory/escape 2>&1)"
echo "touch=$(touch $c/new 2>&1)"
echo "end=1"
"#;

/// `key=value` lines.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// The hierarchies (and links) this host shows in `/sys/fs/cgroup`.
fn host_entries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// How many hierarchies this host mounts there (its entries but links).
fn host_hierarchies() -> usize {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_type().unwrap().is_symlink())
        .count()
}

fn pod(name: &str, network: Value, memory: u64, pids: u64, cpu: (u64, u64)) -> Value {
    json!({
        "name": name,
        "network": network,
        "containers": [{"name": "main", "image": BUSYBOX,
            "command": ["/bin/sh", "-c", format!("{PROBE}\nexec sleep 1000000")],
            "limits": {"memory": memory, "pids": pids,
                       "cpu": {"quota_us": cpu.0, "period_us": cpu.1}}}]
    })
}

/// Checks one probe's output against the pod's limits.
fn check_view(who: &str, out: &str, memory: u64, pids: u64, cpu: (u64, u64)) {
    let f = fields(out);
    let get = |k: &str| {
        f.get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{who}: no {k}:\n{out}"))
    };
    assert_eq!(get("end"), "1", "{who}: probe incomplete:\n{out}");
    // The container's own limits, at the root of its view.
    assert_eq!(get("memory"), memory.to_string(), "{who}:\n{out}");
    assert_eq!(get("pids"), pids.to_string(), "{who}:\n{out}");
    assert_eq!(get("quota"), cpu.0.to_string(), "{who}:\n{out}");
    assert_eq!(get("period"), cpu.1.to_string(), "{who}:\n{out}");
    // Every hierarchy the host shows, and nothing below their roots: no
    // tank root, no other pod, no other container.
    let mut seen: Vec<&str> = get("ls").split_whitespace().collect();
    seen.sort();
    assert_eq!(seen, host_entries(), "{who}:\n{out}");
    assert_eq!(get("subdirs"), "", "{who}: cgroups below the root:\n{out}");
    // Its own cgroup is the root of its namespace in every hierarchy.
    let entries: Vec<&str> = get("self").split_whitespace().collect();
    assert!(entries.len() >= 2, "{who}:\n{out}");
    for entry in &entries {
        assert!(entry.ends_with(":/"), "{who}: {entry}:\n{out}");
    }
    // The container's PID 1 is in the cgroup at the root.
    assert!(
        get("procs").split_whitespace().any(|p| p == "1"),
        "{who}:\n{out}"
    );
    // Each cgroup mount shows its root, read-only; one per hierarchy.
    let mounts: Vec<&str> = get("mounts").split(';').filter(|m| !m.is_empty()).collect();
    assert_eq!(mounts.len(), host_hierarchies() + 1, "{who}:\n{out}");
    for m in mounts {
        let parts: Vec<&str> = m.split(' ').collect();
        assert_eq!(parts[0], "/", "{who}: mount root of {m}:\n{out}");
        assert!(
            parts[2].starts_with("ro,"),
            "{who}: {m} is writable:\n{out}"
        );
        for flag in ["nosuid", "nodev", "noexec"] {
            assert!(parts[2].contains(flag), "{who}: {m} lacks {flag}:\n{out}");
        }
    }
    for key in ["write", "mkdir", "touch"] {
        assert!(
            get(key).contains("Read-only file system"),
            "{who}: {key} was not refused with EROFS:\n{out}"
        );
    }
}

fn running_pid(doc: &Value) -> Option<u64> {
    doc["status"]["containers"]["main"]["state"]["running"]["pid"].as_u64()
}

#[test]
fn a_container_sees_its_own_cgroups_read_only() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let v1_root = home.v1_root();
    let mut tankd = Tankd::start_in(&bus, &home);
    tankd.keep_home(home);
    tankd.import_busybox();

    // Network none: a sysfs of the pod's own; host: the host's /sys bound
    // in, with the host's hierarchies below /sys/fs/cgroup.
    let pods = [
        ("alpha", json!("none"), 64 * MIB, 40, (50_000, 100_000)),
        ("beta", json!("host"), 96 * MIB, 30, (20_000, 50_000)),
    ];
    for (name, network, memory, pids, cpu) in &pods {
        tankd.apply(&pod(name, network.clone(), *memory, *pids, *cpu));
    }
    for (name, _, memory, pids, cpu) in pods {
        let doc = tankd.wait_for(name, "running", 30, |d| running_pid(d).is_some());
        let pid = running_pid(&doc).unwrap();

        // PID 1's view (the probe ran before its exec of sleep).
        let mut logs = String::new();
        for _ in 0..200 {
            logs = ok(&tankd.tankctl(&["logs", name]));
            if logs.contains("end=1") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        check_view(&format!("{name} PID 1"), &logs, memory, pids, cpu);

        // An exec'd process: the same cgroup, the same namespace, the
        // same view.
        let out = ok(&tankd.tankctl(&["exec", name, "--", "sh", "-c", PROBE]));
        check_view(&format!("{name} exec"), &out, memory, pids, cpu);
        let ns = |p: &str| {
            ok(&tankd.tankctl(&[
                "exec",
                name,
                "--",
                "readlink",
                &format!("/proc/{p}/ns/cgroup"),
            ]))
        };
        assert_eq!(ns("1"), ns("self"), "{name}: exec in another cgroup ns");
        let host_ns = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
        assert_ne!(ns("1").trim(), host_ns.to_string_lossy(), "{name}");

        // From the host: PID 1 is in the container's cgroup in every
        // hierarchy (else its namespace root there would be tankd's).
        let own = format!("/{v1_root}/pods/{name}/main");
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for line in cgroups.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap();
            assert_eq!(path, own, "{name}: {line}\n{cgroups}");
        }
        let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(cgroups.lines().count(), ours.lines().count(), "{cgroups}");
    }
}
