//! Creating each kind of entry on its final component with the `*at`
//! syscalls, and the deferred directory times.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use xattr::FileExt;

use super::meta::{io_errno, set_xattr_result, Meta};
use super::tree::{depth, normalize, open_in_root, split_last};
use super::{entry_err, invalid, lossy, UnpackError, Unpacker, OVERLAY_OPAQUE_XATTR};

impl Unpacker {
    pub(super) fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let dir = self.parent(raw, parent)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(meta.mode & 0o777);
        let fd = self.create_replacing(raw, &dir, parent, name, "openat", || {
            openat(&*dir, name, flags, mode)
        })?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let written = copy_data(entry, &mut file, &mut self.buf, raw)?;
        if written != expected {
            return Err(invalid(
                raw,
                format!("truncated: {written} of {expected} bytes"),
            ));
        }
        self.stats.bytes += written;
        fchown(
            &file,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| entry_err(raw, "fchown", e))?;
        // After chown, which clears set-id bits.
        fchmod(&file, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| entry_err(raw, "fchmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr_result(raw, key, file.set_xattr(OsStr::from_bytes(key), value))?;
        }
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| entry_err(raw, "futimens", e))?;
        Ok(())
    }

    pub(super) fn dir(
        &mut self,
        raw: &[u8],
        path: &[u8],
        parent: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let owner = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        let mode = Mode::from_bits_truncate(meta.mode);
        if name.is_empty() {
            // The layer root itself ("./").
            let root = self.root.clone();
            fchown(&*root, owner.0, owner.1).map_err(|e| entry_err(raw, "fchown", e))?;
            fchmod(&*root, mode).map_err(|e| entry_err(raw, "fchmod", e))?;
            self.dir_xattrs(raw, &root, meta)?;
            self.dir_times.insert(Vec::new(), meta.mtime);
            return Ok(());
        }
        let dir = self.parent(raw, parent)?;
        match mkdirat(&*dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(&*dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| entry_err(raw, "fstatat", e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    self.remove(raw, &dir, parent, name)?;
                    mkdirat(&*dir, name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| entry_err(raw, "mkdirat", e))?;
                }
            }
            Err(e) => return Err(entry_err(raw, "mkdirat", e)),
        }
        fchownat(&*dir, name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| entry_err(raw, "fchownat", e))?;
        // `name` is a directory this unpacker just made or checked, and only
        // this unpacker changes the tree: following it is safe.
        fchmodat(&*dir, name, mode, FchmodatFlags::FollowSymlink)
            .map_err(|e| entry_err(raw, "fchmodat", e))?;
        if !meta.xattrs.is_empty() {
            let fd = openat(
                &*dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| entry_err(raw, "openat", e))?;
            self.dir_xattrs(raw, &fd, meta)?;
        }
        self.dir_times.insert(path.to_vec(), meta.mtime);
        Ok(())
    }

    fn dir_xattrs(&self, raw: &[u8], fd: &OwnedFd, meta: &Meta) -> Result<(), UnpackError> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let file = File::from(fd.try_clone().map_err(|e| UnpackError::EntryIo {
            path: lossy(raw),
            op: "dup",
            error: e,
        })?);
        for (key, value) in &meta.xattrs {
            set_xattr_result(raw, key, file.set_xattr(OsStr::from_bytes(key), value))?;
        }
        Ok(())
    }

    pub(super) fn symlink(
        &mut self,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let dir = self.parent(raw, parent)?;
        self.create_replacing(raw, &dir, parent, name, "symlinkat", || {
            symlinkat(target, &*dir, name)
        })?;
        self.finish_special(raw, &dir, name, meta, false)
    }

    pub(super) fn fifo(
        &mut self,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let dir = self.parent(raw, parent)?;
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        self.create_replacing(raw, &dir, parent, name, "mknodat", || {
            mknodat(&*dir, name, SFlag::S_IFIFO, perm, 0)
        })?;
        self.finish_special(raw, &dir, name, meta, true)
    }

    /// Owner, mode (FIFOs), xattrs and times of a symlink or FIFO just made.
    fn finish_special(
        &self,
        raw: &[u8],
        dir: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| entry_err(raw, "fchownat", e))?;
        if chmod {
            // A FIFO this unpacker just made: following is safe.
            fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| entry_err(raw, "fchmodat", e))?;
        }
        if !meta.xattrs.is_empty() {
            // No fd can be opened for xattrs on a symlink (or, without
            // blocking, a FIFO): name it through our own directory fd, not
            // following the final component.
            let mut proc_path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            proc_path.extend_from_slice(name);
            let proc_path = Path::new(OsStr::from_bytes(&proc_path));
            for (key, value) in &meta.xattrs {
                set_xattr_result(
                    raw,
                    key,
                    xattr::set(proc_path, OsStr::from_bytes(key), value),
                )?;
            }
        }
        utimensat(
            dir,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| entry_err(raw, "utimensat", e))
    }

    pub(super) fn hard_link(
        &mut self,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
        target: &[u8],
    ) -> Result<(), UnpackError> {
        let mut target_path = Vec::new();
        if normalize(target, &mut target_path).is_err() {
            return Err(invalid(
                raw,
                format!(
                    "hard link target {:?} escapes the layer root",
                    lossy(target)
                ),
            ));
        }
        let (target_parent, target_name) = split_last(&target_path);
        if target_name.is_empty() {
            return Err(invalid(raw, "hard link to the layer root"));
        }
        let target_dir = if target_parent.is_empty() {
            self.root.clone()
        } else {
            Arc::new(
                open_in_root(
                    &self.root,
                    target_parent,
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                )
                .map_err(|e| {
                    entry_err(
                        raw,
                        format!("openat2 hard link target {:?}", lossy(target)),
                        e,
                    )
                })?,
            )
        };
        let dir = self.parent(raw, parent)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink.
        self.create_replacing(raw, &dir, parent, name, "linkat", || {
            linkat(&*target_dir, target_name, &*dir, name, AtFlags::empty())
        })?;
        Ok(())
    }

    pub(super) fn whiteout(
        &mut self,
        raw: &[u8],
        parent: &[u8],
        name: &[u8],
    ) -> Result<(), UnpackError> {
        if name.is_empty() || name == b"." || name == b".." {
            return Err(invalid(raw, "whiteout of an invalid name"));
        }
        let dir = self.parent(raw, parent)?;
        self.create_replacing(raw, &dir, parent, name, "mknodat whiteout", || {
            mknodat(&*dir, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        })?;
        Ok(())
    }

    pub(super) fn opaque(&mut self, raw: &[u8], parent: &[u8]) -> Result<(), UnpackError> {
        let dir = self.parent(raw, parent)?;
        let fd = openat(
            &*dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| entry_err(raw, "openat", e))?;
        File::from(fd)
            .set_xattr(OVERLAY_OPAQUE_XATTR, b"y")
            .map_err(|e| entry_err(raw, "fsetxattr trusted.overlay.opaque", io_errno(&e)))
    }

    /// Sets the deferred directory times, deepest first.
    pub(super) fn set_dir_times(&mut self) -> Result<(), UnpackError> {
        let mut dirs: Vec<(Vec<u8>, TimeSpec)> =
            std::mem::take(&mut self.dir_times).into_iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(depth(path)));
        for (path, time) in dirs {
            let fd = if path.is_empty() {
                None
            } else {
                match open_in_root(
                    &self.root,
                    &path,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                ) {
                    Ok(fd) => Some(fd),
                    // Replaced later in the layer through a symlinked alias.
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                    Err(e) => return Err(entry_err(&path, "openat2 (directory times)", e)),
                }
            };
            let target: &OwnedFd = fd.as_ref().unwrap_or(&self.root);
            futimens(target, &time, &time)
                .map_err(|e| entry_err(&path, "futimens (directory times)", e))?;
        }
        Ok(())
    }
}

/// Copies an entry's data into `file` through `buf`, in large writes.
fn copy_data(
    src: &mut impl Read,
    file: &mut File,
    buf: &mut [u8],
    raw: &[u8],
) -> Result<u64, UnpackError> {
    let io_err = |op, error| UnpackError::EntryIo {
        path: lossy(raw),
        op,
        error,
    };
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading data", e)),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        file.write_all(&buf[..filled])
            .map_err(|e| io_err("write", e))?;
        total += filled as u64;
        if filled < buf.len() {
            return Ok(total);
        }
    }
}
