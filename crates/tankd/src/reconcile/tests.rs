//! The driver with a recording double of its effects, on tokio's paused
//! clock: timers, incarnations, lost exits, loud endings. No root needed
//! (the store is a real RocksDB in a temporary directory).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::*;
use crate::net::etc::PodEtc;
use crate::runtime::manager::{RootfsSource, Sandbox, Started};
use effects::{ImageReady, StartError};
use tank_api::exit::ExitStatus;
use tank_api::spec::{Image, Pod};

/// What the loop asked of the world, and when (since the test began).
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Hold(String),
    EnsureImage(String),
    MakeSandbox(String),
    Start(String, String, u32),
    Stop(String, String),
    RemoveSandbox(String),
    RepairDrift(String),
    Publish(String, Phase),
    Release(String),
    Notify(String),
}

/// The recording double: answers at once, remembers everything, and runs
/// "containers" that exit after `lifetime` when their pod says so.
struct Recorder {
    began: Instant,
    calls: Mutex<Vec<(Duration, Call)>>,
    /// Image references whose pulls fail.
    bad_images: Mutex<HashSet<String>>,
    /// Pods whose containers exit this long after each start.
    lifetimes: Mutex<HashMap<String, Duration>>,
    running: Mutex<HashMap<(String, String), u32>>,
    next_pid: AtomicU32,
    events: Mutex<Option<broadcast::Sender<RuntimeEvent>>>,
}

impl Recorder {
    fn new(events: broadcast::Sender<RuntimeEvent>) -> Arc<Recorder> {
        Arc::new(Recorder {
            began: Instant::now(),
            calls: Mutex::default(),
            bad_images: Mutex::default(),
            lifetimes: Mutex::default(),
            running: Mutex::default(),
            next_pid: AtomicU32::new(1000),
            events: Mutex::new(Some(events)),
        })
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap()
            .push((self.began.elapsed(), call));
    }

    fn calls(&self) -> Vec<(Duration, Call)> {
        self.calls.lock().unwrap().clone()
    }

    /// When `matching` calls happened.
    fn times(&self, matching: impl Fn(&Call) -> bool) -> Vec<Duration> {
        self.calls()
            .into_iter()
            .filter(|(_, c)| matching(c))
            .map(|(t, _)| t)
            .collect()
    }

    /// A container's process ends as `status` (the runtime's exit event).
    fn exit(&self, pod: &str, container: &str, status: ExitStatus) {
        let pid = self
            .running
            .lock()
            .unwrap()
            .remove(&(pod.to_owned(), container.to_owned()));
        let events = self.events.lock().unwrap().clone();
        if let (Some(pid), Some(events)) = (pid, events) {
            let _ = events.send(RuntimeEvent::Exited {
                pod: pod.to_owned(),
                container: container.to_owned(),
                pid,
                status: Some(status),
                oom_killed: false,
                finished_at: SystemTime::now(),
            });
        }
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
        ips: Vec::new(),
    }
}

impl Effects for Arc<Recorder> {
    fn hold(&self, pod: &str) {
        self.record(Call::Hold(pod.to_owned()));
    }

    async fn ensure_image(&self, image: &Image) -> Result<ImageReady, String> {
        let Image::Reference(reference) = image else {
            panic!("tests use references");
        };
        self.record(Call::EnsureImage(reference.clone()));
        if self.bad_images.lock().unwrap().contains(reference) {
            return Err(format!("{reference}: not found"));
        }
        Ok(ImageReady {
            rootfs: RootfsSource::Path(PathBuf::from("/")),
            config: Default::default(),
        })
    }

    async fn make_sandbox(&self, pod: &Pod) -> Result<Sandbox, String> {
        self.record(Call::MakeSandbox(pod.name.clone()));
        Ok(sandbox())
    }

    async fn start(
        &self,
        pod: &Pod,
        container: &str,
        _image: &ImageReady,
        _sandbox: &Sandbox,
    ) -> Result<Started, StartError> {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        self.record(Call::Start(pod.name.clone(), container.to_owned(), pid));
        self.running
            .lock()
            .unwrap()
            .insert((pod.name.clone(), container.to_owned()), pid);
        if let Some(lifetime) = self.lifetimes.lock().unwrap().get(&pod.name).copied() {
            let this = Arc::clone(self);
            let (pod, container) = (pod.name.clone(), container.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(lifetime).await;
                this.exit(&pod, &container, ExitStatus::Exited(1));
            });
        }
        Ok(Started {
            pid,
            started_at: SystemTime::now(),
        })
    }

    async fn stop(
        &self,
        pod: &str,
        container: &str,
        _grace: Duration,
        _signal: Option<tank_api::spec::StopSignal>,
    ) {
        self.record(Call::Stop(pod.to_owned(), container.to_owned()));
        self.exit(pod, container, ExitStatus::Signaled(15));
    }

    async fn remove_sandbox(&self, pod: &str) -> Result<(), String> {
        self.record(Call::RemoveSandbox(pod.to_owned()));
        Ok(())
    }

    async fn repair_drift(&self, pod: &Pod) -> Vec<(String, String)> {
        self.record(Call::RepairDrift(pod.name.clone()));
        Vec::new()
    }

    fn running_pid(&self, pod: &str, container: &str) -> Option<u32> {
        self.running
            .lock()
            .unwrap()
            .get(&(pod.to_owned(), container.to_owned()))
            .copied()
    }

    async fn publish(&self, pod: &str, status: &PodStatus, _checkpoint: &Checkpoint) {
        self.record(Call::Publish(pod.to_owned(), status.phase));
    }

    async fn release(&self, pod: &str) {
        self.record(Call::Release(pod.to_owned()));
    }

    fn boot_id(&self) -> String {
        "boot".to_owned()
    }

    fn notify(&self, message: &str) {
        if message == "WATCHDOG=1" {
            self.record(Call::Notify(message.to_owned()));
        }
    }

    async fn load_checkpoints(&self) -> BTreeMap<String, Checkpoint> {
        BTreeMap::new()
    }

    fn adopt(&self, _pod: &str, _container: &str) -> Option<Started> {
        None
    }

    async fn remove_leftovers(&self, _keep: &[String]) {}
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    recorder: Arc<Recorder>,
    events: broadcast::Sender<RuntimeEvent>,
    task: tokio::task::JoinHandle<LoopError>,
}

fn config() -> ReconcileConfig {
    ReconcileConfig {
        backoff_base_ms: 500,
        backoff_cap_ms: 2_000,
        stable_after_s: 60,
        resync_s: 30,
    }
}

impl Harness {
    async fn start(watchdog: Option<Duration>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let (events, receiver) = broadcast::channel(1024);
        let recorder = Recorder::new(events.clone());
        let mut reconciler = Reconciler::new(
            Arc::clone(&store),
            Arc::new(Arc::clone(&recorder)),
            receiver,
            config(),
        )
        .with_watchdog(watchdog);
        reconciler.adopt().await;
        let task = tokio::spawn(reconciler.run());
        Harness {
            _dir: dir,
            store,
            recorder,
            events,
            task,
        }
    }

    fn apply(&self, name: &str, image: &str) {
        let pod = Pod::from_json(&format!(
            r#"{{"name": "{name}", "containers": [{{"name": "main", "image": "{image}"}}]}}"#
        ))
        .unwrap();
        self.store.apply(pod).unwrap();
    }
}

/// Lets virtual time pass (the paused clock jumps to each timer).
async fn pass(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::test(start_paused = true)]
async fn resync_and_watchdog_keep_their_cadence_under_a_stream_of_events() {
    let h = Harness::start(Some(Duration::from_secs(15))).await;
    // Three crash-looping pods (a stream of exits and restarts faster than
    // the resync) beside one healthy pod.
    for name in ["loop1", "loop2", "loop3"] {
        h.recorder
            .lifetimes
            .lock()
            .unwrap()
            .insert(name.to_owned(), Duration::from_millis(300));
        h.apply(name, "example.org/crash:1");
    }
    h.apply("steady", "example.org/ok:1");
    pass(Duration::from_secs(125)).await;
    let restarts = h
        .recorder
        .times(|c| matches!(c, Call::Start(p, ..) if p == "loop1"))
        .len();
    assert!(restarts > 40, "the pods crash-loop: {restarts} starts");
    let repairs = h
        .recorder
        .times(|c| matches!(c, Call::RepairDrift(p) if p == "steady"));
    let seconds: Vec<u64> = repairs.iter().map(|t| t.as_secs()).collect();
    assert_eq!(seconds, [30, 60, 90, 120], "resync every 30 s");
    let pings: Vec<u64> = h
        .recorder
        .times(|c| matches!(c, Call::Notify(_)))
        .iter()
        .map(|t| t.as_secs())
        .collect();
    assert_eq!(
        pings,
        [0, 15, 30, 45, 60, 75, 90, 105, 120],
        "WATCHDOG=1 every 15 s"
    );
    assert!(!h.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn timers_of_a_deleted_pod_never_touch_its_successor() {
    let h = Harness::start(None).await;
    h.recorder
        .bad_images
        .lock()
        .unwrap()
        .insert("example.org/missing:1".to_owned());
    h.apply("web", "example.org/missing:1");
    pass(Duration::from_secs(5)).await;
    let failed_pulls = h
        .recorder
        .times(|c| matches!(c, Call::EnsureImage(r) if r.contains("missing")));
    assert!(
        failed_pulls.len() >= 3,
        "ImagePullBackOff retries: {failed_pulls:?}"
    );
    // Deleted in ImagePullBackOff, then declared again with another image.
    h.store.delete("web").unwrap();
    pass(Duration::from_millis(10)).await;
    h.apply("web", "example.org/ok:1");
    let replaced_at = h.recorder.began.elapsed();
    pass(Duration::from_secs(30)).await;
    let late = h
        .recorder
        .times(|c| matches!(c, Call::EnsureImage(r) if r.contains("missing")))
        .into_iter()
        .filter(|t| *t > replaced_at)
        .count();
    assert_eq!(late, 0, "no retry of the old incarnation ran");
    let starts = h
        .recorder
        .times(|c| matches!(c, Call::Start(p, ..) if p == "web"));
    assert_eq!(starts.len(), 1, "the new incarnation started once");
    assert!(h
        .recorder
        .calls()
        .iter()
        .any(|(_, c)| *c == Call::Release("web".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn an_exit_the_loop_never_heard_of_is_found_by_the_resync() {
    let h = Harness::start(None).await;
    h.apply("web", "example.org/ok:1");
    pass(Duration::from_secs(1)).await;
    assert_eq!(h.recorder.times(|c| matches!(c, Call::Start(..))).len(), 1);
    // The process is gone, and no event says so.
    h.recorder.running.lock().unwrap().clear();
    pass(Duration::from_secs(31)).await;
    let starts = h.recorder.times(|c| matches!(c, Call::Start(..)));
    assert_eq!(starts.len(), 2, "restarted after the resync: {starts:?}");
    assert_eq!(starts[1].as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_crash_looping_pod_stays_running_and_publishes_no_failed_phase() {
    let h = Harness::start(None).await;
    h.recorder
        .lifetimes
        .lock()
        .unwrap()
        .insert("web".to_owned(), Duration::from_millis(100));
    h.apply("web", "example.org/crash:1");
    pass(Duration::from_secs(20)).await;
    let phases: Vec<Phase> = h
        .recorder
        .calls()
        .into_iter()
        .filter_map(|(_, c)| match c {
            Call::Publish(_, phase) => Some(phase),
            _ => None,
        })
        .collect();
    assert!(phases.contains(&Phase::Running));
    assert!(
        !phases.contains(&Phase::Failed),
        "restart: always never fails: {phases:?}"
    );
    let after_first_run = phases
        .iter()
        .skip_while(|p| **p != Phase::Running)
        .any(|p| *p == Phase::Pending);
    assert!(!after_first_run, "never back to Pending: {phases:?}");
}

#[tokio::test(start_paused = true)]
async fn the_loop_ends_loudly_when_an_input_closes() {
    let h = Harness::start(None).await;
    // Every sender of the runtime's feed gone: the loop cannot learn of
    // exits any more, so it ends instead of running blind.
    drop(h.events);
    h.recorder.events.lock().unwrap().take();
    let ended = tokio::time::timeout(Duration::from_secs(5), h.task)
        .await
        .expect("the loop ended")
        .unwrap();
    assert!(matches!(ended, LoopError::RuntimeClosed), "{ended}");
}
