//! The reconcile loop: the only thing that acts on the machine.
//!
//! Level-triggered: desired state (the store) is compared with what each
//! pod's [`machine::PodMachine`] knows, and the machine decides what to do;
//! this module, the driver, only feeds it inputs and carries out its
//! commands through [`effects::Effects`]. One task owns every machine (no
//! lock around pods); effects run in their own tasks and report back
//! through the loop's inbox, tagged with the pod's incarnation (a create,
//! or a create after a delete), so an answer, a retry or a timer of one
//! incarnation never touches another of the same name.
//!
//! The loop's timers are fixed cadences, never re-armed by other events:
//! the drift-repairing resync runs every `resync_s` and WATCHDOG=1 every
//! half watchdog interval whatever else happens; pod deadlines (restart
//! backoff, retries) are absolute instants. Status is published by a
//! separate task (bus send and checkpoint file), so nothing here waits for
//! the bus or the disk.
//!
//! If the loop ends (its inputs closed) or panics, [`Reconciler::run`]'s
//! task ends and tankd exits non-zero (see `daemon`): a loop that stopped
//! working is never left running silently.

pub mod checkpoint;
pub mod effects;
pub mod machine;
pub mod policy;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::runtime::manager::RuntimeEvent;
use crate::store::Store;
use checkpoint::Checkpoint;
use effects::{Effects, Exit};
use machine::{Command, Input, PodMachine};
pub use policy::ReconcileConfig;
use tank_api::status::{Phase, PodStatus};

/// Why the loop ended (it never ends on its own while tankd is healthy).
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("the store's change feed closed")]
    StoreClosed,
    #[error("the runtime's event feed closed")]
    RuntimeClosed,
    #[error("the status publisher ended")]
    PublisherGone,
}

/// An effect's answer for one incarnation of a pod.
struct Completion {
    pod: String,
    incarnation: u64,
    input: Input,
}

/// What the publisher task does, in order.
enum Publication {
    Hold(String),
    Status {
        pod: String,
        status: Box<PodStatus>,
        checkpoint: Box<Checkpoint>,
    },
    Release(String),
}

impl Publication {
    fn pod(&self) -> &str {
        match self {
            Publication::Hold(pod) | Publication::Release(pod) => pod,
            Publication::Status { pod, .. } => pod,
        }
    }
}

struct Slot {
    incarnation: u64,
    machine: PodMachine,
}

pub struct Reconciler<E: Effects> {
    store: Arc<Store>,
    effects: Arc<E>,
    config: ReconcileConfig,
    events: broadcast::Receiver<RuntimeEvent>,
    slots: HashMap<String, Slot>,
    next_incarnation: u64,
    inbox_tx: mpsc::UnboundedSender<Completion>,
    inbox: mpsc::UnboundedReceiver<Completion>,
    publisher: mpsc::UnboundedSender<Publication>,
    boot_id: String,
    /// Compare what the machines believe runs with the runtime once no
    /// exit is waiting to be read (after a resync or lost events).
    verify_running: bool,
    status_line: String,
    /// How often WATCHDOG=1 is sent (half systemd's WatchdogSec).
    watchdog: Option<std::time::Duration>,
}

impl<E: Effects> Reconciler<E> {
    /// `events`: the runtime's exit feed, subscribed before any container
    /// is adopted or started.
    pub fn new(
        store: Arc<Store>,
        effects: Arc<E>,
        events: broadcast::Receiver<RuntimeEvent>,
        config: ReconcileConfig,
    ) -> Reconciler<E> {
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (publisher, publications) = mpsc::unbounded_channel();
        tokio::spawn(publish(Arc::clone(&effects), publications));
        Reconciler {
            boot_id: effects.boot_id(),
            store,
            effects,
            config,
            events,
            slots: HashMap::new(),
            next_incarnation: 0,
            inbox_tx,
            inbox,
            publisher,
            verify_running: false,
            status_line: String::new(),
            watchdog: None,
        }
    }

    /// Sends WATCHDOG=1 every `interval` from the loop itself (so a stuck
    /// loop gets tankd restarted).
    pub fn with_watchdog(mut self, interval: Option<std::time::Duration>) -> Self {
        self.watchdog = interval;
        self
    }

    /// Takes over from a previous tankd (crash, upgrade): every container
    /// that still runs, of a pod still declared at the same generation, is
    /// adopted with its status carried on (restart counts unchanged); one
    /// that died meanwhile goes through the restart policy, its unknown
    /// exit status counting as a failure. Everything else a previous tankd
    /// left is removed. After a reboot there is nothing to adopt and the
    /// loop starts every declared pod afresh. Runs before the loop.
    pub async fn adopt(&mut self) {
        let desired = match self.store.list() {
            Ok(list) => list,
            Err(e) => {
                log::error!("adoption: cannot read desired state: {e}");
                Vec::new()
            }
        };
        let mut checkpoints = self.effects.load_checkpoints().await;
        let now = Instant::now();
        let mut resumed = Vec::new();
        for record in desired {
            let name = record.spec.name.clone();
            let Some(checkpoint) = checkpoints
                .remove(&name)
                .filter(|c| c.generation == record.generation)
            else {
                continue;
            };
            let adopted: Vec<_> = record
                .spec
                .containers
                .iter()
                .filter_map(|c| {
                    self.effects
                        .adopt(&name, &c.name)
                        .map(|started| (c.name.clone(), started))
                })
                .collect();
            let (machine, commands) =
                PodMachine::resume(record, checkpoint, &adopted, self.config, now);
            resumed.push((name, machine, commands));
        }
        let kept: Vec<String> = resumed.iter().map(|(name, ..)| name.clone()).collect();
        // Before anything of the kept pods starts again: a leftover's
        // cleanup must not race a fresh start.
        self.effects.remove_leftovers(&kept).await;
        for (name, machine, commands) in resumed {
            let incarnation = self.insert(machine);
            self.publish_status(&name);
            self.execute(&name, incarnation, commands);
        }
    }

    /// Runs the loop until one of its inputs closes; the error says which.
    pub async fn run(mut self) -> LoopError {
        let mut changes = self.store.watch();
        let mut resync =
            tokio::time::interval_at(Instant::now() + self.config.resync(), self.config.resync());
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = self.watchdog.map(|period| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        self.pass();
        loop {
            self.report_status();
            let deadline = self
                .slots
                .values()
                .filter_map(|s| s.machine.next_deadline())
                .min();
            // Timers first: no stream of other events can starve them.
            tokio::select! {
                biased;
                _ = tick(&mut watchdog) => self.effects.notify("WATCHDOG=1"),
                _ = resync.tick() => self.resync(),
                _ = sleep_until(deadline) => self.tick(),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return LoopError::StoreClosed;
                    }
                    self.pass();
                }
                event = self.events.recv() => match event {
                    Ok(event) => self.on_exit(&event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("reconcile: {n} runtime events lost; checking every container");
                        self.verify_running = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return LoopError::RuntimeClosed,
                },
                Some(done) = self.inbox.recv() => self.on_completion(done),
            }
            if self.verify_running && self.events.is_empty() {
                self.verify_running = false;
                self.check_running();
            }
            if self.publisher.is_closed() {
                return LoopError::PublisherGone;
            }
        }
    }

    fn insert(&mut self, machine: PodMachine) -> u64 {
        self.next_incarnation += 1;
        let name = machine.name().to_owned();
        let _ = self.publisher.send(Publication::Hold(name.clone()));
        self.slots.insert(
            name,
            Slot {
                incarnation: self.next_incarnation,
                machine,
            },
        );
        self.next_incarnation
    }

    /// One level-triggered pass: every declared pod has a machine that
    /// knows its current record; every machine whose pod is not declared
    /// is told so.
    fn pass(&mut self) {
        let desired = match self.store.list() {
            Ok(list) => list,
            Err(e) => {
                log::error!("reconcile: cannot read desired state: {e}");
                return;
            }
        };
        for record in &desired {
            let name = record.spec.name.clone();
            match self.slots.get(&name) {
                None => {
                    let (machine, commands) = PodMachine::new(record.clone(), self.config);
                    let incarnation = self.insert(machine);
                    self.publish_status(&name);
                    self.execute(&name, incarnation, commands);
                }
                // Deleted and created again since the last pass: the old
                // incarnation goes first, the next pass makes the new one.
                Some(slot) if !slot.machine.record().same_incarnation(record) => {
                    self.feed(&name, Input::Deleted);
                }
                Some(slot) if slot.machine.record().generation == record.generation => {}
                Some(_) => self.feed(&name, Input::Declared(record.clone())),
            }
        }
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|name| !desired.iter().any(|r| &r.spec.name == *name))
            .cloned()
            .collect();
        for name in gone {
            self.feed(&name, Input::Deleted);
        }
    }

    /// Gives `input` to the machine of `pod` and acts on the outcome.
    fn feed(&mut self, pod: &str, input: Input) {
        let now = Instant::now();
        let Some(slot) = self.slots.get_mut(pod) else {
            return;
        };
        let before = slot.machine.status().clone();
        let commands = slot.machine.handle(input, now);
        let incarnation = slot.incarnation;
        let changed = *slot.machine.status() != before;
        let gone = slot.machine.is_gone();
        if changed {
            self.publish_status(pod);
        }
        self.execute(pod, incarnation, commands);
        if gone {
            self.slots.remove(pod);
            // Declared again meanwhile: its new incarnation starts now.
            self.pass();
        }
    }

    fn publish_status(&self, pod: &str) {
        if let Some(slot) = self.slots.get(pod) {
            let _ = self.publisher.send(Publication::Status {
                pod: pod.to_owned(),
                status: Box::new(slot.machine.status().clone()),
                checkpoint: Box::new(slot.machine.checkpoint(&self.boot_id)),
            });
        }
    }

    fn on_completion(&mut self, done: Completion) {
        match self.slots.get(&done.pod) {
            Some(slot) if slot.incarnation == done.incarnation => {
                self.feed(&done.pod, done.input);
            }
            _ => log::debug!(
                "{}: an answer for incarnation {} dropped (that pod is gone)",
                done.pod,
                done.incarnation
            ),
        }
    }

    fn on_exit(&mut self, event: &RuntimeEvent) {
        let (pod, container, exit) = Exit::of(event);
        self.feed(&pod, Input::Exited { container, exit });
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.machine.next_deadline().is_some_and(|d| d <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for pod in due {
            self.feed(&pod, Input::Tick);
        }
    }

    fn resync(&mut self) {
        let pods: Vec<String> = self.slots.keys().cloned().collect();
        for pod in pods {
            self.feed(&pod, Input::Resync);
        }
        self.verify_running = true;
    }

    /// Level-triggered check of what runs: a container the machine
    /// believes running that the runtime no longer has ended unseen.
    fn check_running(&mut self) {
        let mut lost = Vec::new();
        for (pod, slot) in &self.slots {
            for (container, pid) in slot.machine.running() {
                if self.effects.running_pid(pod, &container) != Some(pid) {
                    lost.push((pod.clone(), container, pid));
                }
            }
        }
        for (pod, container, pid) in lost {
            log::warn!("{pod}/{container}: pid {pid} ended unseen");
            self.feed(
                &pod,
                Input::Exited {
                    container,
                    exit: Exit::unknown(pid),
                },
            );
        }
    }

    /// Carries out `commands` of one incarnation of `pod`, each in its own
    /// task that reports back through the inbox.
    fn execute(&self, pod: &str, incarnation: u64, commands: Vec<Command>) {
        for command in commands {
            let effects = Arc::clone(&self.effects);
            let inbox = self.inbox_tx.clone();
            let name = pod.to_owned();
            let reply = move |input: Input| {
                let _ = inbox.send(Completion {
                    pod: name,
                    incarnation,
                    input,
                });
            };
            let pod = pod.to_owned();
            match command {
                Command::EnsureImage {
                    container,
                    run,
                    image,
                } => {
                    tokio::spawn(async move {
                        let result = effects.ensure_image(&image).await;
                        reply(Input::ImageReady {
                            container,
                            run,
                            result,
                        });
                    });
                }
                Command::MakeSandbox { pod: spec } => {
                    tokio::spawn(async move {
                        let result = effects.make_sandbox(&spec).await;
                        if let Err(e) = &result {
                            log::warn!("{}: sandbox: {e}", spec.name);
                        }
                        reply(Input::SandboxMade(result));
                    });
                }
                Command::Start {
                    container,
                    run,
                    pod: spec,
                    image,
                    sandbox,
                } => {
                    tokio::spawn(async move {
                        let result = effects.start(&spec, &container, &image, &sandbox).await;
                        reply(Input::Started {
                            container,
                            run,
                            result,
                        });
                    });
                }
                Command::Stop {
                    container,
                    grace,
                    signal,
                } => {
                    tokio::spawn(async move {
                        effects.stop(&pod, &container, grace, signal).await;
                        reply(Input::Stopped { container });
                    });
                }
                Command::RemoveSandbox => {
                    tokio::spawn(async move {
                        let result = effects.remove_sandbox(&pod).await;
                        reply(Input::SandboxRemoved(result));
                    });
                }
                Command::RepairDrift { pod: spec } => {
                    tokio::spawn(async move {
                        let events = effects.repair_drift(&spec).await;
                        if !events.is_empty() {
                            reply(Input::DriftRepaired(events));
                        }
                    });
                }
                Command::Release => {
                    let _ = self.publisher.send(Publication::Release(pod));
                }
            }
        }
    }

    /// `N pods: R running, …` for systemd's STATUS=, when it changed.
    fn report_status(&mut self) {
        let count = |phase: Phase| {
            self.slots
                .values()
                .filter(|s| s.machine.status().phase == phase)
                .count()
        };
        let line = format!(
            "{} pods: {} running, {} pending, {} succeeded, {} failed",
            self.slots.len(),
            count(Phase::Running),
            count(Phase::Pending),
            count(Phase::Succeeded),
            count(Phase::Failed)
        );
        if line != self.status_line {
            self.effects.notify(&format!("STATUS={line}"));
            self.status_line = line;
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The publisher: shows statuses on the bus and checkpoints them, holds and
/// releases pod objects, in the order the loop decided them. A status
/// followed by a newer one of the same pod in the same batch is skipped.
async fn publish<E: Effects>(
    effects: Arc<E>,
    mut publications: mpsc::UnboundedReceiver<Publication>,
) {
    let mut batch = Vec::new();
    while publications.recv_many(&mut batch, 256).await > 0 {
        for i in 0..batch.len() {
            let superseded = matches!(batch[i], Publication::Status { .. })
                && batch[i + 1..]
                    .iter()
                    .find(|p| p.pod() == batch[i].pod())
                    .is_some_and(|p| matches!(p, Publication::Status { .. }));
            if superseded {
                continue;
            }
            match &batch[i] {
                Publication::Hold(pod) => effects.hold(pod),
                Publication::Status {
                    pod,
                    status,
                    checkpoint,
                } => effects.publish(pod, status, checkpoint).await,
                Publication::Release(pod) => effects.release(pod).await,
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests;
