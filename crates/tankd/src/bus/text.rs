//! Text that may go on the bus.
//!
//! A D-Bus string is valid UTF-8 without NUL bytes; a message holding
//! anything else is invalid, and dbus-daemon answers an invalid message by
//! dropping the sender's connection: one NUL in an error text or a
//! property would take tankd's whole API off the bus. Rust strings are
//! UTF-8 by construction, but may hold NULs, which reach tankd from specs
//! (`{"a\u0000": …}`), registries (error bodies, platform strings) and
//! archives.
//!
//! Owns the one rule: every string tankd sends is made safe here, by
//! [`BusText`] (the type of every string in the replies, properties and
//! signals of tankd's interfaces) or [`bus_text`] (error messages, in
//! `error.rs`). A NUL becomes the six characters `\u0000`, as JSON writes
//! it; nothing else changes. Error messages are also bounded
//! ([`MAX_MESSAGE_BYTES`]): one line for a human, never megabytes of a
//! registry's reply echoed back.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use zbus::zvariant::{Signature, Type, Value};

/// The longest error message tankd sends, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `text` with every NUL written as `\u0000`.
pub fn bus_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\\u0000"))
    } else {
        Cow::Borrowed(text)
    }
}

/// An error message as it goes on the bus: [`bus_text`], cut to at most
/// [`MAX_MESSAGE_BYTES`] (at a character boundary) with a note of how much
/// was left out.
pub fn bus_message(text: &str) -> String {
    let text = bus_text(text);
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.into_owned();
    }
    let note = format!("… ({} more bytes)", text.len() - MAX_MESSAGE_BYTES);
    let mut end = MAX_MESSAGE_BYTES - note.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

/// A string that is safe on the bus (no NUL): D-Bus type `s`. The only
/// way to make one escapes, so a value of this type never needs checking.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusText(String);

impl BusText {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<String> for BusText {
    fn from(text: String) -> BusText {
        if text.contains('\0') {
            BusText(bus_text(&text).into_owned())
        } else {
            BusText(text)
        }
    }
}

impl From<&str> for BusText {
    fn from(text: &str) -> BusText {
        BusText(bus_text(text).into_owned())
    }
}

impl fmt::Display for BusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for BusText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl Type for BusText {
    const SIGNATURE: &'static Signature = &Signature::Str;
}

/// Properties are sent as variants.
impl From<BusText> for Value<'static> {
    fn from(text: BusText) -> Value<'static> {
        Value::from(text.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_escaped_and_nothing_else_changes() {
        assert_eq!(bus_text("a\0b\0"), "a\\u0000b\\u0000");
        assert!(matches!(bus_text("plain ü 😀 \n"), Cow::Borrowed(_)));
        assert_eq!(BusText::from("x\0").as_str(), "x\\u0000");
        assert_eq!(BusText::from(String::from("\0")).as_str(), "\\u0000");
        assert_eq!(BusText::from("\u{1}\u{7f}").as_str(), "\u{1}\u{7f}");
    }

    #[test]
    fn it_is_a_dbus_string() {
        use zbus::zvariant::{serialized::Context, to_bytes, LE};
        assert_eq!(BusText::SIGNATURE.to_string(), "s");
        let ctxt = Context::new_dbus(LE, 0);
        let bytes = to_bytes(ctxt, &BusText::from("a\0")).unwrap();
        assert!(!bytes[4..bytes.len() - 1].contains(&0), "{:?}", &*bytes);
        assert_eq!(
            Value::from(BusText::from("p\0")),
            Value::from("p\\u0000".to_owned())
        );
    }

    #[test]
    fn messages_are_bounded_at_a_character_boundary() {
        assert_eq!(bus_message("short\0"), "short\\u0000");
        let long = "é".repeat(10_000);
        let cut = bus_message(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} more bytes)", 20_000 - MAX_MESSAGE_BYTES)));
        assert!(cut.starts_with("éé"));
        // NULs are escaped before the cut: the cut never splits "\u0000"
        // into something that is not text.
        let nuls = bus_message(&"\0".repeat(5000));
        assert!(!nuls.contains('\0') && nuls.len() <= MAX_MESSAGE_BYTES);
    }

    /// The JSON tankd sends (Get, the Spec and Status properties) is safe
    /// by serde_json: it writes control characters in strings, keys
    /// included, as escapes.
    #[test]
    fn serde_json_escapes_nul_in_keys_and_values() {
        let json = serde_json::to_string(&serde_json::json!({"k\0": ["v\0"]})).unwrap();
        assert_eq!(json, r#"{"k\u0000":["v\u0000"]}"#);
    }
}
