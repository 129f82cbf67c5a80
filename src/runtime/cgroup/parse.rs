//! Pure helpers of the cgroup module: parsing the kernel's cgroup files and
//! the decisions taken from them (which controllers to enable, where the
//! delegated subtree starts, which names are acceptable). No I/O here, so all
//! of it is unit-tested, including the cgroup v2 logic this machine cannot
//! run for real.

use super::CpuStat;
use crate::spec::CpuLimit;

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
}
