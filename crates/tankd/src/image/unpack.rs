//! Safe layer unpacking: turns one OCI/Docker layer stream (a tar, plain or
//! gzip- or zstd-compressed) into a directory that overlayfs can use as a
//! lower layer.
//!
//! Owns only the directory it is given: every path of the layer is resolved
//! inside it with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` on one
//! directory fd, and every change is made with the `*at` syscalls on the
//! final component without following it. Nothing outside `dest` is created,
//! changed or read (besides `/proc/self/fd` to set xattrs on symlinks and
//! FIFOs); it never mounts anything and never touches the network. The caller
//! unpacks into a fresh temporary directory and deletes it if this fails.
//!
//! Rules, as the layer format and overlayfs want them:
//! - Entry names: leading `/` and `./` and empty or `.` components are
//!   dropped; `..` is applied lexically (`a/../b` is `b`), and a name whose
//!   `..` would climb above the layer root is **refused** with an error
//!   (Docker does the same; a well-formed layer never has one). Hard link
//!   targets are archive names and follow the same rule. Symlink targets are
//!   stored verbatim and never followed by the unpacker except while
//!   resolving a later entry's parent directories, which openat2 keeps
//!   inside the root (an absolute or `../..` target is taken relative to the
//!   layer root, as it will be in the container).
//! - A later entry for a path replaces the earlier one; a directory entry
//!   over an existing directory keeps its contents and takes the new
//!   metadata. Missing parent directories are created 0755 root:root.
//! - Whiteouts: `dir/.wh.NAME` becomes the overlay whiteout, a 0:0 character
//!   device `dir/NAME` (replacing what this layer made there);
//!   `dir/.wh..wh..opq` sets `trusted.overlay.opaque=y` on `dir` and keeps
//!   what this layer already put in `dir`. Whiteout names that are empty,
//!   `.` or `..` are refused; other `.wh..wh.` (aufs metadata) entries are
//!   skipped with a warning.
//! - Character and block devices are never created (skipped with a
//!   warning): device nodes exist only as whiteouts. FIFOs are created.
//! - Owners (numeric, from the header or PAX), modes (with set-id and sticky
//!   bits, applied after chown), mtimes (PAX sub-second precision; atime =
//!   mtime) and PAX `SCHILY.xattr.*` records are kept, except `trusted.overlay.*`
//!   and `user.overlay.*` (a layer must not inject overlay metadata) and
//!   `security.*` other than `security.capability`. Directory times are set
//!   after the last entry, deepest first. Hard links get no metadata of
//!   their own (they share the target's inode). An xattr the filesystem
//!   does not support is dropped with a warning (as Docker does); the opaque
//!   marker is never dropped. A `./` directory entry applies to `dest`
//!   itself; without one, `dest` keeps the mode the caller gave it.
//!
//! The layer's diff_id: the uncompressed stream is hashed as the unpacker
//! reads it (a [`DigestReader`] under the tar reader, in its own buffers,
//! no copy; on the decompressing thread when there is one), and the stream
//! is read to its very end — the zero blocks and record padding after the
//! tar end-of-archive marker are part of the diff_id. [`UnpackStats`]
//! carries the digest; comparing it with the image config is the caller's
//! job (the layer store does it before a layer gets its final name).
//!
//! Speed: the input is read through large buffers, file data is written in
//! 1 MiB writes, the last parent directory fd is cached, and a compressed
//! stream is decompressed on the calling thread while a worker thread does
//! the filesystem work (see `pipe`). The whole layer is never in memory.
//!
//! Parts: `tree` (names, parent directories, replacement), `create` (one
//! function per entry kind, directory times), `meta` (owner, mode, times,
//! xattr filtering), `zstd` (multi-frame decoder), `pipe` (the two threads).

mod create;
mod meta;
mod pipe;
mod tree;
mod zstd;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

use meta::Meta;
use tree::{normalize, split_last};

use super::digest::{Digest, DigestReader};

/// Buffer between the (possibly compressed) input and its decoder.
const INPUT_BUFFER: usize = 1 << 20;
/// File data is copied through a buffer of this size.
const COPY_BUFFER: usize = 1 << 20;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of an OCI or Docker layer media type (distributable,
    /// non-distributable and foreign alike).
    pub fn from_media_type(media_type: &str) -> Result<Compression, UnpackError> {
        match media_type.trim() {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(UnpackError::UnsupportedMediaType(other.to_string())),
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive entries handled (including skipped ones; PAX/GNU extension
    /// headers are part of the entry they describe and not counted).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// The digest of the whole uncompressed stream (the layer's diff_id
    /// if the layer is what its image config says).
    pub diff_id: Digest,
}

/// What the unpacker counts as it goes.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    entries: u64,
    bytes: u64,
}

/// Why a layer could not be unpacked. Entry errors name the entry as it is
/// spelled in the archive and the failing operation.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("layer destination {path:?}: {op}: {errno}")]
    Dest {
        path: PathBuf,
        op: &'static str,
        errno: Errno,
    },
    #[error("layer destination {0:?} is not an empty directory")]
    DestNotEmpty(PathBuf),
    /// Reading or decompressing the stream failed, or the tar framing is
    /// broken; `after` is the last entry read before it.
    #[error("reading layer{}: {error}", after_entry(.after))]
    Stream {
        after: Option<String>,
        error: io::Error,
    },
    /// A syscall on an entry failed.
    #[error("layer entry {path:?}: {op}: {errno}")]
    Entry {
        path: String,
        op: String,
        errno: Errno,
    },
    /// Reading or writing an entry's data failed.
    #[error("layer entry {path:?}: {op}: {error}")]
    EntryIo {
        path: String,
        op: &'static str,
        error: io::Error,
    },
    /// The entry is refused (unsafe or malformed).
    #[error("layer entry {path:?}: {reason}")]
    Invalid { path: String, reason: String },
}

fn after_entry(after: &Option<String>) -> String {
    match after {
        Some(path) => format!(" after entry {path:?}"),
        None => String::new(),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn entry_err(raw: &[u8], op: impl Into<String>, errno: Errno) -> UnpackError {
    UnpackError::Entry {
        path: lossy(raw),
        op: op.into(),
        errno,
    }
}

fn invalid(raw: &[u8], reason: impl Into<String>) -> UnpackError {
    UnpackError::Invalid {
        path: lossy(raw),
        reason: reason.into(),
    }
}

/// Unpacks the layer read from `reader` into `dest`, an existing empty
/// directory, and returns what it did with the digest of the uncompressed
/// stream.
pub fn unpack_layer<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Path,
) -> Result<UnpackStats, UnpackError> {
    let (counts, diff_id) = match compression {
        Compression::None => {
            let mut input = BufReader::with_capacity(INPUT_BUFFER, DigestReader::new(reader));
            let counts = Unpacker::new(dest)?.run(&mut input)?;
            (counts, input.into_inner().finish())
        }
        Compression::Gzip => {
            let mut decoded = DigestReader::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(INPUT_BUFFER, reader),
            ));
            let counts = pipe::unpack_pipelined(&mut decoded, dest)?;
            (counts, decoded.finish())
        }
        Compression::Zstd => {
            let mut decoded = DigestReader::new(zstd::ZstdReader::new(BufReader::with_capacity(
                INPUT_BUFFER,
                reader,
            )));
            let counts = pipe::unpack_pipelined(&mut decoded, dest)?;
            (counts, decoded.finish())
        }
    };
    // The unpacker reads to the end on success; this keeps a digest of a
    // prefix from ever passing for the layer's.
    let diff_id = diff_id.ok_or_else(|| UnpackError::Stream {
        after: None,
        error: io::Error::other("the layer stream was not read to its end"),
    })?;
    Ok(UnpackStats {
        entries: counts.entries,
        bytes: counts.bytes,
        diff_id,
    })
}

/// What an entry is, after whiteout detection.
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
    Device,
    Whiteout,
    Opaque,
    Skip(&'static str),
}

struct Unpacker {
    /// The layer root, opened O_RDONLY|O_DIRECTORY.
    root: Arc<OwnedFd>,
    /// The last parent directory resolved, by normalized path.
    cached_parent: Option<(Vec<u8>, Arc<OwnedFd>)>,
    /// Directory mtimes to set once every entry is in place.
    dir_times: BTreeMap<Vec<u8>, TimeSpec>,
    /// The current entry's name as spelled in the archive, and normalized.
    raw: Vec<u8>,
    path: Vec<u8>,
    buf: Vec<u8>,
    stats: Counts,
}

impl Unpacker {
    fn new(dest: &Path) -> Result<Unpacker, UnpackError> {
        let dest_err = |op, errno| UnpackError::Dest {
            path: dest.to_path_buf(),
            op,
            errno,
        };
        let root = nix::fcntl::open(
            dest,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| dest_err("open", e))?;
        let mut listing = std::fs::read_dir(dest).map_err(|e| {
            dest_err(
                "readdir",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        if listing.next().is_some() {
            return Err(UnpackError::DestNotEmpty(dest.to_path_buf()));
        }
        Ok(Unpacker {
            root: Arc::new(root),
            cached_parent: None,
            dir_times: BTreeMap::new(),
            raw: Vec::new(),
            path: Vec::new(),
            buf: vec![0; COPY_BUFFER],
            stats: Counts::default(),
        })
    }

    fn stream_err(&self, error: io::Error) -> UnpackError {
        UnpackError::Stream {
            after: (self.stats.entries > 0).then(|| lossy(&self.raw)),
            error,
        }
    }

    fn run<T: Read>(mut self, stream: T) -> Result<Counts, UnpackError> {
        let mut archive = tar::Archive::new(stream);
        let entries = archive.entries().map_err(|e| self.stream_err(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_err(e))?;
            self.entry(&mut entry)?;
        }
        self.set_dir_times()?;
        // Read to the end: this checks the compression trailer (gzip CRC,
        // zstd checksum) past the tar end-of-archive blocks.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| self.stream_err(e))?;
        Ok(self.stats)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_pax_global_extensions() {
            log::debug!("layer: ignoring a PAX global header");
            return Ok(());
        }
        self.stats.entries += 1;
        let flag = header.as_old().linkflag[0];
        self.raw.clear();
        self.raw.extend_from_slice(&entry.path_bytes());
        let raw = std::mem::take(&mut self.raw);
        let mut path = std::mem::take(&mut self.path);
        if normalize(&raw, &mut path).is_err() {
            return Err(invalid(&raw, "name escapes the layer root"));
        }
        let (parent, name) = split_last(&path);

        let mut kind = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // Old tars mark directories as regular files named "dir/".
                if flag == 0 && raw.last() == Some(&b'/') {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => Kind::Device,
            _ => Kind::Skip("unsupported entry type"),
        };
        if name == WHITEOUT_OPAQUE {
            kind = Kind::Opaque;
        } else if name.starts_with(WHITEOUT_META_PREFIX) {
            kind = Kind::Skip("aufs metadata");
        } else if name.starts_with(WHITEOUT_PREFIX) {
            kind = Kind::Whiteout;
        }

        match kind {
            Kind::Skip(why) => {
                log::warn!(
                    "layer entry {:?}: skipped ({why}, type {:?})",
                    lossy(&raw),
                    flag as char
                );
            }
            Kind::Device => {
                log::warn!(
                    "layer entry {:?}: device node skipped (only whiteouts may be devices)",
                    lossy(&raw)
                );
            }
            Kind::Whiteout => self.whiteout(&raw, parent, &name[WHITEOUT_PREFIX.len()..])?,
            Kind::Opaque => self.opaque(&raw, parent)?,
            Kind::Dir => {
                let meta = Meta::read(entry, &raw)?;
                self.dir(&raw, &path, parent, name, &meta)?;
            }
            Kind::File | Kind::Symlink | Kind::HardLink | Kind::Fifo if name.is_empty() => {
                return Err(invalid(&raw, "a non-directory entry names the layer root"));
            }
            Kind::File => {
                let meta = Meta::read(entry, &raw)?;
                self.file(entry, &raw, parent, name, &meta)?;
            }
            Kind::Symlink => {
                let meta = Meta::read(entry, &raw)?;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "symlink without a target"))?;
                self.symlink(&raw, parent, name, &target, &meta)?;
            }
            Kind::HardLink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "hard link without a target"))?;
                self.hard_link(&raw, parent, name, &target)?;
            }
            Kind::Fifo => {
                let meta = Meta::read(entry, &raw)?;
                self.fifo(&raw, parent, name, &meta)?;
            }
        }
        self.raw = raw;
        self.path = path;
        Ok(())
    }
}
