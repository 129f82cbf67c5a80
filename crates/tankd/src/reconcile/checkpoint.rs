//! What the reconciler knows about each pod, kept for the next tankd:
//! `<run_dir>/status/<pod>.json` holds the pod's observed status (restart
//! counts, container states, events) and restart streaks, tagged with the
//! boot it belongs to. A tankd that restarts (crash, upgrade) carries the
//! status on for the containers it adopts; after a reboot (another boot
//! id, or an emptied `/run`) there is nothing to carry on and every pod
//! starts afresh.
//!
//! Owns those files only. Writes go in place (no rename): they run on every
//! status change, and a torn file after a crash reads as "no checkpoint",
//! which only costs the restart counts of that pod.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tank_api::status::PodStatus;

/// One pod's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub boot_id: String,
    pub generation: u64,
    pub status: PodStatus,
    /// Consecutive short runs per container (the backoff exponent).
    #[serde(default)]
    pub streaks: BTreeMap<String, u32>,
}

/// The checkpoint directory.
pub struct Checkpoints {
    dir: PathBuf,
    boot_id: String,
}

impl Checkpoints {
    pub fn new(run_dir: &Path) -> Checkpoints {
        Checkpoints {
            dir: run_dir.join("status"),
            boot_id: boot_id(),
        }
    }

    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    fn path(&self, pod: &str) -> PathBuf {
        self.dir.join(format!("{pod}.json"))
    }

    /// Writes the checkpoint of `pod`.
    pub fn save(&self, pod: &str, checkpoint: &Checkpoint) {
        if let Err(e) = self.try_save(pod, checkpoint) {
            log::warn!("{pod}: checkpoint not written: {e}");
        }
    }

    fn try_save(&self, pod: &str, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let json = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
        let path = self.path(pod);
        let mut file = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::state_dir::PRIVATE_FILE)
            .open(&path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)?;
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(crate::state_dir::PRIVATE_FILE)
                    .open(&path)?
            }
            other => other?,
        };
        file.write_all(&json)?;
        file.set_len(json.len() as u64)
    }

    /// Every checkpoint of this boot, by pod name. Unreadable ones and those
    /// of another boot are left out.
    pub fn load_all(&self) -> BTreeMap<String, Checkpoint> {
        let mut found = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return found;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pod) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = std::fs::read(entry.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Checkpoint>(&bytes).ok());
            match parsed {
                Some(checkpoint) if checkpoint.boot_id == self.boot_id => {
                    found.insert(pod.to_owned(), checkpoint);
                }
                _ => log::info!("{pod}: no usable checkpoint (another boot, or torn)"),
            }
        }
        found
    }

    pub fn remove(&self, pod: &str) {
        if let Err(e) = std::fs::remove_file(self.path(pod)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("{pod}: cannot remove checkpoint: {e}");
            }
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_other_boots_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(tmp.path());
        assert!(!checkpoints.boot_id().is_empty());
        let mut status = PodStatus::new(3, ["main".to_owned()]);
        status.event("Started", "started main");
        let mut checkpoint = Checkpoint {
            boot_id: checkpoints.boot_id().to_owned(),
            generation: 3,
            status,
            streaks: BTreeMap::from([("main".to_owned(), 2)]),
        };
        checkpoints.save("web", &checkpoint);
        // A shorter rewrite leaves no tail of the longer one behind.
        checkpoint.status.events.clear();
        checkpoints.save("web", &checkpoint);
        let other = Checkpoint {
            boot_id: "another-boot".to_owned(),
            ..checkpoint.clone()
        };
        checkpoints.save("old", &other);
        std::fs::write(tmp.path().join("status/torn.json"), b"{\"boot_id\":").unwrap();

        let loaded = checkpoints.load_all();
        assert_eq!(loaded.len(), 1, "{loaded:?}");
        assert_eq!(loaded["web"], checkpoint);
        checkpoints.remove("web");
        assert!(checkpoints.load_all().is_empty());
    }
}
