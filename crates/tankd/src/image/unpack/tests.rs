//! Tests for layer unpacking: real filesystem, run as root (mknod, chown and
//! trusted.* xattrs). Every malicious case checks that nothing outside the
//! layer root changed, against a sentinel directory beside it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::*;

const MTIME: u64 = 1_600_000_000;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: layer unpack tests need root");
            return;
        }
    };
}

/// A layer root and, beside it, a sentinel directory the layer must never
/// reach. Under /var/tmp: ext4 here, with trusted.* xattrs and device
/// nodes (a tmpfs /tmp would do too, but /var/tmp is disk on most hosts).
struct Fixture {
    base: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let base = tempfile::Builder::new()
            .prefix("tank-unpack-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"sentinel").unwrap();
        Fixture {
            base,
            root,
            outside,
        }
    }

    fn unpack(&self, layer: &[u8]) -> Result<UnpackStats, UnpackError> {
        unpack_layer(layer, Compression::None, &self.root)
    }

    /// Unpacks a malicious layer and asserts nothing outside the root
    /// changed (the sentinel directory, the temp dir holding both, and
    /// /etc/passwd).
    fn unpack_hostile(&self, layer: &[u8]) -> Result<UnpackStats, UnpackError> {
        let before = self.snapshot();
        let passwd = describe(Path::new("/etc/passwd"));
        let result = self.unpack(layer);
        assert_eq!(
            self.snapshot(),
            before,
            "something outside the root changed"
        );
        assert_eq!(describe(Path::new("/etc/passwd")), passwd);
        result
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        out.insert(self.base.path().to_path_buf(), describe(self.base.path()));
        walk(self.base.path(), &self.root, &mut out);
        out
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The sentinel directory's absolute path, as an archive name.
    fn outside_name(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }
}

fn describe(path: &Path) -> String {
    let meta = fs::symlink_metadata(path).unwrap();
    let mut desc = format!(
        "mode={:o} uid={} gid={} size={} nlink={} ino={} mtime={}.{}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.len(),
        meta.nlink(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    if meta.file_type().is_symlink() {
        desc += &format!(" -> {:?}", fs::read_link(path).unwrap());
    } else if meta.is_file() {
        desc += &format!(" data={:?}", fs::read(path).unwrap());
    }
    desc
}

fn walk(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        out.insert(path.clone(), describe(&path));
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(&path, skip, out);
        }
    }
}

/// Builds test layers with raw header names, so names the tar crate's own
/// setters refuse (`..`, absolute) can be written.
struct Layer {
    builder: Builder<Vec<u8>>,
}

struct Spec<'a> {
    kind: EntryType,
    name: &'a [u8],
    link: Option<&'a [u8]>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: &'a [u8],
}

impl<'a> Spec<'a> {
    fn new(kind: EntryType, name: &'a str) -> Spec<'a> {
        Spec {
            kind,
            name: name.as_bytes(),
            link: None,
            mode: if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: MTIME,
            data: b"",
        }
    }
}

impl Layer {
    fn new() -> Layer {
        Layer {
            builder: Builder::new(Vec::new()),
        }
    }

    fn add(&mut self, spec: Spec<'_>) -> &mut Layer {
        let mut header = Header::new_gnu();
        header.set_entry_type(spec.kind);
        header.set_mode(spec.mode);
        header.set_uid(spec.uid);
        header.set_gid(spec.gid);
        header.set_mtime(spec.mtime);
        header.set_size(spec.data.len() as u64);
        {
            let old = header.as_old_mut();
            assert!(spec.name.len() <= old.name.len(), "use a GNU long name");
            old.name = [0; 100];
            old.name[..spec.name.len()].copy_from_slice(spec.name);
            if let Some(link) = spec.link {
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link);
            }
        }
        header.set_cksum();
        self.builder.append(&header, spec.data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Layer {
        self.add(Spec {
            data,
            ..Spec::new(EntryType::Regular, name)
        })
    }

    fn dir(&mut self, name: &str) -> &mut Layer {
        self.add(Spec::new(EntryType::Directory, name))
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Layer {
        self.add(Spec {
            link: Some(target.as_bytes()),
            mode: 0o777,
            ..Spec::new(EntryType::Symlink, name)
        })
    }

    fn hard_link(&mut self, name: &str, target: &str) -> &mut Layer {
        self.add(Spec {
            link: Some(target.as_bytes()),
            ..Spec::new(EntryType::Link, name)
        })
    }

    fn device(&mut self, kind: EntryType, name: &str, major: u32, minor: u32) -> &mut Layer {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_path(name).unwrap();
        header.set_mode(0o666);
        header.set_mtime(MTIME);
        header.set_size(0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        header.set_cksum();
        self.builder.append(&header, &[][..]).unwrap();
        self
    }

    /// PAX records for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Layer {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn build(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

fn meta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

// ---------------------------------------------------------------------------
// Positive cases

#[test]
fn regular_file_keeps_content_mode_owner_and_mtime() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .add(Spec {
            mode: 0o640,
            uid: 1000,
            gid: 2000,
            mtime: 1_500_000_000,
            data: b"hello world",
            ..Spec::new(EntryType::Regular, "etc/hello")
        })
        .build();
    let stats = fx.unpack(&layer).unwrap();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 1,
            bytes: 11,
            diff_id: Digest::of(&layer),
        }
    );
    let path = fx.path("etc/hello");
    let m = meta(&path);
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1000, 2000));
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(m.atime(), 1_500_000_000); // before reading it updates atime
    assert_eq!(fs::read(&path).unwrap(), b"hello world");
    // The missing parent was created 0755 root:root.
    let parent = meta(&fx.path("etc"));
    assert!(parent.is_dir());
    assert_eq!(parent.mode() & 0o7777, 0o755);
    assert_eq!((parent.uid(), parent.gid()), (0, 0));
}

#[test]
fn setuid_setgid_and_sticky_bits_are_kept_after_chown() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .add(Spec {
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            data: b"#!/bin/true\n",
            ..Spec::new(EntryType::Regular, "bin/suid")
        })
        .add(Spec {
            mode: 0o2755,
            gid: 50,
            data: b"x",
            ..Spec::new(EntryType::Regular, "bin/sgid")
        })
        .add(Spec {
            mode: 0o1777,
            ..Spec::new(EntryType::Directory, "tmp/")
        })
        .add(Spec {
            mode: 0o2775,
            gid: 8,
            ..Spec::new(EntryType::Directory, "var/mail/")
        })
        .build();
    fx.unpack(&layer).unwrap();
    let suid = meta(&fx.path("bin/suid"));
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!(suid.uid(), 1000);
    assert_eq!(meta(&fx.path("bin/sgid")).mode() & 0o7777, 0o2755);
    assert_eq!(meta(&fx.path("tmp")).mode() & 0o7777, 0o1777);
    let mail = meta(&fx.path("var/mail"));
    assert_eq!(mail.mode() & 0o7777, 0o2775);
    assert_eq!(mail.gid(), 8);
}

#[test]
fn directory_mtimes_are_set_after_their_contents() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .add(Spec {
            mtime: 1_000_000_000,
            mode: 0o755,
            ..Spec::new(EntryType::Directory, "./")
        })
        .add(Spec {
            mtime: 1_100_000_000,
            ..Spec::new(EntryType::Directory, "d/")
        })
        .add(Spec {
            mtime: 1_200_000_000,
            ..Spec::new(EntryType::Directory, "d/e/")
        })
        .file("d/e/f", b"1")
        .file("d/g", b"2")
        .file("top", b"3")
        .build();
    fx.unpack(&layer).unwrap();
    assert_eq!(meta(&fx.path("d")).mtime(), 1_100_000_000);
    assert_eq!(meta(&fx.path("d/e")).mtime(), 1_200_000_000);
    assert_eq!(meta(&fx.path("d/g")).mtime(), MTIME as i64);
    // "./" is the layer root itself.
    let root = meta(&fx.root);
    assert_eq!(root.mtime(), 1_000_000_000);
    assert_eq!(root.mode() & 0o7777, 0o755);
}

#[test]
fn pax_records_give_long_names_big_ids_and_subsecond_mtimes() {
    require_root!();
    let fx = Fixture::new();
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
    let mut layer = Layer::new();
    layer.pax(&[
        ("path", long.as_bytes()),
        ("uid", b"3000000"),
        ("gid", b"3000001"),
        ("mtime", b"1600000000.123456789"),
    ]);
    layer.add(Spec {
        data: b"long",
        ..Spec::new(EntryType::Regular, "placeholder")
    });
    // A GNU long name (the tar crate writes one for names over 100 bytes).
    let gnu_long = format!("g/{}", "n".repeat(200));
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(3);
    layer
        .builder
        .append_data(&mut header, &gnu_long, &b"gnu"[..])
        .unwrap();
    let layer = layer.build();
    fx.unpack(&layer).unwrap();
    let m = meta(&fx.path(&long));
    assert_eq!(fs::read(fx.path(&long)).unwrap(), b"long");
    assert_eq!((m.uid(), m.gid()), (3_000_000, 3_000_001));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert!(!exists(&fx.path("placeholder")));
    assert_eq!(fs::read(fx.path(&gnu_long)).unwrap(), b"gnu");
}

#[test]
fn empty_numeric_header_fields_read_as_zero() {
    require_root!();
    let fx = Fixture::new();
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_path("f").unwrap();
    header.set_mode(0o644);
    header.set_size(1);
    header.as_old_mut().uid = [0; 8];
    header.as_old_mut().gid = *b"       \0";
    header.as_old_mut().mtime = [0; 12];
    header.set_cksum();
    let mut builder = Builder::new(Vec::new());
    builder.append(&header, &b"x"[..]).unwrap();
    fx.unpack(&builder.into_inner().unwrap()).unwrap();
    let m = meta(&fx.path("f"));
    assert_eq!((m.uid(), m.gid(), m.mtime()), (0, 0, 0));
}

#[test]
fn hard_link_inside_the_layer_shares_the_inode() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .file("bin/busybox", b"elf")
        .hard_link("bin/sh", "bin/busybox")
        .hard_link("usr/bin/env", "/bin/busybox")
        .build();
    fx.unpack(&layer).unwrap();
    let a = meta(&fx.path("bin/busybox"));
    assert_eq!(meta(&fx.path("bin/sh")).ino(), a.ino());
    assert_eq!(meta(&fx.path("usr/bin/env")).ino(), a.ino());
    assert_eq!(a.nlink(), 3);
}

#[test]
fn symlinks_are_kept_verbatim_and_not_followed() {
    require_root!();
    let fx = Fixture::new();
    let outside_keep = format!("{}/keep", fx.outside_name());
    let layer = Layer::new()
        .add(Spec {
            link: Some(b"/bin/busybox"),
            uid: 7,
            gid: 8,
            mtime: 1_234_567_890,
            ..Spec::new(EntryType::Symlink, "bin/sh")
        })
        .symlink("rel", "../../../x/y")
        .symlink("abs", &outside_keep)
        .build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(
        fs::read_link(fx.path("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let m = meta(&fx.path("bin/sh"));
    assert!(m.file_type().is_symlink());
    assert_eq!((m.uid(), m.gid(), m.mtime()), (7, 8, 1_234_567_890));
    assert_eq!(
        fs::read_link(fx.path("rel")).unwrap(),
        Path::new("../../../x/y")
    );
    assert_eq!(
        fs::read_link(fx.path("abs")).unwrap(),
        Path::new(&outside_keep)
    );
}

#[test]
fn whiteouts_become_char_devices_0_0() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .dir("etc/")
        .file("etc/old", b"made by this layer")
        .dir("etc/olddir/")
        .file("etc/olddir/inner", b"x")
        .file("etc/.wh.old", b"")
        .file("etc/.wh.olddir", b"")
        .file("etc/.wh.gone", b"")
        .file(".wh.toplevel", b"")
        .file("new/deep/.wh.x", b"")
        .build();
    fx.unpack(&layer).unwrap();
    for name in [
        "etc/old",
        "etc/olddir",
        "etc/gone",
        "toplevel",
        "new/deep/x",
    ] {
        let m = meta(&fx.path(name));
        assert!(m.file_type().is_char_device(), "{name} is not a whiteout");
        assert_eq!(m.rdev(), 0, "{name}");
    }
    assert!(!exists(&fx.path("etc/.wh.old")));
    assert!(!exists(&fx.path("etc/.wh.gone")));
}

#[test]
fn opaque_marker_sets_xattr_and_keeps_this_layers_content() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .dir("dir/")
        .file("dir/keep", b"kept")
        .file("dir/.wh..wh..opq", b"")
        .file("dir/after", b"also kept")
        .file("fresh/.wh..wh..opq", b"")
        .build();
    fx.unpack(&layer).unwrap();
    for dir in ["dir", "fresh"] {
        assert_eq!(
            xattr::get(fx.path(dir), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec()),
            "{dir}"
        );
    }
    assert_eq!(fs::read(fx.path("dir/keep")).unwrap(), b"kept");
    assert_eq!(fs::read(fx.path("dir/after")).unwrap(), b"also kept");
    assert!(!exists(&fx.path("dir/.wh..wh..opq")));
}

/// A version-2 file capability: cap_net_raw, effective.
fn net_raw_capability() -> Vec<u8> {
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    cap
}

#[test]
fn xattrs_kept_but_overlay_and_security_labels_dropped() {
    require_root!();
    let fx = Fixture::new();
    let cap = net_raw_capability();
    let records: Vec<(&str, &[u8])> = vec![
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.user.overlay.opaque", b"y"),
        (
            "SCHILY.xattr.security.selinux",
            b"system_u:object_r:bin_t:s0",
        ),
        ("SCHILY.xattr.security.capability", &cap),
        ("SCHILY.xattr.user.note", b"hello"),
    ];
    let layer = Layer::new()
        .pax(&records)
        .add(Spec {
            mode: 0o755,
            data: b"ping",
            ..Spec::new(EntryType::Regular, "bin/ping")
        })
        .pax(&records[..4])
        .dir("lower/")
        .pax(&[("SCHILY.xattr.trusted.note", b"on a symlink")])
        .symlink("link", "/bin/ping")
        .build();
    fx.unpack(&layer).unwrap();
    let ping = fx.path("bin/ping");
    assert_eq!(
        xattr::get(&ping, "security.capability").unwrap(),
        Some(cap.clone())
    );
    assert_eq!(
        xattr::get(&ping, "user.note").unwrap(),
        Some(b"hello".to_vec())
    );
    for path in [ping, fx.path("lower")] {
        let names: Vec<String> = xattr::list(&path)
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        for dropped in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "user.overlay.opaque",
            "security.selinux",
        ] {
            assert!(!names.iter().any(|n| n == dropped), "{dropped} on {path:?}");
        }
    }
    assert_eq!(
        xattr::get(fx.path("link"), "trusted.note").unwrap(),
        Some(b"on a symlink".to_vec())
    );
}

#[test]
fn device_nodes_are_skipped_and_fifos_created() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .device(EntryType::Char, "dev/null", 1, 3)
        .device(EntryType::Char, "dev/zero0", 0, 0)
        .device(EntryType::Block, "dev/sda", 8, 0)
        .add(Spec {
            mode: 0o620,
            uid: 5,
            ..Spec::new(EntryType::Fifo, "run/fifo")
        })
        .build();
    let stats = fx.unpack(&layer).unwrap();
    assert_eq!(stats.entries, 4);
    assert!(!exists(&fx.path("dev/null")));
    assert!(!exists(&fx.path("dev/zero0")));
    assert!(!exists(&fx.path("dev/sda")));
    let fifo = meta(&fx.path("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
    assert_eq!(fifo.uid(), 5);
}

#[test]
fn later_entries_replace_earlier_ones() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .file("x", b"first")
        .file("x", b"second")
        .file("y", b"a file")
        .dir("y/")
        .file("y/z", b"in the dir")
        .dir("d/")
        .file("d/inner", b"gone")
        .file("d", b"now a file")
        .add(Spec {
            mode: 0o700,
            mtime: 1,
            ..Spec::new(EntryType::Directory, "e/")
        })
        .file("e/kept", b"kept")
        .add(Spec {
            mode: 0o751,
            uid: 3,
            mtime: 2_000_000_000,
            ..Spec::new(EntryType::Directory, "e/")
        })
        .symlink("s", "x")
        .file("s", b"not a symlink any more")
        .file("h", b"target")
        .hard_link("h2", "h")
        .file("h2", b"own inode")
        .build();
    fx.unpack(&layer).unwrap();
    assert_eq!(fs::read(fx.path("x")).unwrap(), b"second");
    assert_eq!(fs::read(fx.path("y/z")).unwrap(), b"in the dir");
    assert_eq!(fs::read(fx.path("d")).unwrap(), b"now a file");
    let e = meta(&fx.path("e"));
    assert_eq!(e.mode() & 0o7777, 0o751);
    assert_eq!(e.uid(), 3);
    assert_eq!(e.mtime(), 2_000_000_000);
    assert_eq!(fs::read(fx.path("e/kept")).unwrap(), b"kept");
    assert!(meta(&fx.path("s")).is_file());
    assert_eq!(fs::read(fx.path("x")).unwrap(), b"second");
    assert_eq!(fs::read(fx.path("h")).unwrap(), b"target");
    assert_eq!(fs::read(fx.path("h2")).unwrap(), b"own inode");
    assert_ne!(meta(&fx.path("h")).ino(), meta(&fx.path("h2")).ino());
}

fn sample_layer() -> Vec<u8> {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    Layer::new()
        .dir("usr/")
        .dir("usr/bin/")
        .file("usr/bin/tool", &big)
        .symlink("usr/bin/alias", "tool")
        .file("etc/.wh.removed", b"")
        .file("empty", b"")
        .build()
}

fn check_sample(fx: &Fixture, stats: UnpackStats, tar: &[u8]) {
    assert_eq!(stats.diff_id, Digest::of(tar), "diff_id of the whole tar");
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.bytes, 3_000_000);
    let data = fs::read(fx.path("usr/bin/tool")).unwrap();
    assert_eq!(data.len(), 3_000_000);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i as u32 % 251) as u8));
    assert_eq!(
        fs::read_link(fx.path("usr/bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert!(meta(&fx.path("etc/removed")).file_type().is_char_device());
    assert_eq!(fs::read(fx.path("empty")).unwrap(), b"");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[test]
fn plain_gzip_and_zstd_streams() {
    require_root!();
    let layer = sample_layer();
    for (compression, data) in [
        (Compression::None, layer.clone()),
        (Compression::Gzip, gzip(&layer)),
        (Compression::Zstd, zstd(&layer)),
    ] {
        let fx = Fixture::new();
        let stats = unpack_layer(&data[..], compression, &fx.root)
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        check_sample(&fx, stats, &layer);
    }
}

#[test]
fn diff_id_covers_the_padding_after_the_end_of_archive() {
    require_root!();
    // As GNU tar writes it: padded to 10 KiB records, and more zero blocks.
    let mut layer = sample_layer();
    layer.resize(layer.len().next_multiple_of(10240) + 10240, 0);
    for (compression, data) in [
        (Compression::None, layer.clone()),
        (Compression::Gzip, gzip(&layer)),
        (Compression::Zstd, zstd(&layer)),
    ] {
        let fx = Fixture::new();
        let stats = unpack_layer(&data[..], compression, &fx.root)
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        check_sample(&fx, stats, &layer);
    }
}

#[test]
fn multi_member_gzip_and_multi_frame_zstd() {
    require_root!();
    let layer = sample_layer();
    let (a, b) = layer.split_at(layer.len() / 3);

    let mut gz = gzip(a);
    gz.extend(gzip(b));
    let fx = Fixture::new();
    check_sample(
        &fx,
        unpack_layer(&gz[..], Compression::Gzip, &fx.root).unwrap(),
        &layer,
    );

    // Two frames with a skippable frame between them.
    let mut zst = zstd(a);
    zst.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    zst.extend_from_slice(&5u32.to_le_bytes());
    zst.extend_from_slice(b"skip!");
    zst.extend(zstd(b));
    let fx = Fixture::new();
    check_sample(
        &fx,
        unpack_layer(&zst[..], Compression::Zstd, &fx.root).unwrap(),
        &layer,
    );
}

#[test]
fn corrupt_or_truncated_streams_are_errors() {
    require_root!();
    let layer = sample_layer();
    // Cut inside the big file's data.
    let fx = Fixture::new();
    let err = fx.unpack(&layer[..layer.len() / 2]).unwrap_err();
    assert!(err.to_string().contains("usr/bin/tool"), "{err}");

    let gz = gzip(&layer);
    let fx = Fixture::new();
    assert!(unpack_layer(&gz[..gz.len() - 10], Compression::Gzip, &fx.root).is_err());
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff; // CRC32 in the trailer
    let fx = Fixture::new();
    assert!(unpack_layer(&bad_crc[..], Compression::Gzip, &fx.root).is_err());

    let zst = zstd(&layer);
    let fx = Fixture::new();
    assert!(unpack_layer(&zst[..zst.len() / 2], Compression::Zstd, &fx.root).is_err());
}

#[test]
fn thousands_of_small_files() {
    require_root!();
    let fx = Fixture::new();
    let mut layer = Layer::new();
    for d in 0..30 {
        layer.dir(&format!("d{d:02}/"));
        for f in 0..100 {
            layer.file(&format!("d{d:02}/f{f:03}"), format!("{d}-{f}").as_bytes());
        }
    }
    let data = gzip(&layer.build());
    let stats = unpack_layer(&data[..], Compression::Gzip, &fx.root).unwrap();
    assert_eq!(stats.entries, 3030);
    let mut count = 0;
    for d in 0..30 {
        for entry in fs::read_dir(fx.path(&format!("d{d:02}"))).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let f: u32 = std::str::from_utf8(&name.as_bytes()[1..])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                fs::read(entry.path()).unwrap(),
                format!("{d}-{f}").as_bytes()
            );
            count += 1;
        }
    }
    assert_eq!(count, 3000);
}

#[test]
fn media_types() {
    use Compression::*;
    for (media_type, want) in [
        ("application/vnd.oci.image.layer.v1.tar", None),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Gzip,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Zstd,
        ),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Gzip,
        ),
    ] {
        assert_eq!(Compression::from_media_type(media_type).unwrap(), want);
    }
    let err =
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+bzip2").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported layer media type \"application/vnd.oci.image.layer.v1.tar+bzip2\""
    );
}

#[test]
fn destination_must_be_an_empty_directory() {
    let fx = Fixture::new();
    fs::write(fx.root.join("stray"), b"").unwrap();
    let layer = Layer::new().file("a", b"").build();
    assert!(matches!(
        fx.unpack(&layer),
        Err(UnpackError::DestNotEmpty(_))
    ));
    let missing = fx.base.path().join("missing");
    let err = unpack_layer(&layer[..], Compression::None, &missing).unwrap_err();
    assert!(err.to_string().contains("open: ENOENT"), "{err}");
}

#[test]
fn name_normalization() {
    let mut out = Vec::new();
    for (raw, want) in [
        ("a/b", Some("a/b")),
        ("./a/./b/", Some("a/b")),
        ("/abs//path", Some("abs/path")),
        ("a/../b", Some("b")),
        ("./", Some("")),
        ("..", None),
        ("../x", None),
        ("a/../../x", None),
        ("/../x", None),
    ] {
        let got = tree::normalize(raw.as_bytes(), &mut out)
            .ok()
            .map(|()| String::from_utf8(out.clone()).unwrap());
        assert_eq!(got.as_deref(), want, "{raw}");
    }
    assert_eq!(
        meta::parse_pax_time(b"-1.25"),
        Some(TimeSpec::new(-2, 750_000_000))
    );
    assert_eq!(
        meta::parse_pax_time(b"12.5"),
        Some(TimeSpec::new(12, 500_000_000))
    );
    assert_eq!(meta::parse_pax_time(b"x"), Option::None);
}

// ---------------------------------------------------------------------------
// Hostile layers: each must fail with a clear error or stay inside the root.

#[test]
fn dotdot_names_are_refused() {
    require_root!();
    for name in [
        "../escape",
        "a/../../escape",
        "../outside/keep",
        "./../../x",
    ] {
        let fx = Fixture::new();
        let layer = Layer::new().file(name, b"pwned").build();
        let err = fx.unpack_hostile(&layer).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer entry {name:?}: name escapes the layer root")
        );
    }
    // `..` that stays inside is applied lexically.
    let fx = Fixture::new();
    let layer = Layer::new().file("a/../b", b"fine").build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(fs::read(fx.path("b")).unwrap(), b"fine");
}

#[test]
fn absolute_names_are_contained() {
    require_root!();
    let fx = Fixture::new();
    let name = format!("{}/pwned", fx.outside_name());
    let layer = Layer::new().file(&name, b"inside").build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(fs::read(fx.path(&name[1..])).unwrap(), b"inside");
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    require_root!();
    // `evil -> /…/outside` dangles inside the root: refused.
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("evil", &fx.outside_name())
        .file("evil/pwned", b"x")
        .build();
    let err = fx.unpack_hostile(&layer).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("layer entry \"evil/pwned\": mkdirat \"evil\""),
        "{err}"
    );

    // Same, as a directory entry and as a whiteout.
    for second in ["evil/sub/", "evil/.wh.keep", "evil/.wh..wh..opq"] {
        let fx = Fixture::new();
        let layer = Layer::new()
            .symlink("evil", &fx.outside_name())
            .file(second, b"")
            .build();
        fx.unpack_hostile(&layer).unwrap_err();
    }
}

#[test]
fn write_through_absolute_symlink_lands_inside_when_target_exists_in_layer() {
    require_root!();
    let fx = Fixture::new();
    let outside = fx.outside_name();
    let layer = Layer::new()
        .file(&format!("{outside}/placeholder"), b"")
        .symlink("evil", &outside)
        .file("evil/pwned", b"inside")
        .file("evil/keep", b"overwritten inside only")
        .build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(
        fs::read(fx.path(&format!("{}/pwned", &outside[1..]))).unwrap(),
        b"inside"
    );
    assert_eq!(
        fs::read(fx.path(&format!("{}/keep", &outside[1..]))).unwrap(),
        b"overwritten inside only"
    );
}

#[test]
fn write_through_dotdot_symlink_is_contained() {
    require_root!();
    // `..` at the root stays at the root, so `evil/pwned` is `/pwned`.
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("evil", "../../..")
        .file("evil/pwned", b"inside")
        .build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(fs::read(fx.path("pwned")).unwrap(), b"inside");
}

#[test]
fn deep_dotdot_chain_after_symlink_is_contained_or_refused() {
    require_root!();
    // In the symlink target: resolved inside the root, dangling: refused.
    let fx = Fixture::new();
    let target = format!("{}{}", "../".repeat(20), &fx.outside_name()[1..]);
    let layer = Layer::new()
        .dir("a/b/c/")
        .symlink("a/b/c/evil", &target)
        .file("a/b/c/evil/pwned", b"x")
        .build();
    fx.unpack_hostile(&layer).unwrap_err();

    // In the target of a symlink to a directory: stays inside.
    let fx = Fixture::new();
    let layer = Layer::new()
        .dir("a/b/c/")
        .symlink("a/b/c/up", "../../../../../../../../..")
        .file("a/b/c/up/pwned", b"inside")
        .build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(fs::read(fx.path("pwned")).unwrap(), b"inside");

    // In the entry name after a symlink: refused lexically.
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("s", "a/b/c")
        .file("s/../../../../../../pwned", b"x")
        .build();
    let err = fx.unpack_hostile(&layer).unwrap_err();
    assert!(err.to_string().contains("escapes the layer root"), "{err}");
}

#[test]
fn symlink_replaced_by_file_is_not_followed() {
    require_root!();
    let fx = Fixture::new();
    let keep = format!("{}/keep", fx.outside_name());
    let layer = Layer::new()
        .symlink("evil", &keep)
        .file("evil", b"replaces the link")
        .symlink("evil2", &keep)
        .dir("evil2/")
        .symlink("evil3", &keep)
        .file(".wh.evil3", b"")
        .symlink("evil4", &keep)
        .hard_link("evil5", "evil4")
        .build();
    fx.unpack_hostile(&layer).unwrap();
    assert_eq!(fs::read(fx.path("evil")).unwrap(), b"replaces the link");
    assert!(meta(&fx.path("evil2")).is_dir());
    assert!(meta(&fx.path("evil3")).file_type().is_char_device());
    // A hard link to a symlink links the symlink itself.
    assert!(meta(&fx.path("evil5")).file_type().is_symlink());
    assert_eq!(meta(&fx.path("evil5")).ino(), meta(&fx.path("evil4")).ino());
}

#[test]
fn directory_replaced_by_symlink_then_written_through_is_refused() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .dir("d/")
        .file("d/f", b"x")
        .symlink("d", &fx.outside_name())
        .file("d/pwned", b"x")
        .build();
    fx.unpack_hostile(&layer).unwrap_err();
}

#[test]
fn hard_links_to_outside_files_are_refused() {
    require_root!();
    let fx = Fixture::new();
    let outside_keep = format!("{}/keep", fx.outside_name());
    for target in [
        "/etc/passwd".to_string(),
        "../outside/keep".to_string(),
        "../../../../etc/passwd".to_string(),
        outside_keep.clone(),
    ] {
        let fx = Fixture::new();
        let layer = Layer::new().hard_link("passwd", &target).build();
        let err = fx.unpack_hostile(&layer).unwrap_err();
        assert!(
            err.to_string().starts_with("layer entry \"passwd\""),
            "{err}"
        );
    }
    // Through a symlinked directory: resolved inside the root.
    let layer = Layer::new()
        .symlink("evil", &fx.outside_name())
        .hard_link("stolen", "evil/keep")
        .symlink("etc", "/etc")
        .hard_link("stolen2", "etc/passwd")
        .build();
    fx.unpack_hostile(&layer).unwrap_err();
    // `etc -> /etc` is itself once resolved in the root: a loop.
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("etc", "/etc")
        .hard_link("stolen2", "etc/passwd")
        .build();
    let err = fx.unpack_hostile(&layer).unwrap_err();
    assert!(err.to_string().contains("ELOOP"), "{err}");
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("evil", &fx.outside_name())
        .hard_link("stolen", "evil/keep")
        .build();
    let err = fx.unpack_hostile(&layer).unwrap_err();
    assert!(err.to_string().contains("ENOENT"), "{err}");
}

#[test]
fn whiteouts_escaping_their_directory_are_refused_or_contained() {
    require_root!();
    // NAME is "..", "." or empty: refused.
    for name in [".wh...", "a/.wh...", "a/.wh..", "a/.wh./", ".wh."] {
        let fx = Fixture::new();
        let layer = Layer::new().dir("a/").file(name, b"").build();
        let err = fx.unpack_hostile(&layer).unwrap_err();
        assert!(
            err.to_string().contains("whiteout of an invalid name"),
            "{err}"
        );
    }
    // `.wh.` in a non-final component is an ordinary directory name.
    let fx = Fixture::new();
    let layer = Layer::new().file("a/.wh.../x", b"").build();
    fx.unpack_hostile(&layer).unwrap();
    assert!(meta(&fx.path("a/.wh.../x")).is_file());
    // A whiteout named like an outside path stays inside.
    let fx = Fixture::new();
    let layer = Layer::new().file("../outside/.wh.keep", b"").build();
    fx.unpack_hostile(&layer).unwrap_err();
    let fx = Fixture::new();
    let name = format!("{}/.wh.keep", fx.outside_name());
    let layer = Layer::new().file(&name, b"").build();
    fx.unpack_hostile(&layer).unwrap();
    assert!(meta(&fx.path(&format!("{}/keep", &fx.outside_name()[1..])))
        .file_type()
        .is_char_device());
}

#[test]
fn symlink_loops_are_refused() {
    require_root!();
    let fx = Fixture::new();
    let layer = Layer::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"x")
        .build();
    let err = fx.unpack_hostile(&layer).unwrap_err();
    assert!(err.to_string().contains("ELOOP"), "{err}");
}

/// Timing against a real layer: `TANK_UNPACK_BENCH=/path/layer.tar.gz
/// cargo test --lib image::unpack::tests::bench -- --ignored --nocapture`
/// (`.tar.zst` and `.tar` work too). Compare with `tar -xzf`.
#[test]
#[ignore]
fn bench_unpack_from_env() {
    let Some(path) = std::env::var_os("TANK_UNPACK_BENCH") else {
        eprintln!("set TANK_UNPACK_BENCH to a layer file");
        return;
    };
    let path = PathBuf::from(path);
    let name = path.to_string_lossy();
    let compression = if name.ends_with(".gz") {
        Compression::Gzip
    } else if name.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    };
    // TANK_UNPACK_INTO: an empty directory to unpack into and keep (for
    // inspection); else a temporary one under TANK_UNPACK_BENCH_DIR
    // (default /var/tmp).
    let base = std::env::var_os("TANK_UNPACK_BENCH_DIR").unwrap_or("/var/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("tank-unpack-bench-")
        .tempdir_in(base)
        .unwrap();
    let into = std::env::var_os("TANK_UNPACK_INTO").map(PathBuf::from);
    let dest = into.as_deref().unwrap_or(dir.path());
    let start = std::time::Instant::now();
    let stats = unpack_layer(fs::File::open(&path).unwrap(), compression, dest).unwrap();
    eprintln!(
        "unpacked {} entries, {} bytes in {:.2?}",
        stats.entries,
        stats.bytes,
        start.elapsed()
    );
}
