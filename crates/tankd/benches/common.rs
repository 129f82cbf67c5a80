//! Helpers shared by the benchmarks (included with `#[path]`): knobs from
//! the environment, medians, milliseconds, running peers' commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A numeric knob from the environment (`BENCH_RUNS`…), or its default.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile of `times` (50 = median).
pub fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub fn median(times: Vec<Duration>) -> Duration {
    percentile(&times, 50)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `cmd` (stdin from /dev/null), panicking with its output if it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a podman `registries.conf` in `dir` that knows only the local
/// benchmark registry (plain HTTP) and returns its path.
pub fn podman_registries_conf(dir: &Path, registry: &str) -> PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(
        &path,
        format!(
            "unqualified-search-registries = [\"{registry}\"]\n\
             [[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
    path
}

/// A proxy of tankd's `org.tank.Manager` on `conn`, without property
/// caching (a benchmark measures calls, not a cache).
pub async fn manager_proxy(conn: &zbus::Connection) -> zbus::Proxy<'static> {
    zbus::proxy::Builder::<zbus::Proxy<'static>>::new(conn)
        .destination("org.tank.Manager")
        .unwrap()
        .path("/org/tank/Manager")
        .unwrap()
        .interface("org.tank.Manager")
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

/// Whether `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
