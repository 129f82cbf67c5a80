//! `org.tank.Manager` at `/org/tank/Manager`: the desired-state API.
//!
//! Owns the methods clients call to declare pods (Apply, Delete) and read
//! them (Get, ListPods). Each mutating method authorizes the caller first
//! (an [`auth::Request`](super::auth::Request) naming what the call is
//! about, for polkit rules), validates completely, then writes the store in
//! one synced step, so bad input changes nothing. What the request names is
//! read before authorization but its errors come after: an unauthorized
//! caller gets AccessDenied whatever it sent. It never acts on the machine:
//! the reconciler converges reality to what this interface writes.

use std::sync::Arc;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedObjectPath;

use super::auth::{Authorizer, Request, Verb};
use super::error::BusError;
use super::images::{images_in_use, in_use_set, list_row};
use super::pod::{container_detail, redacted, PodObjects};
use super::text::BusText;
use crate::image::Images;
use crate::runtime::manager::Runtime;
use crate::store::{PodRecord, Store};
use tank_api::bus::path::pod_path;
use tank_api::spec::Pod;
use tank_api::status::{Observed, Phase, PodDocument, PodStatus};

pub struct Manager {
    store: Arc<Store>,
    objects: Arc<PodObjects>,
    images: Arc<Images>,
    runtime: Arc<Runtime>,
    auth: Authorizer,
}

impl Manager {
    pub fn new(
        store: Arc<Store>,
        objects: Arc<PodObjects>,
        images: Arc<Images>,
        runtime: Arc<Runtime>,
        auth: Authorizer,
    ) -> Manager {
        Manager {
            store,
            objects,
            images,
            runtime,
            auth,
        }
    }

    /// Runs a blocking store operation off the async workers (writes fsync).
    async fn with_store<T, F>(&self, op: F) -> Result<T, BusError>
    where
        F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| BusError::Failed(format!("store task failed: {e}")))?
            .map_err(BusError::from)
    }

    /// The container a call about container `name` of `pod` goes to, as
    /// the details of its authorization name it ([`container_detail`]).
    /// Exec and Attach then ask for exactly that container, so the
    /// authorization holds for what runs even if the pod changes meanwhile.
    /// Store errors leave it as given: the call reports them itself.
    async fn resolved_container(&self, pod: &str, name: &str) -> Option<String> {
        let key = pod.to_owned();
        let record = self.with_store(move |store| store.get(&key)).await;
        let declared = record.as_ref().ok().and_then(Option::as_ref);
        container_detail(declared.map(|r| &r.spec), name)
    }
}

#[zbus::interface(name = "org.tank.Manager")]
impl Manager {
    /// Declares a pod: `spec` is its JSON document (at most 256 KiB, also
    /// as canonical JSON). Returns the pod's object path. Re-applying an
    /// identical spec changes nothing. Only root may declare an
    /// `unconfined` container (no seccomp filter).
    #[zbus(out_args("pod"))]
    async fn apply(
        &self,
        #[zbus(header)] header: Header<'_>,
        spec: &str,
    ) -> Result<OwnedObjectPath, BusError> {
        let parsed = Pod::from_json(spec);
        let request = Request::new(Verb::Apply).pod(parsed.as_ref().map_or("", |p| &p.name));
        self.auth.check(&header, &request).await?;
        let pod = parsed?;
        if !pod.unconfined_containers().is_empty() {
            let uid = self.auth.caller_uid(&header).await?;
            super::auth::may_declare(uid, &pod)?;
        }
        let name = pod.name.clone();
        let applied = self.with_store(move |store| store.apply(pod)).await?;
        if applied.changed {
            log::info!(
                "pod {name}: applied generation {}",
                applied.record.generation
            );
        }
        self.objects.sync(&self.store).await?;
        Ok(pod_path(&name))
    }

    /// The stored pod as a JSON document (name, generation, timestamps,
    /// phase, spec). Env values are redacted unless the caller may manage
    /// pods.
    #[zbus(out_args("pod"))]
    async fn get(
        &self,
        #[zbus(header)] header: Header<'_>,
        name: &str,
    ) -> Result<BusText, BusError> {
        let key = name.to_owned();
        let record: PodRecord = match self.with_store(move |store| store.get(&key)).await? {
            Some(record) => record,
            // Deleted, still terminating: its last declared record.
            None => self
                .objects
                .record(name)
                .await
                .ok_or_else(|| BusError::pod_not_found(name))?,
        };
        let request = Request::new(Verb::Get).pod(name);
        let spec = if self.auth.allows(&header, &request).await {
            record.spec.clone()
        } else {
            redacted(&record.spec)
        };
        let (phase, status) = self
            .objects
            .observed(name)
            .await
            .unwrap_or_else(|| (Phase::Pending, "{}".to_owned()));
        let document = PodDocument {
            name: name.to_owned(),
            generation: record.generation,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            phase,
            status: Observed(PodStatus::from_property(&status).unwrap_or(None)),
            spec,
        };
        Ok(document.to_json().into())
    }

    /// Every declared pod: (name, object path, phase), ordered by name.
    #[zbus(out_args("pods"))]
    async fn list_pods(&self) -> Vec<(BusText, OwnedObjectPath, BusText)> {
        self.objects
            .phases()
            .await
            .into_iter()
            .map(|(name, phase)| {
                let path = pod_path(&name);
                (name.into(), path, phase.as_str().into())
            })
            .collect()
    }

    /// Removes a pod from desired state; its containers are then stopped.
    /// The pod object stays, in phase Terminating, until they are gone.
    async fn delete(&self, #[zbus(header)] header: Header<'_>, name: &str) -> Result<(), BusError> {
        let request = Request::new(Verb::Delete).pod(name);
        self.auth.check(&header, &request).await?;
        let key = name.to_owned();
        if self
            .with_store(move |store| store.delete(&key))
            .await?
            .is_none()
        {
            return Err(BusError::pod_not_found(name));
        }
        log::info!("pod {name}: deleted");
        self.objects.sync(&self.store).await?;
        Ok(())
    }

    /// Pulls an image from its registry (a cached image refetches only its
    /// manifest). Returns the normalized reference and manifest digest.
    /// PullProgress signals report the layers meanwhile.
    #[zbus(out_args("reference", "digest"))]
    async fn pull_image(
        &self,
        #[zbus(header)] header: Header<'_>,
        reference: &str,
    ) -> Result<(BusText, BusText), BusError> {
        let normalized = crate::image::reference::normalize(reference);
        let request = Request::new(Verb::Pull).image(normalized.as_deref().ok());
        self.auth.check(&header, &request).await?;
        let record = self.images.pull(reference).await?;
        Ok((
            record.reference.into(),
            record.manifest_digest.to_string().into(),
        ))
    }

    /// Every image Tank has: (reference, manifest digest, platform, size of
    /// the layer blobs in bytes, when it was stored in µs since the epoch).
    #[zbus(out_args("images"))]
    async fn list_images(&self) -> Result<Vec<super::images::ImageRow>, BusError> {
        let images = Arc::clone(&self.images);
        let records = tokio::task::spawn_blocking(move || images.list())
            .await
            .map_err(|e| BusError::Failed(e.to_string()))??;
        Ok(records.iter().map(list_row).collect())
    }

    /// Removes an image (and the layers and blobs nothing else uses).
    /// Refused with org.tank.Error.InUse while a declared pod uses it.
    async fn remove_image(
        &self,
        #[zbus(header)] header: Header<'_>,
        reference: &str,
    ) -> Result<(), BusError> {
        let normalized = crate::image::reference::normalize(reference);
        let request = Request::new(Verb::RemoveImage).image(normalized.as_deref().ok());
        self.auth.check(&header, &request).await?;
        let normalized = normalized?;
        let users = self
            .with_store(|store| Ok(images_in_use(store)))
            .await??
            .remove(&normalized)
            .unwrap_or_default();
        self.images.remove(&normalized, &users).await?;
        log::info!("image {normalized} removed");
        Ok(())
    }

    /// Removes every image no declared pod uses, then every layer and blob
    /// no image uses. Returns the removed references and the bytes freed.
    #[zbus(out_args("removed", "bytes"))]
    async fn prune_images(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(Vec<BusText>, u64), BusError> {
        self.auth.check(&header, &Request::new(Verb::Prune)).await?;
        let in_use = self.with_store(|store| Ok(in_use_set(store))).await??;
        let report = self.images.prune(&in_use).await?;
        log::info!(
            "pruned {} images, {} layers, {} blobs",
            report.images.len(),
            report.layers,
            report.blobs
        );
        Ok((
            report.images.into_iter().map(BusText::from).collect(),
            report.bytes,
        ))
    }

    /// Imports the images of an OCI image-layout tar read from `archive`
    /// (a file or pipe). Returns the references imported.
    #[zbus(out_args("references"))]
    async fn import_image(
        &self,
        #[zbus(header)] header: Header<'_>,
        archive: zbus::zvariant::OwnedFd,
    ) -> Result<Vec<BusText>, BusError> {
        self.auth
            .check(&header, &Request::new(Verb::Import))
            .await?;
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(archive));
        let records = self.images.import(file).await?;
        let references: Vec<String> = records.into_iter().map(|r| r.reference).collect();
        log::info!("imported {}", references.join(", "));
        Ok(references.into_iter().map(BusText::from).collect())
    }

    /// Download progress of one layer of a pull.
    #[zbus(signal)]
    pub async fn pull_progress(
        emitter: &SignalEmitter<'_>,
        reference: BusText,
        layer: BusText,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;

    /// A container's output (CRI log records: `<time> <stream> <F|P>
    /// <text>`) on the read end of a pipe: the last `tail` records (0 =
    /// all), and with `follow` every later one of the container's current
    /// run, until that run has ended (the container exited and its output
    /// was drained; at once when it is not running) or the reader closes
    /// the pipe. `container` may be empty for a pod with one container.
    /// Needs org.tank.pods.logs.
    #[zbus(out_args("log"))]
    async fn logs(
        &self,
        #[zbus(header)] header: Header<'_>,
        pod: &str,
        container: &str,
        follow: bool,
        tail: u32,
    ) -> Result<zbus::zvariant::OwnedFd, BusError> {
        let key = pod.to_owned();
        let record = self.with_store(move |store| store.get(&key)).await;
        let declared = record.as_ref().ok().and_then(Option::as_ref);
        let request = Request::new(Verb::Logs)
            .pod(pod)
            .container(container_detail(declared.map(|r| &r.spec), container).as_deref());
        self.auth.check(&header, &request).await?;
        let record = record?.ok_or_else(|| BusError::pod_not_found(pod))?;
        let container = super::pod::pick_container(&record.spec, container)?;
        let path = self.runtime.log_path(pod, &container);
        let sink = self.runtime.log_sink(pod, &container);
        let fd = super::logs::stream(path, sink, tail as usize, follow)
            .await
            .map_err(|e| BusError::Failed(format!("log pipe: {e}")))?;
        Ok(fd.into())
    }

    /// Starts `argv` in the running container (`""`: the pod's only one)
    /// as a second process: the container's namespaces, cgroup, user,
    /// capabilities, env (+ `TERM=xterm` with a tty) and working directory.
    /// `opts`: `tty` (b), `env` (as, `K=V` over the container's), `cwd`
    /// (s), `rows`/`cols` (q, initial PTY size), `stdin`/`stdout`/`stderr`
    /// (h, without a tty; `/dev/null` where absent). Returns the PTY master
    /// (`/dev/null` without a tty) and a status pipe that delivers `exited
    /// N` / `signaled N`. Needs org.tank.pods.exec (verb `exec`, with the
    /// pod, the container and the command line).
    #[zbus(out_args("pty", "status"))]
    async fn exec(
        &self,
        #[zbus(header)] header: Header<'_>,
        pod: &str,
        container: &str,
        argv: Vec<String>,
        opts: std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
    ) -> Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd), BusError> {
        let container = self.resolved_container(pod, container).await;
        let request = Request::new(Verb::Exec)
            .pod(pod)
            .container(container.as_deref())
            .argv(&argv);
        self.auth.check(&header, &request).await?;
        let container = container.as_deref().unwrap_or_default();
        super::exec::exec(&self.store, &self.runtime, pod, container, argv, opts).await
    }

    /// Attaches to the terminal of a `tty: true` container's main process:
    /// its PTY master and a status pipe (as Exec). One client at a time.
    /// Needs org.tank.pods.exec (verb `attach`).
    #[zbus(out_args("pty", "status"))]
    async fn attach(
        &self,
        #[zbus(header)] header: Header<'_>,
        pod: &str,
        container: &str,
    ) -> Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd), BusError> {
        let container = self.resolved_container(pod, container).await;
        let request = Request::new(Verb::Attach)
            .pod(pod)
            .container(container.as_deref());
        self.auth.check(&header, &request).await?;
        let container = container.as_deref().unwrap_or_default();
        super::exec::attach(&self.store, &self.runtime, pod, container).await
    }

    /// Managed volumes: (pod, volume, bytes used).
    #[zbus(out_args("volumes"))]
    async fn list_volumes(&self) -> Result<Vec<(BusText, BusText, u64)>, BusError> {
        let runtime = Arc::clone(&self.runtime);
        let list = tokio::task::spawn_blocking(move || runtime.volumes().list())
            .await
            .map_err(|e| BusError::Failed(e.to_string()))?
            .map_err(|e| BusError::Failed(e.to_string()))?;
        Ok(list
            .into_iter()
            .map(|v| (v.pod.into(), v.volume.into(), v.bytes))
            .collect())
    }

    /// Deletes a managed volume and its data. org.tank.Error.InUse while
    /// its pod is declared with that volume.
    async fn remove_volume(
        &self,
        #[zbus(header)] header: Header<'_>,
        pod: &str,
        volume: &str,
    ) -> Result<(), BusError> {
        let request = Request::new(Verb::RemoveVolume).pod(pod).volume(volume);
        self.auth.check(&header, &request).await?;
        let key = pod.to_owned();
        let declared = self
            .with_store(move |store| store.get(&key))
            .await?
            .is_some_and(|r| {
                r.spec
                    .volumes
                    .iter()
                    .any(|v| v.name == volume && v.source.is_none())
            });
        self.runtime
            .remove_volume(pod, volume, declared)
            .await
            .map_err(|e| match e {
                crate::runtime::volumes::VolumeError::NotFound { .. } => {
                    BusError::NotFound(e.to_string())
                }
                crate::runtime::volumes::VolumeError::InUse { .. } => {
                    BusError::InUse(e.to_string())
                }
                crate::runtime::volumes::VolumeError::InvalidName(_) => {
                    BusError::InvalidArgument(e.to_string())
                }
                other => BusError::Failed(other.to_string()),
            })?;
        log::info!("volume {pod}/{volume} removed");
        Ok(())
    }
}
