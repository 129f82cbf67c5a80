//! What the reconcile loop does to the world, behind one trait.
//!
//! [`Effects`] is every action the loop takes outside itself: images,
//! sandboxes, containers, drift repair, publishing status (the bus and the
//! checkpoint file) and adoption after a restart. [`TankEffects`] is the
//! real one over [`Runtime`], [`Images`] and a [`StatusPublisher`] (the
//! bus's pod objects implement it: the loop knows nothing of D-Bus); unit
//! tests of the driver use a recording double. This module decides nothing: the
//! machine ([`super::machine`]) decides, the driver calls these.
//!
//! Every method that can block (file I/O, cgroup writes) does it off the
//! async workers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::checkpoint::{Checkpoint, Checkpoints};
use super::policy::ExitKind;
use crate::image::runconfig::{merge, ImageConfig};
use crate::image::Images;
use crate::runtime::manager::{
    RootfsSource, Runtime, RuntimeError, RuntimeEvent, Sandbox, Started,
};
use crate::store::Store;
use tank_api::exit::ExitStatus;
use tank_api::spec::{Image, Pod, StopSignal};
use tank_api::status::PodStatus;

/// An image made ready for a container: its root filesystem and config.
#[derive(Debug, Clone)]
pub struct ImageReady {
    pub rootfs: RootfsSource,
    pub config: ImageConfig,
}

/// Why a start did not happen.
#[derive(Debug, Clone)]
pub enum StartError {
    /// The spec and the image config do not make a process
    /// (CreateContainerConfigError): retried with backoff.
    Config(String),
    /// The runtime failed (StartError): a failed run for the restart policy.
    Runtime(String),
    /// It runs already (adopted meanwhile): this is it.
    AlreadyRunning(Started),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    pub kind: ExitKind,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub finished_at: SystemTime,
}

impl Exit {
    /// The exit the runtime reported.
    pub fn of(event: &RuntimeEvent) -> (String, String, Exit) {
        let RuntimeEvent::Exited {
            pod,
            container,
            pid,
            status,
            oom_killed,
            finished_at,
        } = event;
        let (code, signal) = match status {
            Some(ExitStatus::Exited(code)) => (Some(*code), None),
            Some(ExitStatus::Signaled(signal)) => (None, Some(*signal)),
            None => (None, None),
        };
        let kind = if *oom_killed {
            ExitKind::OomKilled
        } else {
            match status {
                None => ExitKind::Unknown,
                Some(ExitStatus::Exited(0)) => ExitKind::Succeeded,
                Some(ExitStatus::Exited(_)) => ExitKind::Failed,
                Some(ExitStatus::Signaled(_)) => ExitKind::Signaled,
            }
        };
        (
            pod.clone(),
            container.clone(),
            Exit {
                pid: *pid,
                kind,
                code,
                signal,
                finished_at: *finished_at,
            },
        )
    }

    /// An exit the loop did not see (the runtime no longer has the process).
    pub fn unknown(pid: u32) -> Exit {
        Exit {
            pid,
            kind: ExitKind::Unknown,
            code: None,
            signal: None,
            finished_at: SystemTime::now(),
        }
    }
}

/// Everything the reconcile loop does outside itself.
pub trait Effects: Send + Sync + 'static {
    /// The pod is on the machine: its bus object outlives a delete until
    /// [`Effects::release`].
    fn hold(&self, pod: &str);
    fn ensure_image(
        &self,
        image: &Image,
    ) -> impl Future<Output = Result<ImageReady, String>> + Send;
    fn make_sandbox(&self, pod: &Pod) -> impl Future<Output = Result<Sandbox, String>> + Send;
    fn start(
        &self,
        pod: &Pod,
        container: &str,
        image: &ImageReady,
        sandbox: &Sandbox,
    ) -> impl Future<Output = Result<Started, StartError>> + Send;
    /// Stops a container (`signal`, else its own stop signal; SIGKILL
    /// after `grace`) and returns once it is torn down.
    fn stop(
        &self,
        pod: &str,
        container: &str,
        grace: Duration,
        signal: Option<StopSignal>,
    ) -> impl Future<Output = ()> + Send;
    fn remove_sandbox(&self, pod: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Repairs drift; returns the events to record (reason, message).
    fn repair_drift(&self, pod: &Pod) -> impl Future<Output = Vec<(String, String)>> + Send;
    /// The pid of a container the runtime has running.
    fn running_pid(&self, pod: &str, container: &str) -> Option<u32>;
    /// Shows `status` on the bus and checkpoints it.
    fn publish(
        &self,
        pod: &str,
        status: &PodStatus,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = ()> + Send;
    /// The pod is gone: its object goes (unless declared again) and its
    /// checkpoint.
    fn release(&self, pod: &str) -> impl Future<Output = ()> + Send;
    /// This boot's id, for checkpoints.
    fn boot_id(&self) -> String;
    /// Tells systemd (`WATCHDOG=1`, `STATUS=…`).
    fn notify(&self, message: &str);
    /// The checkpoints a previous tankd left in this boot.
    fn load_checkpoints(&self) -> impl Future<Output = BTreeMap<String, Checkpoint>> + Send;
    /// Takes over a container a previous tankd started, if it still runs.
    fn adopt(&self, pod: &str, container: &str) -> Option<Started>;
    /// Removes everything on the machine that belongs to no pod in `keep`
    /// (and containers of kept pods that were not adopted).
    fn remove_leftovers(&self, keep: &[String]) -> impl Future<Output = ()> + Send;
}

/// Where the observed status of pods is shown: the pod objects on the bus
/// (`bus::pod::PodObjects`), wired in by the daemon.
pub trait StatusPublisher: Send + Sync + 'static {
    type Error: std::fmt::Display + Send;
    /// The reconciler has `pod` on the machine: its object outlives a
    /// delete from the store until [`StatusPublisher::release`].
    fn hold(&self, pod: &str);
    /// Shows `status` as the pod's observed status (a pod that is not
    /// shown, e.g. deleted, is ignored).
    fn set_status(
        &self,
        pod: &str,
        status: &PodStatus,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The reconciler is done with `pod`: its object goes unless the pod
    /// is declared (again) in `store`.
    fn release(
        &self,
        pod: &str,
        store: &Store,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The real effects; `P` shows the pods' status.
pub struct TankEffects<P> {
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub runtime: Arc<Runtime>,
    pub objects: Arc<P>,
    pub checkpoints: Arc<Checkpoints>,
}

impl<P: StatusPublisher> TankEffects<P> {
    pub fn new(
        store: Arc<Store>,
        images: Arc<Images>,
        runtime: Arc<Runtime>,
        objects: Arc<P>,
    ) -> TankEffects<P> {
        TankEffects {
            checkpoints: Arc::new(Checkpoints::new(runtime.run_dir())),
            store,
            images,
            runtime,
            objects,
        }
    }
}

impl<P: StatusPublisher> Effects for TankEffects<P> {
    fn hold(&self, pod: &str) {
        self.objects.hold(pod);
    }

    async fn ensure_image(&self, image: &Image) -> Result<ImageReady, String> {
        match image {
            Image::Rootfs(path) => Ok(ImageReady {
                rootfs: RootfsSource::Path(path.clone()),
                config: ImageConfig::default(),
            }),
            Image::Reference(reference) => {
                let record = self
                    .images
                    .ensure(reference)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ImageReady {
                    rootfs: RootfsSource::Layers(self.images.layer_dirs(&record)),
                    config: record.config,
                })
            }
        }
    }

    async fn make_sandbox(&self, pod: &Pod) -> Result<Sandbox, String> {
        self.runtime
            .ensure_sandbox(pod)
            .await
            .map_err(|e| e.to_string())
    }

    async fn start(
        &self,
        pod: &Pod,
        container: &str,
        image: &ImageReady,
        sandbox: &Sandbox,
    ) -> Result<Started, StartError> {
        let Some(spec) = pod.container(container) else {
            return Err(StartError::Config(format!("no container {container}")));
        };
        let run = merge(&image.config, spec).map_err(|e| StartError::Config(e.to_string()))?;
        match self
            .runtime
            .start(pod, spec, &run, image.rootfs.clone(), sandbox)
            .await
        {
            Ok(started) => Ok(started),
            Err(RuntimeError::AlreadyRunning { .. }) => {
                match self.runtime.pid(&pod.name, container) {
                    Some(pid) => Err(StartError::AlreadyRunning(Started {
                        pid,
                        started_at: SystemTime::now(),
                    })),
                    None => Err(StartError::Runtime(format!(
                        "{}/{container} is being started elsewhere",
                        pod.name
                    ))),
                }
            }
            Err(e) => Err(StartError::Runtime(e.to_string())),
        }
    }

    async fn stop(&self, pod: &str, container: &str, grace: Duration, signal: Option<StopSignal>) {
        let signal = signal.map(StopSignal::signal);
        if let Err(e) = self.runtime.stop(pod, container, signal, grace).await {
            log::error!("{pod}/{container}: stop failed: {e}");
        }
    }

    async fn remove_sandbox(&self, pod: &str) -> Result<(), String> {
        self.runtime
            .remove_sandbox(pod)
            .await
            .map_err(|e| e.to_string())
    }

    async fn repair_drift(&self, pod: &Pod) -> Vec<(String, String)> {
        let runtime = Arc::clone(&self.runtime);
        let spec = pod.clone();
        let mut events: Vec<(String, String)> =
            tokio::task::spawn_blocking(move || runtime.repair_drift(&spec))
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|repair| {
                    log::info!("{}: drift repaired: {repair}", pod.name);
                    ("DriftRepaired".to_owned(), repair)
                })
                .collect();
        if self.runtime.nics_drifted(pod).await == Some(true) {
            log::info!("{}: network drifted, repairing", pod.name);
            events.push(match self.runtime.ensure_sandbox(pod).await {
                Ok(_) => ("NetworkRepaired".to_owned(), "NICs restored".to_owned()),
                Err(e) => ("FailedRepair".to_owned(), e.to_string()),
            });
        }
        events
    }

    fn running_pid(&self, pod: &str, container: &str) -> Option<u32> {
        self.runtime.pid(pod, container)
    }

    async fn publish(&self, pod: &str, status: &PodStatus, checkpoint: &Checkpoint) {
        let checkpoints = Arc::clone(&self.checkpoints);
        let (name, checkpoint) = (pod.to_owned(), checkpoint.clone());
        let _ = tokio::task::spawn_blocking(move || checkpoints.save(&name, &checkpoint)).await;
        if let Err(e) = self.objects.set_status(pod, status).await {
            log::debug!("{pod}: status not published: {e}");
        }
    }

    async fn release(&self, pod: &str) {
        let checkpoints = Arc::clone(&self.checkpoints);
        let name = pod.to_owned();
        let _ = tokio::task::spawn_blocking(move || checkpoints.remove(&name)).await;
        log::info!("{pod}: stopped and removed");
        if let Err(e) = self.objects.release(pod, &self.store).await {
            log::warn!("{pod}: pod object not released: {e}");
        }
    }

    fn boot_id(&self) -> String {
        self.checkpoints.boot_id().to_owned()
    }

    fn notify(&self, message: &str) {
        crate::notify::send(message.to_owned());
    }

    async fn load_checkpoints(&self) -> BTreeMap<String, Checkpoint> {
        let checkpoints = Arc::clone(&self.checkpoints);
        tokio::task::spawn_blocking(move || checkpoints.load_all())
            .await
            .unwrap_or_default()
    }

    fn adopt(&self, pod: &str, container: &str) -> Option<Started> {
        self.runtime.adopt(pod, container)
    }

    async fn remove_leftovers(&self, keep: &[String]) {
        let runtime = Arc::clone(&self.runtime);
        let cgroups_done = tokio::task::spawn_blocking(move || {
            let cgroups = runtime.cgroups();
            for (pod, container) in cgroups.list().unwrap_or_default() {
                if runtime.is_running(&pod, &container) {
                    continue;
                }
                if let Ok(Some(cgroup)) = cgroups.open(&pod, &container) {
                    log::info!("{pod}/{container}: removing leftover of a previous tankd");
                    let _ = cgroup.kill_all();
                    let _ = cgroup.delete();
                }
            }
            runtime.pods_on_machine().unwrap_or_default()
        })
        .await;
        for pod in cgroups_done.unwrap_or_default() {
            if keep.contains(&pod) {
                continue;
            }
            if let Err(e) = self.runtime.remove_sandbox(&pod).await {
                log::warn!("{pod}: cannot remove leftover sandbox: {e}");
            }
        }
        let checkpoints = Arc::clone(&self.checkpoints);
        let keep = keep.to_vec();
        let _ = tokio::task::spawn_blocking(move || {
            for pod in checkpoints.load_all().keys() {
                if !keep.contains(pod) {
                    checkpoints.remove(pod);
                }
            }
        })
        .await;
    }
}
