//! Exec and attach through tankd, with tankctl driven under a real PTY
//! (expect-style: the test opens the PTY pair itself, runs `setsid --ctty
//! tankctl …` on the slave, reads the master and types into it, resizes it
//! with TIOCSWINSZ, which the kernel turns into SIGWINCH for tankctl).
//! Images come from busybox-static (no `bash` there: busybox `sh`).

mod support;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{failed, ok, SystemBus, Tankd, TankdHome};

const TIMEOUT: Duration = Duration::from_secs(20);
const DETACH: &[u8] = b"\x10\x11";

/// tankd with busybox imported and `pod` running.
fn tankd_with(bus: &SystemBus, pods: &[Value]) -> Tankd {
    let tankd = Tankd::start(bus);
    tankd.import_busybox();
    for pod in pods {
        tankd.apply(pod);
    }
    for pod in pods {
        let name = pod["name"].as_str().unwrap();
        let containers: Vec<String> = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        tankd.wait_for(name, "running", 30, |d| {
            containers.iter().all(|c| running(d, c))
        });
    }
    tankd
}

fn running(doc: &Value, container: &str) -> bool {
    doc["status"]["containers"][container]["state"]
        .get("running")
        .is_some()
}

/// A pod whose one container `main` sleeps (the workload of most tests).
fn sleeper(name: &str) -> Value {
    json!({
        "name": name,
        "containers": [{"name": "main", "image": support::BUSYBOX,
                        "command": ["/bin/sleep", "1000000"],
                        "env": {"FROM_SPEC": "spec-value"}}]
    })
}

/// A pod whose container runs an interactive shell on a terminal.
fn tty_shell(name: &str) -> Value {
    json!({
        "name": name,
        "restart": "always",
        "containers": [{"name": "shell", "image": support::BUSYBOX,
                        "command": ["/bin/sh"], "tty": true}]
    })
}

/// tankctl on `bus` under a PTY of `rows`×`cols`; for an interactive
/// session (`attach`, `exec -i…`), once its terminal is raw.
fn pty_tankctl(bus: &SystemBus, args: &[&str], rows: u16, cols: u16) -> PtyClient {
    let client = PtyClient::spawn(&bus.address, args, rows, cols);
    let interactive = args[0] == "attach"
        || args
            .iter()
            .take_while(|a| **a != "--")
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('i'));
    if interactive {
        client.wait_raw();
    }
    client
}

#[test]
fn an_exec_shell_sees_the_workload_as_pid_1_and_itself() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("web")]);
        let mut client = pty_tankctl(bus, &["exec", "-it", "web", "--", "sh"], 24, 80);
        client.expect("# ");
        client.send(b"echo me=$$; ps -o pid,args; tty; id -u; hostname\r");
        let out = client.expect("\nweb\n");
        assert!(out.contains("    1 /bin/sleep 1000000"), "{out}");
        let me = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("me="))
            .expect("the shell's pid");
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{me} sh"))),
            "the shell sees itself:\n{out}"
        );
        // The terminal is from the container's own devpts.
        assert!(out.contains("/dev/pts/0\n"), "{out}");
        client.send(b"exit 7\r");
        assert_eq!(client.wait(), 7);
        // The workload is untouched.
        assert!(running(&tankd.get("web"), "main"));
    }
}

#[test]
fn an_exec_has_the_containers_namespaces_cgroup_user_and_privileges() {
    let bus = &SystemBus::start();
    let tankd = Tankd::start(bus);
    tankd.import(&[(
        "localhost/tank/app:1",
        &support::images::Pushable::Image(support::images::user_entrypoint_image()),
    )]);
    tankd.apply(&json!({
        "name": "ident",
        "containers": [{"name": "main", "image": "localhost/tank/app:1",
                        "command": ["/bin/sleep", "1000000"]}]
    }));
    tankd.wait_for("ident", "running", 30, |d| running(d, "main"));
    // The same view from PID 1 and from the exec'd process.
    let probe = |pid: &str| {
        format!(
            "for ns in mnt pid net uts ipc cgroup; do readlink /proc/{pid}/ns/$ns; done; \
             cat /proc/{pid}/cgroup; \
             grep -E '^(Uid|Gid|Groups|CapBnd|CapEff|CapPrm|NoNewPrivs)' /proc/{pid}/status"
        )
    };
    let script = format!("{}; echo ---; {}; echo ---; pwd", probe("1"), probe("self"));
    let out = ok(&tankd.tankctl(&["exec", "ident", "--", "sh", "-c", &script]));
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    assert_eq!(parts[0], parts[1], "PID 1 vs exec:\n{out}");
    assert!(parts[0].contains("Uid:\t1000\t1000\t1000\t1000"), "{out}");
    assert!(parts[0].contains("NoNewPrivs:\t1"), "{out}");
    assert!(parts[0].contains("CapEff:\t0000000000000000"), "{out}");
    // The image's working directory.
    assert_eq!(parts[2], "/home/app\n", "{out}");
    // The tankd binary is never visible as the exec'd process's executable.
    let exe = ok(&tankd.tankctl(&["exec", "ident", "--", "readlink", "/proc/self/exe"]));
    assert_eq!(exe, "/bin/busybox\n");
}

#[test]
fn exit_codes_output_cwd_and_env() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("codes")]);
        // With a terminal.
        let mut client = pty_tankctl(
            bus,
            &["exec", "-t", "codes", "--", "sh", "-c", "echo hi; exit 3"],
            24,
            80,
        );
        let out = client.expect("hi\n");
        assert!(out.contains("hi"), "{out}");
        assert_eq!(client.wait(), 3);
        // Without: tankctl's own stdout, exit code passed through.
        let out = tankd.tankctl(&["exec", "codes", "--", "sh", "-c", "echo hi; exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        // Killed by a signal: 128 + 9.
        let out = tankd.tankctl(&["exec", "codes", "--", "sh", "-c", "kill -9 $$"]);
        assert_eq!(out.status.code(), Some(137), "{out:?}");
        // --cwd, --env (last wins), the container's env, no TERM without -t.
        let out = ok(&tankd.tankctl(&[
            "exec",
            "--cwd",
            "/tmp",
            "--env",
            "A=1",
            "-e",
            "A=2",
            "codes",
            "--",
            "sh",
            "-c",
            "pwd; echo A=$A; echo FROM_SPEC=$FROM_SPEC; echo TERM=$TERM; echo HOME=$HOME",
        ]));
        assert_eq!(
            out, "/tmp\nA=2\nFROM_SPEC=spec-value\nTERM=\nHOME=/root\n",
            "{out}"
        );
        // With -t: TERM=xterm.
        let mut client = pty_tankctl(
            bus,
            &["exec", "-t", "codes", "--", "sh", "-c", "echo TERM=$TERM"],
            24,
            80,
        );
        client.expect("TERM=xterm\n");
        assert_eq!(client.wait(), 0);
        // Not found: 127, as a shell says it.
        let out = tankd.tankctl(&["exec", "codes", "--", "no-such-command"]);
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no-such-command"),
            "{out:?}"
        );
        let err = failed(&tankd.tankctl(&["exec", "--cwd", "/nope", "codes", "--", "true"]));
        assert!(err.contains("/nope"), "{err}");
    }
}

#[test]
fn the_terminal_size_follows_the_client() {
    let bus = &SystemBus::start();
    {
        let _tankd = tankd_with(bus, &[sleeper("size")]);
        // The initial size is there from the command's first instruction.
        let mut client = pty_tankctl(bus, &["exec", "-t", "size", "--", "stty", "size"], 33, 101);
        client.expect("33 101\n");
        assert_eq!(client.wait(), 0);

        let mut client = pty_tankctl(bus, &["exec", "-it", "size", "--", "sh"], 33, 101);
        client.expect("# ");
        client.send(b"stty size\r");
        client.expect("33 101\n");
        client.resize(40, 120);
        // SIGWINCH reaches tankctl asynchronously.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            client.send(b"stty size\r");
            let out = client.expect("# ");
            if out.contains("40 120\n") {
                break;
            }
            assert!(Instant::now() < deadline, "size never followed:\n{out}");
            std::thread::sleep(Duration::from_millis(100));
        }
        client.send(b"exit\r");
        assert_eq!(client.wait(), 0);
    }
}

#[test]
fn detach_keys_and_a_detached_command_keeps_running() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("det")]);
        let mut client = pty_tankctl(bus, &["exec", "-it", "det", "--", "sh"], 24, 80);
        // Typing only once tankctl is up (its terminal raw).
        client.expect("# ");
        client.send(b"exec tr '\\020' Z\r");
        client.expect("exec tr");
        // A lone Ctrl-P followed by another key is delivered to the program
        // (tr turns Ctrl-P into Z; the terminal's echo shows ^P).
        client.send(b"\x10a\r");
        client.expect("Za\n");
        client.send(DETACH);
        let out = client.expect("detached");
        assert!(!out.contains("^Q"), "{out}");
        assert_eq!(client.wait(), 0);
        // Still running, seen from a second exec; the terminal is drained.
        let ps = ok(&tankd.tankctl(&["exec", "det", "--", "ps", "-o", "args"]));
        assert!(ps.lines().any(|l| l.starts_with("tr ")), "{ps}");

        // Other keys.
        let mut client = pty_tankctl(
            bus,
            &[
                "exec",
                "-it",
                "--detach-keys",
                "ctrl-a,d",
                "det",
                "--",
                "sh",
            ],
            24,
            80,
        );
        client.expect("# ");
        client.send(DETACH);
        client.send(b"echo still-here\r");
        client.expect("still-here\n");
        client.send(b"\x01d");
        client.expect("detached");
        assert_eq!(client.wait(), 0);
    }
}

#[test]
fn attach_detach_reattach_and_the_restart_policy() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[tty_shell("tty"), sleeper("plain")]);
        let mut client = pty_tankctl(bus, &["attach", "tty"], 24, 80);
        client.send(b"\r");
        client.expect("# ");
        client.send(b"X=kept-value; echo set\r");
        client.expect("set\n");

        // One client at a time.
        let busy = failed(&tankd.tankctl(&["attach", "tty"]));
        assert!(busy.contains("another client is attached"), "{busy}");

        client.send(DETACH);
        client.expect("detached");
        assert_eq!(client.wait(), 0);
        assert!(running(&tankd.get("tty"), "shell"));

        // Output while detached goes to the log; the shell keeps its state.
        let mut client = pty_tankctl(bus, &["attach", "tty"], 24, 80);
        client.send(b"echo value=$X\r");
        client.expect("value=kept-value\n");
        // The program's end ends the container: status 0, restarted.
        client.send(b"exit\r");
        assert_eq!(client.wait(), 0);
        let doc = tankd.wait_for("tty", "the restart", 30, |d| {
            d["status"]["containers"]["shell"]["restart_count"].as_u64() >= Some(1)
                && running(d, "shell")
        });
        let _ = doc;
        // A fresh session: the variable is gone.
        let mut client = pty_tankctl(bus, &["attach", "tty"], 24, 80);
        client.send(b"echo value=$X.\r");
        client.expect("value=.\n");
        client.send(DETACH);
        assert_eq!(client.wait(), 0);

        // Errors.
        let err = failed(&tankd.tankctl(&["attach", "plain"]));
        assert!(err.contains("no terminal"), "{err}");
        let err = failed(&tankd.tankctl(&["attach", "nope"]));
        assert!(err.contains("not found"), "{err}");
        tankd.apply(&json!({
            "name": "done", "restart": "never",
            "containers": [{"name": "c", "image": support::BUSYBOX,
                            "command": ["/bin/true"], "tty": true}]
        }));
        tankd.wait_for("done", "the exit", 30, |d| {
            d["status"]["containers"]["c"]["state"]
                .get("terminated")
                .is_some()
        });
        let err = failed(&tankd.tankctl(&["attach", "done"]));
        assert!(err.contains("not running"), "{err}");
        let err = failed(&tankd.tankctl(&["exec", "done", "--", "true"]));
        assert!(err.contains("not running"), "{err}");
    }
}

#[test]
fn twenty_concurrent_execs() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("many")]);
        let address = bus.address.clone();
        let runs: Vec<_> = (0..20)
            .map(|i| {
                let address = address.clone();
                std::thread::spawn(move || {
                    let script = format!("sleep 0.3; echo run-{i}-$$");
                    support::run_tankctl(
                        &address,
                        &["exec", "many", "--", "sh", "-c", &script],
                        None,
                    )
                })
            })
            .collect();
        let mut pids = std::collections::HashSet::new();
        for (i, run) in runs.into_iter().enumerate() {
            let out = ok(&run.join().unwrap());
            let pid = out
                .trim()
                .strip_prefix(&format!("run-{i}-"))
                .unwrap_or_else(|| panic!("{out}"));
            pids.insert(pid.to_owned());
        }
        assert_eq!(pids.len(), 20);
        // Ten with a terminal at once too.
        let clients: Vec<PtyClient> = (0..10)
            .map(|i| {
                let script = format!("sleep 0.3; echo tty-{i}");
                pty_tankctl(
                    bus,
                    &["exec", "-t", "many", "--", "sh", "-c", &script],
                    24,
                    80,
                )
            })
            .collect();
        for (i, mut client) in clients.into_iter().enumerate() {
            client.expect(&format!("tty-{i}\n"));
            assert_eq!(client.wait(), 0);
        }
        assert!(running(&tankd.get("many"), "main"));
    }
}

#[test]
fn non_tty_exec_through_pipes() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("pipes")]);
        let tankctl = support::tankctl_bin();
        let shell = |script: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                .env("TANKCTL", &tankctl)
                .output()
                .unwrap()
        };
        let out = shell(r#""$TANKCTL" exec pipes -- cat /etc/passwd | grep '^root:'"#);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "root:x:0:0:root:/root:/bin/sh\n",
            "{out:?}"
        );
        // stdin with -i, stderr kept apart.
        let out = shell(
            r#"printf 'abc\ndef\n' | "$TANKCTL" exec -i pipes -- sh -c 'tr a-z A-Z; echo oops >&2' 2>/dev/null"#,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ABC\nDEF\n",
            "{out:?}"
        );
        // Without -i the command's stdin is /dev/null.
        let out = shell(r#"echo ignored | "$TANKCTL" exec pipes -- cat"#);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{out:?}");
        assert!(out.status.success(), "{out:?}");
        let _ = tankd;
    }
}

#[test]
fn a_killed_client_leaves_tankd_and_the_container_healthy() {
    let bus = &SystemBus::start();
    {
        let tankd = tankd_with(bus, &[sleeper("kill"), tty_shell("ktty")]);
        let mut client = pty_tankctl(bus, &["exec", "-it", "kill", "--", "sh"], 24, 80);
        client.expect("# ");
        client.send(b"while true; do echo flood-flood-flood-flood; done\r");
        client.expect("flood");
        client.kill9();
        // The flooding shell never blocks: tankd drains its terminal.
        std::thread::sleep(Duration::from_millis(500));
        let ps = ok(&tankd.tankctl(&["exec", "kill", "--", "ps", "-o", "pid,stat,args"]));
        assert!(ps.contains(" sh\n"), "the exec'd shell lives on:\n{ps}");
        let count = |ps: &str| ps.lines().count();
        let before = count(&ps);
        assert!(before >= 3, "{ps}");

        // An attached client killed: the next attach is not refused.
        let mut client = pty_tankctl(bus, &["attach", "ktty"], 24, 80);
        client.send(b"echo attached-once\r");
        client.expect("attached-once\n");
        client.kill9();
        let mut client = pty_tankctl(bus, &["attach", "ktty"], 24, 80);
        client.send(b"echo attached-again\r");
        client.expect("attached-again\n");
        client.send(DETACH);
        assert_eq!(client.wait(), 0);

        assert!(running(&tankd.get("kill"), "main"));
        assert!(running(&tankd.get("ktty"), "shell"));
        ok(&tankd.tankctl(&["ps"]));
    }
}

#[test]
fn exec_into_a_container_adopted_after_a_tankd_restart() {
    let bus = &SystemBus::start();
    let home = TankdHome::new();
    let tankd = Tankd::start_in(bus, &home);
    tankd.import_busybox();
    tankd.apply(&sleeper("adopt"));
    let before = tankd.wait_for("adopt", "running", 30, |d| running(d, "main"));
    tankd.kill9();
    let mut tankd = Tankd::start_in(bus, &home);
    let after = tankd.wait_for("adopt", "adopted", 30, |d| running(d, "main"));
    let pid = |d: &Value| d["status"]["containers"]["main"]["state"]["running"]["pid"].clone();
    assert_eq!(pid(&before), pid(&after), "adopted, not restarted");
    // The context comes from the container's run record.
    let out = ok(&tankd.tankctl(&[
        "exec",
        "adopt",
        "--",
        "sh",
        "-c",
        "echo FROM_SPEC=$FROM_SPEC; ps -o pid,args",
    ]));
    assert!(out.contains("FROM_SPEC=spec-value\n"), "{out}");
    assert!(out.contains("    1 /bin/sleep 1000000"), "{out}");

    // A record written by an older tankd (pid and start time only): the
    // context is read from the adopted PID 1 itself, with a warning.
    tankd.kill9();
    let record = home.path().join("run/containers/adopt/main/record.json");
    let mut old: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    old.as_object_mut()
        .unwrap()
        .retain(|k, _| ["pid", "start_ticks", "started_at_ms"].contains(&k.as_str()));
    std::fs::write(&record, old.to_string()).unwrap();
    tankd = Tankd::start_in(bus, &home);
    let again = tankd.wait_for("adopt", "adopted", 30, |d| running(d, "main"));
    assert_eq!(pid(&before), pid(&again), "adopted, not restarted");
    let out = ok(&tankd.tankctl(&[
        "exec",
        "adopt",
        "--",
        "sh",
        "-c",
        "echo FROM_SPEC=$FROM_SPEC",
    ]));
    assert_eq!(out, "FROM_SPEC=spec-value\n");
    let log = std::fs::read_to_string(&tankd.log).unwrap();
    assert!(log.contains("has no exec context"), "{log}");
    tankd.keep_home(home);
}

/// An image whose PID 1 ([`support/retitle.c`]) overwrites its environ
/// with a process title and drops to nobody, as nginx and redis do; the
/// image sets `User`, `Env` and `WorkingDir`, and its `/etc/group` puts
/// root in `wheel` (10).
fn retitle_image() -> support::images::OciImage {
    use support::images::{busybox_layer, host_platform, image, LayerBuilder, DEFAULT_PATH, GROUP};
    let mut extra = LayerBuilder::new();
    extra.add_dir("bin", 0o755);
    extra.add_file_vec(
        "bin/retitle",
        support::cprog::compile_static("retitle", include_str!("support/retitle.c")),
        0o755,
        0,
        0,
    );
    extra.add_dir("etc", 0o755);
    extra.add_file(
        "etc/group",
        format!("{GROUP}wheel:x:10:root\n").as_bytes(),
        0o644,
        0,
        0,
    );
    image(
        vec![busybox_layer(), extra.build_gzip()],
        json!({
            "User": "root",
            "Entrypoint": ["/bin/retitle"],
            "WorkingDir": "/srv/work",
            "Env": [DEFAULT_PATH, "GREETING=hello world", "SECRET=s3cr3t"],
        }),
        host_platform(),
    )
}

#[test]
fn exec_after_adoption_sees_what_it_saw_before_the_restart() {
    let bus = &SystemBus::start();
    let home = TankdHome::new();
    let mut tankd = Tankd::start_in(bus, &home);
    tankd.import(&[(
        "localhost/tank/retitle:1",
        &support::images::Pushable::Image(retitle_image()),
    )]);
    tankd.apply(&json!({
        "name": "titled", "stop_grace_period_s": 1,
        "containers": [{"name": "main", "image": "localhost/tank/retitle:1",
                        "env": {"FROM_SPEC": "spec-value"}}]
    }));
    let doc = tankd.wait_for("titled", "running", 30, |d| running(d, "main"));
    let pid = doc["status"]["containers"]["main"]["state"]["running"]["pid"]
        .as_u64()
        .unwrap();
    // PID 1 has rewritten its environ and dropped its privileges.
    let deadline = Instant::now() + TIMEOUT;
    while !ok(&tankd.tankctl(&["logs", "titled"])).contains("retitled") {
        assert!(Instant::now() < deadline, "PID 1 never said retitled");
        std::thread::sleep(Duration::from_millis(50));
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("GREETING"),
        "PID 1's environ is rewritten: {environ:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Uid:\t65534\t"), "{status}");
    let context = "env | sort; id; pwd";
    let before = ok(&tankd.tankctl(&["exec", "titled", "--", "sh", "-c", context]));
    for expected in [
        "GREETING=hello world\n",
        "SECRET=s3cr3t\n",
        "FROM_SPEC=spec-value\n",
        "HOME=/root\n",
        "uid=0(root) gid=0(root) groups=10(wheel)\n",
        "/srv/work\n",
    ] {
        assert!(before.contains(expected), "{expected:?} missing:\n{before}");
    }

    tankd.kill9();
    tankd = Tankd::start_in(bus, &home);
    tankd.wait_for("titled", "adopted", 30, |d| running(d, "main"));
    let after = tankd.tankctl(&["exec", "titled", "--", "sh", "-c", context]);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        before,
        "exec after the adoption (stderr: {})",
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(after.status.success(), "{after:?}");
    ok(&tankd.tankctl(&["delete", "--wait", "titled"]));
    tankd.keep_home(home);
}

// --- an expect-style PTY client -------------------------------------------

struct PtyClient {
    master: OwnedFd,
    /// Our copy of the slave, to watch its settings.
    slave: OwnedFd,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where the next expect starts looking.
    seen: usize,
}

impl PtyClient {
    fn spawn(bus_address: &str, args: &[&str], rows: u16, cols: u16) -> PtyClient {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave_copy = pty.slave.try_clone().unwrap();
        let slave = std::fs::File::from(pty.slave);
        // setsid --ctty: tankctl leads a session whose controlling terminal
        // is the slave, as in a terminal emulator.
        let child = Command::new("setsid")
            .arg("--ctty")
            .arg(support::tankctl_bin())
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("setsid tankctl");
        let output = Arc::new(Mutex::new(Vec::new()));
        let reader = pty.master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match nix::unistd::read(&reader, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EIO) => return,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            }
        });
        PtyClient {
            master: pty.master,
            slave: slave_copy,
            child,
            output,
            seen: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the output since the last expect contains `needle`;
    /// returns that output (up to and including `needle`). Carriage
    /// returns are left out of the output (the local terminal adds some
    /// when it is not raw).
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = self.text().replace('\r', "");
            let text = text[self.seen.min(text.len())..].to_owned();
            if let Some(i) = text.find(needle) {
                let upto = &text[..i + needle.len()];
                self.seen += upto.len();
                return upto.to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "no {needle:?} within {TIMEOUT:?}; output so far:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until tankctl has put the terminal in raw mode: typing
    /// before that would be cooked by the local line discipline.
    fn wait_raw(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let settings = nix::sys::termios::tcgetattr(self.slave.as_fd()).unwrap();
            if !settings
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ICANON)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tankctl never went raw:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn send(&self, bytes: &[u8]) {
        let mut file = std::fs::File::from(self.master.try_clone().unwrap());
        file.write_all(bytes).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).unwrap();
    }

    /// tankctl's exit code (within the timeout).
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or_else(|| {
                    panic!("tankctl killed: {status}; output:\n{}", self.text())
                });
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tankctl did not exit; output:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Bad Exec/Attach input gets a named error and starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exec_input_gets_named_errors_and_starts_nothing() {
    use std::collections::HashMap;
    use zbus::zvariant::Value as V;
    let bus = SystemBus::start();
    let tankd = tankd_with(&bus, &[sleeper("web")]);
    let conn = bus.connect().await;
    let manager = zbus::Proxy::new(
        &conn,
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
    )
    .await
    .unwrap();
    let exec =
        |pod: &'static str, argv: Vec<&'static str>, opts: HashMap<&'static str, V<'static>>| {
            let manager = manager.clone();
            async move {
                let reply: zbus::Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd)> =
                    manager.call("Exec", &(pod, "", argv, opts)).await;
                match reply {
                    Err(zbus::Error::MethodError(name, message, _)) => {
                        (name.to_string(), message.unwrap_or_default())
                    }
                    other => panic!("expected an error, got {other:?}"),
                }
            }
        };
    // An exec joins the container's cgroup: its processes are all there.
    let home = tankd.data_dir.parent().unwrap().file_name().unwrap();
    let procs_file = std::path::Path::new("/sys/fs/cgroup/pids")
        .join(format!("tank-test-{}", home.to_string_lossy()))
        .join("pods/web/main/cgroup.procs");
    let procs = || std::fs::read_to_string(&procs_file).unwrap();
    let before = procs();
    assert_eq!(before.lines().count(), 1, "{before}");

    let (name, message) = exec(
        "web",
        vec!["true"],
        HashMap::from([("bogus", V::from(true))]),
    )
    .await;
    assert_eq!(name, "org.tank.Error.InvalidArgument", "{message}");
    assert!(message.contains("unknown option \"bogus\""), "{message}");
    let (name, message) = exec(
        "web",
        vec!["true"],
        HashMap::from([("tty", V::from("yes"))]),
    )
    .await;
    assert_eq!(name, "org.tank.Error.InvalidArgument", "{message}");
    let (name, _) = exec("web", vec![], HashMap::new()).await;
    assert_eq!(name, "org.tank.Error.InvalidArgument");
    let (name, _) = exec("nosuch", vec!["true"], HashMap::new()).await;
    assert_eq!(name, "org.tank.Error.NotFound");
    let (name, message) = exec(
        "web",
        vec!["true"],
        HashMap::from([("env", V::from(vec!["NOEQUALS"]))]),
    )
    .await;
    assert_eq!(name, "org.tank.Error.InvalidArgument", "{message}");

    let attach: zbus::Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd)> =
        manager.call("Attach", &("web", "nosuch")).await;
    match attach {
        Err(zbus::Error::MethodError(name, _, _)) => {
            assert_eq!(name.as_str(), "org.tank.Error.NotFound")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Nothing was started beside the workload, which still runs unrestarted.
    assert_eq!(procs(), before);
    let doc = tankd.get("web");
    assert_eq!(doc["status"]["containers"]["main"]["restart_count"], 0);
}
