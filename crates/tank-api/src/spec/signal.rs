//! [`StopSignal`]: the signal that asks a container's PID 1 to stop
//! (a container's `stop_signal`, an image's `StopSignal`).
//!
//! Read as podman reads `--stop-signal`: a name with or without `SIG`, in
//! any case (`"SIGQUIT"`, `"QUIT"`, `"quit"`), or the signal's number
//! (`3` or `"3"`). Written as the canonical name (`"SIGQUIT"`), so every
//! spelling of one signal gives the same canonical JSON. Only the standard
//! signals (1–31) are accepted: real-time signals (`SIGRTMIN+3`) are
//! refused with their own message.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A standard signal, named canonically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StopSignal(Signal);

/// What a bad stop signal is told.
const EXPECTED: &str = r#"a signal name like "SIGQUIT" or "QUIT", or its number"#;

impl StopSignal {
    /// SIGTERM: what stops a container whose image and spec name none.
    pub const DEFAULT: StopSignal = StopSignal(Signal::SIGTERM);

    pub fn signal(self) -> Signal {
        self.0
    }

    /// The canonical name, e.g. `SIGQUIT`.
    pub fn name(self) -> &'static str {
        self.0.as_str()
    }

    /// A signal by number.
    pub fn from_number(number: i64) -> Result<StopSignal, String> {
        let unsupported = || format!("{number}: real-time signals are not supported");
        match i32::try_from(number) {
            Ok(n) if (1..=31).contains(&n) => Signal::try_from(n)
                .map(StopSignal)
                .map_err(|_| format!("{number} is not a signal: {EXPECTED}")),
            Ok(n) if n >= 32 && n <= libc::SIGRTMAX() => Err(unsupported()),
            _ => Err(format!("{number} is not a signal: {EXPECTED}")),
        }
    }

    /// A signal by name or number (see the module doc).
    pub fn parse(text: &str) -> Result<StopSignal, String> {
        if let Ok(number) = text.parse::<i64>() {
            return StopSignal::from_number(number);
        }
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if bare.starts_with("RTMIN") || bare.starts_with("RTMAX") {
            return Err(format!("{text:?}: real-time signals are not supported"));
        }
        Signal::from_str(&format!("SIG{bare}"))
            .map(StopSignal)
            .map_err(|_| format!("{text:?} is not a signal: {EXPECTED}"))
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<StopSignal> for Signal {
    fn from(signal: StopSignal) -> Signal {
        signal.0
    }
}

impl Serialize for StopSignal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SignalVisitor;

        impl Visitor<'_> for SignalVisitor {
            type Value = StopSignal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StopSignal, E> {
                StopSignal::parse(v).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StopSignal, E> {
                StopSignal::from_number(i64::try_from(v).unwrap_or(i64::MAX)).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StopSignal, E> {
                StopSignal::from_number(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SignalVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_as_podman_reads_them() {
        for text in ["SIGQUIT", "QUIT", "quit", "SigQuit", "3"] {
            assert_eq!(
                StopSignal::parse(text),
                Ok(StopSignal(Signal::SIGQUIT)),
                "{text}"
            );
        }
        assert_eq!(StopSignal::from_number(9).unwrap().name(), "SIGKILL");
        assert_eq!(
            StopSignal::parse("SIGWINCH").unwrap().signal(),
            Signal::SIGWINCH
        );
        assert_eq!(StopSignal::DEFAULT.to_string(), "SIGTERM");
    }

    #[test]
    fn bad_signals_are_refused() {
        for (text, message) in [
            (
                "SIGNOPE",
                r#""SIGNOPE" is not a signal: a signal name like"#,
            ),
            ("", r#""" is not a signal"#),
            ("SIG", r#""SIG" is not a signal"#),
            ("0", "0 is not a signal"),
            ("-15", "-15 is not a signal"),
            ("65", "65 is not a signal"),
            ("34", "34: real-time signals are not supported"),
            (
                "SIGRTMIN+3",
                r#""SIGRTMIN+3": real-time signals are not supported"#,
            ),
            ("rtmax", r#""rtmax": real-time signals are not supported"#),
            (" SIGTERM", r#"" SIGTERM" is not a signal"#),
        ] {
            let err = StopSignal::parse(text).unwrap_err();
            assert!(err.starts_with(message), "{text}: {err}");
        }
    }

    #[test]
    fn json_form() {
        let from = |json: &str| serde_json::from_str::<StopSignal>(json).map_err(|e| e.to_string());
        assert_eq!(from(r#""quit""#).unwrap().name(), "SIGQUIT");
        assert_eq!(from("3").unwrap().name(), "SIGQUIT");
        assert!(from("-1").unwrap_err().contains("-1 is not a signal"));
        assert!(from("1.5").unwrap_err().contains("a signal name like"));
        assert!(from("true").unwrap_err().contains("a signal name like"));
        assert_eq!(
            serde_json::to_string(&StopSignal::parse("usr1").unwrap()).unwrap(),
            r#""SIGUSR1""#
        );
    }
}
