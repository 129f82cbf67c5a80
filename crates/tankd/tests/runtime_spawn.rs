//! The container runtime's bring-up against the real kernel (root only):
//! `Spawner::spawn` (clone3 + tankd's init stage) with busybox rootfs trees
//! built here, as a plain directory and as an overlay under /var/tmp.
//!
//! Every test makes its own uniquely named directories (removed at the end)
//! and waits for its container with `wait_exit`, which also reaps it.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use tank_api::exit::ExitStatus;
use tankd::runtime::plan::{
    BindMount, InitPlan, RootfsPlan, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
};
use tankd::runtime::spawn::{send_signal, wait_exit, SpawnError, Spawner, Stdio};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "ps", "cat", "ls", "id", "hostname", "mount", "sleep", "echo", "env", "pwd", "touch",
    "head", "grep", "stat", "test", "tr", "readlink",
];
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\napp:x:1000:\n";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Skips (passes) the test when not root or without busybox.
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() || !Path::new(BUSYBOX).exists() {
            eprintln!("skipped: needs root and {BUSYBOX}");
            return;
        }
    };
}

// --- fixtures ------------------------------------------------------------------

/// A scratch directory under /var/tmp (ext4: overlay upper/work work there).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("tank-spawn-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        Scratch { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A unique name usable under /var/tmp for things outside the scratch.
    fn unique(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

/// `bin/` with busybox and its applet links under `dir`.
fn make_bin(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

/// `etc/` (passwd, group) and the usual empty directories under `dir`.
fn make_etc(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/passwd"), PASSWD).unwrap();
    fs::write(dir.join("etc/group"), GROUP).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "root", "home/app"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    nix::unistd::chown(
        &dir.join("home/app"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();
}

/// A busybox rootfs as a plain directory.
fn bind_rootfs(s: &Scratch) -> RootfsPlan {
    let root = s.path("rootfs");
    make_bin(&root);
    make_etc(&root);
    RootfsPlan::Bind { path: root }
}

/// The same tree split in two lower layers, with a fresh upper and work.
fn overlay_rootfs(s: &Scratch) -> RootfsPlan {
    let (l1, l2) = (s.path("layers/bin"), s.path("layers/etc"));
    make_bin(&l1);
    make_etc(&l2);
    for d in ["upper", "work"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    RootfsPlan::Overlay {
        lower: vec![l2, l1],
        upper: s.path("upper"),
        work: s.path("work"),
    }
}

fn plan(s: &Scratch, rootfs: RootfsPlan, argv: &[&str]) -> InitPlan {
    let target = s.path("target");
    fs::create_dir_all(&target).unwrap();
    InitPlan {
        pod: "testpod".into(),
        container: "app".into(),
        rootfs_target: target,
        rootfs,
        mounts: vec![],
        netns: None,
        hostname: "tank-test-pod".into(),
        user: None,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        cwd: "/".into(),
        masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
        readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
        tty: false,
        capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
        // Unconfined: these tests are about the bring-up (tests/seccomp.rs
        // covers the filter).
        seccomp: None,
        cgroup: Default::default(),
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap()
}

/// Reads `fd` to EOF on a thread.
fn drain(fd: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = fs::File::from(fd).read_to_string(&mut s);
        s
    })
}

/// stdin from, stdout and stderr to /dev/null.
fn null_stdio() -> Stdio {
    let null =
        |flags| nix::fcntl::open("/dev/null", flags | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    Stdio {
        stdin: null(OFlag::O_RDONLY),
        stdout: null(OFlag::O_WRONLY),
        stderr: null(OFlag::O_WRONLY),
        tty: false,
    }
}

fn spawner() -> Spawner {
    Spawner::with_exe(Path::new(env!("CARGO_BIN_EXE_tankd"))).unwrap()
}

#[derive(Debug)]
struct Run {
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Spawns `plan` with stdout/stderr into pipes, waits for the exit.
async fn run(plan: &InitPlan) -> Result<Run, (SpawnError, Option<u32>)> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdin = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let (out, err) = (drain(out_r), drain(err_r));
    let stdio = Stdio {
        stdin,
        stdout: out_w,
        stderr: err_w,
        tty: false,
    };
    let placed = Arc::new(Mutex::new(None));
    let placed2 = placed.clone();
    let started = tokio::time::timeout(
        TIMEOUT,
        spawner().spawn(plan, stdio, move |pid| {
            *placed2.lock().unwrap() = Some(pid);
            Ok(())
        }),
    )
    .await
    .expect("spawn timed out");
    let started = match started {
        Ok(started) => started,
        Err(e) => {
            let pid = *placed.lock().unwrap();
            let _ = (out.join(), err.join());
            return Err((e, pid));
        }
    };
    assert_eq!(
        *placed.lock().unwrap(),
        Some(started.pid),
        "place got the pid"
    );
    let status = tokio::time::timeout(TIMEOUT, wait_exit(&started.pidfd))
        .await
        .expect("container timed out")
        .unwrap();
    // Reaped: waiting again finds no child.
    assert!(
        matches!(
            wait_exit(&started.pidfd).await,
            Err(SpawnError::Wait(nix::errno::Errno::ECHILD))
        ),
        "the container was reaped"
    );
    Ok(Run {
        pid: started.pid,
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

async fn run_ok(plan: &InitPlan) -> Run {
    let r = run(plan).await.map_err(|(e, _)| e).expect("spawn");
    assert_eq!(r.status, ExitStatus::Exited(0), "{r:?}");
    r
}

async fn run_err(plan: &InitPlan) -> String {
    match run(plan).await {
        Ok(r) => panic!("expected an init error, got {r:?}"),
        Err((SpawnError::Init(message), pid)) => {
            // (No pid when the init stage failed before the checkpoint.)
            if let Some(pid) = pid {
                assert_no_process(pid);
            }
            message
        }
        Err((e, _)) => panic!("expected SpawnError::Init, got {e:?}"),
    }
}

/// Neither running nor a zombie: the pid is gone (or reused by an
/// unrelated, non-zombie process).
fn assert_no_process(pid: u32) {
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_ne!(state, "Z", "pid {pid} is a zombie");
        assert!(
            !stat.contains("(tankd)") && !stat.contains("(tank-init)"),
            "{stat}"
        );
    }
}

fn host_mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

// --- tests -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid1_ps_hostname_and_isolated_mounts() {
    require_root!();
    let s = Scratch::new();
    let marker = PathBuf::from(format!("/var/tmp/{}-host-marker", s.unique()));
    fs::write(&marker, "host").unwrap();
    let script = format!(
        "echo pid=$$; echo host=$(hostname); ps -o pid,comm; echo MOUNTS; cat /proc/mounts; echo END; \
         test -e {m} && echo marker=visible || echo marker=absent; \
         echo DEV: $(ls /dev)",
        m = marker.display()
    );
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.argv = sh(&script);
    let r = run_ok(&p).await;
    fs::remove_file(&marker).unwrap();
    let out = &r.stdout;
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("host=tank-test-pod\n"), "{out}");
    assert!(out.contains("marker=absent"), "{out}");
    // ps sees only the container: sh (pid 1) and ps itself.
    let ps: Vec<&str> = out
        .split("MOUNTS")
        .next()
        .unwrap()
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("PID"))
        .skip(1)
        .collect();
    assert!(!ps.is_empty() && ps.len() <= 3, "{ps:?}");
    assert!(
        ps.iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sh"]),
        "{ps:?}"
    );
    for line in &ps {
        let comm = line.split_whitespace().nth(1).unwrap();
        assert!(["sh", "ps"].contains(&comm), "{ps:?}");
    }
    // Only the container's mounts, no host path anywhere.
    let mounts: Vec<&str> = out
        .split("MOUNTS\n")
        .nth(1)
        .unwrap()
        .split("END")
        .next()
        .unwrap()
        .lines()
        .collect();
    let points: Vec<&str> = mounts
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    for expected in [
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
    ] {
        assert!(points.contains(&expected), "{expected} in {mounts:#?}");
    }
    for point in &points {
        assert!(
            ["/", "/proc", "/sys", "/dev"]
                .iter()
                .any(|p| point == p || point.starts_with(&format!("{p}/"))),
            "unexpected mount {point} in {mounts:#?}"
        );
    }
    assert!(
        !mounts
            .iter()
            .any(|l| l.contains("/var/tmp") || l.contains("/work")),
        "{mounts:#?}"
    );
    // Masked and read-only paths are in place.
    // (/proc/kcore & co. do not exist on every kernel: keys and acpi do here.)
    assert!(
        mounts
            .iter()
            .any(|l| l.starts_with("tmpfs /proc/keys tmpfs ")),
        "/dev/null over /proc/keys: {mounts:#?}"
    );
    assert!(
        mounts
            .iter()
            .any(|l| l.starts_with("tmpfs /proc/acpi tmpfs ro,")),
        "a read-only tmpfs over /proc/acpi: {mounts:#?}"
    );
    assert!(
        mounts
            .iter()
            .any(|l| l.starts_with("proc /proc/sys proc ro,")),
        "{mounts:#?}"
    );
    let sys = mounts
        .iter()
        .find(|l| l.split(' ').nth(1) == Some("/sys"))
        .unwrap();
    assert!(sys.contains(" ro,"), "{sys}");
    let dev: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("DEV: "))
        .unwrap()
        .split(' ')
        .collect();
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd", "stdin", "stdout",
        "stderr", "pts", "shm", "mqueue",
    ] {
        assert!(dev.contains(&node), "/dev/{node}: {dev:?}");
    }
    assert!(
        !host_mountinfo().contains(&s.unique()),
        "no mount leaked to the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_argv_and_cwd_exactly_as_planned() {
    require_root!();
    let s = Scratch::new();
    let mut p = plan(&s, bind_rootfs(&s), &["env"]);
    p.env = vec![
        "PATH=/usr/bin:/bin".into(),
        "HOME=/root".into(),
        "GREETING=hello world".into(),
        "EMPTY=".into(),
    ];
    let r = run_ok(&p).await;
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, p.env.iter().map(String::as_str).collect::<Vec<_>>());

    // argv verbatim; a missing cwd is created.
    p.argv = vec![
        "sh".into(),
        "-c".into(),
        "pwd; printf '[%s]' \"$0\" \"$@\"; echo".into(),
        "zero".into(),
        "a b".into(),
        "".into(),
        "c".into(),
    ];
    p.cwd = "/srv/data".into();
    let r = run_ok(&p).await;
    assert_eq!(r.stdout, "/srv/data\n[zero][a b][][c]\n", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_capabilities_and_no_new_privs() {
    require_root!();
    let s = Scratch::new();
    let p = plan(
        &s,
        bind_rootfs(&s),
        &[
            "grep",
            "-E",
            "^(Cap|NoNewPrivs|Uid|Gid)",
            "/proc/self/status",
        ],
    );
    let r = run_ok(&p).await;
    let field = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in {}", r.stdout))
            .trim()
            .to_owned()
    };
    assert_eq!(field("CapBnd"), "00000000a80425fb");
    assert_eq!(field("CapEff"), "00000000a80425fb");
    assert_eq!(field("CapPrm"), "00000000a80425fb");
    assert_eq!(field("CapInh"), "0000000000000000");
    assert_eq!(field("CapAmb"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert!(field("Uid").starts_with("0\t0\t0\t0"), "{}", field("Uid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_user_from_the_image() {
    require_root!();
    let s = Scratch::new();
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.argv = sh("id; pwd; stat -c %u:%g .; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; touch /etc/x || echo denied");
    p.user = Some("app".into());
    p.cwd = "/home/app/work".into();
    p.env = vec!["PATH=/bin".into()];
    let r = run_ok(&p).await;
    let out = &r.stdout;
    assert!(out.starts_with("uid=1000(app) gid=1000(app)"), "{out}");
    assert!(
        out.contains("/home/app/work\n1000:1000\n"),
        "cwd created, owned by the user: {out}"
    );
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(out.contains("denied"), "{out}");

    // HOME comes from passwd when the plan sets none.
    p.argv = vec!["env".into()];
    let r = run_ok(&p).await;
    assert_eq!(r.stdout, "PATH=/bin\nHOME=/home/app\n");

    // A user the image does not have.
    p.user = Some("nobody".into());
    let e = run_err(&p).await;
    assert!(e.contains(r#"user "nobody": no such user"#), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_rootfs_writes_go_to_upper_and_mounts_die_with_the_container() {
    require_root!();
    let s = Scratch::new();
    let marker = PathBuf::from(format!("/var/tmp/{}-host-marker", s.unique()));
    fs::write(&marker, "host").unwrap();
    let mut p = plan(&s, overlay_rootfs(&s), &[]);
    p.argv = sh(&format!(
        "echo new > /new-file; echo more >> /etc/passwd; ls /bin/busybox; head -1 /proc/mounts; \
         test -e {} && echo marker=visible || echo marker=absent",
        marker.display()
    ));
    let r = run_ok(&p).await;
    fs::remove_file(&marker).unwrap();
    assert!(
        r.stdout.contains("/bin/busybox\noverlay / overlay rw,"),
        "{r:?}"
    );
    assert!(r.stdout.contains("marker=absent"), "{r:?}");
    assert_eq!(
        fs::read_to_string(s.path("upper/new-file")).unwrap(),
        "new\n"
    );
    assert!(fs::read_to_string(s.path("upper/etc/passwd"))
        .unwrap()
        .ends_with("more\n"));
    assert_eq!(
        fs::read_to_string(s.path("layers/etc/etc/passwd")).unwrap(),
        PASSWD
    );
    // The target stays an empty directory on the host, and no mount of the
    // container is left anywhere in the host's table.
    assert_eq!(fs::read_dir(s.path("target")).unwrap().count(), 0);
    assert!(!host_mountinfo().contains(&s.unique()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_container_mounts_are_invisible_and_sigkill_is_reported() {
    require_root!();
    let s = Scratch::new();
    let p = plan(&s, overlay_rootfs(&s), &["sleep", "60"]);
    let (out_r, out_w) = pipe();
    let out = drain(out_r);
    let stdio = Stdio {
        stdin: nix::fcntl::open("/dev/null", OFlag::O_RDONLY, Mode::empty()).unwrap(),
        stderr: out_w.try_clone().unwrap(),
        stdout: out_w,
        tty: false,
    };
    let started = spawner().spawn(&p, stdio, |_| Ok(())).await.unwrap();
    // Running: its overlay is not in the host's mount table.
    assert!(!host_mountinfo().contains(&s.unique()));
    let comm = fs::read_to_string(format!("/proc/{}/comm", started.pid)).unwrap();
    assert_eq!(comm, "sleep\n");
    send_signal(&started.pidfd, Signal::SIGKILL).unwrap();
    let status = tokio::time::timeout(TIMEOUT, wait_exit(&started.pidfd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(out.join().unwrap(), "");
    assert_no_process(started.pid);
    // Signalling an exited (reaped) process is an error, not a stray kill.
    assert!(send_signal(&started.pidfd, Signal::SIGTERM).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_reported() {
    require_root!();
    let s = Scratch::new();
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.argv = sh("echo to-stderr >&2; exit 3");
    let r = run(&p).await.map_err(|(e, _)| e).unwrap();
    assert_eq!(r.status, ExitStatus::Exited(3));
    assert_eq!(r.stderr, "to-stderr\n");
    assert_no_process(r.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_read_only_and_read_write() {
    require_root!();
    let s = Scratch::new();
    for d in ["vol-rw", "vol-ro/nested"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    fs::write(s.path("vol-ro/existing"), "keep").unwrap();
    fs::write(s.path("conf"), "setting=1\n").unwrap();
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.mounts = vec![
        BindMount {
            source: s.path("vol-rw"),
            destination: "/var/lib/app".into(),
            read_only: false,
        },
        BindMount {
            source: s.path("vol-ro"),
            destination: "/srv/ro".into(),
            read_only: true,
        },
        BindMount {
            source: s.path("conf"),
            destination: "/etc/app/app.conf".into(),
            read_only: true,
        },
    ];
    p.argv = sh("echo data > /var/lib/app/written; \
         touch /srv/ro/new 2>&1; cat /srv/ro/existing; echo; \
         echo x > /etc/app/app.conf 2>&1; cat /etc/app/app.conf");
    let r = run_ok(&p).await;
    assert_eq!(
        fs::read_to_string(s.path("vol-rw/written")).unwrap(),
        "data\n"
    );
    assert!(
        r.stdout
            .contains("touch: /srv/ro/new: Read-only file system"),
        "{r:?}"
    );
    assert!(r.stdout.contains("keep\n"), "{r:?}");
    assert!(r.stdout.ends_with("keep\nsetting=1\n"), "{r:?}");
    assert_eq!(
        r.stderr, "/bin/sh: can't create /etc/app/app.conf: Read-only file system\n",
        "{r:?}"
    );
    assert!(!s.path("vol-ro/new").exists());
    assert_eq!(fs::read_to_string(s.path("conf")).unwrap(), "setting=1\n");
}

/// Unmounts a host mount made by a test, even when the test fails.
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_bind_covers_nested_mounts() {
    require_root!();
    let s = Scratch::new();
    fs::create_dir_all(s.path("vol/sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &s.path("vol/sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k"),
    )
    .unwrap();
    let _nested = HostMount(s.path("vol/sub"));
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.mounts = vec![BindMount {
        source: s.path("vol"),
        destination: "/data".into(),
        read_only: true,
    }];
    p.argv = sh("touch /data/a 2>&1; touch /data/sub/b 2>&1; grep ' /data' /proc/mounts");
    let r = run_ok(&p).await;
    assert!(
        r.stdout.contains("touch: /data/a: Read-only file system"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("touch: /data/sub/b: Read-only file system"),
        "{r:?}"
    );
    let sub = r
        .stdout
        .lines()
        .find(|l| l.contains(" /data/sub "))
        .unwrap();
    assert!(sub.starts_with("tmpfs /data/sub tmpfs ro,"), "{sub}");
    // /proc/sys is read-only too (a read-only path inside /proc).
    p.mounts = vec![];
    p.argv = sh("echo 1 > /proc/sys/kernel/ns_last_pid");
    let r = run(&p).await.map_err(|(e, _)| e).unwrap();
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failures_are_reported_with_context() {
    require_root!();
    let s = Scratch::new();
    let mut p = plan(&s, bind_rootfs(&s), &["/nope"]);
    let e = run_err(&p).await;
    assert!(e.starts_with("exec /nope: ENOENT"), "{e}");

    p.argv = vec!["nope".into()];
    let e = run_err(&p).await;
    assert!(e.starts_with("exec nope: ENOENT"), "{e}");
    assert!(e.contains("PATH=/bin"), "{e}");

    let missing = s.path("no-such-volume");
    p.argv = vec!["true".into()];
    p.mounts = vec![BindMount {
        source: missing.clone(),
        destination: "/var/lib/app".into(),
        read_only: false,
    }];
    let e = run_err(&p).await;
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("/var/lib/app"), "{e}");
    assert!(e.contains("ENOENT"), "{e}");

    p.mounts = vec![];
    p.capabilities = vec!["CAP_NOT_A_CAP".into()];
    let e = run_err(&p).await;
    assert!(e.contains("CAP_NOT_A_CAP"), "{e}");

    p.capabilities = vec![];
    p.netns = Some(s.path("no-netns"));
    let e = run_err(&p).await;
    assert!(e.contains("no-netns") && e.contains("ENOENT"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_in_the_image_cannot_redirect_a_mount_to_the_host() {
    require_root!();
    let s = Scratch::new();
    let host_dir = PathBuf::from(format!("/var/tmp/{}-victim", s.unique()));
    fs::create_dir(&host_dir).unwrap();
    let rootfs = bind_rootfs(&s);
    symlink(&host_dir, s.path("rootfs/escape")).unwrap();
    symlink("../../../../../../..", s.path("rootfs/etc/up")).unwrap();
    fs::create_dir(s.path("payload")).unwrap();
    fs::write(s.path("payload/file"), "payload").unwrap();
    let mut p = plan(&s, rootfs, &[]);
    p.mounts = vec![
        BindMount {
            source: s.path("payload"),
            destination: "/escape/x".into(),
            read_only: false,
        },
        BindMount {
            source: s.path("payload"),
            destination: format!("/etc/up{}/y", host_dir.display()).into(),
            read_only: false,
        },
    ];
    p.argv = sh("cat /escape/x/file; echo; readlink /escape");
    let r = run_ok(&p).await;
    assert!(r.stdout.starts_with("payload\n"), "{r:?}");
    let victim: Vec<_> = fs::read_dir(&host_dir).unwrap().collect();
    fs::remove_dir(&host_dir).unwrap();
    assert!(victim.is_empty(), "the host dir got {victim:?}");
    // The destinations were made inside the rootfs instead.
    let inside = s.path("rootfs").join(host_dir.strip_prefix("/").unwrap());
    assert!(inside.join("x").is_dir() && inside.join("y").is_dir());
    assert!(!host_mountinfo().contains(&s.unique()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_netns_gets_its_own_sysfs() {
    require_root!();
    let s = Scratch::new();
    // A network namespace held by a helper process.
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .unwrap();
    let ns = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    let host_ns = fs::read_link("/proc/self/ns/net").unwrap();
    let mut waited = 0;
    while fs::read_link(&ns).map(|l| l == host_ns).unwrap_or(true) && waited < 100 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.netns = Some(ns.clone());
    p.argv = sh("ls /sys/class/net | tr '\\n' ' '; echo; readlink /proc/self/ns/net");
    let r = run(&p).await;
    let want = fs::read_link(&ns).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let r = r.map_err(|(e, _)| e).unwrap();
    assert_eq!(r.status, ExitStatus::Exited(0), "{r:?}");
    assert_eq!(r.stdout, format!("lo \n{}\n", want.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_becomes_the_controlling_terminal() {
    require_root!();
    let s = Scratch::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    let stdio = Stdio {
        stdin: slave.try_clone().unwrap(),
        stdout: slave.try_clone().unwrap(),
        stderr: slave,
        tty: true,
    };
    let mut p = plan(&s, bind_rootfs(&s), &[]);
    p.argv = sh("test -t 0 && echo is-a-tty; cat /proc/self/stat");
    let started = spawner().spawn(&p, stdio, |_| Ok(())).await.unwrap();
    let master = pty.master;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut f = fs::File::from(master);
        let mut buf = [0u8; 4096];
        // EIO once the last slave fd closes.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let status = tokio::time::timeout(TIMEOUT, wait_exit(&started.pidfd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0));
    let out = reader.join().unwrap();
    assert!(out.contains("is-a-tty"), "{out}");
    // /proc/self/stat of cat: session leader is pid 1 (sid field 6) and a
    // controlling tty (field 7) is set.
    let stat = out.lines().find(|l| l.contains("(cat)")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], "1", "session of pid 1: {stat}");
    assert_ne!(fields[4], "0", "a controlling tty: {stat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_spawn_future_kills_and_reaps() {
    require_root!();
    let s = Scratch::new();
    let p = plan(&s, bind_rootfs(&s), &["sleep", "60"]);
    let placed = Arc::new(Mutex::new(None));
    let placed2 = placed.clone();
    let stdio = null_stdio();
    // `place` fails: the child is killed and reaped, the error returned.
    let e = spawner()
        .spawn(&p, stdio, move |pid| {
            *placed2.lock().unwrap() = Some(pid);
            Err("no cgroup for you".into())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SpawnError::Place(m) if m == "no cgroup for you"),
        "{e:?}"
    );
    assert_no_process(placed.lock().unwrap().unwrap());

    // A spawn task aborted at the checkpoint: its future is dropped at the
    // next await (waiting for the exec), which kills and reaps the child.
    let stdio = null_stdio();
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let task = tokio::spawn(async move {
        spawner()
            .spawn(&p, stdio, move |pid| {
                let _ = pid_tx.send(pid);
                let _ = go_rx.recv_timeout(TIMEOUT);
                Ok(())
            })
            .await
    });
    let pid = tokio::task::spawn_blocking(move || pid_rx.recv_timeout(TIMEOUT))
        .await
        .unwrap()
        .unwrap();
    task.abort();
    go_tx.send(()).unwrap();
    match task.await {
        Err(e) if e.is_cancelled() => {
            let mut gone = false;
            for _ in 0..250 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    gone = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(gone, "pid {pid} still exists (a zombie or still running)");
        }
        // The exec won the race with the abort: a running container.
        Ok(Ok(started)) => {
            send_signal(&started.pidfd, Signal::SIGKILL).unwrap();
            wait_exit(&started.pidfd).await.unwrap();
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_dying_before_the_checkpoint_is_reported_with_its_status() {
    require_root!();
    let s = Scratch::new();
    let p = plan(&s, bind_rootfs(&s), &["true"]);
    // Not tankd: /bin/true exits 0 without a word; a file that cannot be
    // executed makes the child's execveat fail (exit 127).
    let not_exec = s.path("not-executable");
    fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    for (exe, code) in [(Path::new("/bin/true"), 0), (not_exec.as_path(), 127)] {
        let e = Spawner::with_exe(exe)
            .unwrap()
            .spawn(&p, null_stdio(), |_| Err("never placed".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, SpawnError::Died { status: ExitStatus::Exited(c), .. } if c == code),
            "{exe:?}: {e:?}"
        );
        assert!(e.to_string().contains("before the ready checkpoint"), "{e}");
    }
    assert!(Spawner::with_exe(&s.path("missing")).is_err());
}
