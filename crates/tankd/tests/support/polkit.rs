//! A real polkitd for the tests, and the unprivileged users they call as.
//!
//! - [`Polkit`]: `/usr/lib/polkit-1/polkitd` on a [`SystemBus`], in a
//!   private mount namespace where its action directory holds only the
//!   repo's `polkit/org.tank.policy` and its rules directory only
//!   `polkit-test.rules` (or the rule files a test gives): nothing of the
//!   host's polkit configuration is touched, and parallel tests each have
//!   their own polkitd.
//! - [`ensure_users`]: group `tank` and users `tankin` (member), `tankout`
//!   and `tankpw` (not), created if missing.
//! - [`as_user`], [`tankctl_as`], [`gdbus_as`]: commands run as those users
//!   (setpriv, no PAM or login session: polkit sees no logind session,
//!   exactly as on this machine).
//!
//! polkit always authorizes uid 0, so everything that must be denied runs
//! as one of these users.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use super::{require_root, workspace_root, SystemBus};

/// In group `tank`: the rules grant every tank action.
pub const USER_IN: &str = "tankin";
/// The rules answer NO.
pub const USER_OUT: &str = "tankout";
/// The rules answer AUTH_ADMIN (a password would be needed).
pub const USER_PW: &str = "tankpw";
/// The group the rules (and `polkit/50-tank.rules.example`) grant.
pub const GROUP: &str = "tank";

/// The rules of [`Polkit::start`] (`polkit-test.rules`): every tank
/// question logged with its details, then YES for group `tank`, NO for
/// [`USER_OUT`], AUTH_ADMIN for [`USER_PW`].
pub const TEST_RULES: (&str, &str) = ("50-tank-test.rules", include_str!("polkit-test.rules"));

const POLKITD: &str = "/usr/lib/polkit-1/polkitd";
const POLKIT_NAME: &str = "org.freedesktop.PolicyKit1";

/// A running polkitd.
pub struct Polkit {
    dir: tempfile::TempDir,
    child: Option<Child>,
    bus_address: String,
    /// polkitd's output: rule loading, `polkit.log()`, agent registrations.
    pub log: PathBuf,
}

impl Polkit {
    /// Starts polkitd on `bus` with the repo's actions and the test rules
    /// and waits until it owns its name.
    pub fn start(bus: &SystemBus) -> Polkit {
        Polkit::start_with_rules(bus, &[TEST_RULES])
    }

    /// Like [`Polkit::start`], with exactly these rule files (name, text)
    /// in its rules directory. polkit runs the rules of all files in the
    /// order of the file names; the first rule that answers decides.
    pub fn start_with_rules(bus: &SystemBus, rule_files: &[(&str, &str)]) -> Polkit {
        require_root();
        ensure_users();
        assert!(
            Path::new(POLKITD).exists(),
            "{POLKITD} is missing: install the polkitd package (scripts/deps.sh)"
        );
        let dir = tempfile::Builder::new()
            .prefix("tank-polkit-")
            .tempdir()
            .expect("tempdir");
        let actions = dir.path().join("actions");
        let rules = dir.path().join("rules.d");
        // polkitd reads both after dropping to its own user.
        for d in [dir.path(), &actions, &rules] {
            std::fs::create_dir_all(d).unwrap();
            chmod(d, 0o755);
        }
        let policy = actions.join("org.tank.policy");
        std::fs::copy(workspace_root().join("polkit/org.tank.policy"), &policy)
            .expect("copy polkit/org.tank.policy");
        chmod(&policy, 0o644);
        for (name, text) in rule_files {
            let rule_file = rules.join(name);
            std::fs::write(&rule_file, text).unwrap();
            chmod(&rule_file, 0o644);
        }

        let log = dir.path().join("polkitd.log");
        let out = std::fs::File::create(&log).unwrap();
        // polkitd has no options for its directories: bind the private ones
        // over the system paths in a mount namespace of its own. It starts
        // as root and switches to the polkitd user itself.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /usr/share/polkit-1/actions && \
                 mount --bind \"$2\" /etc/polkit-1/rules.d && exec \"$3\"",
            )
            .arg("sh")
            .arg(&actions)
            .arg(&rules)
            .arg(POLKITD)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cannot run unshare (package util-linux)");
        let mut polkit = Polkit {
            dir,
            child: Some(child),
            bus_address: bus.address.clone(),
            log,
        };
        polkit.wait_owner(true);
        polkit
    }

    /// Stops polkitd and waits until its name is gone from the bus.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            self.wait_owner(false);
        }
    }

    /// What polkitd printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_owner(&mut self, owned: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = if owned { "b true" } else { "b false" };
        loop {
            let out = Command::new("busctl")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
                .args([
                    "--system",
                    "call",
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "NameHasOwner",
                    "s",
                    POLKIT_NAME,
                ])
                .output()
                .expect("busctl");
            if String::from_utf8_lossy(&out.stdout).trim() == want {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("polkitd exited: {status}\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "polkitd: {POLKIT_NAME} owned is not {owned} after 20 s\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Polkit {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- polkitd log ({}) ----\n{}",
                self.dir.path().display(),
                self.log_text()
            );
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates group `tank` and the test users if missing, and makes only
/// `tankin` a member (idempotent; once per test binary).
pub fn ensure_users() {
    static USERS: Once = Once::new();
    USERS.call_once(|| {
        require_root();
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap_or_else(|e| panic!("{}: {e} (package passwd)", args[0]));
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let exists = |db: &str, name: &str| {
            Command::new("getent")
                .args([db, name])
                .stdout(Stdio::null())
                .status()
                .expect("getent")
                .success()
        };
        if !exists("group", GROUP) {
            run(&["groupadd", "--system", GROUP]);
        }
        for user in [USER_IN, USER_OUT, USER_PW] {
            if !exists("passwd", user) {
                // No home, no login shell: the tests use setpriv.
                run(&["useradd", "-M", "-s", "/usr/sbin/nologin", user]);
            }
        }
        run(&["usermod", "-aG", GROUP, USER_IN]);
        for user in [USER_OUT, USER_PW] {
            // Not a member even if a previous run or someone else made it one.
            let _ = Command::new("gpasswd").args(["-d", user, GROUP]).output();
        }
    });
}

/// Runs `program ARGS` as `user` (a name or uid; its own groups, a clean
/// environment) on `bus`, with `stdin` as standard input. The test users
/// exist once a [`Polkit`] started ([`ensure_users`]).
pub fn as_user(
    user: &str,
    bus: &SystemBus,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut child = Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--reset-env",
            "--",
            "env",
            &format!("DBUS_SYSTEM_BUS_ADDRESS={}", bus.address),
            // `script` runs its command with $SHELL (nologin for these users).
            "SHELL=/bin/sh",
            program,
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (package util-linux)");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// The tankctl under test, copied where every user may run it (the build
/// directory may be private to root).
pub fn tankctl_path() -> &'static str {
    static PATH: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    let (_, path) = PATH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("tank-bin-")
            .tempdir()
            .expect("tempdir");
        chmod(dir.path(), 0o755);
        let path = dir.path().join("tankctl");
        std::fs::copy(super::tankctl_bin(), &path).expect("copy tankctl");
        chmod(&path, 0o755);
        let path = path.to_str().unwrap().to_owned();
        (dir, path)
    });
    path
}

/// tankctl as `user`, stdin a pipe (so never interactive).
pub fn tankctl_as(user: &str, bus: &SystemBus, args: &[&str], stdin: Option<&str>) -> Output {
    as_user(user, bus, tankctl_path(), args, stdin)
}

/// tankctl as `user` with a terminal as stdin (util-linux `script` gives it
/// a pty), as a person at a terminal would run it.
pub fn tankctl_on_terminal_as(user: &str, bus: &SystemBus, args: &[&str]) -> Output {
    let command = std::iter::once(tankctl_path())
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    as_user(
        user,
        bus,
        "script",
        &["--quiet", "--return", "--command", &command, "/dev/null"],
        None,
    )
}

/// `gdbus call` of an `org.tank.Manager` method as `user`: its errors show
/// the D-Bus error name (`GDBus.Error:NAME: message`). `interactive` sets
/// ALLOW_INTERACTIVE_AUTHORIZATION.
pub fn gdbus_as(
    user: &str,
    bus: &SystemBus,
    method: &str,
    args: &[&str],
    interactive: bool,
) -> Output {
    let member = format!("org.tank.Manager.{method}");
    let mut call = vec![
        "call",
        "--system",
        "--dest",
        "org.tank.Manager",
        "--object-path",
        "/org/tank/Manager",
        "--method",
        &member,
    ];
    if interactive {
        call.push("--interactive");
    }
    call.extend_from_slice(args);
    as_user(user, bus, "gdbus", &call, None)
}
