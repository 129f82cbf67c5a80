//! Object paths of pods: `/org/tank/pod/<bus-escaped name>`.
//!
//! Owns the escaping of names into object-path labels, the same scheme as
//! systemd's `bus_label_escape` (`[A-Za-z0-9]` kept, every other byte as
//! `_xx` in lowercase hex, the empty string as `_`), so `web-1` becomes
//! `web_2d1`. Pure functions, no bus access.

use zbus::zvariant::OwnedObjectPath;

/// Parent of every pod object.
pub const POD_PATH_PREFIX: &str = "/org/tank/pod";

/// Escapes `name` into one object-path label.
pub fn escape_label(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// Reverses [`escape_label`]; `None` for a label that no name escapes to.
pub fn unescape_label(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = label.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The object path of pod `name`.
pub fn pod_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{POD_PATH_PREFIX}/{}", escape_label(name)))
        .expect("an escaped label is always a valid object path element")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape_label("web"), "web");
        assert_eq!(escape_label("web-1"), "web_2d1");
        assert_eq!(escape_label("a_b.c"), "a_5fb_2ec");
        assert_eq!(escape_label(""), "_");
        assert_eq!(pod_path("api-v2").as_str(), "/org/tank/pod/api_2dv2");
    }

    #[test]
    fn round_trips() {
        for name in ["web", "web-1", "a_b.c", "", "0-0", "ünï"] {
            assert_eq!(unescape_label(&escape_label(name)).as_deref(), Some(name));
        }
        assert_eq!(unescape_label("bad_zz"), None);
        assert_eq!(unescape_label("bad-"), None);
        assert_eq!(unescape_label("bad_2"), None);
    }
}
