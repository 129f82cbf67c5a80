//! The reconcile loop: the only thing that acts on the machine.
//!
//! Level-triggered: every pass compares desired state (the store) with what
//! it observes (its own record of pods, fed by the runtime's exit events)
//! and acts on the difference: a new pod is started, a changed one (new
//! generation) replaced, a deleted one stopped and torn down. Passes run on
//! store changes, container exits and a slow periodic resync. Each pod's
//! work runs in its own task, so one slow or failing pod never stalls the
//! others. It publishes status to the pod objects; it never writes desired
//! state.

pub mod checkpoint;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Mutex, Notify};

use crate::bus::pod::PodObjects;
use crate::image::runconfig::{merge, ImageConfig};
use crate::image::Images;
use crate::runtime::manager::{RootfsSource, Runtime, RuntimeError, RuntimeEvent, Sandbox};
use crate::runtime::spawn::ExitStatus;
use crate::spec::{Container, Image, Pod, RestartPolicy};
use crate::store::{PodRecord, Store};
use checkpoint::{Checkpoint, Checkpoints};
use status::{timestamp, ContainerState, Phase, PodStatus};

/// `[reconcile]` of tankd.toml: restart backoff and resync.
///
/// A container that exits is restarted per its pod's policy after
/// `min(backoff_base · 2ⁿ⁻¹, backoff_cap)`, n = how many times in a row it
/// failed to stay up for `stable_after`; the first restart (n = 0) is
/// immediate. Kubelet uses 10 s / 300 s / 600 s; Tank's defaults are
/// faster (0.5 s / 60 s / 60 s) because its restarts are cheap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub stable_after_s: u64,
    /// Interval of the drift-detecting resync (nothing polls in between).
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
    /// Delay before restart number `streak` (0 = first after a stable run).
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
}

/// How soon a pod whose sandbox could not be made is tried again.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);

/// Restart bookkeeping of one container.
#[derive(Debug, Default)]
struct Restarts {
    /// Consecutive runs shorter than `stable_after`.
    streak: u32,
    started: Option<Instant>,
    /// The pid of the current run: exits of earlier runs (e.g. of a
    /// generation being replaced) are not this container's news.
    pid: Option<u32>,
    /// Consecutive failed pulls of its image (ImagePullBackOff).
    pull_failures: u32,
}

struct PodState {
    generation: u64,
    spec: Pod,
    status: PodStatus,
    sandbox: Option<Sandbox>,
    restarts: HashMap<String, Restarts>,
    /// A task is acting on this pod; the next pass looks again after it.
    busy: bool,
    /// Its containers are being stopped on purpose: exits are not restarted.
    stopping: bool,
    /// Exits that arrived before their start was recorded (a container
    /// that exits at once can beat the bookkeeping of its start).
    unclaimed: Vec<RuntimeEvent>,
}

pub struct Reconciler {
    store: Arc<Store>,
    images: Arc<Images>,
    runtime: Arc<Runtime>,
    objects: Arc<PodObjects>,
    pods: Mutex<HashMap<String, PodState>>,
    checkpoints: Checkpoints,
    wake: Notify,
    config: ReconcileConfig,
}

impl Reconciler {
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        runtime: Arc<Runtime>,
        objects: Arc<PodObjects>,
        config: ReconcileConfig,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            checkpoints: Checkpoints::new(runtime.run_dir()),
            store,
            images,
            runtime,
            objects,
            pods: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            config,
        })
    }

    /// Takes over from a previous tankd (crash, upgrade): every container
    /// that still runs, of a pod still declared at the same generation, is
    /// adopted with its status carried on (restart counts unchanged); one
    /// that died meanwhile is restarted per policy, its unknown exit status
    /// counting as a failure. Everything else a previous tankd left
    /// (containers of deleted or changed pods, their cgroups, namespaces,
    /// scratch) is removed. After a reboot there is nothing to adopt and
    /// the loop starts every declared pod afresh. Runs before the loop.
    pub async fn adopt(self: &Arc<Self>) {
        let desired = match self.store.list() {
            Ok(list) => list,
            Err(e) => {
                log::error!("adoption: cannot read desired state: {e}");
                Vec::new()
            }
        };
        let mut checkpoints = self.checkpoints.load_all();
        let mut resumed = Vec::new();
        {
            let mut pods = self.pods.lock().await;
            for record in &desired {
                let name = &record.spec.name;
                let Some(checkpoint) = checkpoints
                    .remove(name)
                    .filter(|c| c.generation == record.generation)
                else {
                    continue;
                };
                let (state, plan) = self.resume_state(record, checkpoint);
                self.objects.hold(name);
                self.publish(name, &state).await;
                pods.insert(name.clone(), state);
                resumed.push((record.spec.clone(), plan));
            }
        }
        // What no declared pod claims goes.
        for pod in checkpoints.keys() {
            self.checkpoints.remove(pod);
        }
        let kept: Vec<&str> = resumed.iter().map(|(spec, _)| spec.name.as_str()).collect();
        let cgroups = self.runtime.cgroups();
        for (pod, container) in cgroups.list().unwrap_or_default() {
            if self.runtime.is_running(&pod, &container) {
                continue;
            }
            if let Ok(Some(cgroup)) = cgroups.open(&pod, &container) {
                log::info!("{pod}/{container}: removing leftover of a previous tankd");
                let _ = cgroup.kill_all();
                let _ = cgroup.delete();
            }
        }
        for pod in self.runtime.pods_on_machine().unwrap_or_default() {
            if kept.contains(&pod.as_str()) {
                continue;
            }
            if let Err(e) = self.runtime.remove_sandbox(&pod).await {
                log::warn!("{pod}: cannot remove leftover sandbox: {e}");
            }
        }
        for (spec, plan) in resumed {
            self.spawn_task(resume_pod(Arc::clone(self), spec, plan));
        }
    }

    /// The state of a declared pod from its checkpoint, adopting its
    /// running containers; and what is left to do for the others.
    fn resume_state(&self, record: &PodRecord, checkpoint: Checkpoint) -> (PodState, Resume) {
        let spec = &record.spec;
        let mut status = checkpoint.status;
        status.phase = Phase::Pending;
        let mut restarts = HashMap::new();
        let mut plan = Resume::default();
        for container in &spec.containers {
            let name = &container.name;
            let entry: &mut Restarts = restarts.entry(name.clone()).or_default();
            entry.streak = checkpoint.streaks.get(name).copied().unwrap_or(0);
            let Some(c) = status.containers.get_mut(name) else {
                continue;
            };
            match self.runtime.adopt(&spec.name, name) {
                Some(started) => {
                    entry.pid = Some(started.pid);
                    entry.started = since(started.started_at);
                    c.state = ContainerState::Running {
                        pid: started.pid,
                        started_at: timestamp(started.started_at),
                    };
                }
                None => match &c.state {
                    ContainerState::Running { started_at, .. } => {
                        entry.started = humantime::parse_rfc3339(started_at).ok().and_then(since);
                        c.state = ContainerState::Terminated {
                            exit_code: None,
                            signal: None,
                            reason: UNKNOWN_EXIT.to_owned(),
                            finished_at: timestamp(SystemTime::now()),
                        };
                        plan.died.push(name.clone());
                    }
                    // A restart was due (backoff) or a start never
                    // happened (image pull): it happens now.
                    ContainerState::Waiting { reason, .. } => plan
                        .waiting
                        .push((name.clone(), reason == "CrashLoopBackOff")),
                    // Ended, and not to be restarted.
                    ContainerState::Terminated { .. } => {}
                },
            }
        }
        if !plan.died.is_empty() {
            status.event(
                "Exited",
                format!(
                    "{} ended while tankd was down (exit status unknown)",
                    plan.died.join(", ")
                ),
            );
        }
        status.recompute_phase();
        let state = PodState {
            generation: record.generation,
            spec: spec.clone(),
            status,
            sandbox: None,
            restarts,
            busy: true,
            stopping: false,
            unclaimed: Vec::new(),
        };
        (state, plan)
    }

    /// Runs the loop forever. Under systemd it keeps STATUS= current and,
    /// when WatchdogSec is set, sends WATCHDOG=1 from the loop itself, so a
    /// stuck loop gets tankd restarted.
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.store.watch();
        let mut events = self.runtime.subscribe();
        let watchdog = sd_notify::watchdog_enabled().map(|interval| interval / 2);
        let mut last_status = String::new();
        loop {
            self.pass().await;
            let status = self.status_line().await;
            if status != last_status {
                crate::notify::send(format!("STATUS={status}"));
                last_status = status;
            }
            if watchdog.is_some() {
                crate::notify::send("WATCHDOG=1");
            }
            let ping = async {
                match watchdog {
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ping => {}
                _ = changes.changed() => {}
                _ = self.wake.notified() => {}
                event = events.recv() => match event {
                    Ok(event) => Arc::clone(&self).on_event(event).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(Duration::from_secs(self.config.resync_s)) => {
                    Arc::clone(&self).repair_drift().await;
                }
            }
        }
    }

    /// `N pods: R running, P pending, F failed` for systemd's STATUS=.
    async fn status_line(&self) -> String {
        let pods = self.pods.lock().await;
        let count = |phase: Phase| pods.values().filter(|s| s.status.phase == phase).count();
        format!(
            "{} pods: {} running, {} pending, {} succeeded, {} failed",
            pods.len(),
            count(Phase::Running),
            count(Phase::Pending),
            count(Phase::Succeeded),
            count(Phase::Failed)
        )
    }

    /// One level-triggered pass.
    async fn pass(self: &Arc<Self>) {
        let desired: Vec<PodRecord> = match self.store.list() {
            Ok(list) => list,
            Err(e) => {
                log::error!("reconcile: cannot read desired state: {e}");
                return;
            }
        };
        let mut pods = self.pods.lock().await;
        for record in &desired {
            let name = record.spec.name.clone();
            match pods.get_mut(&name) {
                None => {
                    let status = PodStatus::new(
                        record.generation,
                        record.spec.containers.iter().map(|c| c.name.clone()),
                    );
                    self.objects.hold(&name);
                    pods.insert(
                        name.clone(),
                        PodState {
                            generation: record.generation,
                            spec: record.spec.clone(),
                            status,
                            sandbox: None,
                            restarts: HashMap::new(),
                            busy: true,
                            stopping: false,
                            unclaimed: Vec::new(),
                        },
                    );
                    self.spawn_task(start_pod(Arc::clone(self), record.clone()));
                }
                Some(state)
                    if state.generation == record.generation
                        && state.sandbox.is_none()
                        && !state.busy
                        && !state.stopping =>
                {
                    state.busy = true;
                    self.spawn_task(start_pod(Arc::clone(self), record.clone()));
                }
                Some(state) if state.generation != record.generation && !state.busy => {
                    state.busy = true;
                    self.spawn_task(replace_pod(
                        Arc::clone(self),
                        state.spec.clone(),
                        record.clone(),
                    ));
                }
                Some(_) => {}
            }
        }
        let gone: Vec<String> = pods
            .iter()
            .filter(|(name, state)| !state.busy && !desired.iter().any(|r| &r.spec.name == *name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(state) = pods.get_mut(&name) {
                state.busy = true;
                state.status.phase = Phase::Terminating;
                self.spawn_task(delete_pod(Arc::clone(self), state.spec.clone()));
            }
        }
    }

    /// The periodic resync's drift repair, without restarting containers:
    /// cgroup limits changed from outside are set back, an unmounted netns
    /// pin is mounted again, NICs deleted or re-addressed inside a running
    /// pod's netns are put back. (A container killed from outside needs no
    /// resync: its pidfd reports the exit at once.)
    async fn repair_drift(self: Arc<Self>) {
        let pods: Vec<Pod> = {
            let pods = self.pods.lock().await;
            pods.values()
                .filter(|s| !s.busy && !s.stopping && s.sandbox.is_some())
                .map(|s| s.spec.clone())
                .collect()
        };
        for spec in pods {
            let runtime = Arc::clone(&self.runtime);
            let pod = spec.clone();
            let repaired = tokio::task::spawn_blocking(move || runtime.repair_drift(&pod))
                .await
                .unwrap_or_default();
            for repair in repaired {
                log::info!("{}: drift repaired: {repair}", spec.name);
                self.update(&spec.name, |s| s.event("DriftRepaired", repair))
                    .await;
            }
            if self.runtime.nics_drifted(&spec).await == Some(true) {
                log::info!("{}: network drifted, repairing", spec.name);
                match self.runtime.ensure_sandbox(&spec).await {
                    Ok(_) => {
                        self.update(&spec.name, |s| s.event("NetworkRepaired", "NICs restored"))
                            .await
                    }
                    Err(e) => {
                        let message = e.to_string();
                        self.update(&spec.name, |s| s.event("FailedRepair", message))
                            .await
                    }
                }
            }
        }
    }

    fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    /// A container exited: record it, then restart it per policy.
    async fn on_event(self: Arc<Self>, event: RuntimeEvent) {
        let RuntimeEvent::Exited {
            pod,
            container,
            pid,
            status,
            oom_killed,
            finished_at,
        } = event;
        let (exit_code, signal) = match status {
            Some(ExitStatus::Exited(code)) => (Some(code), None),
            Some(ExitStatus::Signaled(signal)) => (None, Some(signal)),
            None => (None, None),
        };
        let reason = if oom_killed {
            "OOMKilled"
        } else if status.is_none() {
            UNKNOWN_EXIT
        } else if exit_code == Some(0) {
            "Completed"
        } else {
            "Error"
        };
        let message = match (exit_code, signal) {
            (Some(code), _) => format!("{container} exited with code {code}"),
            (_, Some(sig)) => format!("{container} killed by signal {sig}"),
            _ => format!("{container} exited (status unknown: adopted from a previous tankd)"),
        };
        {
            let mut pods = self.pods.lock().await;
            let Some(state) = pods.get_mut(&pod) else {
                return;
            };
            let current = state.restarts.get(&container).and_then(|r| r.pid);
            if current != Some(pid) {
                // An earlier run's exit, or one that beat the record of its
                // start: keep it for start_container to claim.
                log::debug!("{pod}/{container}: exit of pid {pid} kept (current {current:?})");
                state.unclaimed.retain(
                    |e| matches!(e, RuntimeEvent::Exited { container: c, .. } if *c != container),
                );
                state.unclaimed.push(RuntimeEvent::Exited {
                    pod: pod.clone(),
                    container,
                    pid,
                    status,
                    oom_killed,
                    finished_at,
                });
                return;
            }
            let Some(c) = state.status.containers.get_mut(&container) else {
                return;
            };
            c.state = ContainerState::Terminated {
                exit_code,
                signal,
                reason: reason.to_owned(),
                finished_at: timestamp(finished_at),
            };
            state
                .status
                .event(if oom_killed { "OOMKilled" } else { "Exited" }, message);
            state.status.recompute_phase();
            self.publish(&pod, state).await;
        }
        self.after_exit(&pod, &container, exit_code != Some(0))
            .await;
    }

    /// The restart policy at work: decides whether and when `container`
    /// starts again, and schedules it.
    async fn after_exit(self: &Arc<Self>, pod: &str, container: &str, failed: bool) {
        let (generation, delay) = {
            let mut pods = self.pods.lock().await;
            let Some(state) = pods.get_mut(pod) else {
                return;
            };
            let restart = match state.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
            if !restart || state.stopping || state.status.phase == Phase::Terminating {
                return;
            }
            let stable = Duration::from_secs(self.config.stable_after_s);
            let restarts = state.restarts.entry(container.to_owned()).or_default();
            if restarts.started.is_some_and(|t| t.elapsed() >= stable) {
                restarts.streak = 0;
            }
            let delay = self.config.backoff(restarts.streak);
            restarts.streak = restarts.streak.saturating_add(1);
            if !delay.is_zero() {
                let message = format!(
                    "back-off {:.1}s restarting failed container {container}",
                    delay.as_secs_f64()
                );
                set_waiting(
                    &mut state.status,
                    container,
                    "CrashLoopBackOff",
                    Some(message.clone()),
                );
                state.status.event("BackOff", message);
                state.status.recompute_phase();
                self.publish(pod, state).await;
            }
            (state.generation, delay)
        };
        tokio::spawn(Arc::clone(self).restart(
            pod.to_owned(),
            container.to_owned(),
            generation,
            delay,
            true,
        ));
    }

    /// After `delay`, starts `container` again, unless its pod changed or
    /// is going away meanwhile. (A boxed future with a declared `Send`: it
    /// closes the cycle start → exit → restart → start.)
    /// `counts`: a restart of an exited container (counted), or a retry of
    /// a start that never happened (an image pull: not counted).
    fn restart(
        self: Arc<Self>,
        pod: String,
        container: String,
        generation: u64,
        delay: Duration,
        counts: bool,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let (spec, sandbox) = {
                let mut pods = self.pods.lock().await;
                let Some(state) = pods.get_mut(&pod) else {
                    return;
                };
                // The pod's own task (bring-up) is still at work: look again
                // a little later rather than racing it or giving up.
                if state.busy && !state.stopping && state.generation == generation {
                    let again = Arc::clone(&self).restart(
                        pod.clone(),
                        container.clone(),
                        generation,
                        Duration::from_millis(self.config.backoff_base_ms.max(50)),
                        counts,
                    );
                    tokio::spawn(again);
                    return;
                }
                // A replace or delete in progress owns the pod.
                if state.generation != generation
                    || state.busy
                    || state.stopping
                    || state.status.phase == Phase::Terminating
                    || self.runtime.is_running(&pod, &container)
                {
                    return;
                }
                let Some(sandbox) = state.sandbox.clone() else {
                    return;
                };
                if counts {
                    if let Some(c) = state.status.containers.get_mut(&container) {
                        c.restart_count += 1;
                    }
                }
                (state.spec.clone(), sandbox)
            };
            if let Some(c) = spec.container(&container) {
                self.start_container(&spec, c, &sandbox).await;
            }
        })
    }

    /// ImagePullBackOff: records the failure and retries the start after
    /// the backoff of its consecutive failed pulls (never immediately).
    async fn pull_failed(self: &Arc<Self>, spec: &Pod, container: &str, message: String) {
        let delay = {
            let mut pods = self.pods.lock().await;
            let Some(state) = pods.get_mut(&spec.name) else {
                return;
            };
            let restarts = state.restarts.entry(container.to_owned()).or_default();
            restarts.pull_failures = restarts.pull_failures.saturating_add(1);
            self.config.backoff(restarts.pull_failures)
        };
        let wait = format!("{message} (retrying in {:.1}s)", delay.as_secs_f64());
        self.update(&spec.name, |s| {
            set_waiting(s, container, "ImagePullBackOff", Some(wait));
            s.event("Failed", message);
        })
        .await;
        let generation = self.pods.lock().await.get(&spec.name).map(|s| s.generation);
        if let Some(generation) = generation {
            tokio::spawn(Arc::clone(self).restart(
                spec.name.clone(),
                container.to_owned(),
                generation,
                delay,
                false,
            ));
        }
    }

    /// Shows the status of `pod` on the bus and checkpoints it for a
    /// later tankd.
    async fn publish(&self, pod: &str, state: &PodState) {
        self.checkpoints.save(
            pod,
            &Checkpoint {
                boot_id: self.checkpoints.boot_id().to_owned(),
                generation: state.generation,
                status: state.status.clone(),
                streaks: state
                    .restarts
                    .iter()
                    .map(|(name, r)| (name.clone(), r.streak))
                    .collect(),
            },
        );
        if let Err(e) = self.objects.set_status(pod, &state.status).await {
            log::debug!("{pod}: status not published: {e}");
        }
    }

    /// Applies `change` to the status of `pod` and publishes it.
    async fn update(&self, pod: &str, change: impl FnOnce(&mut PodStatus)) {
        let mut pods = self.pods.lock().await;
        if let Some(state) = pods.get_mut(pod) {
            change(&mut state.status);
            state.status.recompute_phase();
            self.publish(pod, state).await;
        }
    }

    async fn finish(&self, pod: &str) {
        if let Some(state) = self.pods.lock().await.get_mut(pod) {
            state.busy = false;
        }
        self.wake.notify_one();
    }

    /// Image, sandbox and every container of `spec`.
    async fn bring_up(self: &Arc<Self>, spec: &Pod) {
        let sandbox: Sandbox = match self.runtime.ensure_sandbox(spec).await {
            Ok(sandbox) => sandbox,
            Err(e) => {
                // Facts only known at run time (a missing parent interface…):
                // reported, and retried by a later pass.
                let message = e.to_string();
                log::warn!("{}: sandbox: {message}", spec.name);
                self.update(&spec.name, |s| {
                    s.message = Some(message.clone());
                    s.event("FailedCreatePodSandBox", message);
                })
                .await;
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(SANDBOX_RETRY).await;
                    this.wake.notify_one();
                });
                return;
            }
        };
        let ips: Vec<String> = sandbox.ips.iter().map(|ip| ip.to_string()).collect();
        self.update(&spec.name, |s| {
            s.message = None;
            s.ips = ips;
        })
        .await;
        if let Some(state) = self.pods.lock().await.get_mut(&spec.name) {
            state.sandbox = Some(sandbox.clone());
        }
        for container in &spec.containers {
            self.start_container(spec, container, &sandbox).await;
        }
    }

    /// Image, config merge and start of one container; a failure is
    /// recorded in the status and goes through the restart policy.
    async fn start_container(
        self: &Arc<Self>,
        spec: &Pod,
        container: &Container,
        sandbox: &Sandbox,
    ) {
        let name = container.name.clone();
        let (rootfs, image_config) = match &container.image {
            Image::Rootfs(path) => (RootfsSource::Path(path.clone()), ImageConfig::default()),
            Image::Reference(reference) => {
                self.update(&spec.name, |s| {
                    set_waiting(s, &name, "Pulling", None);
                })
                .await;
                match self.images.ensure(reference).await {
                    Ok(record) => {
                        if let Some(state) = self.pods.lock().await.get_mut(&spec.name) {
                            state
                                .restarts
                                .entry(name.clone())
                                .or_default()
                                .pull_failures = 0;
                        }
                        let layers = self.images.layer_dirs(&record);
                        (RootfsSource::Layers(layers), record.config)
                    }
                    Err(e) => {
                        self.pull_failed(spec, &name, e.to_string()).await;
                        return;
                    }
                }
            }
        };
        let run = match merge(&image_config, container) {
            Ok(run) => run,
            Err(e) => {
                let message = e.to_string();
                self.update(&spec.name, |s| {
                    set_waiting(
                        s,
                        &name,
                        "CreateContainerConfigError",
                        Some(message.clone()),
                    );
                    s.event("Failed", message);
                })
                .await;
                return;
            }
        };
        match self
            .runtime
            .start(spec, container, &run, rootfs, sandbox)
            .await
        {
            Ok(started) => {
                let early_exit = match self.pods.lock().await.get_mut(&spec.name) {
                    Some(state) => {
                        let restarts = state.restarts.entry(name.clone()).or_default();
                        restarts.started = Some(Instant::now());
                        restarts.pid = Some(started.pid);
                        let position = state.unclaimed.iter().position(
                            |e| matches!(e, RuntimeEvent::Exited { pid, .. } if *pid == started.pid),
                        );
                        position.map(|i| state.unclaimed.remove(i))
                    }
                    None => None,
                };
                self.update(&spec.name, |s| {
                    if let Some(c) = s.containers.get_mut(&name) {
                        // An exit may already have been recorded.
                        if !matches!(c.state, ContainerState::Terminated { .. }) {
                            c.state = ContainerState::Running {
                                pid: started.pid,
                                started_at: timestamp(started.started_at),
                            };
                        }
                    }
                    s.event("Started", format!("started {name} (pid {})", started.pid));
                })
                .await;
                if let Some(event) = early_exit {
                    log::debug!("{}/{name}: claimed an early exit", spec.name);
                    Box::pin(Arc::clone(self).on_event(event)).await;
                }
            }
            // Someone else is starting it or it runs: nothing to do here.
            Err(RuntimeError::AlreadyRunning { .. }) => {}
            Err(e) => {
                let message = e.to_string();
                self.update(&spec.name, |s| {
                    if let Some(c) = s.containers.get_mut(&name) {
                        c.state = ContainerState::Terminated {
                            exit_code: Some(128),
                            signal: None,
                            reason: "StartError".to_owned(),
                            finished_at: timestamp(SystemTime::now()),
                        };
                    }
                    s.event("Failed", message);
                })
                .await;
                self.after_exit(&spec.name, &name, true).await;
            }
        }
    }

    /// Stops every container of `spec` (stop signal and grace period from
    /// the spec; the runtime knows the image's stop signal).
    async fn stop_containers(&self, spec: &Pod) {
        let grace = Duration::from_secs(u64::from(spec.stop_grace_period_s));
        let stops = spec.containers.iter().map(|c| {
            let signal = c.stop_signal.map(Into::into);
            self.runtime.stop(&spec.name, &c.name, signal, grace)
        });
        for (result, container) in futures_util::future::join_all(stops)
            .await
            .into_iter()
            .zip(&spec.containers)
        {
            if let Err(e) = result {
                log::error!("{}/{}: stop failed: {e}", spec.name, container.name);
            }
        }
    }
}

impl Reconciler {
    async fn set_stopping(&self, pod: &str, stopping: bool) {
        if let Some(state) = self.pods.lock().await.get_mut(pod) {
            state.stopping = stopping;
        }
    }
}

fn set_waiting(status: &mut PodStatus, container: &str, reason: &str, message: Option<String>) {
    if let Some(c) = status.containers.get_mut(container) {
        c.state = ContainerState::Waiting {
            reason: reason.to_owned(),
            message,
        };
    }
}

/// Reason of a container whose exit status is unknown (it ended while
/// tankd was down, or was adopted): kubelet's name for it.
const UNKNOWN_EXIT: &str = "ContainerStatusUnknown";

/// What is left to do for the containers of a pod taken over from a
/// previous tankd that were not adopted.
#[derive(Debug, Default)]
struct Resume {
    /// Were running, ended while tankd was down: the restart policy decides.
    died: Vec<String>,
    /// Were waiting to start: (name, whether the start counts as a restart).
    waiting: Vec<(String, bool)>,
}

/// When something that started at `t` started, on the monotonic clock.
fn since(t: SystemTime) -> Option<Instant> {
    Instant::now().checked_sub(SystemTime::now().duration_since(t).unwrap_or_default())
}

/// A pod taken over from a previous tankd: its sandbox found (and repaired
/// if needed), then its containers that did not survive go through the
/// restart policy.
async fn resume_pod(this: Arc<Reconciler>, spec: Pod, plan: Resume) {
    match this.runtime.ensure_sandbox(&spec).await {
        Ok(sandbox) => {
            let ips: Vec<String> = sandbox.ips.iter().map(|ip| ip.to_string()).collect();
            if let Some(state) = this.pods.lock().await.get_mut(&spec.name) {
                state.sandbox = Some(sandbox);
            }
            this.update(&spec.name, |s| {
                s.message = None;
                s.ips = ips;
            })
            .await;
        }
        Err(e) => {
            // The next pass brings it up like a new pod (starting what does
            // not run).
            log::warn!("{}: sandbox of an adopted pod: {e}", spec.name);
            this.finish(&spec.name).await;
            return;
        }
    }
    this.finish(&spec.name).await;
    let generation = spec_generation(&this, &spec.name).await;
    for container in plan.died {
        this.after_exit(&spec.name, &container, true).await;
    }
    for (container, counts) in plan.waiting {
        if let Some(generation) = generation {
            tokio::spawn(Arc::clone(&this).restart(
                spec.name.clone(),
                container,
                generation,
                Duration::ZERO,
                counts,
            ));
        }
    }
}

async fn spec_generation(this: &Reconciler, pod: &str) -> Option<u64> {
    this.pods.lock().await.get(pod).map(|s| s.generation)
}

async fn start_pod(this: Arc<Reconciler>, record: PodRecord) {
    this.bring_up(&record.spec).await;
    this.finish(&record.spec.name).await;
}

async fn replace_pod(this: Arc<Reconciler>, old: Pod, record: PodRecord) {
    this.set_stopping(&old.name, true).await;
    this.stop_containers(&old).await;
    if old.network != record.spec.network {
        if let Err(e) = this.runtime.remove_sandbox(&old.name).await {
            log::warn!("{}: {e}", old.name);
        }
    }
    {
        let mut pods = this.pods.lock().await;
        if let Some(state) = pods.get_mut(&record.spec.name) {
            let mut status = PodStatus::new(
                record.generation,
                record.spec.containers.iter().map(|c| c.name.clone()),
            );
            status.events = std::mem::take(&mut state.status.events);
            status.event("Replaced", format!("generation {}", record.generation));
            state.status = status;
            state.generation = record.generation;
            state.spec = record.spec.clone();
            state.restarts.clear();
            state.stopping = false;
            if old.network != record.spec.network {
                state.sandbox = None;
            }
        }
    }
    this.bring_up(&record.spec).await;
    this.finish(&record.spec.name).await;
}

async fn delete_pod(this: Arc<Reconciler>, spec: Pod) {
    this.set_stopping(&spec.name, true).await;
    this.stop_containers(&spec).await;
    if let Err(e) = this.runtime.remove_sandbox(&spec.name).await {
        log::error!("{}: cannot remove sandbox: {e}", spec.name);
    }
    this.pods.lock().await.remove(&spec.name);
    this.checkpoints.remove(&spec.name);
    log::info!("{}: stopped and removed", spec.name);
    if let Err(e) = this.objects.release(&spec.name, &this.store).await {
        log::warn!("{}: pod object not released: {e}", spec.name);
    }
    this.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
