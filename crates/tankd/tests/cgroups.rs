//! Container cgroups against the real cgroups of this machine (hybrid: v1
//! memory/pids/cpu/…; the unified hierarchy has no controllers), as root.
//!
//! Every test uses its own `v1_root` (`tank-test-<pid>-<n>`) and a guard
//! that kills and removes everything below it, even when the test fails.
//! The cgroup v2 paths (delegation, `cgroup.kill`, `memory.events`) only run
//! on a pure v2 host: the VM test.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tank_api::spec::{CpuLimit, Limits};
use tankd::runtime::cgroup::{CgroupConfig, CgroupError, Cgroups, ContainerCgroup};
use tankd::runtime::plan::CgroupView;

const MIB: u64 = 1 << 20;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Mount points of the v1 hierarchies.
fn v1_mounts() -> Vec<PathBuf> {
    cgroup_mounts("cgroup")
}

/// Mount points of the cgroup file systems of type `fstype`.
fn cgroup_mounts(fstype: &str) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == fstype)
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .collect()
}

/// Mount points of every hierarchy a container joins on this hybrid host:
/// the v1 ones and the unified one.
fn all_mounts() -> Vec<PathBuf> {
    let mut all = v1_mounts();
    all.extend(cgroup_mounts("cgroup2"));
    all
}

/// A private `v1_root`; dropping it kills and removes everything below it.
struct Root {
    cgroups: Cgroups,
    name: String,
}

impl Root {
    fn new() -> Root {
        let name = format!(
            "tank-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let cgroups = Cgroups::detect(&CgroupConfig {
            v1_root: name.clone(),
            ..CgroupConfig::default()
        })
        .expect("detect");
        assert!(!cgroups.is_v2(), "this machine is hybrid: v1 expected");
        Root { cgroups, name }
    }

    /// `<mount>/<root>/pods/<pod>[/<container>]` in every hierarchy.
    fn dirs(&self, pod: &str, container: Option<&str>) -> Vec<PathBuf> {
        all_mounts()
            .into_iter()
            .map(|m| {
                let d = m.join(&self.name).join("pods").join(pod);
                container.map_or(d.clone(), |c| d.join(c))
            })
            .collect()
    }
}

/// Bottom-up rmdir of a cgroup tree.
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Ok(list) = self.cgroups.list() {
            for (pod, container) in list {
                if let Ok(Some(cg)) = self.cgroups.open(&pod, &container) {
                    if let Err(e) = cg.kill_all() {
                        eprintln!("cleanup: {e}");
                    }
                    if let Err(e) = cg.delete() {
                        eprintln!("cleanup: {e}");
                    }
                }
                let _ = self.cgroups.remove_pod(&pod);
            }
        }
        for m in all_mounts() {
            rmdir_tree(&m.join(&self.name));
        }
    }
}

/// A child process killed and reaped on drop (if a test fails before its
/// cgroup is killed).
struct Proc(Child);

impl Proc {
    /// Starts `sh -c SCRIPT` with stdin piped; the script should begin with
    /// `read x` so that nothing happens before it is in its cgroup.
    fn sh(script: &str) -> Proc {
        Proc(
            Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sh"),
        )
    }

    fn python(code: &str) -> Proc {
        Proc(
            Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(code)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn python3"),
        )
    }

    /// Puts it into `cg`, then lets it go.
    fn place_and_go(&mut self, cg: &ContainerCgroup) {
        cg.add_process(self.0.id()).expect("add_process");
        self.0
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .expect("write to stdin");
    }

    fn wait(&mut self) -> (ExitStatus, String) {
        drop(self.0.stdin.take());
        let status = self.0.wait().unwrap();
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            o.read_to_string(&mut out).unwrap();
        }
        if let Some(mut e) = self.0.stderr.take() {
            e.read_to_string(&mut out).unwrap();
        }
        (status, out)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cgroup file of `cg` in the hierarchy mounted at `/sys/fs/cgroup/<hier>`.
fn v1_file(cg: &ContainerCgroup, hier: &str, file: &str) -> PathBuf {
    let procs = cg
        .procs_files()
        .into_iter()
        .find(|p| p.starts_with(Path::new("/sys/fs/cgroup").join(hier)))
        .unwrap_or_else(|| panic!("no {hier} hierarchy in {:?}", cg.procs_files()));
    procs.with_file_name(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn handles_are_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Cgroups>();
    send_sync::<ContainerCgroup>();
}

#[test]
fn config_defaults_and_validation() {
    let c: CgroupConfig = toml::from_str("").unwrap();
    assert_eq!(c.v1_root, "tank");
    assert_eq!(c, CgroupConfig::default());
    let c: CgroupConfig = toml::from_str("v1_root = \"tank/prod\"").unwrap();
    assert_eq!(c.v1_root, "tank/prod");
    assert!(toml::from_str::<CgroupConfig>("v2_root = \"x\"").is_err());
    // Found at start, never configured.
    assert!(toml::from_str::<CgroupConfig>("v2_base = \"x\"").is_err());
    for bad in ["", "/tank", "../tank", "tank/../x"] {
        let err = Cgroups::detect(&CgroupConfig {
            v1_root: bad.into(),
            ..CgroupConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, CgroupError::Config(_)), "{bad:?}: {err}");
    }
}

#[test]
fn limits_are_written_and_read_back() {
    let root = Root::new();
    eprintln!("{}", root.cgroups.describe());
    let limits = Limits {
        memory: Some(32 * MIB),
        pids: Some(10),
        cpu: Some(CpuLimit {
            quota_us: 50_000,
            period_us: 100_000,
        }),
    };
    let cg = root.cgroups.create("web", "app", &limits).unwrap();
    assert_eq!(cg.limits().unwrap(), limits);
    assert_eq!(cg.v2_dir(), None);

    // The files themselves, in their hierarchies.
    assert_eq!(
        read(&v1_file(&cg, "memory", "memory.limit_in_bytes")),
        (32 * MIB).to_string()
    );
    let memsw = v1_file(&cg, "memory", "memory.memsw.limit_in_bytes");
    if memsw.exists() {
        assert_eq!(read(&memsw), (32 * MIB).to_string(), "swap is limited too");
    }
    assert_eq!(read(&v1_file(&cg, "pids", "pids.max")), "10");
    assert_eq!(read(&v1_file(&cg, "cpu", "cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&v1_file(&cg, "cpu", "cpu.cfs_period_us")), "100000");

    // One cgroup.procs per hierarchy (every v1 one and the unified one of
    // this hybrid host), all present: the container's cgroup namespace has
    // its own cgroup as the root in each.
    let files = cg.procs_files();
    assert_eq!(files.len(), all_mounts().len(), "{files:?}");
    for mount in all_mounts() {
        let file = mount.join(&root.name).join("pods/web/app/cgroup.procs");
        assert!(files.contains(&file), "{} not in {files:?}", file.display());
        assert!(file.exists(), "{}", file.display());
    }

    // Clearing every limit.
    cg.set_limits(&Limits::default()).unwrap();
    assert_eq!(cg.limits().unwrap(), Limits::default());
    assert_eq!(read(&v1_file(&cg, "pids", "pids.max")), "max");
    assert_eq!(read(&v1_file(&cg, "cpu", "cpu.cfs_quota_us")), "-1");
    assert_eq!(read(&v1_file(&cg, "cpu", "cpu.cfs_period_us")), "100000");

    // Lowering and raising again (memsw must stay >= the limit throughout);
    // a memory limit that is not a page multiple reads back rounded down.
    for (mem, cpu) in [(64 * MIB, (20_000, 50_000)), (16 * MIB, (200_000, 100_000))] {
        let l = Limits {
            memory: Some(mem),
            pids: Some(100),
            cpu: Some(CpuLimit {
                quota_us: cpu.0,
                period_us: cpu.1,
            }),
        };
        cg.set_limits(&l).unwrap();
        assert_eq!(cg.limits().unwrap(), l);
    }
    cg.set_limits(&Limits {
        memory: Some(1_000_000),
        ..Limits::default()
    })
    .unwrap();
    let m = cg.limits().unwrap().memory.unwrap();
    assert!(
        m <= 1_000_000 && m > 1_000_000 - 65536 && m % 4096 == 0,
        "{m}"
    );

    // create() of an existing cgroup opens it and applies the new limits;
    // open() sees what is in force.
    let again = root.cgroups.create("web", "app", &limits).unwrap();
    assert_eq!(again.limits().unwrap(), limits);
    let opened = root.cgroups.open("web", "app").unwrap().expect("exists");
    assert_eq!(opened.limits().unwrap(), limits);
}

#[test]
fn pids_limit_makes_forks_fail() {
    let root = Root::new();
    let limits = Limits {
        pids: Some(5),
        ..Limits::default()
    };
    let cg = root.cgroups.create("p", "forker", &limits).unwrap();
    let mut sh = Proc::sh("read x; for i in $(seq 20); do sleep 5 >/dev/null 2>&1 & done; wait");
    sh.place_and_go(&cg);
    let (status, out) = sh.wait();
    // dash gives up at the first refused fork.
    assert!(!status.success(), "{status:?} {out}");
    assert!(out.contains("fork"), "{out}");
    let events = read(&v1_file(&cg, "pids", "pids.events"));
    let max: u64 = events
        .strip_prefix("max ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pids.events {events:?}"));
    assert!(max > 0, "{events}");
    // The sleeps that did start: at most pids.max.
    assert!(cg.procs().unwrap().len() <= 5);
    cg.kill_all().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
}

#[test]
fn memory_limit_oom_kill_is_counted() {
    let root = Root::new();
    let limits = Limits {
        memory: Some(32 * MIB),
        ..Limits::default()
    };
    let cg = root.cgroups.create("m", "hog", &limits).unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 0);
    let mut py = Proc::python(
        "import sys\nsys.stdin.readline()\nb = []\n\
         for i in range(64): b.append(b'\\x01' * (1 << 20))\nprint('survived')",
    );
    py.place_and_go(&cg);
    let (status, out) = py.wait();
    assert_eq!(status.signal(), Some(9), "{status:?} {out}");
    assert!(!out.contains("survived"));
    assert!(cg.oom_kills().unwrap() >= 1);
}

#[test]
fn cpu_quota_throttles() {
    let root = Root::new();
    let limits = Limits {
        cpu: Some(CpuLimit {
            quota_us: 10_000,
            period_us: 100_000,
        }),
        ..Limits::default()
    };
    let cg = root.cgroups.create("c", "spin", &limits).unwrap();
    // Two spinners: demand well above the quota even with other load here.
    let mut sh = Proc::sh("read x; while :; do :; done & while :; do :; done & wait");
    sh.place_and_go(&cg);
    let mut last = Default::default();
    wait_until("nr_throttled > 0", Duration::from_secs(10), || {
        last = cg.cpu_stat().unwrap();
        last.nr_throttled > 0 && last.throttled_usec > 0
    });
    assert!(last.nr_periods >= last.nr_throttled, "{last:?}");
    cg.kill_all().unwrap();
    let (status, _) = sh.wait();
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn kill_all_empties_a_forking_cgroup_and_delete_removes_it_everywhere() {
    let root = Root::new();
    let limits = Limits {
        pids: Some(200),
        ..Limits::default()
    };
    let cg = root.cgroups.create("k", "many", &limits).unwrap();
    // Three subshells forking all the time, two sleepers, and sh itself.
    let mut sh = Proc::sh(
        "read x; for i in 1 2 3; do (while :; do /bin/true; done) & done; \
         sleep 100 & sleep 100 & wait",
    );
    sh.place_and_go(&cg);
    wait_until("6 processes", Duration::from_secs(10), || {
        cg.procs().unwrap().len() >= 6
    });
    assert!(cg.is_populated().unwrap());
    cg.kill_all().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    assert!(!cg.is_populated().unwrap());
    let (status, _) = sh.wait();
    assert_eq!(status.signal(), Some(9));
    // Nothing frozen is left behind.
    assert_eq!(read(&v1_file(&cg, "freezer", "freezer.state")), "THAWED");

    let dirs = root.dirs("k", Some("many"));
    assert!(dirs.iter().any(|d| d.is_dir()));
    cg.delete().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert_eq!(root.cgroups.list().unwrap(), vec![]);
    assert!(root.cgroups.open("k", "many").unwrap().is_none());
    root.cgroups.remove_pod("k").unwrap();
    for d in root.dirs("k", None) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    // Removing an absent pod is fine.
    root.cgroups.remove_pod("k").unwrap();
}

#[test]
fn list_open_and_names() {
    let root = Root::new();
    assert_eq!(root.cgroups.list().unwrap(), vec![]);
    for (p, c) in [("b", "x"), ("a", "y"), ("a", "x")] {
        root.cgroups.create(p, c, &Limits::default()).unwrap();
    }
    let s = |p: &str, c: &str| (p.to_string(), c.to_string());
    assert_eq!(
        root.cgroups.list().unwrap(),
        vec![s("a", "x"), s("a", "y"), s("b", "x")]
    );
    assert!(root.cgroups.open("a", "zzz").unwrap().is_none());
    assert!(root.cgroups.open("nope", "x").unwrap().is_none());
    let a_x = root.cgroups.open("a", "x").unwrap().expect("a/x");
    assert_eq!(a_x.procs().unwrap(), Vec::<u32>::new());
    assert_eq!(a_x.oom_kills().unwrap(), 0);
    assert_eq!(a_x.cpu_stat().unwrap().nr_throttled, 0);

    // A pod with containers left is not removed.
    let err = root.cgroups.remove_pod("a").unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(&err, CgroupError::PodNotEmpty { containers, .. } if containers.len() == 2),
        "{err}"
    );
    assert!(err.to_string().contains("/pods/a"), "{err}");

    for bad in ["a/b", "..", "", "x/../y"] {
        assert!(
            matches!(
                root.cgroups.create(bad, "c", &Limits::default()),
                Err(CgroupError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                root.cgroups.open("a", bad),
                Err(CgroupError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(root.cgroups.remove_pod(bad).is_err());
    }

    for (p, c) in root.cgroups.list().unwrap() {
        let cg = root.cgroups.open(&p, &c).unwrap().unwrap();
        cg.kill_all().unwrap();
        cg.delete().unwrap();
    }
    root.cgroups.remove_pod("a").unwrap();
    root.cgroups.remove_pod("b").unwrap();
    assert_eq!(root.cgroups.list().unwrap(), vec![]);
}

#[test]
fn failed_limit_removes_a_new_cgroup() {
    let root = Root::new();
    // A CFS quota below the kernel's 1 ms minimum is refused.
    let bad = Limits {
        cpu: Some(CpuLimit {
            quota_us: 10,
            period_us: 100_000,
        }),
        ..Limits::default()
    };
    let err = root.cgroups.create("f", "bad", &bad).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("pods/f/bad") && msg.contains("cpu"), "{msg}");
    assert!(root.cgroups.open("f", "bad").unwrap().is_none());
    for d in root.dirs("f", Some("bad")) {
        assert!(!d.exists(), "{}", d.display());
    }
}

#[test]
fn a_process_joins_every_hierarchy_of_the_view() {
    let root = Root::new();
    // The view: every hierarchy this host shows in /sys/fs/cgroup, under
    // the host's names, and its links.
    let CgroupView::Hierarchies { mounts, links } = root.cgroups.view() else {
        panic!("this machine is hybrid: a v1 view expected");
    };
    let mut dirs: Vec<String> = mounts.iter().map(|m| m.dir.clone()).collect();
    dirs.sort();
    let mut host_dirs = vec![];
    let mut host_links = vec![];
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            host_links.push((name, target.to_string_lossy().into_owned()));
        } else {
            host_dirs.push(name);
        }
    }
    host_dirs.sort();
    assert_eq!(dirs, host_dirs, "{mounts:?}");
    let mut links: Vec<(String, String)> = links.into_iter().map(|l| (l.name, l.target)).collect();
    links.sort();
    host_links.sort();
    assert_eq!(links, host_links);
    for m in &mounts {
        assert_eq!(m.v2, m.dir == "unified", "{m:?}");
    }

    // A process placed in a container's cgroup is in it in every
    // hierarchy (its cgroup namespace root will be that cgroup in all).
    let cg = root.cgroups.create("v", "c", &Limits::default()).unwrap();
    let mut p = Proc::sh("read x; cat /proc/self/cgroup");
    p.place_and_go(&cg);
    let (status, out) = p.wait();
    assert!(status.success(), "{out}");
    let own = format!("/{}/pods/v/c", root.name);
    let lines: Vec<&str> = out.lines().collect();
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert_eq!(lines.len(), ours.lines().count(), "{out}");
    for line in lines {
        assert_eq!(line.splitn(3, ':').nth(2), Some(own.as_str()), "{out}");
    }
    cg.kill_all().unwrap();
    cg.delete().unwrap();
    for d in root.dirs("v", Some("c")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn a_cgroup_made_by_an_older_tankd_is_joined_where_it_exists() {
    // tankd before the cgroup namespace view joined five hierarchies only;
    // an exec into such a container (adopted after an upgrade) must still
    // work, joining those.
    let root = Root::new();
    let cg = root.cgroups.create("old", "c", &Limits::default()).unwrap();
    let old = ["memory", "pids", "cpu", "cpuacct", "freezer"];
    for mount in all_mounts() {
        let name = mount.file_name().unwrap().to_string_lossy().into_owned();
        if !old.contains(&name.as_str()) {
            std::fs::remove_dir(mount.join(&root.name).join("pods/old/c")).unwrap();
        }
    }
    let mut p = Proc::sh("read x; cat /proc/self/cgroup");
    p.place_and_go(&cg);
    let (status, out) = p.wait();
    assert!(status.success(), "{out}");
    let own = format!("/{}/pods/old/c", root.name);
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in out.lines() {
        let (id_and_controllers, path) = line.rsplit_once(':').unwrap();
        let in_old = old
            .iter()
            .any(|h| id_and_controllers.split([':', ',']).any(|c| c == *h));
        if in_old {
            assert_eq!(path, own, "{out}");
        } else {
            // Where the old container has no cgroup: where it was (ours).
            assert!(ours.lines().any(|l| l == line), "{line}\n{out}");
        }
    }
    cg.kill_all().unwrap();

    // Gone everywhere: an error, not a silent success.
    let cg = root.cgroups.open("old", "c").unwrap().unwrap();
    cg.delete().unwrap();
    let gone = root.cgroups.create("old", "d", &Limits::default()).unwrap();
    for d in root.dirs("old", Some("d")) {
        std::fs::remove_dir(d).unwrap();
    }
    let err = gone.add_process(std::process::id()).unwrap_err();
    assert!(err.to_string().contains("pods/old/d"), "{err}");
}
