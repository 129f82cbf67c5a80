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

pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Notify};

use crate::bus::pod::PodObjects;
use crate::image::runconfig::{merge, ImageConfig};
use crate::image::Images;
use crate::runtime::manager::{RootfsSource, Runtime, RuntimeEvent, Sandbox};
use crate::runtime::spawn::ExitStatus;
use crate::spec::{Image, Pod};
use crate::store::{PodRecord, Store};
use status::{timestamp, ContainerState, Phase, PodStatus};

/// Interval of the drift-detecting resync (no polling in between).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);

struct PodState {
    generation: u64,
    spec: Pod,
    status: PodStatus,
    /// A task is acting on this pod; the next pass looks again after it.
    busy: bool,
}

pub struct Reconciler {
    store: Arc<Store>,
    images: Arc<Images>,
    runtime: Arc<Runtime>,
    objects: Arc<PodObjects>,
    pods: Mutex<HashMap<String, PodState>>,
    wake: Notify,
    resync: Duration,
}

impl Reconciler {
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        runtime: Arc<Runtime>,
        objects: Arc<PodObjects>,
        resync: Duration,
    ) -> Arc<Reconciler> {
        Arc::new(Reconciler {
            store,
            images,
            runtime,
            objects,
            pods: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            resync,
        })
    }

    /// Removes what a previous tankd left on the machine (containers,
    /// cgroups, namespaces, scratch): the loop then starts every declared
    /// pod afresh.
    pub async fn clean_leftovers(&self) {
        let cgroups = self.runtime.cgroups();
        if let Ok(list) = cgroups.list() {
            for (pod, container) in list {
                if let Ok(Some(cgroup)) = cgroups.open(&pod, &container) {
                    log::info!("{pod}/{container}: removing leftover of a previous tankd");
                    let _ = cgroup.kill_all();
                    let _ = cgroup.delete();
                }
            }
        }
        for pod in self.runtime.pods_on_machine().unwrap_or_default() {
            if let Err(e) = self.runtime.remove_sandbox(&pod).await {
                log::warn!("{pod}: cannot remove leftover sandbox: {e}");
            }
        }
    }

    /// Runs the loop forever.
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.store.watch();
        let mut events = self.runtime.subscribe();
        loop {
            self.pass().await;
            tokio::select! {
                _ = changes.changed() => {}
                _ = self.wake.notified() => {}
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(self.resync) => {}
            }
        }
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
                    pods.insert(
                        name.clone(),
                        PodState {
                            generation: record.generation,
                            spec: record.spec.clone(),
                            status,
                            busy: true,
                        },
                    );
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

    fn spawn_task(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    /// A container exited: record it.
    async fn on_event(&self, event: RuntimeEvent) {
        let RuntimeEvent::Exited {
            pod,
            container,
            status,
            oom_killed,
            finished_at,
            ..
        } = event;
        let mut pods = self.pods.lock().await;
        let Some(state) = pods.get_mut(&pod) else {
            return;
        };
        let Some(c) = state.status.containers.get_mut(&container) else {
            return;
        };
        let (exit_code, signal) = match status {
            ExitStatus::Exited(code) => (Some(code), None),
            ExitStatus::Signaled(signal) => (None, Some(signal)),
        };
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == Some(0) {
            "Completed"
        } else {
            "Error"
        };
        c.state = ContainerState::Terminated {
            exit_code,
            signal,
            reason: reason.to_owned(),
            finished_at: timestamp(finished_at),
        };
        let message = match (exit_code, signal) {
            (Some(code), _) => format!("{container} exited with code {code}"),
            (_, Some(sig)) => format!("{container} killed by signal {sig}"),
            _ => format!("{container} exited"),
        };
        state
            .status
            .event(if oom_killed { "OOMKilled" } else { "Exited" }, message);
        state.status.recompute_phase();
        self.publish(&pod, &state.status).await;
    }

    async fn publish(&self, pod: &str, status: &PodStatus) {
        if let Err(e) = self.objects.set_status(pod, status).await {
            log::debug!("{pod}: status not published: {e}");
        }
    }

    /// Applies `change` to the status of `pod` and publishes it.
    async fn update(&self, pod: &str, change: impl FnOnce(&mut PodStatus)) {
        let mut pods = self.pods.lock().await;
        if let Some(state) = pods.get_mut(pod) {
            change(&mut state.status);
            state.status.recompute_phase();
            self.publish(pod, &state.status).await;
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
        let sandbox: Sandbox = match self.runtime.ensure_sandbox(spec, &[]).await {
            Ok(sandbox) => sandbox,
            Err(e) => {
                let message = e.to_string();
                self.update(&spec.name, |s| {
                    s.message = Some(message.clone());
                    s.event("FailedCreatePodSandBox", message);
                })
                .await;
                return;
            }
        };
        for container in &spec.containers {
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
                            let layers = self.images.layer_dirs(&record);
                            (RootfsSource::Layers(layers), record.config)
                        }
                        Err(e) => {
                            let message = e.to_string();
                            self.update(&spec.name, |s| {
                                set_waiting(s, &name, "ImagePullBackOff", Some(message.clone()));
                                s.event("Failed", message);
                            })
                            .await;
                            continue;
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
                    continue;
                }
            };
            match self
                .runtime
                .start(spec, container, &run, rootfs, &sandbox)
                .await
            {
                Ok(started) => {
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
                }
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
                }
            }
        }
    }

    /// Stops every container of `spec` (grace period from the spec).
    async fn stop_containers(&self, spec: &Pod) {
        let grace = Duration::from_secs(u64::from(spec.stop_grace_period_s));
        let stops = spec
            .containers
            .iter()
            .map(|c| self.runtime.stop(&spec.name, &c.name, grace));
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

fn set_waiting(status: &mut PodStatus, container: &str, reason: &str, message: Option<String>) {
    if let Some(c) = status.containers.get_mut(container) {
        c.state = ContainerState::Waiting {
            reason: reason.to_owned(),
            message,
        };
    }
}

async fn start_pod(this: Arc<Reconciler>, record: PodRecord) {
    this.bring_up(&record.spec).await;
    this.finish(&record.spec.name).await;
}

async fn replace_pod(this: Arc<Reconciler>, old: Pod, record: PodRecord) {
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
        }
    }
    this.bring_up(&record.spec).await;
    this.finish(&record.spec.name).await;
}

async fn delete_pod(this: Arc<Reconciler>, spec: Pod) {
    this.stop_containers(&spec).await;
    if let Err(e) = this.runtime.remove_sandbox(&spec.name).await {
        log::error!("{}: cannot remove sandbox: {e}", spec.name);
    }
    this.pods.lock().await.remove(&spec.name);
    log::info!("{}: stopped and removed", spec.name);
    this.wake.notify_one();
}
