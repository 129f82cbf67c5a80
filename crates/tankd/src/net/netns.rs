//! Pod network namespaces: created on a dedicated thread (`unshare` affects
//! only the calling thread), loopback raised over rtnetlink from inside,
//! then pinned by a bind mount of the thread's `ns/net` at
//! `<run_dir>/netns/<pod>`, so containers can `setns` into it and it lives
//! as long as the pod, whatever runs in it.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path}: {op}: {source}")]
    Sys {
        path: PathBuf,
        op: &'static str,
        source: nix::Error,
    },
    #[error("netns {path}: {message}")]
    Other { path: PathBuf, message: String },
}

/// Where the pods' namespaces are pinned.
#[derive(Debug, Clone)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl NetnsDir {
    pub fn new(run_dir: &Path) -> NetnsDir {
        NetnsDir {
            dir: run_dir.join("netns"),
        }
    }

    pub fn path(&self, pod: &str) -> PathBuf {
        self.dir.join(pod)
    }

    /// Whether pod `pod` has a pinned namespace.
    pub fn exists(&self, pod: &str) -> bool {
        is_nsfs(&self.path(pod))
    }

    /// Creates the namespace of `pod` with loopback up, unless it exists.
    pub fn create(&self, pod: &str) -> Result<PathBuf, NetnsError> {
        let path = self.path(pod);
        if is_nsfs(&path) {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| NetnsError::Other {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        std::fs::File::create(&path).map_err(|e| NetnsError::Other {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let target = path.clone();
        let result = std::thread::Builder::new()
            .name(format!("netns-{pod}"))
            .spawn(move || -> Result<(), NetnsError> {
                let sys = |op, source| NetnsError::Sys {
                    path: target.clone(),
                    op,
                    source,
                };
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare", e))?;
                loopback_up().map_err(|message| NetnsError::Other {
                    path: target.clone(),
                    message,
                })?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| sys("bind mount", e))
            })
            .map_err(|e| NetnsError::Other {
                path: path.clone(),
                message: e.to_string(),
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(NetnsError::Other {
                    path: path.clone(),
                    message: "netns thread panicked".to_owned(),
                })
            });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Pins again the namespace of `pod` from a process inside it (drift
    /// repair: the pin was unmounted while containers still run in it).
    pub fn repin(&self, pod: &str, pid: u32) -> Result<PathBuf, NetnsError> {
        let path = self.path(pod);
        if is_nsfs(&path) {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::File::create(&path))
            .map_err(|e| NetnsError::Other {
                path: path.clone(),
                message: e.to_string(),
            })?;
        mount(
            Some(format!("/proc/{pid}/ns/net").as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NetnsError::Sys {
            path: path.clone(),
            op: "bind mount",
            source,
        })?;
        Ok(path)
    }

    /// Removes the namespace of `pod` (its interfaces go with it once no
    /// process is in it). Absent is fine.
    pub fn remove(&self, pod: &str) -> Result<(), NetnsError> {
        let path = self.path(pod);
        if is_nsfs(&path) {
            umount2(&path, MntFlags::MNT_DETACH).map_err(|source| NetnsError::Sys {
                path: path.clone(),
                op: "umount",
                source,
            })?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetnsError::Other {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Names of the pods with a pinned namespace (adoption, leftovers).
    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| is_nsfs(&e.path()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// True when `path` is a mounted namespace file (nsfs).
fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Raises `lo` of the calling thread's netns (rtnetlink, on a runtime local
/// to this thread).
fn loopback_up() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        let task = tokio::spawn(connection);
        // A new namespace has exactly one interface: lo, index 1.
        let result = handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
            .execute()
            .await
            .map_err(|e| format!("set lo up: {e}"));
        task.abort();
        result
    })
}
