//! The rules the reconcile loop decides by, as functions over plain data:
//! the restart policy for each way a container can end, the backoff
//! formula and its reset, and the kubelet's pod phase.
//!
//! Owns no state and performs no I/O; [`super::machine`] applies these rules
//! to one pod.

use std::time::Duration;

use tank_api::spec::RestartPolicy;

/// `[reconcile]` of tankd.toml: restart backoff and resync.
///
/// A container that exits is restarted per its pod's policy after
/// `min(backoff_base · 2ⁿ⁻¹, backoff_cap)`, n = how many times in a row it
/// failed to stay up for `stable_after`; the first restart (n = 0) is
/// immediate. Failed pulls and sandboxes that cannot be made are retried
/// with the same formula, never immediately. Kubelet uses 10 s / 300 s /
/// 600 s; Tank's defaults are faster (0.5 s / 60 s / 60 s) because its
/// restarts are cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub stable_after_s: u64,
    /// Interval of the drift-detecting resync; it runs on this cadence
    /// whatever else happens.
    pub resync_s: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            stable_after_s: 60,
            resync_s: 30,
        }
    }
}

impl ReconcileConfig {
    /// Delay before attempt number `streak` (0 = the first after a stable
    /// run: immediate).
    pub fn backoff(&self, streak: u32) -> Duration {
        if streak == 0 {
            return Duration::ZERO;
        }
        let factor = 1u64.checked_shl(streak - 1).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.backoff_base_ms
                .saturating_mul(factor)
                .min(self.backoff_cap_ms),
        )
    }

    pub fn stable_after(&self) -> Duration {
        Duration::from_secs(self.stable_after_s)
    }

    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_s.max(1))
    }
}

/// How a container's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit code.
    Failed,
    /// Killed by a signal (not the OOM killer).
    Signaled,
    /// Killed by the OOM killer.
    OomKilled,
    /// It ended while tankd was not its parent (adopted, or died while
    /// tankd was down): a failure, as kubelet counts it.
    Unknown,
    /// It never ran: the runtime could not start it.
    StartFailed,
}

impl ExitKind {
    pub fn succeeded(self) -> bool {
        self == ExitKind::Succeeded
    }

    /// The container status reason (kubelet's words).
    pub fn reason(self) -> &'static str {
        match self {
            ExitKind::Succeeded => "Completed",
            ExitKind::Failed | ExitKind::Signaled => "Error",
            ExitKind::OomKilled => "OOMKilled",
            ExitKind::Unknown => "ContainerStatusUnknown",
            ExitKind::StartFailed => "StartError",
        }
    }
}

/// Whether a container that ended as `kind` runs again under `policy`.
pub fn restarts(policy: RestartPolicy, kind: ExitKind) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !kind.succeeded(),
        RestartPolicy::Never => false,
    }
}

/// The backoff streak after a run that lasted `ran` (`None`: it never
/// started): a run of at least `stable_after` resets it.
pub fn next_streak(streak: u32, ran: Option<Duration>, stable_after: Duration) -> u32 {
    match ran {
        Some(ran) if ran >= stable_after => 0,
        _ => streak,
    }
}

/// Where one container is, as the pod phase sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerPhase {
    /// Has not run yet in this generation and will (pulling, creating…).
    FirstStart,
    Running,
    /// Ended and will run again (backoff, restarting).
    Restarting,
    /// Ended for good.
    Ended {
        succeeded: bool,
    },
}

pub use tank_api::status::Phase;

/// The phase of a pod whose containers are where `containers` says:
/// Pending while any container waits for its first run, Running while any
/// runs or will run again (CrashLoopBackOff is a container state, not a
/// pod phase), Succeeded/Failed only when nothing will run again.
pub fn phase(containers: impl IntoIterator<Item = ContainerPhase>) -> Phase {
    let (mut first, mut running, mut restarting, mut failed) = (false, false, false, false);
    for c in containers {
        match c {
            ContainerPhase::FirstStart => first = true,
            ContainerPhase::Running => running = true,
            ContainerPhase::Restarting => restarting = true,
            ContainerPhase::Ended { succeeded } => failed |= !succeeded,
        }
    }
    if first {
        Phase::Pending
    } else if running || restarting {
        Phase::Running
    } else if failed {
        Phase::Failed
    } else {
        Phase::Succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerPhase::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_starts_immediately() {
        let config = ReconcileConfig {
            backoff_base_ms: 100,
            backoff_cap_ms: 1000,
            ..ReconcileConfig::default()
        };
        let delays: Vec<u64> = (0..8)
            .map(|n| config.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(config.backoff(200), Duration::from_millis(1000));
        assert_eq!(config.backoff(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn a_stable_run_resets_the_streak() {
        let stable = Duration::from_secs(60);
        assert_eq!(next_streak(5, Some(Duration::from_secs(60)), stable), 0);
        assert_eq!(next_streak(5, Some(Duration::from_secs(59)), stable), 5);
        assert_eq!(next_streak(5, None, stable), 5);
    }

    #[test]
    fn restart_policy_for_every_way_of_ending() {
        use ExitKind::*;
        use RestartPolicy::*;
        let kinds = [Succeeded, Failed, Signaled, OomKilled, Unknown, StartFailed];
        for kind in kinds {
            assert!(restarts(Always, kind), "{kind:?}");
            assert!(!restarts(Never, kind), "{kind:?}");
            assert_eq!(restarts(OnFailure, kind), kind != Succeeded, "{kind:?}");
        }
    }

    #[test]
    fn kubelet_phases() {
        assert_eq!(phase([FirstStart]), Phase::Pending);
        assert_eq!(phase([Running, FirstStart]), Phase::Pending);
        assert_eq!(phase([Running]), Phase::Running);
        assert_eq!(phase([Restarting]), Phase::Running);
        assert_eq!(
            phase([Restarting, Ended { succeeded: false }]),
            Phase::Running
        );
        assert_eq!(phase([Ended { succeeded: true }, Running]), Phase::Running);
        assert_eq!(
            phase([Ended { succeeded: true }, Ended { succeeded: true }]),
            Phase::Succeeded
        );
        assert_eq!(
            phase([Ended { succeeded: true }, Ended { succeeded: false }]),
            Phase::Failed
        );
        assert_eq!(phase([]), Phase::Succeeded);
    }
}
