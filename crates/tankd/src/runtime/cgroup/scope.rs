//! Under systemd on cgroup v2, the pods live in a delegated scope of their
//! own, `<unit>-pods.scope` beside tankd's service (e.g.
//! `/system.slice/tankd-pods.scope`), not inside the service's cgroup.
//!
//! Why: a delegated service's cgroup whose `subtree_control` has
//! controllers enabled cannot take processes (the no-internal-processes
//! rule), and systemd < 254 (no `DelegateSubgroup=`) puts the main process
//! of every (re)start right there — a restart of tankd with pods that have
//! limits would fail with EBUSY. With the pods in a scope, tankd's service
//! cgroup never enables a controller; the scope outlives tankd (crash,
//! `systemctl restart`), and the next tankd finds it again and adopts the
//! containers in it.
//!
//! A scope needs a process when it is made and ends when it has none: a
//! `tankd --tank-pause` process (it only waits for a signal) is started
//! into it and kept in its `supervisor` leaf, one per host, not per
//! container. This module owns the scope's creation through systemd's D-Bus
//! API and the pause process; the cgroups inside are `Cgroups`' business.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedObjectPath, Value};

use super::parse;

/// The argument that turns tankd into the scope's pause process.
pub const PAUSE_ARG: &str = "--tank-pause";

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("systemd: {0}")]
    Systemd(#[from] zbus::Error),
    #[error("starting the pause process: {0}")]
    Pause(std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The pods' cgroup (relative to the cgroup2 mount) when tankd runs as a
/// systemd service on cgroup v2; `None` otherwise (then the pods live under
/// tankd's own cgroup, see `Cgroups`).
pub async fn prepare() -> Result<Option<PathBuf>, ScopeError> {
    if !cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode()
        || std::env::var_os("INVOCATION_ID").is_none()
    {
        return Ok(None);
    }
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| ScopeError::Other(format!("/proc/self/cgroup: {e}")))?;
    let Some(own) = parse::unified_path(&proc_cgroup) else {
        return Ok(None);
    };
    let own = PathBuf::from(own.trim_start_matches('/'));
    let Some((slice, scope)) = scope_of(&own) else {
        return Ok(None);
    };
    let rel = slice.join(&scope);
    let dir = Path::new(cgroups_rs::fs::hierarchies::UNIFIED_MOUNTPOINT).join(&rel);
    if populated(&dir) {
        log::info!("pods: in {} (kept from a previous tankd)", dir.display());
        return Ok(Some(rel));
    }
    let pause = std::process::Command::new("/proc/self/exe")
        .arg(PAUSE_ARG)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(ScopeError::Pause)?;
    let pid = pause.id();
    // Reaped by whoever is its parent by then; never waited for here.
    drop(pause);
    let conn = zbus::Connection::system().await?;
    let slice_name = slice
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "-.slice".to_owned());
    let properties: Vec<(&str, Value<'_>)> = vec![
        ("Description", Value::from("Tank pods")),
        ("Slice", Value::from(slice_name.as_str())),
        ("Delegate", Value::from(true)),
        ("PIDs", Value::from(vec![pid])),
        // Pods' processes count against no unit-wide task limit: each pod
        // has its own pids limit.
        ("TasksMax", Value::from(u64::MAX)),
    ];
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let _job: OwnedObjectPath = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "StartTransientUnit",
            &(scope.as_str(), "fail", properties, aux),
        )
        .await?
        .body()
        .deserialize()?;
    // The job moves the pause process into the scope's cgroup.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!("0::/{}", rel.display());
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if now.lines().any(|l| l == want) {
            break;
        }
        if Instant::now() > deadline {
            return Err(ScopeError::Other(format!(
                "{scope}: the pause process {pid} never arrived in {}",
                dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    log::info!("pods: in {} (scope {scope} made)", dir.display());
    Ok(Some(rel))
}

/// (slice dir, scope name) for a service cgroup like
/// `system.slice/tankd.service`: `system.slice`, `tankd-pods.scope`.
fn scope_of(own: &Path) -> Option<(PathBuf, String)> {
    let unit = own.file_name()?.to_str()?;
    // Already moved to the supervisor leaf of a previous run's layout.
    let (unit, parent) = if unit == "supervisor" {
        let service = own.parent()?;
        (service.file_name()?.to_str()?, service.parent()?)
    } else {
        (unit, own.parent()?)
    };
    let stem = unit.strip_suffix(".service")?;
    Some((parent.to_path_buf(), format!("{stem}-pods.scope")))
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// `tankd --tank-pause`: keeps the pods' scope alive; ends on any
/// terminating signal (a stop of the scope).
pub fn pause() -> ! {
    loop {
        nix::unistd::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_sits_beside_the_service() {
        assert_eq!(
            scope_of(Path::new("system.slice/tankd.service")),
            Some((PathBuf::from("system.slice"), "tankd-pods.scope".to_owned()))
        );
        assert_eq!(
            scope_of(Path::new("system.slice/tankd.service/supervisor")),
            Some((PathBuf::from("system.slice"), "tankd-pods.scope".to_owned()))
        );
        assert_eq!(scope_of(Path::new("user.slice/session-1.scope")), None);
        assert_eq!(scope_of(Path::new("")), None);
    }
}
