//! Entry metadata: owner, mode, mtime and the xattrs a layer may carry.

use std::io::{self, Read};

use nix::errno::Errno;
use nix::sys::time::TimeSpec;

use super::{entry_err, invalid, lossy, UnpackError};

/// Metadata of an entry, from its header and PAX records.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) mtime: TimeSpec,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(super) fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let old = header.as_old();
        let uid = numeric(&old.uid, header.uid(), "uid", raw)?;
        let gid = numeric(&old.gid, header.gid(), "gid", raw)?;
        let mode = (numeric(&old.mode, header.mode().map(u64::from), "mode", raw)? & 0o7777) as u32;
        let mtime = numeric(&old.mtime, header.mtime(), "mtime", raw)?;
        let uid = u32::try_from(uid).map_err(|_| invalid(raw, format!("uid {uid} too large")))?;
        let gid = u32::try_from(gid).map_err(|_| invalid(raw, format!("gid {gid} too large")))?;
        let mut meta = Meta {
            uid,
            gid,
            mode,
            mtime: TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| invalid(raw, format!("bad PAX header: {e}")))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| invalid(raw, format!("bad PAX record: {e}")))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        meta.mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if keep_xattr(name) {
                        meta.xattrs
                            .push((name.to_vec(), ext.value_bytes().to_vec()));
                    } else {
                        log::debug!(
                            "layer entry {:?}: dropping xattr {:?}",
                            lossy(raw),
                            lossy(name)
                        );
                    }
                }
            }
        }
        Ok(meta)
    }
}

/// A numeric header field. An empty one (all NUL or space) reads as 0, as
/// Go's archive/tar (which wrote and reads most layers) has it.
fn numeric(
    field: &[u8],
    parsed: io::Result<u64>,
    what: &str,
    raw: &[u8],
) -> Result<u64, UnpackError> {
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(invalid(raw, format!("bad {what} in header: {e}"))),
    }
}

/// Whether a layer may carry this xattr: no overlay metadata, no security
/// labels other than file capabilities.
pub(super) fn keep_xattr(name: &[u8]) -> bool {
    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
        return false;
    }
    if name.starts_with(b"security.") {
        return name == b"security.capability";
    }
    !name.is_empty()
}

/// Parses a PAX time (`seconds[.fraction]`, possibly negative).
pub(super) fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !negative {
        TimeSpec::new(secs, nanos)
    } else if nanos == 0 {
        TimeSpec::new(-secs, 0)
    } else {
        TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

/// A failure to set a layer xattr: unsupported by the filesystem is a
/// warning (as in Docker), anything else an error.
pub(super) fn set_xattr_result(
    raw: &[u8],
    key: &[u8],
    result: io::Result<()>,
) -> Result<(), UnpackError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            log::warn!(
                "layer entry {:?}: xattr {:?} not supported here, dropped",
                lossy(raw),
                lossy(key)
            );
            Ok(())
        }
        Err(e) => Err(entry_err(
            raw,
            format!("setxattr {:?}", lossy(key)),
            io_errno(&e),
        )),
    }
}

pub(super) fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
