//! `org.tank.Pod` objects: one per declared pod, at `/org/tank/pod/<name>`.
//!
//! Owns the set of exported pod objects and their properties, kept in step
//! with the store by [`PodObjects::sync`] (level-triggered: it compares the
//! whole desired state with what is exported). Property changes are
//! announced with `PropertiesChanged`, additions and removals through the
//! ObjectManager at `/org/tank`. It reads desired state; it never writes it.
//!
//! A pod deleted from desired state whose containers the reconciler still
//! has to stop stays exported in phase `Terminating` until the reconciler
//! [releases](PodObjects::release) it, so clients (`tankctl delete --wait`)
//! can watch the teardown end: the object's removal means "gone".

use std::collections::{HashMap, HashSet};

use zbus::object_server::InterfaceRef;
use zbus::Connection;

use super::error::BusError;
use super::text::BusText;
use crate::store::{PodRecord, Store};
use tank_api::bus::path::pod_path;
use tank_api::spec::Pod;
use tank_api::status::{Phase, PodStatus};

/// What one pod object shows.
pub struct PodObject {
    record: PodRecord,
    /// Pending until the reconciler reports one; Terminating once deleted
    /// until the teardown ends.
    phase: Phase,
    status: String,
}

/// A copy of `pod` with every env value replaced, safe to show anyone.
pub fn redacted(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    for container in &mut pod.containers {
        for value in container.env.values_mut() {
            *value = "<redacted>".to_owned();
        }
    }
    pod
}

#[zbus::interface(name = "org.tank.Pod")]
impl PodObject {
    /// The pod's name.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> BusText {
        self.record.spec.name.as_str().into()
    }

    /// The desired spec as canonical JSON, env values redacted (the full spec
    /// is returned by org.tank.Manager.Get to authorized callers).
    #[zbus(property)]
    fn spec(&self) -> BusText {
        redacted(&self.record.spec).to_canonical_json().into()
    }

    /// Bumped on every effective change of the spec.
    #[zbus(property)]
    fn generation(&self) -> u64 {
        self.record.generation
    }

    /// Kubelet's pod phases: Pending (some container has not run yet:
    /// pulling, creating, ImagePullBackOff), Running (every container has
    /// run and one runs or will run again; CrashLoopBackOff is a container
    /// state, the pod stays Running), Succeeded or Failed (nothing will run
    /// again: all exited 0, or at least one did not), Terminating
    /// (deleted, its containers being stopped).
    #[zbus(property)]
    fn phase(&self) -> BusText {
        self.phase.as_str().into()
    }

    /// Observed status as JSON: phase, observed_generation, message, per
    /// container state (waiting/running/terminated with reason, exit code,
    /// times) and restart count, recent events.
    #[zbus(property)]
    fn status(&self) -> BusText {
        self.status.as_str().into()
    }

    /// When the pod was first applied (µs since the Unix epoch).
    #[zbus(property(emits_changed_signal = "const"))]
    fn created_timestamp(&self) -> u64 {
        self.record.created_ms * 1000
    }

    /// When the spec last changed (µs since the Unix epoch).
    #[zbus(property)]
    fn updated_timestamp(&self) -> u64 {
        self.record.updated_ms * 1000
    }
}

/// The exported pod objects show what the reconcile loop observes.
impl crate::reconcile::effects::StatusPublisher for PodObjects {
    type Error = BusError;

    fn hold(&self, pod: &str) {
        PodObjects::hold(self, pod);
    }

    async fn set_status(&self, pod: &str, status: &PodStatus) -> Result<(), BusError> {
        PodObjects::set_status(self, pod, status).await
    }

    async fn release(&self, pod: &str, store: &Store) -> Result<(), BusError> {
        PodObjects::release(self, pod, store).await
    }
}

/// The exported pod objects.
pub struct PodObjects {
    conn: Connection,
    /// name → (generation, phase) of what is exported.
    exported: tokio::sync::Mutex<HashMap<String, (u64, Phase)>>,
    /// Pods the reconciler has on the machine: their objects outlive their
    /// deletion from the store until released.
    held: std::sync::Mutex<HashSet<String>>,
}

impl PodObjects {
    pub fn new(conn: Connection) -> PodObjects {
        PodObjects {
            conn,
            exported: Default::default(),
            held: Default::default(),
        }
    }

    /// The reconciler has `pod` on the machine: keep its object (as
    /// Terminating) after a delete until [`PodObjects::release`].
    pub fn hold(&self, pod: &str) {
        self.lock_held().insert(pod.to_owned());
    }

    /// The reconciler is done with `pod`: its object goes unless the pod is
    /// declared (again).
    pub async fn release(&self, pod: &str, store: &Store) -> Result<(), BusError> {
        self.lock_held().remove(pod);
        self.sync(store).await
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only ever inserted into or removed from: a panic while
        // holding it cannot leave it inconsistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the exported objects match the whole desired state in `store`:
    /// exports new pods, updates changed ones, removes deleted ones. The
    /// store is read under the lock, so concurrent syncs cannot interleave a
    /// stale view over a newer one.
    pub async fn sync(&self, store: &Store) -> Result<(), BusError> {
        let server = self.conn.object_server();
        let mut exported = self.exported.lock().await;
        let records = store.list()?;
        let mut gone: Vec<String> = exported.keys().cloned().collect();
        for record in records {
            let name = record.spec.name.clone();
            gone.retain(|n| *n != name);
            let path = pod_path(&name);
            match exported.get(&name) {
                None => {
                    let phase = Phase::Pending;
                    exported.insert(name, (record.generation, phase));
                    let status = String::from("{}");
                    server
                        .at(
                            &path,
                            PodObject {
                                record,
                                phase,
                                status,
                            },
                        )
                        .await?;
                }
                // A new generation, or a pod declared again while its
                // previous incarnation was still terminating.
                Some((generation, phase))
                    if *generation != record.generation || *phase == Phase::Terminating =>
                {
                    let generation = record.generation;
                    let redeclared = *phase == Phase::Terminating;
                    let iface: InterfaceRef<PodObject> = server.interface(&path).await?;
                    {
                        let mut object = iface.get_mut().await;
                        object.record = record;
                        if redeclared {
                            object.phase = Phase::Pending;
                        }
                    }
                    let emitter = iface.signal_emitter();
                    let object = iface.get().await;
                    object.spec_changed(emitter).await?;
                    object.generation_changed(emitter).await?;
                    object.updated_timestamp_changed(emitter).await?;
                    if redeclared {
                        object.phase_changed(emitter).await?;
                    }
                    exported.insert(name, (generation, object.phase));
                }
                Some(_) => {}
            }
        }
        for name in gone {
            let path = pod_path(&name);
            if self.lock_held().contains(&name) {
                let Some(entry) = exported.get_mut(&name) else {
                    continue;
                };
                if entry.1 != Phase::Terminating {
                    entry.1 = Phase::Terminating;
                    let iface: InterfaceRef<PodObject> = server.interface(&path).await?;
                    iface.get_mut().await.phase = Phase::Terminating;
                    iface
                        .get()
                        .await
                        .phase_changed(iface.signal_emitter())
                        .await?;
                }
                continue;
            }
            exported.remove(&name);
            server.remove::<PodObject, _>(&path).await?;
        }
        Ok(())
    }

    /// The record an exported pod shows (for a Terminating pod, the last
    /// one declared).
    pub async fn record(&self, pod: &str) -> Option<PodRecord> {
        let iface = self.exported_interface(pod).await?;
        let record = iface.get().await.record.clone();
        Some(record)
    }

    /// The interface of an exported pod's object.
    async fn exported_interface(&self, pod: &str) -> Option<InterfaceRef<PodObject>> {
        if !self.exported.lock().await.contains_key(pod) {
            return None;
        }
        self.conn
            .object_server()
            .interface(&pod_path(pod))
            .await
            .ok()
    }

    /// Publishes the observed status of `pod` (PropertiesChanged for Phase
    /// and Status). A pod that is not exported (deleted) is ignored.
    pub async fn set_status(&self, pod: &str, status: &PodStatus) -> Result<(), BusError> {
        let mut exported = self.exported.lock().await;
        let Some(entry) = exported.get_mut(pod) else {
            return Ok(());
        };
        let server = self.conn.object_server();
        let iface: InterfaceRef<PodObject> = server.interface(&pod_path(pod)).await?;
        let phase = status.phase;
        let json = status.to_json();
        let (phase_changed, status_changed) = {
            let mut object = iface.get_mut().await;
            let changed = (object.phase != phase, object.status != json);
            object.phase = phase;
            object.status = json;
            changed
        };
        entry.1 = phase;
        drop(exported);
        let emitter = iface.signal_emitter();
        let object = iface.get().await;
        if phase_changed {
            object.phase_changed(emitter).await?;
        }
        if status_changed {
            object.status_changed(emitter).await?;
        }
        Ok(())
    }

    /// (phase, status JSON) of an exported pod.
    pub async fn observed(&self, pod: &str) -> Option<(Phase, String)> {
        let iface = self.exported_interface(pod).await?;
        let object = iface.get().await;
        Some((object.phase, object.status.clone()))
    }

    /// (name, phase) of every exported pod, ordered by name.
    pub async fn phases(&self) -> Vec<(String, Phase)> {
        let exported = self.exported.lock().await;
        let mut list: Vec<_> = exported
            .iter()
            .map(|(name, (_, phase))| (name.clone(), *phase))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }
}

/// The container a call about container `name` of a pod is about, for the
/// details of its authorization: the one [`pick_container`] resolves to
/// when the pod is declared (`spec`), else `name` as given (None when
/// empty). Errors are the call's own, reported after authorization.
pub fn container_detail(spec: Option<&Pod>, name: &str) -> Option<String> {
    spec.and_then(|pod| pick_container(pod, name).ok())
        .or_else(|| (!name.is_empty()).then(|| name.to_owned()))
}

/// The container `name` of `pod`, or its only container when `name` is
/// empty.
pub fn pick_container(pod: &Pod, name: &str) -> Result<String, BusError> {
    if name.is_empty() {
        return match pod.containers.as_slice() {
            [only] => Ok(only.name.clone()),
            several => Err(BusError::InvalidArgument(format!(
                "pod {:?} has {} containers: name one ({})",
                pod.name,
                several.len(),
                several
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    pod.container(name)
        .map(|c| c.name.clone())
        .ok_or_else(|| BusError::NotFound(format!("pod {:?} has no container {name:?}", pod.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: &[&str]) -> Pod {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| serde_json::json!({"name": c, "image": "busybox"}))
            .collect();
        Pod::from_json(&serde_json::json!({"name": "web", "containers": containers}).to_string())
            .unwrap()
    }

    #[test]
    fn the_container_detail_is_the_resolved_one() {
        let one = pod(&["app"]);
        let two = pod(&["app", "side"]);
        // Declared: the container the call goes to.
        assert_eq!(container_detail(Some(&one), ""), Some("app".into()));
        assert_eq!(container_detail(Some(&one), "app"), Some("app".into()));
        assert_eq!(container_detail(Some(&two), "side"), Some("side".into()));
        // Not resolvable (the call fails after authorization): as given.
        assert_eq!(container_detail(Some(&two), ""), None);
        assert_eq!(container_detail(Some(&one), "nope"), Some("nope".into()));
        assert_eq!(container_detail(None, "app"), Some("app".into()));
        assert_eq!(container_detail(None, ""), None);
    }
}
