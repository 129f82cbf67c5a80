//! tankd's state is private: nothing under `data_dir` or `run_dir` can be
//! listed, read or executed by a non-root host user (the CVE-2021-41091
//! pattern: a set-uid-root binary planted by a container in a volume, an
//! upper dir or a layer must not be runnable from the host), secrets and
//! output on disk are 0600, and containers still see their files as before.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::images::{
    busybox_bytes, busybox_layer, busybox_layer_builder, host_platform, image, Pushable,
    DEFAULT_PATH,
};
use support::{ok, SystemBus, Tankd, TankdHome, BUSYBOX, NOBODY};

const SUID_IMAGE: &str = "localhost/tank/suid:1";
const APP_SH: &str = "localhost/tank/app-sh:1";
const SECRET: &str = "hunter2-private-state";

/// busybox with a set-uid-root copy of busybox at `/bin/suid-sh` in its
/// layer (so the unpacked layer under `data_dir/layers` holds one).
fn suid_image() -> Pushable {
    let mut layer = busybox_layer_builder();
    layer.add_file_vec("bin/suid-sh", busybox_bytes(), 0o4755, 0, 0);
    Pushable::Image(image(
        vec![layer.build_gzip()],
        json!({ "Cmd": ["/bin/sh"], "Env": [DEFAULT_PATH] }),
        host_platform(),
    ))
}

/// busybox whose processes run as `app` (1000:1000).
fn app_image() -> Pushable {
    Pushable::Image(image(
        vec![busybox_layer()],
        json!({ "User": "app", "Cmd": ["/bin/sh"], "Env": [DEFAULT_PATH] }),
        host_platform(),
    ))
}

/// A home whose parent directories are traversable by everyone, as
/// `/var/lib` and `/run` are (tempdirs are 0700, which would hide
/// everything whatever tankd does).
fn open_home() -> TankdHome {
    let home = TankdHome::new();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    home
}

fn run_dir(tankd: &Tankd) -> PathBuf {
    tankd.data_dir.with_file_name("run")
}

/// Every path below `root` (not following symlinks), `root` included.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        i += 1;
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                out.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// What the user `nobody` can do with each of `paths` from the host:
/// lines `<what> <path>` for every stat, listing, read or execution that
/// succeeded.
fn reachable_by_nobody(paths: &[PathBuf]) -> Vec<String> {
    const PROBE: &str = r#"
import os, stat, subprocess, sys
for path in sys.stdin.read().split("\0"):
    if not path:
        continue
    try:
        st = os.lstat(path)
    except OSError:
        continue
    print("stat", path)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.listdir(path); print("list", path)
        except OSError:
            pass
    elif stat.S_ISREG(st.st_mode):
        try:
            open(path, "rb").close(); print("read", path)
        except OSError:
            pass
        if st.st_mode & 0o111:
            try:
                r = subprocess.run([path, "true"], capture_output=True, timeout=10)
                print("exec", path)
            except OSError:
                pass
"#;
    let list: Vec<u8> = paths
        .iter()
        .flat_map(|p| {
            let mut b = p.as_os_str().as_encoded_bytes().to_vec();
            b.push(0);
            b
        })
        .collect();
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--reset-env",
            "--",
            "/usr/bin/python3",
            "-c",
            PROBE,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&list).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn wait_logs(tankd: &Tankd, pod: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = ok(&tankd.tankctl(&["logs", pod]));
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the logs of {pod}: {logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A running pod that planted set-uid-root binaries in a volume, its upper
/// dir and (through its image) a layer, and wrote a secret to its env and
/// output.
fn planted(bus: &SystemBus, home: &TankdHome) -> Tankd {
    let tankd = Tankd::start_in(bus, home);
    tankd.import(&[(SUID_IMAGE, &suid_image())]);
    tankd.apply(&json!({
        "name": "planter",
        "volumes": [{"name": "data"}],
        "containers": [{
            "name": "main", "image": SUID_IMAGE,
            "env": {"SECRET": SECRET},
            "mounts": [{"volume": "data", "path": "/data"}],
            "command": ["/bin/sh", "-c",
                "cp /bin/busybox /data/rootsh && chmod 4755 /data/rootsh && \
                 cp /bin/busybox /rootsh && chmod 4755 /rootsh && \
                 echo planted $SECRET && exec sleep 1000"]
        }]
    }));
    wait_logs(&tankd, "planter", "planted");
    tankd
}

#[test]
fn nothing_under_data_dir_or_run_dir_is_reachable_by_other_users() {
    let bus = SystemBus::start();
    let home = open_home();
    let tankd = planted(&bus, &home);
    let run = run_dir(&tankd);

    let mut paths = walk(&tankd.data_dir);
    paths.extend(walk(&run));
    // The plants are there (seen as root), so the test can fail.
    let suid: Vec<&PathBuf> = paths
        .iter()
        .filter(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o4000 != 0)
                .unwrap_or(false)
        })
        .collect();
    for plant in ["/layers/", "/volumes/", "/upper/"] {
        assert!(
            suid.iter().any(|p| p.to_string_lossy().contains(plant)),
            "no set-uid plant under {plant}: {suid:?}"
        );
    }

    let reached = reachable_by_nobody(&paths);
    // The two roots themselves may be stat'ed (their parents are open), but
    // nothing may be listed, read or run, and nothing below them seen.
    let leaks: Vec<&String> = reached
        .iter()
        .filter(|line| {
            let (what, path) = line.split_once(' ').unwrap();
            !(what == "stat" && (Path::new(path) == tankd.data_dir || Path::new(path) == run))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "reachable by uid {NOBODY}:\n{}",
        leaks
            .iter()
            .take(40)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(mode(&tankd.data_dir), 0o700);
    assert_eq!(mode(&run), 0o700);
}

/// Secrets and output on disk: env values in the store's files, container
/// output in the logs, records and checkpoints are 0600 (and their
/// directories 0700), whatever the modes of the trees around them.
#[test]
fn secrets_output_records_and_checkpoints_are_private_files() {
    let bus = SystemBus::start();
    let home = open_home();
    let tankd = planted(&bus, &home);
    let run = run_dir(&tankd);

    let store_files: Vec<PathBuf> = walk(&tankd.data_dir.join("store"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(
        store_files.iter().any(|p| std::fs::read(p)
            .unwrap()
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes())),
        "the secret is in one of the store's files: {store_files:?}"
    );
    let logs: Vec<PathBuf> = walk(&tankd.data_dir.join("logs"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(!logs.is_empty());
    let records: Vec<PathBuf> = walk(&run.join("containers"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "record.json"))
        .collect();
    assert!(!records.is_empty());
    let checkpoints: Vec<PathBuf> = walk(&run.join("status"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(!checkpoints.is_empty());
    for file in store_files
        .iter()
        .chain(&logs)
        .chain(&records)
        .chain(&checkpoints)
    {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for dir in [
        tankd.data_dir.join("store"),
        tankd.data_dir.join("logs"),
        tankd.data_dir.join("logs/planter"),
        tankd.data_dir.join("content"),
        tankd.data_dir.join("layers"),
        tankd.data_dir.join("volumes"),
        tankd.data_dir.join("containers"),
        run.join("containers"),
        run.join("status"),
        run.join("netns"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

/// A data dir and run dir left open by an older tankd are tightened at
/// start.
#[test]
fn an_older_open_data_dir_is_tightened_at_start() {
    let bus = SystemBus::start();
    let home = open_home();
    let tankd = planted(&bus, &home);
    let (data, run) = (tankd.data_dir.clone(), run_dir(&tankd));
    tankd.stop();
    // What an older tankd (umask 022) left: everything open to all.
    for dir in [&data, &run] {
        for path in walk(dir) {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            } else if meta.is_file()
                && ["store", "logs", "status", "record.json"]
                    .iter()
                    .any(|n| path.to_string_lossy().contains(n))
            {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    let tankd = Tankd::start_in(&bus, &home);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&run), 0o700);
    for file in walk(&data.join("store"))
        .into_iter()
        .chain(walk(&data.join("logs")))
        .chain(walk(&run.join("status")))
        .filter(|p| p.is_file())
    {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let mut paths = walk(&data);
    paths.extend(walk(&run));
    let reached: Vec<String> = reachable_by_nobody(&paths)
        .into_iter()
        .filter(|l| l.starts_with("list") || l.starts_with("read") || l.starts_with("exec"))
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
    drop(tankd);
}

/// Containers see their files as before: a non-root container process
/// traverses its root, reads the pod's /etc files, its volumes and writes
/// to /tmp and its home.
#[test]
fn a_non_root_container_still_sees_its_files() {
    let bus = SystemBus::start();
    let home = open_home();
    let tankd = Tankd::start_in(&bus, &home);
    tankd.import(&[(APP_SH, &app_image())]);
    tankd.import_busybox();
    let script = "id -u; ls / >/dev/null && echo root-ok; \
        cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && echo etc-ok; \
        ls /data >/dev/null && cat /data/hello && echo volume-ok; \
        echo x >/tmp/x && echo tmp-ok; mkdir /home/app/d && echo home-ok";
    // A root container fills the volume first.
    tankd.apply(&json!({
        "name": "files",
        "restart": "never",
        "volumes": [{"name": "data"}],
        "containers": [
            {"name": "fill", "image": BUSYBOX,
             "mounts": [{"volume": "data", "path": "/data"}],
             "command": ["/bin/sh", "-c", "echo hello > /data/hello; chmod 644 /data/hello"]}
        ]
    }));
    tankd.wait_for("files", "the filler to end", 30, |d: &Value| {
        d["phase"] == "Succeeded"
    });
    ok(&tankd.tankctl(&["delete", "files", "--wait"]));
    tankd.apply(&json!({
        "name": "files",
        "restart": "never",
        "volumes": [{"name": "data"}],
        "containers": [
            {"name": "main", "image": APP_SH,
             "mounts": [{"volume": "data", "path": "/data", "read_only": true}],
             "command": ["/bin/sh", "-c", script]}
        ]
    }));
    let doc = tankd.wait_for("files", "exit", 30, |d: &Value| {
        d["status"]["containers"]["main"]["state"]
            .get("terminated")
            .is_some()
    });
    let logs = ok(&tankd.tankctl(&["logs", "files"]));
    assert_eq!(doc["phase"], "Succeeded", "{doc:#}\n{logs}");
    for line in [
        "1000",
        "root-ok",
        "etc-ok",
        "hello",
        "volume-ok",
        "tmp-ok",
        "home-ok",
    ] {
        assert!(logs.lines().any(|l| l == line), "no {line}:\n{logs}");
    }
}
