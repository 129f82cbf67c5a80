//! Deterministic OCI test images built in Rust from the host's
//! `busybox-static` (`/bin/busybox`, Debian package `busybox-static`).
//!
//! Same input → byte-identical tars, gzip streams, configs and manifests, so
//! the same digests on every build: fixed mtimes ([`MTIME`]), numeric owners
//! (no user/group names), entries in insertion order, gzip with mtime 0 and no
//! file name, JSON without whitespace.
//!
//! - [`LayerBuilder`]: a layer tar entry by entry (files, dirs, symlinks, hard
//!   links, device nodes, OCI whiteouts, and "unchecked" entries with raw
//!   names such as `../evil` for extractor-safety tests).
//! - [`image`] / [`index`]: config, manifest and index JSON.
//! - Ready-made: [`busybox_image`], [`multiarch_index`], [`five_layer_image`],
//!   [`user_entrypoint_image`].
//! - [`write_oci_layout`] / [`oci_archive`]: an OCI image layout on disk or
//!   as a tar (what `skopeo copy oci-archive:` and `tankctl image import`
//!   read).
//!
//! Pushing to a registry: `super::registry::Registry::push`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The modification time of every tar entry (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;
/// [`MTIME`] as the RFC 3339 `created` of configs and history entries.
pub const CREATED: &str = "2023-11-14T22:13:20Z";

pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `PATH` in the ready-made images' `Env`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the fixtures take busybox from (Debian package `busybox-static`).
pub const BUSYBOX_PATH: &str = "/bin/busybox";

/// The applets that get a `/bin/NAME -> /bin/busybox` symlink in
/// [`busybox_image`] (all present in Debian 12's busybox-static).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[",
    "ash",
    "awk",
    "basename",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "du",
    "echo",
    "egrep",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "getopt",
    "grep",
    "groups",
    "gunzip",
    "gzip",
    "head",
    "hexdump",
    "hostname",
    "httpd",
    "id",
    "ifconfig",
    "ip",
    "kill",
    "killall",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mknod",
    "mktemp",
    "more",
    "mount",
    "mv",
    "nc",
    "netstat",
    "nproc",
    "nslookup",
    "od",
    "pidof",
    "ping",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "route",
    "sed",
    "seq",
    "setpriv",
    "setsid",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "stty",
    "tac",
    "tail",
    "tar",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "tty",
    "umount",
    "uname",
    "uniq",
    "unshare",
    "uptime",
    "usleep",
    "vi",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "xxd",
    "yes",
    "zcat",
];

/// `/etc/passwd` of [`busybox_image`].
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app:/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
/// `/etc/group` of [`busybox_image`]: `app` is also in `audio` (29).
pub const GROUP: &str = "root:x:0:\n\
audio:x:29:app\n\
app:x:1000:\n\
nogroup:x:65534:\n";

/// "sha256:<hex>" of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// "sha256:<hex>"
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// JSON serialised compactly (deterministic for the same `Value`).
    pub fn json(media_type: &str, value: &Value) -> Blob {
        Blob::new(media_type, serde_json::to_vec(value).unwrap())
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }

    /// An OCI descriptor (mediaType, digest, size) of this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size(),
        })
    }
}

/// A layer blob and the digest of its uncompressed tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub blob: Blob,
    /// "sha256:<hex>" of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: String,
}

/// (os, architecture, variant) in OCI spelling, e.g. ("linux", "arm64", Some("v8")).
pub type Platform = (String, String, Option<String>);

pub fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
    (os.to_owned(), arch.to_owned(), variant.map(str::to_owned))
}

/// An image: layers, config and manifest blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciImage {
    pub layers: Vec<Layer>,
    pub config: Blob,
    pub manifest: Blob,
    pub platform: Platform,
}

impl OciImage {
    /// The manifest digest ("sha256:…"), i.e. the image id by digest.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Config, layers and manifest.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut blobs = vec![&self.config];
        blobs.extend(self.layers.iter().map(|l| &l.blob));
        blobs.push(&self.manifest);
        blobs
    }

    /// The config JSON.
    pub fn config_json(&self) -> Value {
        serde_json::from_slice(&self.config.bytes).unwrap()
    }

    /// The OCI platform object of this image.
    pub fn platform_json(&self) -> Value {
        platform_json(&self.platform)
    }
}

/// Something a registry or an OCI layout can hold under a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushable {
    Image(OciImage),
    Index {
        manifests: Vec<OciImage>,
        index: Blob,
    },
}

impl Pushable {
    /// The digest the tag points at (manifest or index).
    pub fn digest(&self) -> &str {
        &self.top().digest
    }

    /// The manifest or index blob the tag points at.
    pub fn top(&self) -> &Blob {
        match self {
            Pushable::Image(image) => &image.manifest,
            Pushable::Index { index, .. } => index,
        }
    }

    pub fn media_type(&self) -> &str {
        &self.top().media_type
    }

    /// The images (one for an image, one per platform for an index).
    pub fn images(&self) -> Vec<&OciImage> {
        match self {
            Pushable::Image(image) => vec![image],
            Pushable::Index { manifests, .. } => manifests.iter().collect(),
        }
    }

    /// The image of `arch` (first match), e.g. the one a pull should pick.
    pub fn image_for(&self, arch: &str) -> Option<&OciImage> {
        self.images().into_iter().find(|i| i.platform.1 == arch)
    }

    /// Every blob (with repeats for shared layers), index last.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = self.images().into_iter().flat_map(|i| i.blobs()).collect();
        if let Pushable::Index { index, .. } = self {
            blobs.push(index);
        }
        blobs
    }
}

impl From<OciImage> for Pushable {
    fn from(image: OciImage) -> Pushable {
        Pushable::Image(image)
    }
}

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
}

#[derive(Clone, Debug)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    /// Write `path` (and a link target) raw into the header, bypassing the
    /// tar crate's checks (absolute paths, `..`); at most 100 bytes.
    unchecked: bool,
}

/// A layer tar, entry by entry, in insertion order (parents are not added
/// implicitly: add them first, as real image builders do). Paths are relative
/// to the layer root; a leading `/` is dropped. Entries are owned by 0:0
/// unless given; every mtime is [`MTIME`].
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

fn clean(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    fn push(&mut self, path: &str, kind: Kind, mode: u32, uid: u64, gid: u64) -> &mut Self {
        self.entries.push(Entry {
            path: clean(path),
            kind,
            mode,
            uid,
            gid,
            unchecked: false,
        });
        self
    }

    /// A directory owned by 0:0.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.push(path, Kind::Dir, mode, 0, 0)
    }

    /// A directory with an owner.
    pub fn add_dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        self.push(path, Kind::Dir, mode, uid, gid)
    }

    /// A regular file (`mode` may carry setuid/setgid/sticky bits).
    pub fn add_file(
        &mut self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        self.push(path, Kind::File(bytes.to_vec()), mode, uid, gid)
    }

    /// A regular file taking ownership of its content (no copy for big files).
    pub fn add_file_vec(
        &mut self,
        path: &str,
        bytes: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        self.push(path, Kind::File(bytes), mode, uid, gid)
    }

    /// A symlink `path -> target` (target written verbatim: may be absolute or
    /// contain `..`).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.push(path, Kind::Symlink(target.to_owned()), 0o777, 0, 0)
    }

    /// A hard link `path` to the earlier entry `target` (a layer-relative path;
    /// a leading `/` is dropped).
    pub fn add_hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.push(path, Kind::Hardlink(clean(target)), 0o644, 0, 0)
    }

    /// An OCI whiteout `DIR/.wh.NAME` deleting NAME of lower layers (`dir`
    /// may be "" or "/" for the root).
    pub fn add_whiteout(&mut self, dir: &str, name: &str) -> &mut Self {
        let path = join(dir, &format!(".wh.{name}"));
        self.push(&path, Kind::File(Vec::new()), 0o644, 0, 0)
    }

    /// An OCI opaque marker `DIR/.wh..wh..opq`: DIR shows only this layer's
    /// (and upper layers') content.
    pub fn add_opaque(&mut self, dir: &str) -> &mut Self {
        let path = join(dir, ".wh..wh..opq");
        self.push(&path, Kind::File(Vec::new()), 0o644, 0, 0)
    }

    /// A character device node (an extractor should refuse it, except as an
    /// overlay-style 0:0 whiteout if it accepts those).
    pub fn add_char_device(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.push(path, Kind::CharDevice(major, minor), 0o644, 0, 0)
    }

    pub fn add_block_device(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.push(path, Kind::BlockDevice(major, minor), 0o644, 0, 0)
    }

    pub fn add_fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        self.push(path, Kind::Fifo, mode, 0, 0)
    }

    /// A regular file whose name is written raw (≤ 100 bytes, no leading `/`
    /// stripped): `../escape`, `/abs`, `a/../../b` — for extractor tests.
    pub fn add_unchecked_file(&mut self, path: &str, bytes: &[u8], mode: u32) -> &mut Self {
        self.add_unchecked(path, Kind::File(bytes.to_vec()), mode)
    }

    /// A symlink whose own name is written raw (see [`Self::add_unchecked_file`]).
    pub fn add_unchecked_symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add_unchecked(path, Kind::Symlink(target.to_owned()), 0o777)
    }

    /// A hard link whose name and target are written raw (e.g. target
    /// `../../etc/shadow` or `/etc/shadow`).
    pub fn add_unchecked_hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add_unchecked(path, Kind::Hardlink(target.to_owned()), 0o644)
    }

    /// A directory whose name is written raw.
    pub fn add_unchecked_dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.add_unchecked(path, Kind::Dir, mode)
    }

    fn add_unchecked(&mut self, path: &str, kind: Kind, mode: u32) -> &mut Self {
        self.entries.push(Entry {
            path: path.to_owned(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            unchecked: true,
        });
        self
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The uncompressed tar.
    pub fn tar_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append_entry(&mut builder, entry);
        }
        builder.into_inner().unwrap()
    }

    /// A `tar+gzip` layer.
    pub fn build_gzip(&self) -> Layer {
        let tar = self.tar_bytes();
        let diff_id = sha256_digest(&tar);
        Layer {
            blob: Blob::new(MEDIA_TYPE_LAYER_GZIP, gzip(&tar)),
            diff_id,
        }
    }

    /// A plain `tar` layer (blob digest == diff_id).
    pub fn build_uncompressed(&self) -> Layer {
        let tar = self.tar_bytes();
        let blob = Blob::new(MEDIA_TYPE_LAYER_TAR, tar);
        Layer {
            diff_id: blob.digest.clone(),
            blob,
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Deterministic gzip: no name, mtime 0, fast level (content is mostly
/// incompressible anyway).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(bytes.len() / 2 + 1024),
            flate2::Compression::fast(),
        );
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(MTIME);
    header.set_size(0);
    let (entry_type, data, link): (tar::EntryType, &[u8], Option<&str>) = match &entry.kind {
        Kind::File(bytes) => (tar::EntryType::Regular, bytes, None),
        Kind::Dir => (tar::EntryType::Directory, &[], None),
        Kind::Symlink(target) => (tar::EntryType::Symlink, &[], Some(target)),
        Kind::Hardlink(target) => (tar::EntryType::Link, &[], Some(target)),
        Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
            header.set_device_major(*major).unwrap();
            header.set_device_minor(*minor).unwrap();
            let t = if matches!(entry.kind, Kind::CharDevice(..)) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            (t, &[], None)
        }
        Kind::Fifo => (tar::EntryType::Fifo, &[], None),
    };
    header.set_entry_type(entry_type);
    header.set_size(data.len() as u64);
    let mut path = entry.path.clone();
    if matches!(entry.kind, Kind::Dir) && !path.ends_with('/') {
        path.push('/');
    }
    if entry.unchecked {
        let old = header.as_old_mut();
        assert!(
            path.len() <= old.name.len(),
            "unchecked path too long: {path}"
        );
        old.name = [0; 100];
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            assert!(
                link.len() <= old.linkname.len(),
                "unchecked link too long: {link}"
            );
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    } else if let Some(link) = link {
        builder.append_link(&mut header, &path, link).unwrap();
    } else {
        builder.append_data(&mut header, &path, data).unwrap();
    }
}

/// The OCI architecture name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => panic!("no OCI name for architecture {other}"),
    }
}

/// The platform of the host images: linux/host_arch, variant `v8` on arm64
/// (as registries usually label it), none elsewhere.
pub fn host_platform() -> Platform {
    let arch = host_arch();
    let variant = (arch == "arm64").then_some("v8");
    platform("linux", arch, variant)
}

fn platform_json(platform: &Platform) -> Value {
    let mut value = json!({ "architecture": platform.1, "os": platform.0 });
    if let Some(variant) = &platform.2 {
        value["variant"] = json!(variant);
    }
    value
}

/// An image of `layers` (bottom first) with the runtime `config` object
/// (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`, …) for `platform`.
pub fn image(layers: Vec<Layer>, config: Value, platform: Platform) -> OciImage {
    let history: Vec<Value> = (0..layers.len())
        .map(
            |i| json!({ "created": CREATED, "created_by": format!("tank test fixture layer {i}") }),
        )
        .collect();
    let mut config_json = json!({
        "created": CREATED,
        "architecture": platform.1,
        "os": platform.0,
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    if let Some(variant) = &platform.2 {
        config_json["variant"] = json!(variant);
    }
    let config = Blob::json(MEDIA_TYPE_CONFIG, &config_json);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
    });
    OciImage {
        layers,
        config,
        manifest: Blob::json(MEDIA_TYPE_MANIFEST, &manifest),
        platform,
    }
}

/// An image index of `images`, each with its platform object.
pub fn index(images: Vec<OciImage>) -> Pushable {
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut d = i.manifest.descriptor();
            d["platform"] = i.platform_json();
            d
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    });
    Pushable::Index {
        manifests: images,
        index: Blob::json(MEDIA_TYPE_INDEX, &index),
    }
}

/// The contents of the host's busybox-static binary.
pub fn busybox_bytes() -> Vec<u8> {
    std::fs::read(BUSYBOX_PATH).unwrap_or_else(|e| {
        panic!("cannot read {BUSYBOX_PATH} (Debian package busybox-static): {e}")
    })
}

/// The busybox root filesystem as a builder, so callers can append entries
/// before building.
///
/// Contents (all 0:0, dirs 0755, files 0644, unless noted):
/// - `/bin/busybox` (0755, the host's busybox-static), `/bin/<applet>` →
///   `/bin/busybox` symlinks for every [`BUSYBOX_APPLETS`] entry,
///   `/usr/bin/env` → `/bin/busybox`
/// - `/etc/passwd` ([`PASSWD`]: root 0, app 1000, nobody 65534),
///   `/etc/group` ([`GROUP`]: root 0, audio 29 listing app, app 1000,
///   nogroup 65534)
/// - `/ARCH`: `host_arch()` plus a newline, e.g. "amd64\n"
/// - empty dirs `/dev /proc /sys /usr/sbin /var /run`, `/tmp` (1777), `/root`
///   (0700), `/home`, `/home/app` (0755, 1000:1000)
pub fn busybox_layer_builder() -> LayerBuilder {
    let mut b = LayerBuilder::new();
    b.add_file("ARCH", format!("{}\n", host_arch()).as_bytes(), 0o644, 0, 0);
    b.add_dir("bin", 0o755);
    b.add_file_vec("bin/busybox", busybox_bytes(), 0o755, 0, 0);
    for applet in BUSYBOX_APPLETS {
        b.add_symlink(&format!("bin/{applet}"), "/bin/busybox");
    }
    b.add_dir("dev", 0o755);
    b.add_dir("etc", 0o755);
    b.add_file("etc/group", GROUP.as_bytes(), 0o644, 0, 0);
    b.add_file("etc/passwd", PASSWD.as_bytes(), 0o644, 0, 0);
    b.add_dir("home", 0o755);
    b.add_dir_owned("home/app", 0o755, 1000, 1000);
    b.add_dir("proc", 0o755);
    b.add_dir("root", 0o700);
    b.add_dir("run", 0o755);
    b.add_dir("sys", 0o755);
    b.add_dir("tmp", 0o1777);
    b.add_dir("usr", 0o755);
    b.add_dir("usr/bin", 0o755);
    b.add_symlink("usr/bin/env", "/bin/busybox");
    b.add_dir("usr/sbin", 0o755);
    b.add_dir("var", 0o755);
    b
}

/// The single gzip layer of [`busybox_image`].
pub fn busybox_layer() -> Layer {
    busybox_layer_builder().build_gzip()
}

/// The default runtime config: `Cmd ["/bin/sh"]`, `Env [PATH=…]`.
pub fn busybox_config() -> Value {
    json!({ "Cmd": ["/bin/sh"], "Env": [DEFAULT_PATH] })
}

/// busybox for linux/[`host_arch`]: one gzip layer
/// ([`busybox_layer_builder`] documents its files), `Cmd ["/bin/sh"]`,
/// `Env [PATH=…]`.
pub fn busybox_image() -> OciImage {
    image(vec![busybox_layer()], busybox_config(), host_platform())
}

/// The layer of a foreign-platform image: `/ARCH` ("<arch>\n") and empty
/// `/bin`, `/etc` — no busybox, so it cannot run here.
pub fn foreign_layer(arch: &str) -> Layer {
    let mut b = LayerBuilder::new();
    b.add_file("ARCH", format!("{arch}\n").as_bytes(), 0o644, 0, 0);
    b.add_dir("bin", 0o755);
    b.add_dir("etc", 0o755);
    b.build_gzip()
}

/// A foreign-platform image (one small layer, see [`foreign_layer`]).
pub fn foreign_image(arch: &str, variant: Option<&str>) -> OciImage {
    image(
        vec![foreign_layer(arch)],
        busybox_config(),
        platform("linux", arch, variant),
    )
}

/// An index of three linux images, in this order:
/// 1. [`busybox_image`] for the host (its `/ARCH` holds [`host_arch`]),
/// 2. linux/arm64 variant v8 (or linux/amd64 when the host is arm64),
/// 3. linux/arm variant v7 (or linux/s390x when the host is arm).
///
/// The foreign ones are [`foreign_image`]s: one small layer whose `/ARCH`
/// holds their arch name, no busybox. `Pushable::image_for(host_arch())`
/// gives the one a pull on this machine must pick.
pub fn multiarch_index() -> Pushable {
    let host = host_arch();
    let candidates = [
        ("arm64", Some("v8")),
        ("amd64", None),
        ("arm", Some("v7")),
        ("s390x", None),
    ];
    let mut images = vec![busybox_image()];
    images.extend(
        candidates
            .iter()
            .filter(|(arch, _)| *arch != host)
            .take(2)
            .map(|(arch, variant)| foreign_image(arch, *variant)),
    );
    index(images)
}

/// busybox with `User "app"`, `Entrypoint ["/bin/echo", "entry"]`,
/// `Cmd ["cmd-arg"]`, `WorkingDir "/home/app"`,
/// `Env ["FROM_IMAGE=1", PATH=…]`; same layer as [`busybox_image`].
pub fn user_entrypoint_image() -> OciImage {
    image(
        vec![busybox_layer()],
        json!({
            "User": "app",
            "Entrypoint": ["/bin/echo", "entry"],
            "Cmd": ["cmd-arg"],
            "WorkingDir": "/home/app",
            "Env": ["FROM_IMAGE=1", DEFAULT_PATH],
        }),
        host_platform(),
    )
}

/// Deterministic, incompressible content of bulk file `index` of data layer
/// `layer` (1..=4) of [`five_layer_image`] (xorshift64* keyed by both).
pub fn bulk_content(layer: usize, index: usize, size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((layer as u64) << 40) ^ (index as u64 + 1);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Name of bulk file `index` of data layer `layer`: `data/l<layer>/f<index:05>`.
pub fn bulk_path(layer: usize, index: usize) -> String {
    format!("data/l{layer}/f{index:05}")
}

/// Five gzip layers: the [`busybox_layer`] then four data layers (1..=4),
/// each with `files_per_layer` bulk files `/data/l<N>/f<00000..>` of
/// `file_size` bytes ([`bulk_content`]`(N, i, file_size)`, 0644, 0:0).
/// Config as [`busybox_image`]. Tests: `five_layer_image(500, 512)` (2000
/// files, ~1 MB); the bench: e.g. `(2500, 10_000)` (~100 MB).
///
/// Layer by layer (besides the bulk files):
/// - L1: dirs `/data`, `/data/l1`, `/data/shared`, `/data/doomed`,
///   `/data/opq`, `/data/opq/sub`; files `/data/shared/a.txt` ("a1\n"),
///   `/data/shared/b.txt` ("b1\n"), `/data/shared/owned` ("owned\n", 0640,
///   1000:29), `/data/doomed/x` ("x\n"), `/data/opq/old1` ("old1\n"),
///   `/data/opq/sub/old2` ("old2\n"), `/data/opq/kept-name` ("old\n").
/// - L2: dir `/data/l2`; whiteouts `/data/shared/.wh.a.txt` and
///   `/data/.wh.doomed` (the whole dir); file `/data/shared/c.txt` ("c2\n").
/// - L3: dir `/data/l3`; `/data/opq/.wh..wh..opq` then `/data/opq/new1`
///   ("new1\n") and `/data/opq/kept-name` ("new\n"); hard link
///   `/data/l3/hardlink` → `/data/l3/f00000`; symlinks `/data/l3/symlink` →
///   `f00000` (relative) and `/data/latest` → `l3`. Needs
///   `files_per_layer >= 1`.
/// - L4: dir `/data/l4`; whiteout `/data/l1/.wh.f00000`; files
///   `/data/shared/a.txt` ("a4\n", recreated after L2's whiteout) and
///   `/data/shared/b.txt` ("b4\n", overwrites L1's).
///
/// Merged view (top wins):
/// - present: `/data/shared/{a.txt="a4\n", b.txt="b4\n", c.txt="c2\n", owned}`;
///   `/data/opq/{new1="new1\n", kept-name="new\n"}` only;
///   `/data/l1/f00001..` (not `f00000`), all of `/data/l2`, `/data/l3`,
///   `/data/l4` bulk files; `/data/l3/hardlink` (same inode as `f00000`,
///   content `bulk_content(3, 0, file_size)`); `/data/l3/symlink`,
///   `/data/latest` symlinks; all of busybox.
/// - hidden: `/data/doomed` (and `x`), `/data/l1/f00000`, `/data/opq/old1`,
///   `/data/opq/sub` (and `old2`); no `.wh.*` name is ever visible.
pub fn five_layer_image(files_per_layer: usize, file_size: usize) -> OciImage {
    assert!(
        files_per_layer >= 1,
        "five_layer_image needs files_per_layer >= 1"
    );
    let bulk = |b: &mut LayerBuilder, layer: usize| {
        b.add_dir(&format!("data/l{layer}"), 0o755);
        for i in 0..files_per_layer {
            b.add_file_vec(
                &bulk_path(layer, i),
                bulk_content(layer, i, file_size),
                0o644,
                0,
                0,
            );
        }
    };

    let mut l1 = LayerBuilder::new();
    l1.add_dir("data", 0o755);
    bulk(&mut l1, 1);
    l1.add_dir("data/shared", 0o755)
        .add_file("data/shared/a.txt", b"a1\n", 0o644, 0, 0)
        .add_file("data/shared/b.txt", b"b1\n", 0o644, 0, 0)
        .add_file("data/shared/owned", b"owned\n", 0o640, 1000, 29)
        .add_dir("data/doomed", 0o755)
        .add_file("data/doomed/x", b"x\n", 0o644, 0, 0)
        .add_dir("data/opq", 0o755)
        .add_file("data/opq/old1", b"old1\n", 0o644, 0, 0)
        .add_file("data/opq/kept-name", b"old\n", 0o644, 0, 0)
        .add_dir("data/opq/sub", 0o755)
        .add_file("data/opq/sub/old2", b"old2\n", 0o644, 0, 0);

    let mut l2 = LayerBuilder::new();
    l2.add_dir("data", 0o755);
    bulk(&mut l2, 2);
    l2.add_dir("data/shared", 0o755)
        .add_whiteout("data/shared", "a.txt")
        .add_whiteout("data", "doomed")
        .add_file("data/shared/c.txt", b"c2\n", 0o644, 0, 0);

    let mut l3 = LayerBuilder::new();
    l3.add_dir("data", 0o755);
    bulk(&mut l3, 3);
    l3.add_hardlink("data/l3/hardlink", &bulk_path(3, 0))
        .add_symlink("data/l3/symlink", "f00000")
        .add_symlink("data/latest", "l3")
        .add_dir("data/opq", 0o755)
        .add_opaque("data/opq")
        .add_file("data/opq/new1", b"new1\n", 0o644, 0, 0)
        .add_file("data/opq/kept-name", b"new\n", 0o644, 0, 0);

    let mut l4 = LayerBuilder::new();
    l4.add_dir("data", 0o755);
    bulk(&mut l4, 4);
    l4.add_whiteout("data/l1", "f00000")
        .add_dir("data/shared", 0o755)
        .add_file("data/shared/a.txt", b"a4\n", 0o644, 0, 0)
        .add_file("data/shared/b.txt", b"b4\n", 0o644, 0, 0);

    image(
        vec![
            busybox_layer(),
            l1.build_gzip(),
            l2.build_gzip(),
            l3.build_gzip(),
            l4.build_gzip(),
        ],
        busybox_config(),
        host_platform(),
    )
}

/// The files of an OCI image layout holding `images`, as (relative path,
/// content), deterministic and deduplicated: `oci-layout`, `index.json`
/// (one descriptor per entry, annotated with [`REF_NAME`] = the given name;
/// single images carry their platform), `blobs/sha256/<hex>` sorted.
pub fn oci_layout_files(images: &[(&str, &Pushable)]) -> Vec<(String, Vec<u8>)> {
    let mut blobs: BTreeMap<&str, &Blob> = BTreeMap::new();
    let mut manifests = Vec::new();
    for (name, pushable) in images {
        for blob in pushable.blobs() {
            blobs.insert(blob.hex(), blob);
        }
        let mut descriptor = pushable.top().descriptor();
        if let Pushable::Image(image) = pushable {
            descriptor["platform"] = image.platform_json();
        }
        descriptor["annotations"] = json!({ REF_NAME: name });
        manifests.push(descriptor);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": manifests,
    });
    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), serde_json::to_vec(&index).unwrap()),
    ];
    files.extend(
        blobs
            .into_iter()
            .map(|(hex, blob)| (format!("blobs/sha256/{hex}"), blob.bytes.clone())),
    );
    files
}

/// Writes an OCI image layout of `images` into `dir` (created if missing).
pub fn write_oci_layout(dir: &Path, images: &[(&str, &Pushable)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for (path, bytes) in oci_layout_files(images) {
        std::fs::write(dir.join(path), bytes).unwrap();
    }
}

/// The OCI image layout of `images` as a tar (an "oci-archive"): entries
/// `oci-layout`, `index.json`, `blobs/`, `blobs/sha256/`, then the blobs.
pub fn oci_archive(images: &[(&str, &Pushable)]) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    let mut files = oci_layout_files(images).into_iter();
    // oci-layout and index.json first, then the blob dirs and blobs.
    for (path, bytes) in files.by_ref().take(2) {
        b.add_file_vec(&path, bytes, 0o644, 0, 0);
    }
    b.add_dir("blobs", 0o755).add_dir("blobs/sha256", 0o755);
    for (path, bytes) in files {
        b.add_file_vec(&path, bytes, 0o644, 0, 0);
    }
    b.tar_bytes()
}
