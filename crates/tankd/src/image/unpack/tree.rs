//! Paths inside the layer root: name normalization, parent directories
//! resolved with openat2 (and created when missing), replacement of what
//! an earlier entry put at a path.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmodat, mkdirat, FchmodatFlags, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::meta::io_errno;
use super::{entry_err, invalid, lossy, UnpackError, Unpacker};

/// Normalizes an archive name into `out` (components joined by `/`, no
/// empty, `.` or `..` components; empty for the root). Fails if `..` climbs
/// above the root.
pub(super) fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    out.clear();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(());
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(())
}

/// Splits a normalized path into its parent and final component.
pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    if !parent.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

pub(super) fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        1 + path.iter().filter(|&&b| b == b'/').count()
    }
}

/// Opens `path` (normalized, non-empty) inside `root`: symlinks, absolute or
/// not, and `..` are resolved as if `root` were `/`.
pub(super) fn open_in_root(root: &OwnedFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    // EAGAIN: a concurrent rename or mount raced the `..` checks; retry.
    let mut tries = 0;
    loop {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

impl Unpacker {
    /// The directory `parent` (normalized) inside the root, created (0755,
    /// root) with its missing ancestors if needed.
    pub(super) fn parent(
        &mut self,
        raw: &[u8],
        parent: &[u8],
    ) -> Result<Arc<OwnedFd>, UnpackError> {
        if parent.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((path, fd)) = &self.cached_parent {
            if path == parent {
                return Ok(fd.clone());
            }
        }
        let fd = match open_in_root(&self.root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => self.create_parents(raw, parent)?,
            Err(e) => return Err(entry_err(raw, format!("openat2 {:?}", lossy(parent)), e)),
        };
        let fd = Arc::new(fd);
        self.cached_parent = Some((parent.to_vec(), fd.clone()));
        Ok(fd)
    }

    pub(super) fn create_parents(&self, raw: &[u8], parent: &[u8]) -> Result<OwnedFd, UnpackError> {
        let mut current: Option<OwnedFd> = None;
        let mut end = 0;
        for comp in parent.split(|&b| b == b'/') {
            end = if end == 0 {
                comp.len()
            } else {
                end + 1 + comp.len()
            };
            let prefix = &parent[..end];
            let open =
                |root: &OwnedFd| open_in_root(root, prefix, OFlag::O_PATH | OFlag::O_DIRECTORY);
            let fd = match open(&self.root) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let base: &OwnedFd = current.as_ref().unwrap_or(&self.root);
                    let op = || format!("mkdirat {:?}", lossy(prefix));
                    mkdirat(base, comp, Mode::from_bits_truncate(0o755))
                        .map_err(|e| entry_err(raw, op(), e))?;
                    // Exactly 0755 whatever the umask; `comp` is the
                    // directory just made.
                    fchmodat(
                        base,
                        comp,
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| entry_err(raw, format!("fchmodat {:?}", lossy(prefix)), e))?;
                    open(&self.root)
                        .map_err(|e| entry_err(raw, format!("openat2 {:?}", lossy(prefix)), e))?
                }
                Err(e) => {
                    return Err(entry_err(raw, format!("openat2 {:?}", lossy(prefix)), e));
                }
            };
            current = Some(fd);
        }
        current.ok_or_else(|| invalid(raw, "empty parent path"))
    }

    /// Removes whatever is at `name` in `dir` (recursively for a directory).
    /// `parent` is the normalized path of `dir`.
    pub(super) fn remove(
        &mut self,
        raw: &[u8],
        dir: &OwnedFd,
        parent: &[u8],
        name: &[u8],
    ) -> Result<(), UnpackError> {
        // Anything removed may be a directory or symlink the cached parent
        // was resolved through.
        self.cached_parent = None;
        match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) => {
                remove_tree(dir, name).map_err(|e| entry_err(raw, "removing directory", e))?;
                self.forget_dir_times(&join(parent, name));
                Ok(())
            }
            Err(e) => Err(entry_err(raw, "unlinkat", e)),
        }
    }

    fn forget_dir_times(&mut self, path: &[u8]) {
        self.dir_times.remove(path);
        let prefix = join(path, b"");
        let doomed: Vec<Vec<u8>> = self
            .dir_times
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.dir_times.remove(&key);
        }
    }

    /// Runs `create`; if `name` exists in `dir` (the directory `parent`),
    /// removes it and runs `create` once more.
    pub(super) fn create_replacing<T>(
        &mut self,
        raw: &[u8],
        dir: &OwnedFd,
        parent: &[u8],
        name: &[u8],
        op: &'static str,
        mut create: impl FnMut() -> nix::Result<T>,
    ) -> Result<T, UnpackError> {
        match create() {
            Err(Errno::EEXIST) => {
                self.remove(raw, dir, parent, name)?;
                create().map_err(|e| entry_err(raw, op, e))
            }
            other => other.map_err(|e| entry_err(raw, op, e)),
        }
    }
}

/// Removes the directory `name` in `dir` and everything in it.
pub(super) fn remove_tree(dir: &OwnedFd, name: &[u8]) -> nix::Result<()> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Listed through our own fd (nix's `dir` feature is not enabled).
    let listing =
        std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| io_errno(&e))?;
    let mut children = Vec::new();
    for child in listing {
        let child = child.map_err(|e| io_errno(&e))?;
        let is_dir = child.file_type().map_err(|e| io_errno(&e))?.is_dir();
        children.push((child.file_name().into_vec(), is_dir));
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree(&fd, &child)?;
        } else {
            match unlinkat(&fd, &child[..], UnlinkatFlags::NoRemoveDir) {
                Err(Errno::EISDIR) => remove_tree(&fd, &child)?,
                other => other?,
            }
        }
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}
