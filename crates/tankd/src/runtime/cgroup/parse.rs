//! Pure helpers of the cgroup module: parsing the kernel's cgroup files and
//! the decisions taken from them (which controllers to enable, where the
//! delegated subtree starts, which names are acceptable). No I/O here, so all
//! of it is unit-tested, including the cgroup v2 logic this machine cannot
//! run for real.

use std::path::PathBuf;

use super::CpuStat;
use crate::runtime::plan::{is_component, CgroupLink, CgroupMount, CgroupView};
use tank_api::spec::CpuLimit;

/// v1 reports "no memory limit" as `PAGE_COUNTER_MAX * PAGE_SIZE`
/// (9223372036854771712 with 4 KiB pages; slightly less with larger pages).
/// Anything from 2^62 bytes up is treated as unlimited.
pub(super) const V1_MEMORY_UNLIMITED: u64 = 1 << 62;

/// The kernel's default CFS period, written back when a CPU limit is cleared.
pub(super) const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// A pod or container name as a cgroup directory name: DNS-1123 labels are
/// validated elsewhere; this refuses anything that could leave or alias the
/// directory it is joined to.
pub(super) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name.len() > 255 {
        Err("longer than 255 bytes")
    } else if name.contains('/') {
        Err("contains '/'")
    } else if name.contains("..") || name == "." {
        Err("contains '..' or is '.'")
    } else if name.contains('\0') {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

/// `v1_root`: a relative path of plain components ("tank", "tank/prod").
pub(super) fn check_v1_root(root: &str) -> Result<(), String> {
    if root.is_empty() {
        return Err("v1_root is empty".into());
    }
    if root.starts_with('/') {
        return Err(format!(
            "v1_root {root:?} must be relative to each v1 hierarchy"
        ));
    }
    for part in root.split('/') {
        check_name(part).map_err(|why| format!("v1_root {root:?}: component {part:?} {why}"))?;
    }
    Ok(())
}

/// Key/value pairs of a flat-keyed cgroup file ("key value" per line).
fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        Some((it.next()?, it.next()?))
    })
}

/// The value of `key` in a flat-keyed file: `Ok(None)` if the key is absent,
/// an error if present but not a number.
fn keyed_u64(text: &str, key: &str) -> Result<Option<u64>, String> {
    match flat_keyed(text).find(|(k, _)| *k == key) {
        None => Ok(None),
        Some((_, v)) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} is {v:?}, not a number")),
    }
}

/// `oom_kill` from v2 `memory.events` or v1 `memory.oom_control` (same key,
/// both flat-keyed). Kernels before 4.13 have no `oom_kill` line: 0.
pub(super) fn oom_kill(text: &str) -> Result<u64, String> {
    Ok(keyed_u64(text, "oom_kill")?.unwrap_or(0))
}

/// `cpu.stat` of v2 (`throttled_usec`) or v1 (`throttled_time`, in ns).
/// Missing keys (no cpu controller) read as 0.
pub(super) fn cpu_stat(text: &str) -> Result<CpuStat, String> {
    let throttled_usec = match keyed_u64(text, "throttled_usec")? {
        Some(us) => us,
        None => keyed_u64(text, "throttled_time")?.unwrap_or(0) / 1000,
    };
    Ok(CpuStat {
        nr_periods: keyed_u64(text, "nr_periods")?.unwrap_or(0),
        nr_throttled: keyed_u64(text, "nr_throttled")?.unwrap_or(0),
        throttled_usec,
    })
}

/// `populated` of v2 `cgroup.events`.
pub(super) fn populated(text: &str) -> Result<bool, String> {
    match keyed_u64(text, "populated")? {
        Some(n) => Ok(n != 0),
        None => Err("no populated line".into()),
    }
}

/// `cgroup.procs`: one pid per line.
pub(super) fn procs(text: &str) -> Result<Vec<u32>, String> {
    text.split_whitespace()
        .map(|s| s.parse().map_err(|_| format!("{s:?} is not a pid")))
        .collect()
}

/// The cgroup v2 path (`0::/…`) in `/proc/<pid>/cgroup`.
pub(super) fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut it = line.splitn(3, ':');
        match (it.next()?, it.next()?, it.next()?) {
            ("0", "", path) => Some(path),
            _ => None,
        }
    })
}

/// Where tankd's delegated subtree starts, given its own cgroup v2 path from
/// `/proc/self/cgroup`: its own cgroup, or the parent of it if tankd already
/// runs in the `supervisor` leaf (a restart, or systemd's
/// `DelegateSubgroup=supervisor`). Returned relative to the cgroup2 mount
/// ("" for its root).
pub(super) fn delegated_base(own: &str, supervisor: &str) -> Result<String, String> {
    let Some(rel) = own.strip_prefix('/') else {
        return Err(format!("cgroup path {own:?} is not absolute"));
    };
    // "(deleted)" or ".." would mean we are not where we think (outside our
    // cgroup namespace root, or in a removed cgroup).
    if rel.split('/').any(|c| c == ".." || c == ".") || own.ends_with(" (deleted)") {
        return Err(format!(
            "tankd's own cgroup {own:?} is not a usable path (outside this cgroup namespace?)"
        ));
    }
    let rel = rel.trim_end_matches('/');
    Ok(match rel.rsplit_once('/') {
        Some((parent, last)) if last == supervisor => parent.to_string(),
        None if rel == supervisor => String::new(),
        _ => rel.to_string(),
    })
}

/// Which of the `wanted` controllers to write into a `cgroup.subtree_control`
/// (available in `cgroup.controllers`, not yet in `subtree_control`) and which
/// are not available at all (not delegated to us, or bound to v1).
pub(super) fn controllers_to_enable<'a>(
    wanted: &[&'a str],
    available: &str,
    enabled: &str,
) -> (Vec<&'a str>, Vec<&'a str>) {
    let has = |list: &str, c: &str| list.split_whitespace().any(|x| x == c);
    let (present, missing): (Vec<&str>, Vec<&str>) = wanted.iter().partition(|c| has(available, c));
    let to_enable = present.into_iter().filter(|c| !has(enabled, c)).collect();
    (to_enable, missing)
}

/// A v2 limit file holding a number or `max` (`memory.max`, `pids.max`; also
/// v1 `pids.max`).
pub(super) fn max_value(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "max" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{v:?} is neither a number nor \"max\"")),
    }
}

/// v1 `memory.limit_in_bytes`.
pub(super) fn v1_memory_limit(text: &str) -> Result<Option<u64>, String> {
    let v = text.trim();
    let n: u64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    Ok((n < V1_MEMORY_UNLIMITED).then_some(n))
}

/// v1 `cpu.cfs_quota_us` (-1 = none) and `cpu.cfs_period_us`.
pub(super) fn v1_cpu_limit(quota: &str, period: &str) -> Result<Option<CpuLimit>, String> {
    let q: i64 = quota
        .trim()
        .parse()
        .map_err(|_| format!("cpu.cfs_quota_us {:?} is not a number", quota.trim()))?;
    if q < 0 {
        return Ok(None);
    }
    let p: u64 = period
        .trim()
        .parse()
        .map_err(|_| format!("cpu.cfs_period_us {:?} is not a number", period.trim()))?;
    Ok(Some(CpuLimit {
        quota_us: q as u64,
        period_us: p,
    }))
}

/// v2 `cpu.max`: "$MAX $PERIOD", `max` for no limit.
pub(super) fn cpu_max(text: &str) -> Result<Option<CpuLimit>, String> {
    let mut it = text.split_whitespace();
    let (Some(quota), Some(period), None) = (it.next(), it.next(), it.next()) else {
        return Err(format!("{:?} is not \"QUOTA PERIOD\"", text.trim()));
    };
    let period_us = period
        .parse()
        .map_err(|_| format!("period {period:?} is not a number"))?;
    match max_value(quota)? {
        None => Ok(None),
        Some(quota_us) => Ok(Some(CpuLimit {
            quota_us,
            period_us,
        })),
    }
}

/// A cgroup hierarchy mounted on the host (one entry per hierarchy, the
/// first mount of it in `/proc/self/mountinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    /// Where it is mounted (in tankd's mount namespace).
    pub mount_point: PathBuf,
    /// The unified (cgroup2) hierarchy rather than a v1 one.
    pub v2: bool,
    /// v1: its controllers, in the order of the superblock options
    /// (`cpu`, `cpuacct` for `cpu,cpuacct`).
    pub controllers: Vec<String>,
    /// v1: the name of a named hierarchy (`systemd` of `name=systemd`).
    pub name: Option<String>,
    /// v1: the options of the hierarchy a new mount should repeat so that
    /// the kernel does not warn that they differ (`xattr`, `noprefix`, ...).
    pub flags: Vec<String>,
}

/// v1 superblock options that are flags of the hierarchy, not controllers.
/// (`release_agent=` is not among them: it is refused in a cgroup
/// namespace, and belongs to the host anyway.)
const V1_FLAGS: [&str; 5] = [
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// A mountinfo path with its octal escapes (`\040` for a space) decoded.
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The cgroup hierarchies mounted, from `/proc/self/mountinfo`: each v1
/// hierarchy (by its controllers and name) and the unified one once, at
/// its first mount point. Lines that are not cgroup mounts, or malformed,
/// are skipped.
pub(super) fn cgroup_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let mut h = Hierarchy {
            mount_point: unescape_mountinfo(mount_point),
            v2: false,
            controllers: Vec::new(),
            name: None,
            flags: Vec::new(),
        };
        match fstype {
            "cgroup2" => h.v2 = true,
            "cgroup" => {
                for option in options.split(',') {
                    if let Some(name) = option.strip_prefix("name=") {
                        h.name = Some(name.to_owned());
                    } else if V1_FLAGS.contains(&option) {
                        h.flags.push(option.to_owned());
                    } else if !(option == "rw" || option == "ro" || option.contains('=')) {
                        h.controllers.push(option.to_owned());
                    }
                }
            }
            _ => continue,
        }
        let same = |o: &Hierarchy| {
            o.v2 == h.v2 && (h.v2 || (o.controllers == h.controllers && o.name == h.name))
        };
        if !found.iter().any(same) {
            found.push(h);
        }
    }
    found
}

/// The mount data that selects hierarchy `h` again (v1): its controllers,
/// `none` when it has none, its name and flags.
fn v1_mount_data(h: &Hierarchy) -> String {
    let mut parts: Vec<String> = if h.controllers.is_empty() {
        vec!["none".to_owned()]
    } else {
        h.controllers.clone()
    };
    if let Some(name) = &h.name {
        parts.push(format!("name={name}"));
    }
    parts.extend(h.flags.iter().cloned());
    parts.join(",")
}

/// The container's view on a v1/hybrid host: one mount per hierarchy in
/// `joined` (those in which it has a cgroup of its own; any other would
/// show its namespace root there, tankd's cgroup, i.e. the host's), named
/// as on the host (the base name of the mount point; else from the
/// controllers, `unified` for cgroup2), and a link from every controller
/// name that is no directory to the directory of its hierarchy
/// (`cpu -> cpu,cpuacct`), as runc and crun make them.
pub(super) fn v1_view(
    hierarchies: &[Hierarchy],
    joined: impl Fn(&Hierarchy) -> bool,
) -> CgroupView {
    let mut mounts: Vec<CgroupMount> = Vec::new();
    let mut aliases: Vec<(String, Vec<String>)> = Vec::new();
    for h in hierarchies.iter().filter(|h| joined(h)) {
        let fallback = if h.v2 {
            "unified".to_owned()
        } else if h.controllers.is_empty() {
            h.name.clone().unwrap_or_default()
        } else {
            h.controllers.join(",")
        };
        let base = h
            .mount_point
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_component(n))
            .map(str::to_owned);
        let taken = |d: &str| mounts.iter().any(|m| m.dir == d);
        let Some(dir) = base
            .filter(|d| !taken(d))
            .or_else(|| Some(fallback).filter(|d| is_component(d) && !taken(d)))
        else {
            continue;
        };
        let mut names = h.controllers.clone();
        names.extend(dir.split(',').map(str::to_owned));
        names.extend(h.name.iter().cloned());
        aliases.push((dir.clone(), names));
        mounts.push(CgroupMount {
            dir,
            v2: h.v2,
            data: if h.v2 {
                String::new()
            } else {
                v1_mount_data(h)
            },
        });
    }
    let mut links: Vec<CgroupLink> = Vec::new();
    for (dir, names) in aliases {
        for name in names {
            let taken =
                mounts.iter().any(|m| m.dir == name) || links.iter().any(|l| l.name == name);
            if !taken && is_component(&name) {
                links.push(CgroupLink {
                    name,
                    target: dir.clone(),
                });
            }
        }
    }
    CgroupView::Hierarchies { mounts, links }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "a", "db-1", "x.y"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "/a", "a..b", "../x", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
        assert!(check_v1_root("tank").is_ok());
        assert!(check_v1_root("tank/prod").is_ok());
        for bad in ["", "/tank", "tank/", "tank//x", "../tank", "tank/.."] {
            assert!(check_v1_root(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_events_v2() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill(text), Ok(2));
        assert_eq!(oom_kill("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"), Ok(0));
        assert!(oom_kill("oom_kill x\n").is_err());
    }

    #[test]
    fn oom_control_v1() {
        // 6.x: oom_kill_disable, under_oom, oom_kill.
        assert_eq!(
            oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
            Ok(1)
        );
        // Before 4.13 there is no oom_kill line.
        assert_eq!(oom_kill("oom_kill_disable 0\nunder_oom 1\n"), Ok(0));
        // By key, not by position.
        assert_eq!(oom_kill("oom_kill 7\noom_kill_disable 1\n"), Ok(7));
    }

    #[test]
    fn cpu_stat_v1_and_v2() {
        let v1 =
            "nr_periods 20\nnr_throttled 18\nthrottled_time 700000000\nnr_bursts 0\nburst_time 0\n";
        assert_eq!(
            cpu_stat(v1),
            Ok(CpuStat {
                nr_periods: 20,
                nr_throttled: 18,
                throttled_usec: 700_000
            })
        );
        let v2 = "usage_usec 1000\nuser_usec 800\nsystem_usec 200\ncore_sched.force_idle_usec 0\n\
                  nr_periods 5\nnr_throttled 3\nthrottled_usec 4242\nnr_bursts 0\nburst_usec 0\n";
        assert_eq!(
            cpu_stat(v2),
            Ok(CpuStat {
                nr_periods: 5,
                nr_throttled: 3,
                throttled_usec: 4242
            })
        );
        // v2 without the cpu controller: only usage lines.
        assert_eq!(
            cpu_stat("usage_usec 10\nuser_usec 5\nsystem_usec 5\n"),
            Ok(CpuStat::default())
        );
    }

    #[test]
    fn events_and_procs() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Ok(true));
        assert_eq!(populated("populated 0\nfrozen 1\n"), Ok(false));
        assert!(populated("frozen 0\n").is_err());
        assert_eq!(procs("12\n345\n"), Ok(vec![12, 345]));
        assert_eq!(procs(""), Ok(vec![]));
        assert!(procs("12\nx\n").is_err());
    }

    #[test]
    fn proc_self_cgroup() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/b25e\n1:cpu:/\n0::/\n";
        assert_eq!(unified_path(hybrid), Some("/"));
        let v2 = "0::/system.slice/tankd.service\n";
        assert_eq!(unified_path(v2), Some("/system.slice/tankd.service"));
        // A path may contain ':'.
        assert_eq!(unified_path("0::/a:b/c\n"), Some("/a:b/c"));
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn delegation_base() {
        let b = |own| delegated_base(own, "supervisor");
        assert_eq!(
            b("/system.slice/tankd.service").as_deref(),
            Ok("system.slice/tankd.service")
        );
        // Restarted, or DelegateSubgroup=supervisor: the base is the parent.
        assert_eq!(
            b("/system.slice/tankd.service/supervisor").as_deref(),
            Ok("system.slice/tankd.service")
        );
        assert_eq!(b("/").as_deref(), Ok(""));
        assert_eq!(b("/supervisor").as_deref(), Ok(""));
        assert_eq!(b("/a/supervisor-x").as_deref(), Ok("a/supervisor-x"));
        assert!(b("/../../x").is_err());
        assert!(b("system.slice").is_err());
        assert!(b("/system.slice/tankd.service (deleted)").is_err());
    }

    #[test]
    fn enabling_controllers() {
        let wanted = ["memory", "pids", "cpu"];
        // Fresh delegated cgroup: enable all three.
        assert_eq!(
            controllers_to_enable(&wanted, "cpuset cpu io memory pids\n", ""),
            (vec!["memory", "pids", "cpu"], vec![])
        );
        // Already enabled (restart): nothing to write.
        assert_eq!(
            controllers_to_enable(&wanted, "cpu io memory pids", "cpu memory pids"),
            (vec![], vec![])
        );
        // cpu not delegated: enable the rest, report cpu missing.
        assert_eq!(
            controllers_to_enable(&wanted, "memory pids", "pids"),
            (vec!["memory"], vec!["cpu"])
        );
        // This machine's unified hierarchy: only hugetlb.
        assert_eq!(
            controllers_to_enable(&wanted, "hugetlb", ""),
            (vec![], vec!["memory", "pids", "cpu"])
        );
        // "cpuset" must not count as "cpu".
        assert_eq!(
            controllers_to_enable(&["cpu"], "cpuset", ""),
            (vec![], vec!["cpu"])
        );
    }

    #[test]
    fn limit_files() {
        assert_eq!(max_value("max\n"), Ok(None));
        assert_eq!(max_value("33554432\n"), Ok(Some(33554432)));
        assert!(max_value("-1").is_err());
        assert_eq!(v1_memory_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(v1_memory_limit("9223372036854710272\n"), Ok(None)); // 64 KiB pages
        assert_eq!(v1_memory_limit("33554432\n"), Ok(Some(33554432)));
        assert_eq!(v1_cpu_limit("-1\n", "100000\n"), Ok(None));
        assert_eq!(
            v1_cpu_limit("50000\n", "100000\n"),
            Ok(Some(CpuLimit {
                quota_us: 50000,
                period_us: 100000
            }))
        );
        assert_eq!(cpu_max("max 100000\n"), Ok(None));
        assert_eq!(
            cpu_max("20000 50000\n"),
            Ok(Some(CpuLimit {
                quota_us: 20000,
                period_us: 50000
            }))
        );
        assert!(cpu_max("20000\n").is_err());
        assert!(cpu_max("a b\n").is_err());
    }

    /// This machine's cgroup lines (hybrid, each controller on its own,
    /// no systemd as PID 1) between other mounts.
    const THIS_HOST: &str = "\
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd hybrid host (Debian 10 style): co-mounted controllers,
    /// optional fields, xattr and release_agent, nsdelegate on cgroup2,
    /// and a second (bind) mount of the memory hierarchy.
    const SYSTEMD_HYBRID: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
35 25 0:32 / /sys/fs/cgroup/misc rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,misc,release_agent=/x
99 80 0:29 /system.slice /var/lib/x/memory\\040copy rw - cgroup cgroup rw,memory
";

    fn dirs(view: &CgroupView) -> Vec<&str> {
        match view {
            CgroupView::Hierarchies { mounts, .. } => {
                mounts.iter().map(|m| m.dir.as_str()).collect()
            }
            CgroupView::Unified => panic!("v1 expected"),
        }
    }

    fn mount<'a>(view: &'a CgroupView, dir: &str) -> &'a CgroupMount {
        match view {
            CgroupView::Hierarchies { mounts, .. } => {
                mounts.iter().find(|m| m.dir == dir).expect(dir)
            }
            CgroupView::Unified => panic!("v1 expected"),
        }
    }

    fn links(view: &CgroupView) -> Vec<(&str, &str)> {
        match view {
            CgroupView::Hierarchies { links, .. } => links
                .iter()
                .map(|l| (l.name.as_str(), l.target.as_str()))
                .collect(),
            CgroupView::Unified => panic!("v1 expected"),
        }
    }

    #[test]
    fn hierarchies_of_this_host() {
        let found = cgroup_hierarchies(THIS_HOST);
        assert_eq!(found.len(), 10, "{found:#?}");
        assert_eq!(
            found[0],
            Hierarchy {
                mount_point: "/sys/fs/cgroup/cpu".into(),
                v2: false,
                controllers: vec!["cpu".into()],
                name: None,
                flags: vec![],
            }
        );
        let systemd = &found[8];
        assert_eq!(systemd.name.as_deref(), Some("systemd"));
        assert!(systemd.controllers.is_empty());
        assert!(found[9].v2);
        assert_eq!(
            found[9].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );

        let view = v1_view(&found, |_| true);
        assert_eq!(
            dirs(&view),
            [
                "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                "systemd", "unified"
            ]
        );
        assert_eq!(mount(&view, "memory").data, "memory");
        assert!(!mount(&view, "memory").v2);
        assert_eq!(mount(&view, "systemd").data, "none,name=systemd");
        assert_eq!(mount(&view, "unified").data, "");
        assert!(mount(&view, "unified").v2);
        // Nothing co-mounted: no links.
        assert!(links(&view).is_empty());
    }

    #[test]
    fn hierarchies_of_a_systemd_hybrid_host() {
        let found = cgroup_hierarchies(SYSTEMD_HYBRID);
        // The bind mount of memory elsewhere is the same hierarchy.
        assert_eq!(found.len(), 8, "{found:#?}");
        assert!(!found
            .iter()
            .any(|h| h.mount_point.starts_with("/var/lib/x")));
        let cpu = found
            .iter()
            .find(|h| h.controllers.contains(&"cpu".into()))
            .unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        // release_agent is no controller, and not repeated.
        let misc = found.iter().find(|h| h.controllers == ["misc"]).unwrap();
        assert!(misc.flags.is_empty());

        // misc is not joined (cgroups-rs does not know it): not shown.
        let view = v1_view(&found, |h| !h.controllers.contains(&"misc".into()));
        assert_eq!(
            dirs(&view),
            [
                "unified",
                "systemd",
                "cpu,cpuacct",
                "net_cls,net_prio",
                "memory",
                "pids",
                "cpuset"
            ]
        );
        assert_eq!(mount(&view, "systemd").data, "none,name=systemd,xattr");
        assert_eq!(mount(&view, "cpu,cpuacct").data, "cpu,cpuacct");
        assert_eq!(mount(&view, "cpuset").data, "cpuset,clone_children");
        assert_eq!(mount(&view, "unified").data, "");
        assert_eq!(
            links(&view),
            [
                ("cpu", "cpu,cpuacct"),
                ("cpuacct", "cpu,cpuacct"),
                ("net_cls", "net_cls,net_prio"),
                ("net_prio", "net_cls,net_prio")
            ]
        );
    }

    #[test]
    fn hierarchy_names_and_odd_mounts() {
        // Mounted elsewhere, with an escaped space; co-mounted under one
        // controller's name; a duplicate base name.
        let mountinfo = "\
1 0 0:1 / /cg/my\\040memory rw - cgroup none rw,memory
2 0 0:2 / /cg/cpu rw - cgroup none rw,cpu,cpuacct
3 0 0:3 / /other/cpu rw - cgroup none rw,blkio
4 0 0:4 / / rw - cgroup none rw,pids
5 0 0:5 / /x rw - cgroup2 none rw
6 0 0:6 / /proc rw - proc proc rw
malformed line
7 0 0:7 / /y rw - cgroup
";
        let found = cgroup_hierarchies(mountinfo);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert_eq!(found[0].mount_point, PathBuf::from("/cg/my memory"));
        let view = v1_view(&found, |_| true);
        // "cpu" is taken: blkio falls back to its controllers; "/" has no
        // base name: pids too; cgroup2 keeps its base name.
        assert_eq!(dirs(&view), ["my memory", "cpu", "blkio", "pids", "x"]);
        assert_eq!(mount(&view, "cpu").data, "cpu,cpuacct");
        assert_eq!(links(&view), [("memory", "my memory"), ("cpuacct", "cpu")]);
        // Nothing joined, nothing shown.
        assert_eq!(v1_view(&found, |_| false), CgroupView::default());
        assert!(cgroup_hierarchies("").is_empty());
    }
}
