//! Managed volumes: `<data_dir>/volumes/<pod>/<volume>`.
//!
//! Owns the volume directories. A volume is created the first time a
//! container of its pod mounts it and outlives the pod (deleting a pod
//! never loses data); only an explicit removal deletes it. It never decides
//! whether a volume is in use: the caller says which pods are declared.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {pod}/{volume} not found")]
    NotFound { pod: String, volume: String },
    #[error("volume {pod}/{volume} is declared by pod {pod}: delete the pod first")]
    InUse { pod: String, volume: String },
    #[error("invalid volume name {0:?}")]
    InvalidName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the removal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A managed volume on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub pod: String,
    pub volume: String,
    pub path: PathBuf,
    /// Bytes used by regular files in it.
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

fn check_name(name: &str) -> Result<(), VolumeError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(VolumeError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl Volumes {
    pub fn new(root: &Path) -> Volumes {
        Volumes {
            root: root.to_owned(),
        }
    }

    pub fn path(&self, pod: &str, volume: &str) -> PathBuf {
        self.root.join(pod).join(volume)
    }

    /// The directory of volume `volume` of `pod`, created if missing.
    pub fn ensure(&self, pod: &str, volume: &str) -> Result<PathBuf, VolumeError> {
        check_name(pod)?;
        check_name(volume)?;
        let path = self.path(pod, volume);
        let io = |source| VolumeError::Io {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            return Ok(path);
        }
        // `volumes/<pod>` is tankd's (private); the volume's root is what
        // the container sees at its mount point: 0755 like a fresh
        // directory of the container's own, whatever tankd's umask.
        std::fs::create_dir_all(self.root.join(pod)).map_err(io)?;
        match std::fs::create_dir(&path) {
            Ok(()) => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        Ok(path)
    }

    /// Every managed volume, ordered by pod and name.
    pub fn list(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let mut out = Vec::new();
        for pod in read_dir_names(&self.root)? {
            for volume in read_dir_names(&self.root.join(&pod))? {
                let path = self.path(&pod, &volume);
                out.push(VolumeInfo {
                    bytes: du(&path),
                    pod: pod.clone(),
                    volume,
                    path,
                });
            }
        }
        out.sort_by(|a, b| (&a.pod, &a.volume).cmp(&(&b.pod, &b.volume)));
        Ok(out)
    }

    /// Deletes a volume and its data. `declared` says whether `pod` is
    /// still declared with a volume of that name: then it is refused.
    /// Blocking (seconds for a large volume): see `Runtime::remove_volume`.
    pub fn remove(&self, pod: &str, volume: &str, declared: bool) -> Result<(), VolumeError> {
        check_name(pod)?;
        check_name(volume)?;
        let path = self.path(pod, volume);
        if !path.is_dir() {
            return Err(VolumeError::NotFound {
                pod: pod.to_owned(),
                volume: volume.to_owned(),
            });
        }
        if declared {
            return Err(VolumeError::InUse {
                pod: pod.to_owned(),
                volume: volume.to_owned(),
            });
        }
        std::fs::remove_dir_all(&path).map_err(|source| VolumeError::Io {
            path: path.clone(),
            source,
        })?;
        // The pod's directory goes with its last volume.
        let _ = std::fs::remove_dir(self.root.join(pod));
        Ok(())
    }
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, VolumeError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(VolumeError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Bytes of the regular files below `dir` (symlinks not followed).
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = Volumes::new(dir.path());
        let data = volumes.ensure("web", "data").unwrap();
        std::fs::write(data.join("f"), b"12345").unwrap();
        volumes.ensure("web", "cache").unwrap();
        let list = volumes.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[1].volume.as_str(), list[1].bytes), ("data", 5));

        let err = volumes.remove("web", "data", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume web/data is declared by pod web: delete the pod first"
        );
        assert!(data.join("f").exists(), "a refused removal keeps the data");
        volumes.remove("web", "data", false).unwrap();
        assert!(!data.exists());
        assert!(matches!(
            volumes.remove("web", "data", false),
            Err(VolumeError::NotFound { .. })
        ));
        assert!(matches!(
            volumes.ensure("web", "../x"),
            Err(VolumeError::InvalidName(_))
        ));
    }
}
