//! The durable desired-state store: RocksDB under `<data_dir>/store`.
//!
//! Owns the on-disk record format (column family `pods`: name → versioned
//! JSON record; `meta`: schema version and the boot-seeded marker), the
//! generation counter, the change feed and boot seeding. Every write is
//! synced (WAL fsync) before it returns, so an `Apply` that returned survives
//! power loss. It stores what was asked for; it never looks at or acts on
//! the machine (that is the reconciler's job).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use tank_api::spec::{Pod, SpecError};

const CF_PODS: &str = "pods";
const CF_META: &str = "meta";
const KEY_SCHEMA: &[u8] = b"schema";
const KEY_SEEDED: &[u8] = b"seeded";
/// Version of the record layout written by this build.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("store {path}: schema version {found} is newer than this tankd understands ({SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: u32 },
    #[error("store: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("store: record of pod {name:?} is unreadable: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A pod as stored: the validated spec plus its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Unique per incarnation of the pod (a create, or a create after a
    /// delete), like Kubernetes' `metadata.uid`. Records of older versions
    /// have none (empty).
    #[serde(default)]
    pub uid: String,
    /// Bumped on every effective change of the spec; 1 on creation.
    pub generation: u64,
    /// When the pod was first applied (milliseconds since the Unix epoch).
    pub created_ms: u64,
    /// When the spec last changed (milliseconds since the Unix epoch).
    pub updated_ms: u64,
    pub spec: Pod,
}

impl PodRecord {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether `other` is the same incarnation of the pod (not deleted and
    /// created again in between).
    pub fn same_incarnation(&self, other: &PodRecord) -> bool {
        self.uid == other.uid && self.created_ms == other.created_ms
    }
}

/// A fresh incarnation id (a random UUID).
fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What an [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub record: PodRecord,
    /// False when the spec was identical to the stored one (nothing written).
    pub changed: bool,
}

/// What [`Store::seed_from_dir`] did.
#[derive(Debug, Default)]
pub struct SeedReport {
    /// False when the store had been seeded before (nothing was read).
    pub ran: bool,
    pub created: Vec<String>,
    /// Pods already present in the store, left as they are.
    pub kept: Vec<String>,
    /// Files that could not be read or were not valid pods.
    pub rejected: Vec<(PathBuf, String)>,
}

/// The desired-state store. Cheap to share behind an `Arc`.
pub struct Store {
    db: DB,
    path: PathBuf,
    /// Serializes read-modify-write sequences (apply, delete).
    writer: Mutex<()>,
    revision: watch::Sender<u64>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// RocksDB locks the directory: a second process opening the same store
    /// fails, which is what keeps two tankd from managing one machine.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Desired state is a few KiB per pod: keep RocksDB's memory small.
        opts.set_write_buffer_size(1 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(64);
        opts.set_max_background_jobs(1);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        let mut table = rocksdb::BlockBasedOptions::default();
        let cache = rocksdb::Cache::new_lru_cache(1 << 20).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        table.set_block_cache(&cache);
        opts.set_block_based_table_factory(&table);
        let cfs = [CF_PODS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let store = Store {
            db,
            path: path.to_owned(),
            writer: Mutex::new(()),
            revision: watch::Sender::new(0),
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, KEY_SCHEMA)? {
            Some(bytes) => {
                let found = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(u32::MAX);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found,
                    });
                }
                Ok(())
            }
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, KEY_SCHEMA, SCHEMA_VERSION.to_string());
                self.db.write_opt(batch, &synced())?;
                Ok(())
            }
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Writes `pod` as desired state. An identical spec is a no-op (same
    /// generation, nothing written, no change event).
    pub fn apply(&self, pod: Pod) -> Result<Applied, StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let record = match self.get(&pod.name)? {
            Some(old) if old.spec.to_canonical_json() == pod.to_canonical_json() => {
                return Ok(Applied {
                    record: old,
                    changed: false,
                })
            }
            Some(old) => PodRecord {
                uid: old.uid,
                generation: old.generation + 1,
                created_ms: old.created_ms,
                updated_ms: now,
                spec: pod,
            },
            None => PodRecord {
                uid: new_uid(),
                generation: 1,
                created_ms: now,
                updated_ms: now,
                spec: pod,
            },
        };
        self.put(&record)?;
        Ok(Applied {
            record,
            changed: true,
        })
    }

    /// Writes `pod` only if no pod of that name exists. Returns whether it
    /// was written.
    pub fn create_if_absent(&self, pod: Pod) -> Result<bool, StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.get(&pod.name)?.is_some() {
            return Ok(false);
        }
        let now = now_ms();
        self.put(&PodRecord {
            uid: new_uid(),
            generation: 1,
            created_ms: now,
            updated_ms: now,
            spec: pod,
        })?;
        Ok(true)
    }

    fn put(&self, record: &PodRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).expect("a pod record always serializes");
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_PODS), record.name(), value);
        self.db.write_opt(batch, &synced())?;
        self.bump();
        Ok(())
    }

    /// The stored record of pod `name`.
    pub fn get(&self, name: &str) -> Result<Option<PodRecord>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_PODS), name)? {
            Some(bytes) => decode(name, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every stored pod, ordered by name.
    pub fn list(&self) -> Result<Vec<PodRecord>, StoreError> {
        let mut pods = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_PODS), IteratorMode::Start) {
            let (key, value) = item?;
            pods.push(decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(pods)
    }

    /// Removes pod `name` from desired state; returns the removed record, or
    /// `None` when there was no such pod (nothing changes then).
    pub fn delete(&self, name: &str) -> Result<Option<PodRecord>, StoreError> {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(old) = self.get(name)? else {
            return Ok(None);
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_PODS), name);
        self.db.write_opt(batch, &synced())?;
        self.bump();
        Ok(Some(old))
    }

    /// The change feed: the value is a revision counter bumped after every
    /// effective write. Consumers are level-triggered: on a change they read
    /// the whole desired state again, so no event can be missed or lag.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn bump(&self) {
        self.revision.send_modify(|revision| *revision += 1);
    }

    /// Boot seeding: on a store that was never seeded, writes every pod of
    /// `dir` (`*.json`, `*.yaml`, `*.yml`, in name order) create-if-absent,
    /// then marks the store seeded so later starts never touch it again
    /// (runtime changes are never clobbered). A missing `dir` seeds nothing.
    /// Unreadable or invalid files are reported and skipped.
    pub fn seed_from_dir(&self, dir: &Path) -> Result<SeedReport, StoreError> {
        let meta = self.cf(CF_META);
        let mut report = SeedReport::default();
        if self.db.get_pinned_cf(meta, KEY_SEEDED)?.is_some() {
            return Ok(report);
        }
        report.ran = true;
        for path in seed_files(dir, &mut report) {
            match read_seed(&path) {
                Ok(pod) => {
                    let name = pod.name.clone();
                    if self.create_if_absent(pod)? {
                        report.created.push(name);
                    } else {
                        report.kept.push(name);
                    }
                }
                Err(reason) => report.rejected.push((path, reason)),
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, KEY_SEEDED, now_ms().to_string());
        self.db.write_opt(batch, &synced())?;
        Ok(report)
    }
}

fn seed_files(dir: &Path, report: &mut SeedReport) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            report.rejected.push((dir.to_owned(), e.to_string()));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    files
}

fn read_seed(path: &Path) -> Result<Pod, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let parsed: Result<Pod, SpecError> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Pod::from_json(&text),
        _ => Pod::from_yaml(&text),
    };
    parsed.map_err(|e| e.to_string())
}

fn decode(name: &str, bytes: &[u8]) -> Result<PodRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        name: name.to_owned(),
        source,
    })
}

fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, image: &str) -> Pod {
        Pod::from_json(&format!(
            r#"{{"name": "{name}", "containers": [{{"name": "app", "image": "{image}"}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn apply_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let applied = store.apply(pod("web", "busybox:1")).unwrap();
        assert!(applied.changed);
        assert_eq!(applied.record.generation, 1);
        store.apply(pod("api", "busybox:1")).unwrap();
        assert_eq!(store.get("web").unwrap().unwrap(), applied.record);
        let names: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.spec.name)
            .collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(store.delete("web").unwrap().unwrap().spec.name, "web");
        assert!(store.get("web").unwrap().is_none());
        assert!(store.delete("web").unwrap().is_none());
    }

    #[test]
    fn generation_moves_only_on_effective_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rx = store.watch();
        let first = store.apply(pod("web", "busybox:1")).unwrap();
        let rev = *rx.borrow();
        let same = store.apply(pod("web", "busybox:1")).unwrap();
        assert!(!same.changed);
        assert_eq!(same.record, first.record);
        assert_eq!(*rx.borrow(), rev, "a no-op apply must not wake anyone");
        let changed = store.apply(pod("web", "busybox:2")).unwrap();
        assert!(changed.changed);
        assert_eq!(changed.record.generation, 2);
        assert_eq!(changed.record.created_ms, first.record.created_ms);
        assert!(*rx.borrow() > rev);
    }

    #[test]
    fn each_incarnation_has_its_own_uid() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.apply(pod("web", "busybox:1")).unwrap().record;
        assert_eq!(first.uid.len(), 36, "a UUID: {}", first.uid);
        let changed = store.apply(pod("web", "busybox:2")).unwrap().record;
        assert_eq!(changed.uid, first.uid, "a change keeps the incarnation");
        assert!(changed.same_incarnation(&first));
        store.delete("web").unwrap();
        // Created again at once (possibly in the same millisecond, at the
        // same generation 1): another incarnation all the same.
        let again = store.apply(pod("web", "busybox:1")).unwrap().record;
        assert_ne!(again.uid, first.uid);
        assert!(!again.same_incarnation(&first));
        assert_eq!(again.generation, 1);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.apply(pod("web", "busybox:1")).unwrap();
            store.apply(pod("web", "busybox:2")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let record = store.get("web").unwrap().unwrap();
        assert_eq!(record.generation, 2);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(err.to_string().contains("lock"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .db
                .put_cf(store.cf(CF_META), KEY_SCHEMA, "99")
                .unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn seeding_runs_once_and_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let seeds = tempfile::tempdir().unwrap();
        std::fs::write(
            seeds.path().join("a.json"),
            r#"{"name": "alpha", "containers": [{"name": "c", "image": "busybox"}]}"#,
        )
        .unwrap();
        std::fs::write(
            seeds.path().join("b.yaml"),
            "name: beta\ncontainers:\n  - name: c\n    image: busybox\n",
        )
        .unwrap();
        std::fs::write(seeds.path().join("bad.json"), r#"{"name": "Bad"}"#).unwrap();
        std::fs::write(seeds.path().join("notes.txt"), "ignored").unwrap();

        let store = Store::open(dir.path()).unwrap();
        store.apply(pod("beta", "busybox:custom")).unwrap();
        let report = store.seed_from_dir(seeds.path()).unwrap();
        assert!(report.ran);
        assert_eq!(report.created, ["alpha"]);
        assert_eq!(report.kept, ["beta"]);
        assert_eq!(report.rejected.len(), 1);
        assert!(report.rejected[0].0.ends_with("bad.json"));
        let beta = store.get("beta").unwrap().unwrap();
        assert_eq!(
            beta.spec,
            pod("beta", "busybox:custom"),
            "runtime change kept"
        );

        store.delete("alpha").unwrap();
        let again = store.seed_from_dir(seeds.path()).unwrap();
        assert!(!again.ran);
        assert!(
            store.get("alpha").unwrap().is_none(),
            "deleted pod not re-seeded"
        );
    }

    #[test]
    fn missing_seed_dir_seeds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let report = store
            .seed_from_dir(Path::new("/nonexistent/pods.d"))
            .unwrap();
        assert!(report.ran && report.created.is_empty() && report.rejected.is_empty());
    }
}
