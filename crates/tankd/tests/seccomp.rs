//! The seccomp filter of containers against the real kernel, through tankd:
//! every process of a container — its PID 1 and what `tankctl exec` starts,
//! also after tankd restarted and adopted it — runs under the
//! `runtime/default` profile unless the container is `"seccomp":
//! "unconfined"`, which only root may declare; real workloads still run.
//!
//! The denials are observed by a probe (tests/support/seccomp_probe.c,
//! built here with `gcc -static`) that makes the raw system calls and
//! prints their errno. The Debian workload runs in a minimal Debian 12
//! rootfs built with mmdebstrap from deb.debian.org, cached in
//! `/var/cache/tank/test-images/`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::images::{
    busybox_config, busybox_layer_builder, host_platform, image, sha256_digest, Blob, Layer,
    Pushable, DEFAULT_PATH, MEDIA_TYPE_LAYER_TAR,
};
use support::polkit::{gdbus_as, Polkit, USER_IN};
use support::{failed, ok, SystemBus, Tankd, TankdHome};

/// The probe image: busybox plus `/probe`.
const PROBE_IMAGE: &str = "localhost/tank/probe:1";
const DEBIAN_IMAGE: &str = "localhost/tank/debian:12";

/// Where the Debian rootfs tarball is kept between runs.
const IMAGE_CACHE: &str = "/var/cache/tank/test-images";
const DEBIAN_TAR: &str = "debian-12-minbase-procps.tar";

/// What the issue lists as denied with EPERM, by the probe's names.
const DENIED: &[&str] = &[
    "keyctl",
    "add_key",
    "bpf",
    "unshare_newuser",
    "clone_newuser",
    "kexec_load",
    "open_by_handle_at",
    "perf_event_open",
    "socket_vsock",
];

// --- fixtures ------------------------------------------------------------------

/// The probe, compiled from its C source into `dir`.
fn build_probe(dir: &Path) -> Vec<u8> {
    let source = support::manifest_dir().join("tests/support/seccomp_probe.c");
    let binary = dir.join("probe");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("cannot run gcc (Debian packages gcc and libc6-dev, see scripts/deps.sh)");
    assert!(
        out.status.success(),
        "gcc -static {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&binary).unwrap()
}

fn probe_image() -> Pushable {
    let dir = tempfile::tempdir().unwrap();
    let mut layer = busybox_layer_builder();
    layer.add_file_vec("probe", build_probe(dir.path()), 0o755, 0, 0);
    Pushable::Image(image(
        vec![layer.build_gzip()],
        busybox_config(),
        host_platform(),
    ))
}

/// tankd with the probe image imported.
fn tankd_with_probe(bus: &SystemBus, home: &TankdHome) -> Tankd {
    let tankd = Tankd::start_in(bus, home);
    tankd.import(&[(PROBE_IMAGE, &probe_image())]);
    tankd
}

/// A pod of the probe image: `probe` runs /probe as its PID 1 and exits,
/// `sleeper` stays for execs; `seccomp` on both when given.
fn probe_pod(name: &str, seccomp: Option<&str>) -> Value {
    let mut pod = json!({
        "name": name,
        "restart": "never",
        "stop_grace_period_s": 1,
        "containers": [
            {"name": "probe", "image": PROBE_IMAGE, "command": ["/probe"]},
            {"name": "sleeper", "image": PROBE_IMAGE, "command": ["/bin/sleep", "1000000"]}
        ]
    });
    if let Some(seccomp) = seccomp {
        for c in pod["containers"].as_array_mut().unwrap() {
            c["seccomp"] = json!(seccomp);
        }
    }
    pod
}

fn state<'a>(doc: &'a Value, container: &str) -> &'a Value {
    &doc["status"]["containers"][container]["state"]
}

/// Applies a probe pod and waits until `probe` has exited 0 and
/// `sleeper` runs.
fn run_probe_pod(tankd: &Tankd, pod: &Value) {
    let name = pod["name"].as_str().unwrap();
    tankd.apply(pod);
    let doc = tankd.wait_for(name, "the probe's exit and the sleeper", 30, |d| {
        state(d, "probe").get("terminated").is_some()
            && state(d, "sleeper").get("running").is_some()
    });
    assert_eq!(
        state(&doc, "probe")["terminated"]["exit_code"],
        0,
        "{doc:#}"
    );
}

/// The probe's lines as a map (`keyctl` → `EPERM`).
fn results(output: &str) -> HashMap<String, String> {
    let map: HashMap<String, String> = output
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        map.contains_key("seccomp_mode"),
        "not the probe's output: {output}"
    );
    map
}

/// What the probe printed as the PID 1 of `pod`'s `probe` container.
fn pid1_results(tankd: &Tankd, pod: &str) -> HashMap<String, String> {
    results(&ok(&tankd.tankctl(&["logs", pod, "-c", "probe"])))
}

/// What the probe prints when exec'd into `pod`'s `sleeper`.
fn exec_results(tankd: &Tankd, pod: &str) -> HashMap<String, String> {
    results(&ok(
        &tankd.tankctl(&["exec", pod, "-c", "sleeper", "--", "/probe"])
    ))
}

fn assert_filtered(got: &HashMap<String, String>, who: &str) {
    for name in DENIED {
        assert_eq!(got[*name], "EPERM", "{who}: {name}: {got:?}");
    }
    assert_eq!(got["clone3"], "ENOSYS", "{who}: {got:?}");
    for name in ["socket_unix", "personality_query", "getpid"] {
        assert_eq!(got[name], "ok", "{who}: {name}: {got:?}");
    }
    assert_eq!(got["seccomp_mode"], "2", "{who}: {got:?}");
}

/// The same probes where nothing filters: each fails for its own reason,
/// or succeeds (so the EPERMs above are the filter's).
fn assert_unfiltered(got: &HashMap<String, String>, who: &str) {
    assert_eq!(got["seccomp_mode"], "0", "{who}: {got:?}");
    assert_eq!(got["add_key"], "ENODEV", "{who}: {got:?}");
    assert_eq!(got["clone3"], "EINVAL", "{who}: {got:?}");
    assert_eq!(got["perf_event_open"], "EFAULT", "{who}: {got:?}");
    for name in ["keyctl", "unshare_newuser", "clone_newuser", "socket_vsock"] {
        assert_ne!(got[name], "EPERM", "{who}: {name}: {got:?}");
    }
}

// --- tests ---------------------------------------------------------------------

#[test]
fn the_default_profile_denies_in_pid_1_and_in_execs() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let tankd = tankd_with_probe(&bus, &home);
    run_probe_pod(&tankd, &probe_pod("confined", None));

    assert_filtered(&pid1_results(&tankd, "confined"), "PID 1");
    assert_filtered(&exec_results(&tankd, "confined"), "exec");
    // The sleeper itself (PID 1 of its container) is filtered too, and a
    // process exec'd with a terminal as well.
    let status = ok(&tankd.tankctl(&[
        "exec",
        "confined",
        "-c",
        "sleeper",
        "--",
        "cat",
        "/proc/1/status",
    ]));
    assert!(status.contains("\nSeccomp:\t2\n"), "{status}");
    // The explicit default is the same.
    run_probe_pod(&tankd, &probe_pod("explicit", Some("runtime/default")));
    assert_filtered(&pid1_results(&tankd, "explicit"), "explicit PID 1");
}

#[test]
fn unconfined_containers_run_without_a_filter() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let tankd = tankd_with_probe(&bus, &home);
    run_probe_pod(&tankd, &probe_pod("free", Some("unconfined")));
    assert_unfiltered(&pid1_results(&tankd, "free"), "PID 1");
    assert_unfiltered(&exec_results(&tankd, "free"), "exec");
    // The spec shows it.
    let doc = tankd.get("free");
    assert_eq!(
        doc["spec"]["containers"][0]["seccomp"], "unconfined",
        "{doc:#}"
    );
}

#[test]
fn execs_into_adopted_containers_keep_their_profile() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let tankd = tankd_with_probe(&bus, &home);
    run_probe_pod(&tankd, &probe_pod("confined", None));
    run_probe_pod(&tankd, &probe_pod("free", Some("unconfined")));
    let pid =
        |tankd: &Tankd, pod: &str| state(&tankd.get(pod), "sleeper")["running"]["pid"].clone();
    let before = (pid(&tankd, "confined"), pid(&tankd, "free"));
    tankd.kill9();
    std::thread::sleep(Duration::from_millis(300));

    // A new tankd adopts the sleepers (no plan at hand: the run records
    // say which profile they run under).
    let tankd = Tankd::start_in(&bus, &home);
    assert_eq!((pid(&tankd, "confined"), pid(&tankd, "free")), before);
    assert_filtered(&exec_results(&tankd, "confined"), "exec after adoption");
    assert_unfiltered(&exec_results(&tankd, "free"), "exec after adoption");
}

#[test]
fn a_busybox_shell_script_runs_under_the_filter() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    tankd.import_busybox();
    // Pipes, subshells, background jobs, files, signals, ps, a user
    // switch-free workload of the usual sort.
    let script = r#"set -e
        mkdir -p /tmp/w && cd /tmp/w
        for i in 1 2 3; do echo "line $i" >> f; done
        test "$(wc -l < f)" -eq 3
        (sleep 0.1; echo sub) & wait
        sleep 10 & kill $! ; wait $! || true
        cat f | grep -c line | tr 3 X
        ps -o pid,args | grep -q "ps -o"
        ln -s f link && readlink link && rm -r /tmp/w
        grep -q '^Seccomp:.*2' /proc/self/status
        echo done"#;
    tankd.apply(&json!({
        "name": "shell", "restart": "never",
        "containers": [{"name": "main", "image": support::BUSYBOX,
                        "command": ["/bin/sh", "-c", script]}]
    }));
    let doc = tankd.wait_for("shell", "the script's end", 30, |d| {
        state(d, "main").get("terminated").is_some()
    });
    let logs = ok(&tankd.tankctl(&["logs", "shell"]));
    assert_eq!(
        state(&doc, "main")["terminated"]["exit_code"],
        0,
        "{logs}\n{doc:#}"
    );
    assert!(
        logs.contains("sub\n") && logs.contains("X\n") && logs.ends_with("done\n"),
        "{logs}"
    );
}

/// The Debian 12 rootfs tarball (minbase + procps), built once per
/// machine into [`IMAGE_CACHE`].
fn debian_rootfs_tar() -> PathBuf {
    let cached = Path::new(IMAGE_CACHE).join(DEBIAN_TAR);
    if cached.exists() {
        return cached;
    }
    std::fs::create_dir_all(IMAGE_CACHE).unwrap();
    let partial = cached.with_extension(format!("{}.part", std::process::id()));
    let out = Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--mode=root",
            "--format=tar",
            "--variant=minbase",
            "--include=procps",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "bookworm",
        ])
        .arg(&partial)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("cannot run mmdebstrap (Debian package mmdebstrap, see scripts/deps.sh)");
    assert!(
        out.status.success(),
        "mmdebstrap bookworm (needs deb.debian.org): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &cached).unwrap();
    cached
}

#[test]
fn a_debian_image_runs_bash_apt_get_and_ps_under_the_filter() {
    let tar = std::fs::read(debian_rootfs_tar()).unwrap();
    let layer = Layer {
        diff_id: sha256_digest(&tar),
        blob: Blob::new(MEDIA_TYPE_LAYER_TAR, tar),
    };
    let debian = image(
        vec![layer],
        json!({"Cmd": ["bash"], "Env": [DEFAULT_PATH]}),
        host_platform(),
    );
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    tankd.import(&[(DEBIAN_IMAGE, &Pushable::Image(debian))]);
    tankd.apply(&json!({
        "name": "debian", "restart": "never",
        "containers": [{"name": "main", "image": DEBIAN_IMAGE,
                        "command": ["bash", "-c", "apt-get --version && ps"]}]
    }));
    let doc = tankd.wait_for("debian", "bash's end", 60, |d| {
        state(d, "main").get("terminated").is_some()
    });
    let logs = ok(&tankd.tankctl(&["logs", "debian"]));
    assert_eq!(
        state(&doc, "main")["terminated"]["exit_code"],
        0,
        "{logs}\n{doc:#}"
    );
    assert!(logs.starts_with("apt 2."), "{logs}");
    assert!(logs.contains("PID TTY") && logs.contains(" ps\n"), "{logs}");
}

#[test]
fn only_root_may_declare_unconfined_containers() {
    let bus = SystemBus::start();
    let _polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);
    let spec = |seccomp: &str| {
        format!(
            r#"'{{"name": "free", "containers": [{{"name": "app", "image": "127.0.0.1:9/busybox:1",
                "seccomp": "{seccomp}"}}]}}'"#
        )
    };

    // A user polkit lets manage pods (group tank) still may not.
    let out = gdbus_as(USER_IN, &bus, "Apply", &[&spec("unconfined")], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let uid = nix::unistd::User::from_name(USER_IN).unwrap().unwrap().uid;
    assert!(
        err.contains(&format!(
            "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: uid {uid} may not apply pod \
             \"free\": container \"app\" asks for \"seccomp\": \"unconfined\", which only root \
             may declare"
        )),
        "{err}"
    );
    // Nothing stored.
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 1, "{ps}");

    // The same user may declare the filtered container...
    let out = gdbus_as(USER_IN, &bus, "Apply", &[&spec("runtime/default")], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...but not relax it afterwards (the stored spec stays).
    let out = gdbus_as(USER_IN, &bus, "Apply", &[&spec("unconfined")], false);
    assert!(!out.status.success());
    let doc = tankd.get("free");
    assert_eq!(doc["generation"], 1, "{doc:#}");
    assert!(
        doc["spec"]["containers"][0].get("seccomp").is_none(),
        "{doc:#}"
    );

    // Root may.
    ok(&tankd.tankctl_stdin(
        &["apply", "-f", "-"],
        Some(spec("unconfined").trim_matches('\'')),
    ));
    assert_eq!(
        tankd.get("free")["spec"]["containers"][0]["seccomp"],
        "unconfined"
    );
}

#[test]
fn a_malformed_seccomp_value_is_an_invalid_spec_naming_the_field() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    for (value, message) in [
        (r#""bogus""#, r#"invalid value: string "bogus""#),
        ("true", "invalid type: boolean `true`"),
    ] {
        let spec = format!(
            r#"{{"name": "bad", "containers": [{{"name": "app", "image": "busybox", "seccomp": {value}}}]}}"#
        );
        let out = tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&spec));
        let err = failed(&out);
        assert!(
            err.contains(&format!(
                r#"invalid spec: containers[0].seccomp: {message}, expected "runtime/default" or "unconfined""#
            )),
            "{err}"
        );
    }
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 1, "nothing stored: {ps}");
}
