//! The machine's decisions, driven with made-up inputs and times.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::net::etc::PodEtc;
use crate::runtime::manager::RootfsSource;

const MS: Duration = Duration::from_millis(1);

fn config() -> ReconcileConfig {
    ReconcileConfig {
        backoff_base_ms: 100,
        backoff_cap_ms: 1000,
        stable_after_s: 10,
        resync_s: 30,
    }
}

fn record_of(json: &str, generation: u64) -> PodRecord {
    PodRecord {
        uid: "uid-1".to_owned(),
        generation,
        created_ms: 1,
        updated_ms: 1,
        spec: Pod::from_json(json).unwrap(),
    }
}

fn pod(restart: &str, containers: &[&str]) -> PodRecord {
    let containers: Vec<String> = containers
        .iter()
        .map(|c| format!(r#"{{"name": "{c}", "image": "example.org/img:1"}}"#))
        .collect();
    record_of(
        &format!(
            r#"{{"name": "web", "restart": "{restart}", "containers": [{}]}}"#,
            containers.join(",")
        ),
        1,
    )
}

fn image() -> ImageReady {
    ImageReady {
        rootfs: RootfsSource::Path(PathBuf::from("/rootfs")),
        config: Default::default(),
    }
}

fn sandbox() -> Sandbox {
    Sandbox {
        netns: None,
        etc: PodEtc {
            resolv_conf: PathBuf::from("/r"),
            hosts: PathBuf::from("/h"),
            hostname: PathBuf::from("/n"),
        },
        ips: vec!["10.0.0.2".parse().unwrap()],
    }
}

fn started(pid: u32) -> Started {
    Started {
        pid,
        started_at: SystemTime::now(),
    }
}

fn exit(pid: u32, kind: ExitKind) -> Exit {
    let (code, signal) = match kind {
        ExitKind::Succeeded => (Some(0), None),
        ExitKind::Failed => (Some(3), None),
        ExitKind::Signaled | ExitKind::OomKilled => (None, Some(9)),
        ExitKind::Unknown => (None, None),
        ExitKind::StartFailed => (Some(128), None),
    };
    Exit {
        pid,
        kind,
        code,
        signal,
        finished_at: SystemTime::now(),
    }
}

/// A test bench: one machine, a clock, and what it asked for.
struct Bench {
    m: PodMachine,
    now: Instant,
    commands: Vec<Command>,
    /// Every command so far.
    log: Vec<Command>,
    pid: u32,
}

impl Bench {
    fn new(record: PodRecord) -> Bench {
        let (m, commands) = PodMachine::new(record, config());
        Bench {
            m,
            now: Instant::now(),
            log: commands.clone(),
            commands,
            pid: 100,
        }
    }

    fn feed(&mut self, input: Input) -> &[Command] {
        self.commands = self.m.handle(input, self.now);
        self.log.extend(self.commands.iter().cloned());
        &self.commands
    }

    fn advance(&mut self, by: Duration) -> &[Command] {
        self.now += by;
        self.feed(Input::Tick)
    }

    /// The run id of the latest EnsureImage (or Start) of `container`.
    fn run_of(&self, container: &str, start: bool) -> u64 {
        self.log
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::EnsureImage {
                    container: n, run, ..
                } if n == container && !start => Some(*run),
                Command::Start {
                    container: n, run, ..
                } if n == container && start => Some(*run),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no request for {container} in {:?}", self.log))
    }

    fn image_ok(&mut self, container: &str) -> &[Command] {
        let run = self.run_of(container, false);
        self.feed(Input::ImageReady {
            container: container.to_owned(),
            run,
            result: Ok(image()),
        })
    }

    /// Answers the pending start of `container` with a new pid.
    fn start_ok(&mut self, container: &str) -> u32 {
        let run = self.run_of(container, true);
        self.pid += 1;
        let pid = self.pid;
        self.feed(Input::Started {
            container: container.to_owned(),
            run,
            result: Ok(started(pid)),
        });
        pid
    }

    /// Sandbox, image and start of every container: all running.
    fn up(&mut self) -> Vec<u32> {
        let names: Vec<String> = self.m.containers.iter().map(|c| c.name.clone()).collect();
        self.feed(Input::SandboxMade(Ok(sandbox())));
        let mut pids = Vec::new();
        for name in names {
            self.image_ok(&name);
            pids.push(self.start_ok(&name));
        }
        pids
    }

    fn exited(&mut self, container: &str, pid: u32, kind: ExitKind) -> &[Command] {
        self.feed(Input::Exited {
            container: container.to_owned(),
            exit: exit(pid, kind),
        })
    }

    fn phase(&self) -> Phase {
        self.m.status().phase
    }

    fn state(&self, container: &str) -> &ContainerState {
        &self.m.status().containers[container].state
    }

    fn waiting_reason(&self, container: &str) -> Option<&str> {
        match self.state(container) {
            ContainerState::Waiting { reason, .. } => Some(reason),
            _ => None,
        }
    }

    fn restarts(&self, container: &str) -> u32 {
        self.m.status().containers[container].restart_count
    }
}

fn kinds(commands: &[Command]) -> Vec<&'static str> {
    commands
        .iter()
        .map(|c| match c {
            Command::EnsureImage { .. } => "EnsureImage",
            Command::MakeSandbox { .. } => "MakeSandbox",
            Command::Start { .. } => "Start",
            Command::Stop { .. } => "Stop",
            Command::RemoveSandbox => "RemoveSandbox",
            Command::RepairDrift { .. } => "RepairDrift",
            Command::Release => "Release",
        })
        .collect()
}

#[test]
fn a_new_pod_makes_its_sandbox_and_pulls_its_images_at_once() {
    let b = Bench::new(pod("always", &["a", "b"]));
    assert_eq!(
        kinds(&b.commands),
        ["MakeSandbox", "EnsureImage", "EnsureImage"]
    );
    assert_eq!(b.phase(), Phase::Pending);
    assert_eq!(b.waiting_reason("a"), Some("Pulling"));
    assert_eq!(b.m.next_deadline(), None);
}

#[test]
fn containers_start_once_both_image_and_sandbox_are_ready() {
    let mut b = Bench::new(pod("always", &["a"]));
    assert!(b.image_ok("a").is_empty(), "no start before the sandbox");
    assert_eq!(kinds(b.feed(Input::SandboxMade(Ok(sandbox())))), ["Start"]);
    b.start_ok("a");
    assert_eq!(b.phase(), Phase::Running);
    assert!(matches!(
        b.state("a"),
        ContainerState::Running { pid: 101, .. }
    ));
    assert_eq!(b.m.status().ips, ["10.0.0.2"]);
    // And in the other order.
    let mut b = Bench::new(pod("always", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    assert_eq!(kinds(b.image_ok("a")), ["Start"]);
}

#[test]
fn every_restart_policy_for_every_way_of_ending() {
    use ExitKind::*;
    let cases = [
        ("always", Succeeded, true, Phase::Running),
        ("always", Failed, true, Phase::Running),
        ("always", Signaled, true, Phase::Running),
        ("always", OomKilled, true, Phase::Running),
        ("always", Unknown, true, Phase::Running),
        ("on_failure", Succeeded, false, Phase::Succeeded),
        ("on_failure", Failed, true, Phase::Running),
        ("on_failure", Signaled, true, Phase::Running),
        ("on_failure", OomKilled, true, Phase::Running),
        ("on_failure", Unknown, true, Phase::Running),
        ("never", Succeeded, false, Phase::Succeeded),
        ("never", Failed, false, Phase::Failed),
        ("never", Signaled, false, Phase::Failed),
        ("never", OomKilled, false, Phase::Failed),
        ("never", Unknown, false, Phase::Failed),
    ];
    for (policy, kind, restarts, phase) in cases {
        let mut b = Bench::new(pod(policy, &["a"]));
        let pids = b.up();
        let commands = kinds(b.exited("a", pids[0], kind)).join(",");
        // The first restart is immediate: a new run begins at once.
        assert_eq!(
            commands == "EnsureImage",
            restarts,
            "{policy} {kind:?}: {commands}"
        );
        assert_eq!(b.phase(), phase, "{policy} {kind:?}");
        match b.state("a") {
            ContainerState::Terminated { reason, .. } => {
                assert_eq!(reason, kind.reason(), "{policy} {kind:?}")
            }
            other => panic!("{policy} {kind:?}: {other:?}"),
        }
        if restarts {
            b.image_ok("a");
            b.start_ok("a");
            assert_eq!(b.restarts("a"), 1, "{policy} {kind:?}");
        }
    }
}

#[test]
fn backoff_doubles_while_runs_are_short_and_resets_after_a_stable_run() {
    let mut b = Bench::new(pod("always", &["a"]));
    let mut pid = b.up()[0];
    let mut delays = Vec::new();
    for _ in 0..6 {
        b.now += 50 * MS; // a short run
        let commands = kinds(b.exited("a", pid, ExitKind::Failed)).join(",");
        let delay = match b.m.next_deadline() {
            None => {
                assert_eq!(commands, "EnsureImage");
                Duration::ZERO
            }
            Some(at) => {
                assert_eq!(commands, "");
                assert_eq!(b.waiting_reason("a"), Some("CrashLoopBackOff"));
                // Kubelet: CrashLoopBackOff is a container state, the pod
                // stays Running (it will run again).
                assert_eq!(b.phase(), Phase::Running);
                let delay = at - b.now;
                assert!(b.advance(delay - MS).is_empty(), "not before its time");
                assert_eq!(kinds(b.advance(MS)), ["EnsureImage"]);
                delay
            }
        };
        delays.push(delay.as_millis());
        b.image_ok("a");
        pid = b.start_ok("a");
    }
    assert_eq!(delays, [0, 100, 200, 400, 800, 1000]);
    assert_eq!(b.restarts("a"), 6);
    // A run of stable_after resets the streak: the next restart is
    // immediate again.
    b.now += Duration::from_secs(10);
    assert_eq!(kinds(b.exited("a", pid, ExitKind::Failed)), ["EnsureImage"]);
    assert_eq!(b.m.next_deadline(), None);
}

#[test]
fn image_pull_backoff_retries_later_and_ignores_stale_answers() {
    let mut b = Bench::new(pod("always", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    let first_run = b.run_of("a", false);
    b.feed(Input::ImageReady {
        container: "a".into(),
        run: first_run,
        result: Err("tag 9.99 not found".into()),
    });
    assert_eq!(b.waiting_reason("a"), Some("ImagePullBackOff"));
    assert_eq!(b.phase(), Phase::Pending);
    assert_eq!(b.m.next_deadline(), Some(b.now + 100 * MS));
    assert!(b.advance(99 * MS).is_empty());
    assert_eq!(kinds(b.advance(MS)), ["EnsureImage"]);
    let second_run = b.run_of("a", false);
    assert_ne!(first_run, second_run);
    // A late answer of the first run changes nothing.
    assert!(b
        .feed(Input::ImageReady {
            container: "a".into(),
            run: first_run,
            result: Ok(image()),
        })
        .is_empty());
    b.feed(Input::ImageReady {
        container: "a".into(),
        run: second_run,
        result: Err("tag 9.99 not found".into()),
    });
    assert_eq!(b.m.next_deadline(), Some(b.now + 200 * MS), "backs off");
    let failures =
        b.m.status()
            .events
            .iter()
            .filter(|e| e.reason == "Failed")
            .count();
    assert_eq!(failures, 1, "the same failure is one event");
    // It succeeds at last: the container starts and the failures reset.
    b.advance(200 * MS);
    assert_eq!(kinds(b.image_ok("a")), ["Start"]);
    b.start_ok("a");
    assert_eq!(b.phase(), Phase::Running);
    assert_eq!(b.restarts("a"), 0, "retried pulls are no restarts");
}

#[test]
fn a_config_error_waits_and_is_retried_with_backoff() {
    let mut b = Bench::new(pod("always", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    b.image_ok("a");
    let run = b.run_of("a", true);
    b.feed(Input::Started {
        container: "a".into(),
        run,
        result: Err(StartError::Config("no command".into())),
    });
    assert_eq!(b.waiting_reason("a"), Some("CreateContainerConfigError"));
    assert_eq!(b.phase(), Phase::Pending);
    assert_eq!(b.m.next_deadline(), Some(b.now + 100 * MS));
    assert_eq!(kinds(b.advance(100 * MS)), ["EnsureImage"]);
}

#[test]
fn a_start_failure_is_a_failed_run_for_the_policy() {
    let mut b = Bench::new(pod("never", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    b.image_ok("a");
    let run = b.run_of("a", true);
    b.feed(Input::Started {
        container: "a".into(),
        run,
        result: Err(StartError::Runtime("mount /x: ENOENT".into())),
    });
    assert!(
        matches!(b.state("a"), ContainerState::Terminated { reason, exit_code: Some(128), .. } if reason == "StartError")
    );
    assert_eq!(b.phase(), Phase::Failed);
}

#[test]
fn an_exit_that_beats_its_start_answer_is_not_lost() {
    let mut b = Bench::new(pod("never", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    b.image_ok("a");
    let run = b.run_of("a", true);
    // The runtime reports the exit of pid 7 before the start is answered.
    assert!(b.exited("a", 7, ExitKind::Succeeded).is_empty());
    b.feed(Input::Started {
        container: "a".into(),
        run,
        result: Ok(started(7)),
    });
    assert_eq!(b.phase(), Phase::Succeeded);
    // An exit of another pid (an earlier run) is ignored.
    let mut b = Bench::new(pod("always", &["a"]));
    let pid = b.up()[0];
    assert!(b.exited("a", pid + 50, ExitKind::Failed).is_empty());
    assert_eq!(b.phase(), Phase::Running);
}

#[test]
fn replace_stops_the_old_generation_then_starts_the_new() {
    let mut b = Bench::new(pod("always", &["a"]));
    let pid = b.up()[0];
    let mut next = pod("always", &["a", "b"]);
    next.generation = 2;
    let stop = b.feed(Input::Declared(next)).to_vec();
    assert!(
        matches!(&stop[..], [Command::Stop { container, grace, signal: None }] if container == "a" && *grace == Duration::from_secs(10))
    );
    // Its exit while stopping is recorded, never restarted.
    assert!(b.exited("a", pid, ExitKind::Signaled).is_empty());
    // Same network: the sandbox stays; the new generation comes up.
    let up = kinds(b.feed(Input::Stopped {
        container: "a".into(),
    }));
    assert_eq!(up, ["MakeSandbox", "EnsureImage", "EnsureImage"]);
    assert_eq!(b.m.status().observed_generation, 2);
    assert!(b.m.status().events.iter().any(|e| e.reason == "Replaced"));
    assert_eq!(b.phase(), Phase::Pending);
    b.up();
    assert_eq!(b.phase(), Phase::Running);
    assert_eq!(b.restarts("a"), 0);
}

#[test]
fn replace_with_another_network_removes_the_old_sandbox_first() {
    let mut b = Bench::new(pod("always", &["a"]));
    b.up();
    let next = record_of(
        r#"{"name": "web", "network": "host", "containers": [{"name": "a", "image": "example.org/img:1"}]}"#,
        2,
    );
    b.feed(Input::Declared(next));
    assert_eq!(
        kinds(b.feed(Input::Stopped {
            container: "a".into()
        })),
        ["RemoveSandbox"]
    );
    assert_eq!(
        kinds(b.feed(Input::SandboxRemoved(Ok(())))),
        ["MakeSandbox", "EnsureImage"]
    );
}

#[test]
fn delete_while_starting_stops_it_once_started_then_tears_down() {
    let mut b = Bench::new(pod("always", &["a"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    b.image_ok("a");
    let run = b.run_of("a", true);
    assert!(b.feed(Input::Deleted).is_empty(), "waits for the start");
    assert_eq!(b.phase(), Phase::Terminating);
    let stop = kinds(b.feed(Input::Started {
        container: "a".into(),
        run,
        result: Ok(started(9)),
    }));
    assert_eq!(stop, ["Stop"]);
    assert_eq!(
        kinds(b.feed(Input::Stopped {
            container: "a".into()
        })),
        ["RemoveSandbox"]
    );
    assert_eq!(kinds(b.feed(Input::SandboxRemoved(Ok(())))), ["Release"]);
    assert!(b.m.is_gone());
}

#[test]
fn delete_while_the_sandbox_is_made_waits_for_it_and_ignores_pulls() {
    let mut b = Bench::new(pod("always", &["a"]));
    assert!(
        b.feed(Input::Deleted).is_empty(),
        "the sandbox request is under way"
    );
    assert_eq!(
        kinds(b.feed(Input::SandboxMade(Ok(sandbox())))),
        ["RemoveSandbox"]
    );
    assert!(b.image_ok("a").is_empty(), "a late pull starts nothing");
    assert_eq!(kinds(b.feed(Input::SandboxRemoved(Ok(())))), ["Release"]);
}

#[test]
fn deleting_a_pod_in_backoff_cancels_its_timers() {
    let mut b = Bench::new(pod("always", &["a"]));
    let pid = b.up()[0];
    b.exited("a", pid, ExitKind::Failed); // immediate restart
    b.image_ok("a");
    let pid = b.start_ok("a");
    b.exited("a", pid, ExitKind::Failed);
    assert!(b.m.next_deadline().is_some());
    assert_eq!(kinds(b.feed(Input::Deleted)), ["RemoveSandbox"]);
    assert_eq!(b.m.next_deadline(), None);
    assert!(b.advance(Duration::from_secs(5)).is_empty());
}

#[test]
fn a_sandbox_that_cannot_be_made_backs_off_with_one_event_per_reason() {
    let mut b = Bench::new(pod("always", &["a"]));
    let mut delays = Vec::new();
    for message in [
        "no parent eth9",
        "no parent eth9",
        "no parent eth9",
        "address in use",
    ] {
        assert!(b.feed(Input::SandboxMade(Err(message.into()))).is_empty());
        let at = b.m.next_deadline().unwrap();
        delays.push((at - b.now).as_millis());
        b.now = at;
        assert_eq!(kinds(b.feed(Input::Tick)), ["MakeSandbox"]);
    }
    assert_eq!(delays, [100, 200, 400, 800]);
    let events: Vec<&str> =
        b.m.status()
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
    assert_eq!(events, ["no parent eth9", "address in use"]);
    assert_eq!(b.m.status().message.as_deref(), Some("address in use"));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    assert_eq!(b.m.status().message, None);
}

#[test]
fn resync_repairs_only_a_pod_that_is_up() {
    let mut b = Bench::new(pod("always", &["a"]));
    assert!(b.feed(Input::Resync).is_empty());
    b.up();
    assert_eq!(kinds(b.feed(Input::Resync)), ["RepairDrift"]);
    b.feed(Input::DriftRepaired(vec![(
        "DriftRepaired".into(),
        "pids.max".into(),
    )]));
    assert!(b.m.status().events.iter().any(|e| e.message == "pids.max"));
}

#[test]
fn a_pod_resumed_from_a_checkpoint_carries_on() {
    let record = pod("always", &["up", "died", "waiting", "done"]);
    let mut status = PodStatus::new(1, ["up", "died", "waiting", "done"].map(String::from));
    let now_wall = timestamp(SystemTime::now() - Duration::from_secs(3));
    for (name, state, restarts) in [
        (
            "up",
            ContainerState::Running {
                pid: 11,
                started_at: now_wall.clone(),
            },
            2,
        ),
        (
            "died",
            ContainerState::Running {
                pid: 12,
                started_at: now_wall.clone(),
            },
            0,
        ),
        (
            "waiting",
            ContainerState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            4,
        ),
        (
            "done",
            ContainerState::Terminated {
                exit_code: Some(0),
                signal: None,
                reason: "Completed".into(),
                finished_at: now_wall.clone(),
            },
            0,
        ),
    ] {
        let c = status.containers.get_mut(name).unwrap();
        c.state = state;
        c.restart_count = restarts;
    }
    let checkpoint = Checkpoint {
        boot_id: "b".into(),
        generation: 1,
        status,
        streaks: [("up".to_owned(), 3)].into(),
    };
    let now = Instant::now();
    let (m, commands) = PodMachine::resume(
        record,
        checkpoint,
        &[("up".to_owned(), started(11))],
        config(),
        now,
    );
    // The sandbox is found again; "died" restarts at once (unknown exit, a
    // failure), "waiting" begins its run; "up" and "done" are left alone.
    let mut k = kinds(&commands);
    k.sort();
    assert_eq!(k, ["EnsureImage", "EnsureImage", "MakeSandbox"]);
    let ensured: Vec<&str> = commands
        .iter()
        .filter_map(|c| match c {
            Command::EnsureImage { container, .. } => Some(container.as_str()),
            _ => None,
        })
        .collect();
    assert!(ensured.contains(&"died") && ensured.contains(&"waiting"));
    assert!(matches!(m.life("up"), Some(Life::Running { pid: 11, .. })));
    assert!(matches!(m.life("done"), Some(Life::Ended { .. })));
    assert_eq!(m.status().containers["up"].restart_count, 2);
    assert_eq!(m.checkpoint("b").streaks["up"], 3);
    assert!(
        matches!(&m.status().containers["died"].state, ContainerState::Terminated { reason, .. } if reason == "ContainerStatusUnknown")
    );
    assert_eq!(m.status().phase, Phase::Running);
}

#[test]
fn the_phase_is_pending_until_every_container_has_run() {
    let mut b = Bench::new(pod("never", &["a", "b"]));
    b.feed(Input::SandboxMade(Ok(sandbox())));
    b.image_ok("a");
    let pid = b.start_ok("a");
    assert_eq!(b.phase(), Phase::Pending, "b has not run yet");
    b.exited("a", pid, ExitKind::Succeeded);
    assert_eq!(b.phase(), Phase::Pending);
    b.image_ok("b");
    let pid = b.start_ok("b");
    assert_eq!(b.phase(), Phase::Running);
    b.exited("b", pid, ExitKind::Failed);
    assert_eq!(b.phase(), Phase::Failed, "nothing will run again");
}

#[test]
fn redeclaring_the_same_generation_changes_nothing() {
    let mut b = Bench::new(pod("always", &["a"]));
    b.up();
    assert!(b.feed(Input::Declared(pod("always", &["a"]))).is_empty());
    assert_eq!(b.phase(), Phase::Running);
}

#[test]
fn a_restart_policy_never_pod_stays_failed() {
    let mut b = Bench::new(pod("never", &["a"]));
    let pid = b.up()[0];
    b.exited("a", pid, ExitKind::Failed);
    assert_eq!(b.phase(), Phase::Failed);
    assert_eq!(b.m.next_deadline(), None);
    assert!(b.advance(Duration::from_secs(60)).is_empty());
}
