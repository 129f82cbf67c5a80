//! One pod's life as a state machine: what to do next, decided from the
//! spec, what has been observed and the clock, without doing any of it.
//!
//! [`PodMachine::handle`] takes one [`Input`] (the store declared or
//! deleted the pod, an effect finished, a container exited, a deadline
//! passed) and the current time, updates the machine and the pod's status,
//! and returns the [`Command`]s to carry out. The driver
//! ([`super::Reconciler`]) carries them out through
//! [`super::effects::Effects`] and feeds the outcomes back as inputs. This
//! module owns the pod's lifecycle, every container's life, restart and
//! retry deadlines and the pod's [`PodStatus`]; it performs no I/O, reads
//! no clock and spawns nothing, so unit tests drive it with made-up times.
//!
//! Requests under way are matched to their answers by a run id per
//! container run (a pull or start of a replaced generation can never be
//! taken for the new one's), exits by pid. Deadlines are plain instants
//! ([`PodMachine::next_deadline`]); a [`Input::Tick`] acts on those that
//! have passed, so a timer needs no token and cannot outlive its pod.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::checkpoint::Checkpoint;
use super::effects::{Exit, ImageReady, StartError};
use super::policy::{self, ContainerPhase, ExitKind, Phase, ReconcileConfig};
use crate::runtime::manager::{Sandbox, Started};
use crate::store::PodRecord;
use tank_api::spec::{Image, Pod, StopSignal};
use tank_api::status::{timestamp, ContainerState, PodStatus};

/// What the driver is told to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Make the image of `container` ready (pull unless present).
    EnsureImage {
        container: String,
        run: u64,
        image: Image,
    },
    /// Make (or find again) the pod's sandbox.
    MakeSandbox { pod: Box<Pod> },
    /// Start `container` of `pod`.
    Start {
        container: String,
        run: u64,
        pod: Box<Pod>,
        image: Box<ImageReady>,
        sandbox: Box<Sandbox>,
    },
    /// Stop `container` with `signal` (the spec's `stop_signal` of its
    /// generation; `None`: the one the runtime resolved at its start, from
    /// the image), then SIGKILL after `grace`; answered by
    /// [`Input::Stopped`] once it is torn down.
    Stop {
        container: String,
        grace: Duration,
        signal: Option<StopSignal>,
    },
    /// Tear the pod's sandbox down.
    RemoveSandbox,
    /// Repair drift of a running pod (limits, netns pin, NICs).
    RepairDrift { pod: Box<Pod> },
    /// The pod is gone: its object and checkpoint go.
    Release,
}

/// What happens to a pod.
#[derive(Debug, Clone)]
pub enum Input {
    /// The store declares the pod (maybe at a new generation).
    Declared(PodRecord),
    /// The store no longer declares it.
    Deleted,
    ImageReady {
        container: String,
        run: u64,
        result: Result<ImageReady, String>,
    },
    SandboxMade(Result<Sandbox, String>),
    Started {
        container: String,
        run: u64,
        result: Result<Started, StartError>,
    },
    Exited {
        container: String,
        exit: Exit,
    },
    Stopped {
        container: String,
    },
    SandboxRemoved(Result<(), String>),
    DriftRepaired(Vec<(String, String)>),
    /// The periodic resync.
    Resync,
    /// Deadlines up to now have passed.
    Tick,
}

/// The pod's lifecycle.
#[derive(Debug, Clone)]
pub enum Lifecycle {
    /// Its sandbox is being made (`retry_at: None`: a request is under
    /// way), after `attempts` failed tries.
    Creating {
        attempts: u32,
        retry_at: Option<Instant>,
    },
    /// The sandbox is up; the containers live their own lives.
    Up { sandbox: Sandbox },
    /// This generation is being taken down for `next`.
    Replacing {
        next: Box<PodRecord>,
        step: Teardown,
    },
    /// Deleted: being taken down.
    Terminating { step: Teardown },
    /// Torn down; the driver forgets the machine.
    Gone,
}

/// Where a teardown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// Waiting for containers (and requests under way) to end.
    StoppingContainers,
    /// The sandbox is being removed.
    RemovingSandbox,
}

/// Where one container is.
#[derive(Debug, Clone)]
pub enum Life {
    /// Its image is being made ready.
    Pulling {
        run: u64,
    },
    /// Its image is ready; it waits for the sandbox.
    Ready {
        run: u64,
        image: ImageReady,
    },
    /// A start is under way.
    Starting {
        run: u64,
    },
    Running {
        pid: u32,
        since: Instant,
    },
    /// Its image or config failed; a new run begins at `at`.
    Retrying {
        at: Instant,
    },
    /// It ended; it runs again at `at` (CrashLoopBackOff while waiting).
    BackOff {
        at: Instant,
    },
    /// It ended and will not run again in this generation.
    Ended {
        kind: ExitKind,
    },
    /// A stop is under way.
    Stopping,
    /// Stopped on purpose.
    Stopped,
}

#[derive(Debug, Clone)]
struct ContainerMachine {
    name: String,
    life: Life,
    /// Consecutive runs shorter than `stable_after` (the backoff exponent).
    streak: u32,
    /// Consecutive runs that could not begin (image, config).
    failures: u32,
    /// It has run in this generation (Pending until every container has).
    has_run: bool,
    /// The run under way is a restart (counted once it starts).
    restart: bool,
    /// A stop arrived while its start was under way.
    stop_wanted: bool,
    /// An exit that arrived before its start was answered.
    early_exit: Option<Exit>,
}

impl ContainerMachine {
    fn new(name: &str) -> ContainerMachine {
        ContainerMachine {
            name: name.to_owned(),
            life: Life::Stopped,
            streak: 0,
            failures: 0,
            has_run: false,
            restart: false,
            stop_wanted: false,
            early_exit: None,
        }
    }

    fn phase(&self) -> ContainerPhase {
        match &self.life {
            Life::Running { .. } | Life::Stopping => ContainerPhase::Running,
            Life::BackOff { .. } => ContainerPhase::Restarting,
            Life::Pulling { .. }
            | Life::Ready { .. }
            | Life::Starting { .. }
            | Life::Retrying { .. } => {
                if self.has_run {
                    ContainerPhase::Restarting
                } else {
                    ContainerPhase::FirstStart
                }
            }
            Life::Ended { kind } => ContainerPhase::Ended {
                succeeded: kind.succeeded(),
            },
            Life::Stopped => ContainerPhase::Ended { succeeded: true },
        }
    }

    /// A request of the runtime is under way whose answer must be awaited
    /// before the pod can be torn down (a pull may go on: its answer is
    /// ignored).
    fn busy(&self) -> bool {
        matches!(
            self.life,
            Life::Starting { .. } | Life::Running { .. } | Life::Stopping
        )
    }
}

/// One pod.
#[derive(Debug)]
pub struct PodMachine {
    record: PodRecord,
    lifecycle: Lifecycle,
    containers: Vec<ContainerMachine>,
    status: PodStatus,
    /// A MakeSandbox request is under way.
    sandbox_in_flight: bool,
    next_run: u64,
    config: ReconcileConfig,
}

impl PodMachine {
    /// A pod newly declared: its sandbox is made and its images made ready
    /// at once (in parallel).
    pub fn new(record: PodRecord, config: ReconcileConfig) -> (PodMachine, Vec<Command>) {
        let status = fresh_status(&record);
        let mut machine = PodMachine {
            containers: record
                .spec
                .containers
                .iter()
                .map(|c| ContainerMachine::new(&c.name))
                .collect(),
            record,
            lifecycle: Lifecycle::Creating {
                attempts: 0,
                retry_at: None,
            },
            status,
            sandbox_in_flight: false,
            next_run: 0,
            config,
        };
        let commands = machine.bring_up();
        (machine, commands)
    }

    /// A pod taken over from a previous tankd: its status and streaks from
    /// the checkpoint, `adopted` its containers that still run (name, what
    /// the runtime found). Containers that were running and are not
    /// adopted ended while tankd was down (exit status unknown, a failure);
    /// those that were waiting begin a run now; those that had ended for
    /// good stay so.
    pub fn resume(
        record: PodRecord,
        checkpoint: Checkpoint,
        adopted: &[(String, Started)],
        config: ReconcileConfig,
        now: Instant,
    ) -> (PodMachine, Vec<Command>) {
        let mut machine = PodMachine {
            containers: Vec::new(),
            status: checkpoint.status,
            record,
            lifecycle: Lifecycle::Creating {
                attempts: 0,
                retry_at: None,
            },
            sandbox_in_flight: true,
            next_run: 0,
            config,
        };
        machine.status.observed_generation = machine.record.generation;
        let mut commands = vec![Command::MakeSandbox {
            pod: Box::new(machine.record.spec.clone()),
        }];
        let mut died = Vec::new();
        let names: Vec<String> = machine
            .record
            .spec
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            let mut c = ContainerMachine::new(&name);
            c.streak = checkpoint.streaks.get(&name).copied().unwrap_or(0);
            let state = machine
                .status
                .containers
                .get(&name)
                .map(|s| (s.state.clone(), s.restart_count));
            match (adopted.iter().find(|(n, _)| *n == name), state) {
                (Some((_, started)), _) => {
                    c.has_run = true;
                    c.life = Life::Running {
                        pid: started.pid,
                        since: since(now, started.started_at),
                    };
                    machine.set_state(
                        &name,
                        ContainerState::Running {
                            pid: started.pid,
                            started_at: timestamp(started.started_at),
                        },
                    );
                }
                (None, Some((ContainerState::Running { pid, started_at }, _))) => {
                    c.has_run = true;
                    let since = humantime::parse_rfc3339(&started_at)
                        .map(|t| since(now, t))
                        .unwrap_or(now);
                    c.life = Life::Running { pid, since };
                    died.push((name.clone(), pid));
                }
                (None, Some((ContainerState::Waiting { reason, .. }, restarts))) => {
                    c.has_run = restarts > 0 || reason == "CrashLoopBackOff";
                    c.restart = reason == "CrashLoopBackOff";
                    c.life = Life::BackOff { at: now };
                }
                (None, Some((ContainerState::Terminated { exit_code, .. }, _))) => {
                    c.has_run = true;
                    c.life = Life::Ended {
                        kind: if exit_code == Some(0) {
                            ExitKind::Succeeded
                        } else {
                            ExitKind::Failed
                        },
                    };
                }
                // Not in the checkpoint: it never began.
                (None, None) => {
                    c.life = Life::BackOff { at: now };
                    machine.status.containers.insert(
                        name.clone(),
                        fresh_status(&machine.record).containers[&name].clone(),
                    );
                }
            }
            machine.containers.push(c);
        }
        if !died.is_empty() {
            let names: Vec<&str> = died.iter().map(|(n, _)| n.as_str()).collect();
            machine.status.event(
                "Exited",
                format!(
                    "{} ended while tankd was down (exit status unknown)",
                    names.join(", ")
                ),
            );
        }
        for (name, pid) in died {
            let exit = Exit {
                pid,
                kind: ExitKind::Unknown,
                code: None,
                signal: None,
                finished_at: SystemTime::now(),
            };
            commands.extend(machine.exited(&name, exit, now, false));
        }
        commands.extend(machine.tick(now));
        machine.refresh_phase();
        (machine, commands)
    }

    pub fn name(&self) -> &str {
        &self.record.spec.name
    }

    pub fn record(&self) -> &PodRecord {
        &self.record
    }

    pub fn status(&self) -> &PodStatus {
        &self.status
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub fn is_gone(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Gone)
    }

    /// The life of `container`.
    pub fn life(&self, container: &str) -> Option<&Life> {
        self.containers
            .iter()
            .find(|c| c.name == container)
            .map(|c| &c.life)
    }

    /// What a later tankd needs to carry this pod on.
    pub fn checkpoint(&self, boot_id: &str) -> Checkpoint {
        Checkpoint {
            boot_id: boot_id.to_owned(),
            generation: self.record.generation,
            status: self.status.clone(),
            streaks: self
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.streak))
                .collect(),
        }
    }

    /// The containers the machine believes run, with their pids (the
    /// driver compares them with the runtime's view at each resync).
    pub fn running(&self) -> Vec<(String, u32)> {
        self.containers
            .iter()
            .filter_map(|c| match c.life {
                Life::Running { pid, .. } => Some((c.name.clone(), pid)),
                _ => None,
            })
            .collect()
    }

    /// The earliest deadline the machine waits for, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sandbox = match self.lifecycle {
            Lifecycle::Creating {
                retry_at: Some(at), ..
            } => Some(at),
            _ => None,
        };
        let containers = self.containers.iter().filter_map(|c| match c.life {
            Life::Retrying { at } | Life::BackOff { at } => Some(at),
            _ => None,
        });
        sandbox.into_iter().chain(containers).min()
    }

    /// Takes one input at time `now`; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Command> {
        let mut commands = match input {
            Input::Declared(record) => self.declared(record),
            Input::Deleted => self.deleted(),
            Input::ImageReady {
                container,
                run,
                result,
            } => self.image_ready(&container, run, result, now),
            Input::SandboxMade(result) => self.sandbox_made(result, now),
            Input::Started {
                container,
                run,
                result,
            } => self.started(&container, run, result, now),
            Input::Exited { container, exit } => self.exited(&container, exit, now, true),
            Input::Stopped { container } => {
                if let Some(c) = self.container_mut(&container) {
                    if matches!(c.life, Life::Stopping) {
                        c.life = Life::Stopped;
                    }
                }
                Vec::new()
            }
            Input::SandboxRemoved(result) => self.sandbox_removed(result),
            Input::DriftRepaired(events) => {
                for (reason, message) in events {
                    self.status.event(&reason, message);
                }
                Vec::new()
            }
            Input::Resync => match self.lifecycle {
                Lifecycle::Up { .. } => vec![Command::RepairDrift {
                    pod: Box::new(self.record.spec.clone()),
                }],
                _ => Vec::new(),
            },
            Input::Tick => self.tick(now),
        };
        commands.extend(self.advance_teardown());
        self.refresh_phase();
        commands
    }

    fn container_mut(&mut self, name: &str) -> Option<&mut ContainerMachine> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    fn new_run(&mut self) -> u64 {
        self.next_run += 1;
        self.next_run
    }

    fn set_state(&mut self, container: &str, state: ContainerState) {
        if let Some(c) = self.status.containers.get_mut(container) {
            c.state = state;
        }
    }

    fn set_waiting(&mut self, container: &str, reason: &str, message: Option<String>) {
        self.set_state(
            container,
            ContainerState::Waiting {
                reason: reason.to_owned(),
                message,
            },
        );
    }

    /// Sandbox and every container's first run.
    fn bring_up(&mut self) -> Vec<Command> {
        self.sandbox_in_flight = true;
        let mut commands = vec![Command::MakeSandbox {
            pod: Box::new(self.record.spec.clone()),
        }];
        let names: Vec<String> = self.containers.iter().map(|c| c.name.clone()).collect();
        for name in names {
            commands.extend(self.begin_run(&name));
        }
        commands
    }

    /// A new run of `container`: its image first.
    fn begin_run(&mut self, name: &str) -> Vec<Command> {
        let run = self.new_run();
        let Some(spec) = self.record.spec.container(name) else {
            return Vec::new();
        };
        let image = spec.image.clone();
        let Some(c) = self.container_mut(name) else {
            return Vec::new();
        };
        c.life = Life::Pulling { run };
        c.early_exit = None;
        c.stop_wanted = false;
        vec![Command::EnsureImage {
            container: name.to_owned(),
            run,
            image,
        }]
    }

    fn image_ready(
        &mut self,
        name: &str,
        run: u64,
        result: Result<ImageReady, String>,
        now: Instant,
    ) -> Vec<Command> {
        let config = self.config;
        let Some(c) = self.container_mut(name) else {
            return Vec::new();
        };
        if !matches!(c.life, Life::Pulling { run: r } if r == run) {
            return Vec::new();
        }
        match result {
            Ok(image) => {
                c.failures = 0;
                c.life = Life::Ready { run, image };
                self.start_ready()
            }
            Err(message) => {
                c.failures = c.failures.saturating_add(1);
                let delay = config.backoff(c.failures);
                c.life = Life::Retrying { at: now + delay };
                self.set_waiting(
                    name,
                    "ImagePullBackOff",
                    Some(format!(
                        "{message} (retrying in {:.1}s)",
                        delay.as_secs_f64()
                    )),
                );
                self.status.event_once("Failed", message);
                Vec::new()
            }
        }
    }

    /// Starts every container whose image is ready, once the sandbox is up.
    fn start_ready(&mut self) -> Vec<Command> {
        let Lifecycle::Up { sandbox } = &self.lifecycle else {
            return Vec::new();
        };
        let sandbox = sandbox.clone();
        let mut commands = Vec::new();
        for c in &mut self.containers {
            if let Life::Ready { run, image } = &c.life {
                let (run, image) = (*run, image.clone());
                c.life = Life::Starting { run };
                commands.push(Command::Start {
                    container: c.name.clone(),
                    run,
                    pod: Box::new(self.record.spec.clone()),
                    image: Box::new(image),
                    sandbox: Box::new(sandbox.clone()),
                });
            }
        }
        commands
    }

    fn sandbox_made(&mut self, result: Result<Sandbox, String>, now: Instant) -> Vec<Command> {
        self.sandbox_in_flight = false;
        let Lifecycle::Creating { attempts, .. } = self.lifecycle else {
            // Taken down meanwhile: advance_teardown goes on.
            return Vec::new();
        };
        match result {
            Ok(sandbox) => {
                self.status.message = None;
                self.status.ips = sandbox.ips.iter().map(|ip| ip.to_string()).collect();
                self.lifecycle = Lifecycle::Up { sandbox };
                self.start_ready()
            }
            Err(message) => {
                let attempts = attempts.saturating_add(1);
                let delay = self.config.backoff(attempts);
                self.lifecycle = Lifecycle::Creating {
                    attempts,
                    retry_at: Some(now + delay),
                };
                if self.status.message.as_deref() != Some(message.as_str()) {
                    self.status.event("FailedCreatePodSandBox", message.clone());
                }
                self.status.message = Some(message);
                Vec::new()
            }
        }
    }

    fn started(
        &mut self,
        name: &str,
        run: u64,
        result: Result<Started, StartError>,
        now: Instant,
    ) -> Vec<Command> {
        let (grace, config) = (self.grace(), self.config);
        let Some(c) = self.container_mut(name) else {
            return Vec::new();
        };
        if !matches!(c.life, Life::Starting { run: r } if r == run) {
            return Vec::new();
        }
        let stop = c.stop_wanted;
        match result {
            Ok(started) | Err(StartError::AlreadyRunning(started)) => {
                c.life = Life::Running {
                    pid: started.pid,
                    since: now,
                };
                c.has_run = true;
                let restart = std::mem::take(&mut c.restart);
                let early = c.early_exit.take().filter(|e| e.pid == started.pid);
                if stop && early.is_none() {
                    c.life = Life::Stopping;
                }
                if let Some(s) = self.status.containers.get_mut(name) {
                    if restart {
                        s.restart_count = s.restart_count.saturating_add(1);
                    }
                    s.state = ContainerState::Running {
                        pid: started.pid,
                        started_at: timestamp(started.started_at),
                    };
                }
                self.status
                    .event("Started", format!("started {name} (pid {})", started.pid));
                match early {
                    Some(exit) => self.exited(name, exit, now, true),
                    None if stop => vec![Command::Stop {
                        container: name.to_owned(),
                        grace,
                        signal: self.stop_signal(name),
                    }],
                    None => Vec::new(),
                }
            }
            Err(StartError::Config(message)) => {
                c.failures = c.failures.saturating_add(1);
                let delay = config.backoff(c.failures);
                c.life = if stop {
                    Life::Stopped
                } else {
                    Life::Retrying { at: now + delay }
                };
                self.set_waiting(name, "CreateContainerConfigError", Some(message.clone()));
                self.status.event_once("Failed", message);
                Vec::new()
            }
            Err(StartError::Runtime(message)) => {
                if stop {
                    c.life = Life::Stopped;
                    self.status.event("Failed", message);
                    return Vec::new();
                }
                self.status.event("Failed", message);
                let exit = Exit {
                    pid: 0,
                    kind: ExitKind::StartFailed,
                    code: Some(128),
                    signal: None,
                    finished_at: SystemTime::now(),
                };
                self.ended(name, exit, None, now)
            }
        }
    }

    /// A container's process exited. `counted`: the exit is news (not the
    /// replay of one that happened while tankd was down, already told).
    fn exited(&mut self, name: &str, exit: Exit, now: Instant, counted: bool) -> Vec<Command> {
        let Some(c) = self.container_mut(name) else {
            return Vec::new();
        };
        match c.life {
            Life::Running { pid, since } if pid == exit.pid => {
                let ran = now.saturating_duration_since(since);
                if counted {
                    let message = match (exit.code, exit.signal) {
                        (Some(code), _) => format!("{name} exited with code {code}"),
                        (_, Some(sig)) => format!("{name} killed by signal {sig}"),
                        _ => {
                            format!("{name} exited (status unknown: adopted from a previous tankd)")
                        }
                    };
                    let reason = if exit.kind == ExitKind::OomKilled {
                        "OOMKilled"
                    } else {
                        "Exited"
                    };
                    self.status.event(reason, message);
                }
                self.ended(name, exit, Some(ran), now)
            }
            // Stopped on purpose: recorded, never restarted.
            Life::Stopping => {
                self.set_state(name, terminated(&exit));
                Vec::new()
            }
            // Its start is not answered yet: kept for the answer.
            Life::Starting { .. } => {
                c.early_exit = Some(exit);
                Vec::new()
            }
            // An earlier run's exit.
            _ => Vec::new(),
        }
    }

    /// A run ended (or never began): the restart policy decides.
    fn ended(
        &mut self,
        name: &str,
        exit: Exit,
        ran: Option<Duration>,
        now: Instant,
    ) -> Vec<Command> {
        self.set_state(name, terminated(&exit));
        let policy = self.record.spec.restart;
        let up = matches!(
            self.lifecycle,
            Lifecycle::Up { .. } | Lifecycle::Creating { .. }
        );
        let config = self.config;
        let Some(c) = self.container_mut(name) else {
            return Vec::new();
        };
        if !up || !policy::restarts(policy, exit.kind) {
            c.life = Life::Ended { kind: exit.kind };
            return Vec::new();
        }
        c.streak = policy::next_streak(c.streak, ran, config.stable_after());
        let delay = config.backoff(c.streak);
        c.streak = c.streak.saturating_add(1);
        c.restart = true;
        c.life = Life::BackOff { at: now + delay };
        if delay.is_zero() {
            return self.begin_run(name);
        }
        let message = format!(
            "back-off {:.1}s restarting failed container {name}",
            delay.as_secs_f64()
        );
        self.set_waiting(name, "CrashLoopBackOff", Some(message.clone()));
        self.status.event("BackOff", message);
        Vec::new()
    }

    /// Acts on the deadlines that have passed.
    fn tick(&mut self, now: Instant) -> Vec<Command> {
        let mut commands = Vec::new();
        if let Lifecycle::Creating {
            attempts,
            retry_at: Some(at),
        } = self.lifecycle
        {
            if at <= now {
                self.lifecycle = Lifecycle::Creating {
                    attempts,
                    retry_at: None,
                };
                self.sandbox_in_flight = true;
                commands.push(Command::MakeSandbox {
                    pod: Box::new(self.record.spec.clone()),
                });
            }
        }
        let due: Vec<String> = self
            .containers
            .iter()
            .filter(|c| matches!(c.life, Life::Retrying { at } | Life::BackOff { at } if at <= now))
            .map(|c| c.name.clone())
            .collect();
        for name in due {
            commands.extend(self.begin_run(&name));
        }
        commands
    }

    fn stop_signal(&self, container: &str) -> Option<StopSignal> {
        self.record
            .spec
            .container(container)
            .and_then(|c| c.stop_signal)
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.record.spec.stop_grace_period_s))
    }

    /// Stops every container; those not running stop at once.
    fn stop_all(&mut self) -> Vec<Command> {
        let grace = self.grace();
        let signals: Vec<Option<StopSignal>> = self
            .containers
            .iter()
            .map(|c| self.stop_signal(&c.name))
            .collect();
        let mut commands = Vec::new();
        for (c, signal) in self.containers.iter_mut().zip(signals) {
            match c.life {
                Life::Running { .. } => {
                    c.life = Life::Stopping;
                    commands.push(Command::Stop {
                        container: c.name.clone(),
                        grace,
                        signal,
                    });
                }
                Life::Starting { .. } => c.stop_wanted = true,
                Life::Stopping | Life::Stopped | Life::Ended { .. } => {}
                Life::Pulling { .. }
                | Life::Ready { .. }
                | Life::Retrying { .. }
                | Life::BackOff { .. } => c.life = Life::Stopped,
            }
        }
        commands
    }

    fn declared(&mut self, record: PodRecord) -> Vec<Command> {
        if record.generation == self.record.generation {
            return Vec::new();
        }
        match &mut self.lifecycle {
            Lifecycle::Creating { .. } | Lifecycle::Up { .. } => {
                self.lifecycle = Lifecycle::Replacing {
                    next: Box::new(record),
                    step: Teardown::StoppingContainers,
                };
                self.stop_all()
            }
            Lifecycle::Replacing { next, .. } => {
                **next = record;
                Vec::new()
            }
            // A deleted pod declared again is a new incarnation: the driver
            // makes a new machine once this one is gone.
            Lifecycle::Terminating { .. } | Lifecycle::Gone => Vec::new(),
        }
    }

    fn deleted(&mut self) -> Vec<Command> {
        match self.lifecycle {
            Lifecycle::Terminating { .. } | Lifecycle::Gone => Vec::new(),
            Lifecycle::Replacing { step, .. } => {
                self.lifecycle = Lifecycle::Terminating { step };
                Vec::new()
            }
            Lifecycle::Creating { .. } | Lifecycle::Up { .. } => {
                self.lifecycle = Lifecycle::Terminating {
                    step: Teardown::StoppingContainers,
                };
                self.stop_all()
            }
        }
    }

    /// Moves a teardown on once nothing it waits for is under way.
    fn advance_teardown(&mut self) -> Vec<Command> {
        let step = match &self.lifecycle {
            Lifecycle::Replacing { step, .. } | Lifecycle::Terminating { step } => *step,
            _ => return Vec::new(),
        };
        if step != Teardown::StoppingContainers
            || self.sandbox_in_flight
            || self.containers.iter().any(ContainerMachine::busy)
        {
            return Vec::new();
        }
        match &mut self.lifecycle {
            Lifecycle::Terminating { step } => {
                *step = Teardown::RemovingSandbox;
                vec![Command::RemoveSandbox]
            }
            Lifecycle::Replacing { next, step } => {
                if next.spec.network != self.record.spec.network {
                    *step = Teardown::RemovingSandbox;
                    vec![Command::RemoveSandbox]
                } else {
                    let next = (**next).clone();
                    self.replace_with(next)
                }
            }
            _ => Vec::new(),
        }
    }

    fn sandbox_removed(&mut self, result: Result<(), String>) -> Vec<Command> {
        if let Err(message) = result {
            self.status.event("FailedKillPod", message);
        }
        match &self.lifecycle {
            Lifecycle::Terminating {
                step: Teardown::RemovingSandbox,
            } => {
                self.lifecycle = Lifecycle::Gone;
                vec![Command::Release]
            }
            Lifecycle::Replacing {
                next,
                step: Teardown::RemovingSandbox,
            } => {
                let next = (**next).clone();
                self.replace_with(next)
            }
            _ => Vec::new(),
        }
    }

    /// The old generation is down: the new one comes up (events carried).
    fn replace_with(&mut self, record: PodRecord) -> Vec<Command> {
        let mut status = fresh_status(&record);
        status.events = std::mem::take(&mut self.status.events);
        status.event("Replaced", format!("generation {}", record.generation));
        self.status = status;
        self.containers = record
            .spec
            .containers
            .iter()
            .map(|c| ContainerMachine::new(&c.name))
            .collect();
        self.record = record;
        self.lifecycle = Lifecycle::Creating {
            attempts: 0,
            retry_at: None,
        };
        self.bring_up()
    }

    fn refresh_phase(&mut self) {
        self.status.phase = match self.lifecycle {
            Lifecycle::Terminating { .. } | Lifecycle::Gone => Phase::Terminating,
            _ => policy::phase(self.containers.iter().map(ContainerMachine::phase)),
        };
    }
}

fn fresh_status(record: &PodRecord) -> PodStatus {
    let mut status = PodStatus::new(
        record.generation,
        record.spec.containers.iter().map(|c| c.name.clone()),
    );
    for c in &record.spec.containers {
        if let Image::Reference(_) = c.image {
            if let Some(s) = status.containers.get_mut(&c.name) {
                s.state = ContainerState::Waiting {
                    reason: "Pulling".to_owned(),
                    message: None,
                };
            }
        }
    }
    status
}

fn terminated(exit: &Exit) -> ContainerState {
    ContainerState::Terminated {
        exit_code: exit.code,
        signal: exit.signal,
        reason: exit.kind.reason().to_owned(),
        finished_at: timestamp(exit.finished_at),
    }
}

/// When something that started at wall-clock `t` started, on the
/// monotonic clock of `now`.
fn since(now: Instant, t: SystemTime) -> Instant {
    let elapsed = SystemTime::now().duration_since(t).unwrap_or_default();
    now.checked_sub(elapsed).unwrap_or(now)
}

#[cfg(test)]
mod tests;
