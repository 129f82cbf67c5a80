//! Fixtures for the integration tests: real components, started and stopped
//! by the tests themselves.
//!
//! - [`SystemBus`]: a private `dbus-daemon` configured like Debian's system
//!   bus (deny by default) with tank's real bus policy from `dbus/`.
//! - [`Tankd`]: the real `tankd` binary on that bus with a temporary data
//!   dir, started with `NOTIFY_SOCKET` so the fixture waits for `READY=1`
//!   exactly as systemd would.
//!
//! Everything needs root (real namespaces, bus policy for root); a test run
//! as another user fails loudly instead of skipping.
#![allow(dead_code)]

pub mod cprog;
pub mod images;
pub mod polkit;
pub mod registry;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The uid/gid non-root calls run as (nobody/nogroup on Debian).
pub const NOBODY: &str = "65534";

/// The checkout under test, as cargo says when it runs the test (not the
/// one baked in at compile time: checkouts share one target dir, and a
/// build from another clone can be reused as fresh).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run the tests with cargo test"))
}

/// The root of the checkout under test (the workspace: `dbus/`, `polkit/`,
/// `packaging/` live there), two levels above this crate.
pub fn workspace_root() -> PathBuf {
    let root = manifest_dir().join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
}

/// The tankctl binary under test. It is the tankctl crate's: cargo builds
/// it next to tankd (one target dir) when it builds the workspace's tests —
/// `cargo test --workspace` (scripts/test.sh), as the tankctl crate has
/// integration tests of its own. Fails loudly when it is not there.
pub fn tankctl_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_tankd")).with_file_name("tankctl");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds tankctl \
         next to tankd",
        path.display()
    );
    path
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests need root (real bus policy, namespaces, mounts): run them as root"
    );
}

/// A private system-like bus.
pub struct SystemBus {
    dir: tempfile::TempDir,
    child: Child,
    config: PathBuf,
    pub address: String,
}

impl SystemBus {
    pub fn start() -> SystemBus {
        SystemBus::start_with_policy("")
    }

    /// Like [`SystemBus::start`], with `policy` (`<policy>` elements, as a
    /// service's file in /usr/share/dbus-1/system.d/ would add) included.
    pub fn start_with_policy(extra: &str) -> SystemBus {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("tank-bus-")
            .tempdir()
            .expect("tempdir");
        // Non-root clients must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("system_bus_socket");
        let policy = workspace_root().join("dbus/org.tank.Manager.conf");
        let config = include_str!("system-bus.conf.in")
            .replace("@SOCKET@", socket.to_str().unwrap())
            .replace("@POLICY@", policy.to_str().unwrap())
            .replace("<!--@EXTRA@-->", extra);
        let config_path = dir.path().join("system-bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = SystemBus::spawn_daemon(&config_path);
        SystemBus {
            dir,
            child,
            config: config_path,
            address: format!("unix:path={}", socket.display()),
        }
    }

    /// Starts dbus-daemon with `config` and waits until its socket listens.
    fn spawn_daemon(config: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_file_name("dbus.log"))
            .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("cannot run dbus-daemon (package dbus-daemon)");
        // The address is printed once the socket listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.trim().is_empty(), "dbus-daemon did not start");
        child
    }

    /// Stops the dbus-daemon (every connection to it drops) and starts a
    /// new one at the same address, as a restart of dbus.service would.
    pub fn restart(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.path().join("system_bus_socket"));
        self.child = SystemBus::spawn_daemon(&self.config);
    }

    /// A zbus connection to this bus as the test process (root).
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .expect("connect to the test bus")
    }

    /// tankctl on this bus, as root.
    pub fn tankctl(&self, args: &[&str]) -> Output {
        run_tankctl(&self.address, args, None)
    }

    /// `busctl --system ARGS` on this bus, as root.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .args(["--system", "--no-pager"])
            .args(args)
            .output()
            .expect("busctl")
    }

    /// `busctl --system ARGS` on this bus, as an unprivileged user.
    pub fn busctl_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--clear-groups",
                "--reset-env",
                "--",
                "env",
                &format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.address),
                "busctl",
                "--system",
                "--no-pager",
            ])
            .args(args)
            .output()
            .expect("setpriv busctl")
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running tankd.
pub struct Tankd {
    child: Option<Child>,
    notify: UnixDatagram,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// tankd's stderr (all its starts in this home), shown when a test fails.
    pub log: PathBuf,
    bus_address: String,
    _home: Option<TankdHome>,
}

/// Where a tankd keeps its state; reused across restarts.
pub struct TankdHome {
    pub dir: tempfile::TempDir,
}

impl TankdHome {
    pub fn new() -> TankdHome {
        TankdHome::with_config("")
    }

    /// A home whose tankd.toml also has `extra` (TOML appended as is).
    pub fn with_config(extra: &str) -> TankdHome {
        let dir = tempfile::Builder::new()
            .prefix("tank-home-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pods.d")).unwrap();
        // Unique per home: tests run in parallel on one machine.
        let v1_root = format!(
            "tank-test-{}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let config = format!(
            "data_dir = \"{0}/data\"\npods_dir = \"{0}/pods.d\"\nrun_dir = \"{0}/run\"\n\
             [cgroups]\nv1_root = \"{v1_root}\"\n{extra}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("tankd.toml"), config).unwrap();
        TankdHome { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.dir.path().join("pods.d")
    }

    /// The v1 cgroup root of this home's tankd (see `with_config`).
    pub fn v1_root(&self) -> String {
        format!(
            "tank-test-{}",
            self.dir.path().file_name().unwrap().to_string_lossy()
        )
    }
}

impl Drop for TankdHome {
    fn drop(&mut self) {
        // Whatever a test left: containers' cgroups (killed) and netns pins.
        let root = self.v1_root();
        // Every hierarchy (containers join them all).
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let base = entry.path().join(&root);
            if base.exists() {
                remove_cgroup_tree(&base);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/netns")) {
            for entry in entries.flatten() {
                let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Tankd {
    /// Starts tankd with a fresh home; the home lives as long as this tankd.
    pub fn start(bus: &SystemBus) -> Tankd {
        let home = TankdHome::new();
        let mut tankd = Tankd::start_in(bus, &home);
        tankd._home = Some(home);
        tankd
    }

    /// Starts tankd in `home` and waits for READY=1.
    pub fn start_in(bus: &SystemBus, home: &TankdHome) -> Tankd {
        let mut tankd = Tankd::spawn(bus, home);
        tankd.wait_ready().unwrap_or_else(|e| panic!("{e}"));
        tankd
    }

    /// Starts tankd in `home` without waiting.
    pub fn spawn(bus: &SystemBus, home: &TankdHome) -> Tankd {
        Tankd::spawn_with_env(bus, home, &[])
    }

    /// Starts tankd in `home` with extra environment, without waiting.
    pub fn spawn_with_env(bus: &SystemBus, home: &TankdHome, env: &[(&str, &str)]) -> Tankd {
        require_root();
        let notify_path = home.path().join(format!(
            "notify-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        let config = home.path().join("tankd.toml");
        let log_path = home.path().join("tankd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tankd"))
            .arg("--config")
            .arg(&config)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("TANK_LOG", "debug,zbus=warn")
            .envs(env.iter().copied())
            .env_remove("TANK_DATA_DIR")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tankd");
        Tankd {
            child: Some(child),
            notify,
            data_dir: home.path().join("data"),
            config,
            log: log_path,
            bus_address: bus.address.clone(),
            _home: None,
        }
    }

    /// Keeps `home` alive (and removed) with this tankd.
    pub fn keep_home(&mut self, home: TankdHome) {
        self._home = Some(home);
    }

    /// Waits for READY=1 on the notify socket, or for tankd to exit.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]);
                if message.lines().any(|l| l == "READY=1") {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "tankd exited before READY=1: {status}; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        Err("tankd did not send READY=1 within 30 s".to_owned())
    }

    /// The next sd_notify message after READY=1 that contains `needle`,
    /// within `timeout`.
    pub fn notify_message(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.contains(needle) {
                    return Some(message);
                }
            }
        }
        None
    }

    /// Waits for tankd to exit on its own and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// tankd's exit status if it exits on its own within `timeout`.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// SIGTERM and wait (a clean stop).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        child.wait().unwrap()
    }

    /// SIGKILL and reap (a crash).
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Imports `images` (name, image) through `tankctl image import` of an
    /// OCI archive, as a user with no registry would.
    pub fn import(&self, images: &[(&str, &images::Pushable)]) {
        let archive = self.data_dir.with_file_name("images.tar");
        std::fs::write(&archive, images::oci_archive(images)).unwrap();
        ok(&self.tankctl(&["image", "import", archive.to_str().unwrap()]));
    }

    /// Imports busybox_image() as [`BUSYBOX`].
    pub fn import_busybox(&self) {
        self.import(&[(BUSYBOX, &images::Pushable::Image(images::busybox_image()))]);
    }

    /// `tankctl apply -f -` of a JSON document.
    pub fn apply(&self, pod: &serde_json::Value) {
        ok(&self.tankctl_stdin(&["apply", "-f", "-"], Some(&pod.to_string())));
    }

    /// `tankctl get POD -o json`.
    pub fn get(&self, pod: &str) -> serde_json::Value {
        serde_json::from_str(&ok(&self.tankctl(&["get", pod, "-o", "json"]))).unwrap()
    }

    /// Waits (up to `secs`) until `check` holds for the pod's document.
    pub fn wait_for(
        &self,
        pod: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let doc = self.get(pod);
            if check(&doc) {
                return doc;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {doc:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs tankctl against this tankd's bus.
    pub fn tankctl(&self, args: &[&str]) -> Output {
        self.tankctl_stdin(args, None)
    }

    /// Runs tankctl with `stdin` as its standard input.
    pub fn tankctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_tankctl(&self.bus_address, args, stdin)
    }
}

/// Runs tankctl on the bus at `address`.
pub fn run_tankctl(address: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(tankctl_bin())
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tankctl");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

impl Drop for Tankd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- tankd log ({}) ----\n{log}", self.log.display());
        }
    }
}

/// stdout of a command that must have succeeded.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// stderr of a command that must have failed.
pub fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "command unexpectedly succeeded:\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// The name the tests import busybox_image() under.
pub const BUSYBOX: &str = "localhost/tank/busybox:1";

/// A registry address that refuses connections at once (loopback, port 9):
/// pods that only need to be declared never reach out anywhere.
pub const NO_REGISTRY: &str = "127.0.0.1:9";

/// A minimal valid pod document; its image lives on [`NO_REGISTRY`].
pub fn pod_json(name: &str, image: &str) -> String {
    format!(
        r#"{{"name": "{name}", "containers": [{{"name": "app", "image": "{NO_REGISTRY}/{image}"}}]}}"#
    )
}
