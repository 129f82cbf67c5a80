//! The init stage's mounts: the rootfs, the standard file systems inside
//! it, bind mounts, masked and read-only paths, and `pivot_root`.
//!
//! Every path inside the container is resolved relative to an fd of the
//! mounted rootfs with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
//! absolute symlinks and `..` in the image stay inside it, so an image
//! symlink like `/var/lib/app -> /etc` or `escape -> /var/tmp/x` can never
//! redirect a mount onto the host. Missing components are created with
//! `mkdirat` on the resolved parent's fd (a dangling symlink is followed,
//! inside the rootfs, like runc's securejoin), and the mount lands on the
//! resolved fd itself: `/proc/self/fd/<fd>` as the `mount(2)` target, or
//! `move_mount(MOVE_MOUNT_T_EMPTY_PATH)` for bind mounts.
//!
//! Bind mounts are `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` copies made
//! read-only with `mount_setattr(AT_RECURSIVE)` while still detached, then
//! attached with `move_mount`: read-only covers nested mounts, and no
//! window exists in which the container sees them writable. Only per-mount
//! flags are ever changed, never a superblock shared with the host.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{fstat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use super::{failed, Step};
use crate::runtime::plan::{is_component, BindMount, CgroupView, InitPlan, RootfsPlan};

/// The most bytes of `mount(2)` options the kernel reads (one page, with
/// the NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// Symlinks followed while creating one destination.
const MAX_SYMLINKS: usize = 40;

// open_tree / move_mount / mount_setattr flags (include/uapi/linux/mount.h).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x01;
const MOUNT_ATTR_NOSUID: u64 = 0x02;
const MOUNT_ATTR_NODEV: u64 = 0x04;
const MOUNT_ATTR_NOEXEC: u64 = 0x08;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Mounts the rootfs at `plan.rootfs_target` and returns an fd of it.
pub(super) fn mount_rootfs(plan: &InitPlan) -> Step<OwnedFd> {
    let target = &plan.rootfs_target;
    match &plan.rootfs {
        RootfsPlan::Overlay { lower, upper, work } => {
            let (options, chdir) = overlay_options(lower, upper, work)?;
            if let Some(dir) = chdir {
                nix::unistd::chdir(&dir).map_err(|e| failed("chdir", dir.display(), e))?;
            }
            nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|e| failed("mount overlay on", target.display(), e))?;
        }
        RootfsPlan::Bind { path } => {
            nix::mount::mount(
                Some(path),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                failed(
                    "mount",
                    format!("{} on {}", path.display(), target.display()),
                    e,
                )
            })?;
        }
    }
    // The rootfs target is tankd's own path (trusted).
    nix::fcntl::open(
        target,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failed("open rootfs", target.display(), e))
}

/// The overlay mount options, and the directory to `chdir` into first when
/// the lower dirs had to be given relative to it to fit in one page.
pub(crate) fn overlay_options(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Step<(String, Option<PathBuf>)> {
    if lower.is_empty() {
        return Err("mount overlay: no lower layer".into());
    }
    let text = |p: &Path| -> Step<String> {
        let s = p
            .to_str()
            .ok_or_else(|| format!("mount overlay: {} is not UTF-8", p.display()))?;
        if s.is_empty() || s.contains([',', ':', '\\']) {
            return Err(format!(
                "mount overlay: layer path {s:?} is empty or contains ',', ':' or '\\'"
            ));
        }
        Ok(s.to_owned())
    };
    // `volatile`: no syncs for the upper layer. It is thrown away and made
    // afresh at every start, so a crash can never leave one to reuse; and
    // without it, tearing the container down syncs the whole filesystem.
    let tail = format!(
        ",upperdir={},workdir={},volatile",
        text(upper)?,
        text(work)?
    );
    let absolute = lower.iter().map(|p| text(p)).collect::<Step<Vec<_>>>()?;
    let options = format!("lowerdir={}{tail}", absolute.join(":"));
    if options.len() <= MAX_MOUNT_DATA {
        return Ok((options, None));
    }
    // Too long: if all layers share a parent, name them relative to it.
    let parent = lower[0].parent().map(Path::to_path_buf);
    if let Some(parent) = parent.filter(|p| lower.iter().all(|l| l.parent() == Some(p.as_path()))) {
        let names = lower
            .iter()
            .map(|l| text(Path::new(l.file_name().unwrap_or_default())))
            .collect::<Step<Vec<_>>>()?;
        let options = format!("lowerdir={}{tail}", names.join(":"));
        if options.len() <= MAX_MOUNT_DATA {
            return Ok((options, Some(parent)));
        }
    }
    Err(format!(
        "mount overlay: {} layers do not fit in the {MAX_MOUNT_DATA} bytes of mount options",
        lower.len()
    ))
}

/// `/proc`, `/sys`, `/dev` (+ nodes), `/dev/pts`, `/dev/shm`, `/dev/mqueue`.
pub(super) fn mount_standard(root: &OwnedFd, plan: &InitPlan) -> Step<()> {
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs(root, "/proc", "proc", hardened, None)?;
    if plan.netns.is_some() {
        // A sysfs of our own netns (its /sys/class/net shows only ours).
        mount_fs(root, "/sys", "sysfs", hardened | MsFlags::MS_RDONLY, None)?;
    } else {
        // Network "host": sysfs is tagged with the mounter's netns, so
        // show the host's, read-only all the way down.
        let tree = open_tree(None, Path::new("/sys"), true)
            .map_err(|e| failed("mount", "/sys on /sys", e))?;
        let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        set_attrs(&tree, attrs).map_err(|e| failed("make read-only", "/sys", e))?;
        let dest = resolve_create(root, Path::new("/sys"), Kind::Dir)
            .map_err(|e| failed("mount", "/sys", e))?
            .0;
        move_mount(&tree, &dest).map_err(|e| failed("mount", "/sys", e))?;
    }
    mount_cgroup_view(root, &plan.cgroup)?;

    mount_fs(
        root,
        "/dev",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    let dev = open_in_root(root, Path::new("dev")).map_err(|e| failed("open", "/dev", e))?;
    populate_dev(&dev)?;

    // The tty group of the image owns new ptys (gid 5 nearly everywhere).
    let tty_gid = crate::image::user::resolve_user(&plan.rootfs_target, Some("0:tty"))
        .ok()
        .map(|u| u.gid);
    let pts = match tty_gid {
        Some(gid) => format!("newinstance,ptmxmode=0666,mode=0620,gid={gid}"),
        None => "newinstance,ptmxmode=0666,mode=0620".to_owned(),
    };
    mount_fs(
        root,
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&pts),
    )?;
    mount_fs(
        root,
        "/dev/shm",
        "tmpfs",
        hardened,
        Some("mode=1777,size=65536k"),
    )?;
    mount_fs(root, "/dev/mqueue", "mqueue", hardened, None)?;
    Ok(())
}

/// Where the container's cgroups are shown.
const CGROUP_DIR: &str = "/sys/fs/cgroup";

/// The most mounts stacked on [`CGROUP_DIR`] that are detached.
const MAX_STACKED_MOUNTS: usize = 16;

/// `/sys/fs/cgroup`: the container's own cgroups, read-only ([`CgroupView`]).
/// Whatever is mounted there already — the host's hierarchies, in the
/// recursive bind of the host's `/sys` of network "host" — is detached
/// first. Runs after `unshare(CLONE_NEWCGROUP)`: inside a cgroup namespace
/// a new cgroup mount (v1 or v2) shows the namespace's root, the
/// container's cgroup, and the kernel ignores cgroup2 root options there
/// (so the missing `nsdelegate` of this mount cannot clear the host's).
/// Every mount is `nosuid,nodev,noexec,ro`; the v1 tmpfs holding the
/// hierarchies is made read-only once they are in place.
fn mount_cgroup_view(root: &OwnedFd, view: &CgroupView) -> Step<()> {
    let target =
        || open_in_root(root, Path::new(CGROUP_DIR)).map_err(|e| failed("mount", CGROUP_DIR, e));
    // Each round detaches the topmost mount (with everything below it);
    // EINVAL: no mount left on the directory of sysfs.
    for _ in 0..MAX_STACKED_MOUNTS {
        let top = target()?;
        match nix::mount::umount2(fd_path(&top).as_str(), MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL) => break,
            Err(e) => return Err(failed("detach the host's mounts on", CGROUP_DIR, e)),
        }
    }
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match view {
        CgroupView::Unified => {
            let dir = target()?;
            nix::mount::mount(
                Some("cgroup2"),
                fd_path(&dir).as_str(),
                Some("cgroup2"),
                hardened | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| failed("mount cgroup2 on", CGROUP_DIR, e))
        }
        CgroupView::Hierarchies { mounts, links } => {
            nix::mount::mount(
                Some("tmpfs"),
                fd_path(&target()?).as_str(),
                Some("tmpfs"),
                hardened,
                Some("mode=755"),
            )
            .map_err(|e| failed("mount tmpfs on", CGROUP_DIR, e))?;
            // The tmpfs's root, now on top.
            let dir = target()?;
            for m in mounts {
                let path = format!("{CGROUP_DIR}/{}", m.dir);
                if !is_component(&m.dir) {
                    return Err(format!("mount {path}: not a plain name"));
                }
                mkdirat(&dir, m.dir.as_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| failed("mkdir", &path, e))?;
                let sub = nix::fcntl::openat(
                    &dir,
                    m.dir.as_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| failed("open", &path, e))?;
                let fstype = if m.v2 { "cgroup2" } else { "cgroup" };
                nix::mount::mount(
                    Some(fstype),
                    fd_path(&sub).as_str(),
                    Some(fstype),
                    hardened | MsFlags::MS_RDONLY,
                    Some(m.data.as_str()).filter(|d| !d.is_empty()),
                )
                .map_err(|e| failed(&format!("mount {fstype} {:?} on", m.data), &path, e))?;
            }
            for link in links {
                let path = format!("{CGROUP_DIR}/{}", link.name);
                if !is_component(&link.name) {
                    return Err(format!("symlink {path}: not a plain name"));
                }
                nix::unistd::symlinkat(link.target.as_str(), &dir, link.name.as_str())
                    .map_err(|e| failed("symlink", &path, e))?;
            }
            let attrs =
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
            set_attrs(&dir, attrs).map_err(|e| failed("make read-only", CGROUP_DIR, e))
        }
    }
}

/// The standard nodes and links of a fresh `/dev` tmpfs.
fn populate_dev(dev: &OwnedFd) -> Step<()> {
    const NODES: [(&str, u64, u64); 6] = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    for (name, major, minor) in NODES {
        mknodat(
            dev,
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| failed("mknod", format!("/dev/{name}"), e))?;
    }
    const LINKS: [(&str, &str); 5] = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    for (name, target) in LINKS {
        nix::unistd::symlinkat(target, dev, name)
            .map_err(|e| failed("symlink", format!("/dev/{name}"), e))?;
    }
    for name in ["pts", "shm", "mqueue"] {
        mkdirat(dev, name, Mode::from_bits_truncate(0o755))
            .map_err(|e| failed("mkdir", format!("/dev/{name}"), e))?;
    }
    Ok(())
}

/// Mounts a file system of `fstype` on `dest` inside the rootfs.
fn mount_fs(
    root: &OwnedFd,
    dest: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Step<()> {
    let (fd, _) =
        resolve_create(root, Path::new(dest), Kind::Dir).map_err(|e| failed("mount", dest, e))?;
    nix::mount::mount(
        Some(fstype),
        fd_path(&fd).as_str(),
        Some(fstype),
        flags,
        data,
    )
    .map_err(|e| failed("mount", dest, e))
}

/// The plan's bind mounts, in order.
pub(super) fn mount_binds(root: &OwnedFd, mounts: &[BindMount]) -> Step<()> {
    for m in mounts {
        let what = format!("{} on {}", m.source.display(), m.destination.display());
        let tree = open_tree(None, &m.source, true).map_err(|e| failed("mount", &what, e))?;
        let is_dir = fstat(&tree)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .map_err(|e| failed("mount", &what, e))?;
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        let (dest, _) =
            resolve_create(root, &m.destination, kind).map_err(|e| failed("mount", &what, e))?;
        if m.read_only {
            set_attrs(&tree, MOUNT_ATTR_RDONLY)
                .map_err(|e| failed("make read-only", m.destination.display(), e))?;
        }
        move_mount(&tree, &dest).map_err(|e| failed("mount", &what, e))?;
    }
    Ok(())
}

/// Creates the cwd if missing, owned by the container's user (as Docker's
/// WORKDIR); an existing one is left as it is.
pub(super) fn prepare_cwd(root: &OwnedFd, cwd: &Path, uid: u32, gid: u32) -> Step<()> {
    let (fd, created) =
        resolve_create(root, cwd, Kind::Dir).map_err(|e| failed("create cwd", cwd.display(), e))?;
    if created {
        fchownat(
            &fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| failed("chown cwd", cwd.display(), e))?;
    }
    Ok(())
}

/// Masks `paths` (missing ones are skipped): the container's `/dev/null`
/// over files, an empty read-only tmpfs over directories.
pub(super) fn mask_paths(root: &OwnedFd, paths: &[PathBuf]) -> Step<()> {
    for path in paths {
        let fd = match open_in_root(root, path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(failed("mask", path.display(), e)),
        };
        let st = fstat(&fd).map_err(|e| failed("mask", path.display(), e))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            nix::mount::mount(
                Some("tmpfs"),
                fd_path(&fd).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=755,size=4k"),
            )
            .map_err(|e| failed("mask", path.display(), e))?;
        } else {
            let null = open_in_root(root, Path::new("dev/null"))
                .map_err(|e| failed("open", "/dev/null", e))?;
            let tree = open_tree(Some(&null), Path::new(""), false)
                .map_err(|e| failed("mask", path.display(), e))?;
            move_mount(&tree, &fd).map_err(|e| failed("mask", path.display(), e))?;
        }
    }
    Ok(())
}

/// Makes `paths` read-only (missing ones are skipped): a recursive bind of
/// each onto itself, read-only.
pub(super) fn readonly_paths(root: &OwnedFd, paths: &[PathBuf]) -> Step<()> {
    for path in paths {
        let fd = match open_in_root(root, path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(failed("make read-only", path.display(), e)),
        };
        let tree = open_tree(Some(&fd), Path::new(""), true)
            .map_err(|e| failed("make read-only", path.display(), e))?;
        set_attrs(&tree, MOUNT_ATTR_RDONLY)
            .map_err(|e| failed("make read-only", path.display(), e))?;
        move_mount(&tree, &fd).map_err(|e| failed("make read-only", path.display(), e))?;
    }
    Ok(())
}

/// `pivot_root(".", ".")` from inside the new root, then detach the old
/// root stacked under it: no put_old directory needed, nothing of the host
/// remains reachable.
pub(super) fn pivot(root: &OwnedFd) -> Step<()> {
    nix::unistd::fchdir(root).map_err(|e| failed("chdir", "rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| failed("pivot_root", ".", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| failed("detach old root", ".", e))?;
    nix::unistd::chdir("/").map_err(|e| failed("chdir", "/", e))
}

// --- resolution inside the rootfs ----------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// `/proc/self/fd/<fd>`: the `mount(2)` target that is exactly this fd's
/// file (valid while /proc is the host's, i.e. before `pivot_root`).
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `path` (absolute or not) relative to the rootfs, `.` for the root.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// An `O_PATH` fd of `path` resolved inside `root` (symlinks followed,
/// scoped to the root).
fn open_in_root(root: &OwnedFd, path: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = relative(path);
    let mut attempts = 0;
    loop {
        match openat2(root, &rel, how) {
            // A concurrent rename/mount may make the kernel ask for a retry.
            Err(Errno::EAGAIN | Errno::EINTR) if attempts < 16 => attempts += 1,
            result => return result,
        }
    }
}

/// Resolves `path` inside `root`, creating what is missing: directories
/// for the intermediate components and a `kind` for the last one. A
/// dangling symlink on the way is followed (inside the root). Returns the
/// `O_PATH` fd and whether the last component was created here.
pub(crate) fn resolve_create(
    root: &OwnedFd,
    path: &Path,
    kind: Kind,
) -> Result<(OwnedFd, bool), Errno> {
    let mut path = relative(path);
    let mut created = false;
    let mut symlinks = 0;
    // Each round creates one component or expands one symlink.
    for _ in 0..(4 * MAX_SYMLINKS + path.components().count() * 2 + 8) {
        match open_in_root(root, &path) {
            Ok(fd) => return Ok((fd, created)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let parts: Vec<Component<'_>> = path.components().collect();
        // The first prefix that does not exist (prefixes of an existing
        // path exist, so the search is monotonic).
        let mut parent = open_in_root(root, Path::new("."))?;
        let mut missing = None;
        for i in 0..parts.len() {
            let prefix: PathBuf = parts[..=i].iter().collect();
            match open_in_root(root, &prefix) {
                Ok(fd) => parent = fd,
                Err(Errno::ENOENT) => {
                    missing = Some(i);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let Some(i) = missing else {
            continue; // it appeared meanwhile
        };
        let Component::Normal(name) = parts[i] else {
            return Err(Errno::ENOENT);
        };
        let last = i + 1 == parts.len();
        match nix::fcntl::readlinkat(&parent, name) {
            Ok(target) => {
                // A dangling symlink: continue along its target.
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = Path::new(&target);
                let mut next: PathBuf = if target.is_absolute() {
                    PathBuf::new()
                } else {
                    parts[..i].iter().collect()
                };
                next.push(relative(target));
                next.extend(&parts[i + 1..]);
                path = relative(&next);
                continue;
            }
            Err(Errno::ENOENT) => {}
            // Exists but is no symlink: appeared meanwhile; look again.
            Err(Errno::EINVAL) => continue,
            Err(e) => return Err(e),
        }
        let made = if last && kind == Kind::File {
            nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            mkdirat(&parent, name, Mode::from_bits_truncate(0o755))
        };
        match made {
            Ok(()) => created = last,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ELOOP)
}

// --- the new mount API (raw system calls) ------------------------------------

/// `open_tree(OPEN_TREE_CLONE)`: a detached copy of the mount at `path`
/// (relative to `dirfd`, or the fd itself when `path` is empty).
fn open_tree(dirfd: Option<&OwnedFd>, path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: open_tree reads the NUL-terminated path for the duration of
    // the call; it returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, c_path.as_ptr(), flags) };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

/// `mount_setattr(AT_RECURSIVE)` setting `attrs` on the whole tree at `fd`.
fn set_attrs(fd: &OwnedFd, attrs: u64) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE;
    // SAFETY: mount_setattr reads `attr` (a valid mount_attr of the size
    // passed) and the empty path during the call only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Attaches the detached tree `tree` on exactly the file `dest` refers to.
fn move_mount(tree: &OwnedFd, dest: &impl AsFd) -> Result<(), Errno> {
    let flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: move_mount reads the two empty NUL-terminated paths during
    // the call only; both fds are borrowed for it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dest.as_fd().as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_absolute() {
        let lower = vec![PathBuf::from("/l/b"), PathBuf::from("/l/a")];
        let (opts, dir) = overlay_options(&lower, Path::new("/s/u"), Path::new("/s/w")).unwrap();
        assert_eq!(
            opts,
            "lowerdir=/l/b:/l/a,upperdir=/s/u,workdir=/s/w,volatile"
        );
        assert_eq!(dir, None);
    }

    #[test]
    fn overlay_options_long_go_relative() {
        let root = format!("/var/lib/tank/layers{}", "/x".repeat(10));
        let lower: Vec<PathBuf> = (0..60)
            .map(|i| PathBuf::from(format!("{root}/{i:064x}")))
            .collect();
        let (opts, dir) = overlay_options(&lower, Path::new("/u"), Path::new("/w")).unwrap();
        assert!(opts.starts_with(&format!("lowerdir={:064x}:", 0)), "{opts}");
        assert!(opts.len() <= MAX_MOUNT_DATA);
        assert_eq!(dir, Some(PathBuf::from(root)));
        // Too many even so.
        let lower: Vec<PathBuf> = (0..80)
            .map(|i| PathBuf::from(format!("/l/{i:064x}")))
            .collect();
        let e = overlay_options(&lower, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(e.contains("80 layers do not fit"), "{e}");
    }

    #[test]
    fn overlay_options_reject_separators() {
        for bad in ["/l/a:b", "/l/a,b", "/l/a\\b"] {
            let e = overlay_options(&[PathBuf::from(bad)], Path::new("/u"), Path::new("/w"))
                .unwrap_err();
            assert!(e.contains("contains"), "{e}");
        }
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
        assert_eq!(relative(Path::new("/a/b/")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("a/../b")), PathBuf::from("a/../b"));
    }

    #[test]
    fn resolve_create_stays_inside() {
        let host = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let rootdir = host.path().join("root");
        std::fs::create_dir_all(rootdir.join("etc")).unwrap();
        // Absolute and relative escapes, and a dangling link.
        std::os::unix::fs::symlink(&outside, rootdir.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", rootdir.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("/run/x/y.conf", rootdir.join("etc/dangling")).unwrap();
        let root =
            nix::fcntl::open(&rootdir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();

        let (_, created) = resolve_create(&root, Path::new("/abs/x/y"), Kind::Dir).unwrap();
        assert!(created);
        let inside = rootdir.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("x/y").is_dir());
        let (_, created) = resolve_create(&root, Path::new("/etc/rel/z"), Kind::File).unwrap();
        assert!(created);
        assert!(rootdir.join("outside/z").is_file());
        let (_, created) = resolve_create(&root, Path::new("/etc/dangling"), Kind::File).unwrap();
        assert!(created);
        assert!(rootdir.join("run/x/y.conf").is_file());
        // Nothing happened outside.
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // An existing one is not "created".
        let (_, created) = resolve_create(&root, Path::new("/etc"), Kind::Dir).unwrap();
        assert!(!created);
        // A file in the way.
        std::fs::write(rootdir.join("file"), "").unwrap();
        assert_eq!(
            resolve_create(&root, Path::new("/file/sub"), Kind::Dir).unwrap_err(),
            Errno::ENOTDIR
        );
        // A symlink loop.
        std::os::unix::fs::symlink("/loop", rootdir.join("loop")).unwrap();
        assert_eq!(
            resolve_create(&root, Path::new("/loop/x"), Kind::Dir).unwrap_err(),
            Errno::ELOOP
        );
    }
}
