//! The privacy of tankd's state on the host.
//!
//! Owns the modes of `data_dir` and `run_dir` and of tankd's own trees in
//! them. Everything below those two roots belongs to root alone: the roots
//! are 0700, so no other host user can list, read or execute anything in
//! them — not a set-uid-root binary a container left in a volume, an upper
//! dir or an image layer (the CVE-2021-41091 pattern), not the store's
//! files with env values, not container output. tankd runs with umask 077,
//! so what it creates is private unless a caller sets a mode on purpose;
//! the few things a container must see with their own modes (the root of
//! an upper dir, a volume's root, the pod's /etc files, layer contents)
//! are created with explicit modes where they are made, and never touched
//! here.
//!
//! At start, [`tighten`] brings a state tree left open by an older tankd
//! (umask 022) to the same modes. It never changes anything a container
//! sees (layer contents, volume contents, upper dirs) and never follows a
//! symlink.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

/// Mode of tankd's private directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of tankd's private files.
pub const PRIVATE_FILE: u32 = 0o600;
/// tankd's umask: group and others get nothing.
pub const UMASK: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create or secure {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is owned by uid {owner}: tankd's state must belong to root \
         (whoever owns it could reach every container's files)"
    )]
    Owner { path: PathBuf, owner: u32 },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateDirError + '_ {
    move |source| StateDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes what the process creates from now on private (umask 077).
pub fn use_private_umask() {
    nix::sys::stat::umask(Mode::from_bits_truncate(UMASK));
}

/// Creates `root` (0700, parents as needed) or, when it exists, checks that
/// it is a directory owned by this process's user and sets it to 0700.
pub fn prepare_root(root: &Path) -> Result<(), StateDirError> {
    if std::fs::symlink_metadata(root).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(root)
            .map_err(io(root))?;
    }
    let meta = std::fs::symlink_metadata(root).map_err(io(root))?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateDirError::Owner {
            path: root.to_owned(),
            owner: meta.uid(),
        });
    }
    set_mode(root, &meta, PRIVATE_DIR)
}

/// How far [`tighten`] goes below a path of tankd's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The directory and the directories down to this many levels below
    /// it; no files (what lies deeper is a container's: layer contents,
    /// volume contents, upper dirs).
    Dirs(usize),
    /// Everything below: tankd's own files.
    Tree,
}

/// tankd's own trees in `data_dir`, and how far each is tightened:
/// `layers/<chain>`, `volumes/<pod>/<volume>` and
/// `containers/<pod>/<container>/{upper,rootfs}` are what containers see.
pub const DATA_DIR_TREES: &[(&str, Reach)] = &[
    ("store", Reach::Tree),
    ("logs", Reach::Tree),
    ("content", Reach::Tree),
    ("images", Reach::Tree),
    ("layers", Reach::Dirs(0)),
    ("volumes", Reach::Dirs(1)),
    ("containers", Reach::Dirs(2)),
];

/// tankd's own trees in `run_dir`. `netns` holds bind mounts of namespace
/// files: only the directory is tightened.
pub const RUN_DIR_TREES: &[(&str, Reach)] = &[
    ("status", Reach::Tree),
    ("containers", Reach::Tree),
    ("netns", Reach::Dirs(0)),
];

/// Brings `root`'s listed trees to private modes (directories 0700, files
/// 0600; set-uid and other bits cleared). Returns how many paths changed.
/// Missing trees are fine; failures are logged, not fatal (the 0700 root
/// already keeps everyone out).
pub fn tighten(root: &Path, trees: &[(&str, Reach)]) -> usize {
    let mut changed = 0;
    for (name, reach) in trees {
        let top = root.join(name);
        changed += match reach {
            Reach::Dirs(depth) => tighten_below(&top, *depth, false),
            Reach::Tree => tighten_below(&top, usize::MAX, true),
        };
    }
    changed
}

/// Tightens `path` and, down to `depth` levels, the directories below it
/// (and their files when `files`).
fn tighten_below(path: &Path, depth: usize, files: bool) -> usize {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut changed = 0;
    if meta.is_dir() {
        changed += usize::from(tighten_one(path, &meta, PRIVATE_DIR));
        if depth == 0 {
            return changed;
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return changed;
        };
        for entry in entries.flatten() {
            let child = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => changed += tighten_below(&child, depth - 1, files),
                Ok(t) if files && (t.is_file() || t.is_fifo()) => {
                    if let Ok(meta) = std::fs::symlink_metadata(&child) {
                        changed += usize::from(tighten_one(&child, &meta, PRIVATE_FILE));
                    }
                }
                _ => {}
            }
        }
    }
    changed
}

/// Sets `path` to `mode` if it has any other bits; true if it changed.
fn tighten_one(path: &Path, meta: &std::fs::Metadata, mode: u32) -> bool {
    if meta.mode() & 0o7777 == mode {
        return false;
    }
    match set_mode(path, meta, mode) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("{e}");
            false
        }
    }
}

fn set_mode(path: &Path, meta: &std::fs::Metadata, mode: u32) -> Result<(), StateDirError> {
    if meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn open_tree(root: &Path) {
        for dir in [
            "store",
            "logs/web",
            "layers/abc/bin",
            "volumes/web/data/sub",
            "containers/web/app/upper/etc",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "store/000001.log",
            "logs/web/app.log",
            "layers/abc/bin/sh",
            "volumes/web/data/file",
            "containers/web/app/upper/etc/x",
        ] {
            std::fs::write(root.join(file), "x").unwrap();
        }
        for path in [
            "",
            "store",
            "logs",
            "logs/web",
            "layers",
            "layers/abc",
            "volumes",
            "volumes/web",
            "volumes/web/data",
            "containers",
            "containers/web",
            "containers/web/app",
            "containers/web/app/upper",
        ] {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        for path in [
            "store/000001.log",
            "logs/web/app.log",
            "volumes/web/data/file",
        ] {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        std::fs::set_permissions(
            root.join("layers/abc/bin/sh"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
    }

    #[test]
    fn tighten_closes_tankds_trees_and_leaves_container_contents_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        open_tree(&root);
        let changed = tighten(&root, DATA_DIR_TREES);
        assert!(changed >= 10, "{changed}");
        for private in [
            "store",
            "logs",
            "logs/web",
            "layers",
            "volumes",
            "volumes/web",
            "containers",
            "containers/web",
            "containers/web/app",
        ] {
            assert_eq!(mode(&root.join(private)), PRIVATE_DIR, "{private}");
        }
        for file in ["store/000001.log", "logs/web/app.log"] {
            assert_eq!(mode(&root.join(file)), PRIVATE_FILE, "{file}");
        }
        // What containers see keeps its modes.
        assert_eq!(mode(&root.join("layers/abc")), 0o755);
        assert_eq!(mode(&root.join("layers/abc/bin/sh")), 0o4755);
        assert_eq!(mode(&root.join("volumes/web/data")), 0o755);
        assert_eq!(mode(&root.join("volumes/web/data/file")), 0o644);
        assert_eq!(mode(&root.join("containers/web/app/upper")), 0o755);
        // A second pass has nothing left to do.
        assert_eq!(tighten(&root, DATA_DIR_TREES), 0);
    }

    #[test]
    fn tighten_never_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(outside.join("f"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::os::unix::fs::symlink(&outside, root.join("logs/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), root.join("logs/flink")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("store")).unwrap();
        tighten(&root, DATA_DIR_TREES);
        assert_eq!(mode(&outside), 0o755);
        assert_eq!(mode(&outside.join("f")), 0o644);
    }

    #[test]
    fn prepare_root_creates_or_closes_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/data");
        prepare_root(&fresh).unwrap();
        assert_eq!(mode(&fresh), PRIVATE_DIR);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_root(&open).unwrap();
        assert_eq!(mode(&open), PRIVATE_DIR);
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            prepare_root(&file),
            Err(StateDirError::NotADirectory { .. })
        ));
    }
}
