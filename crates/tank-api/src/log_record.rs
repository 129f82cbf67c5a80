//! The container log record (the CRI format kubelet writes): one line
//! `<RFC 3339 time> <stream> <F|P> <text>`, `P` for a partial record (a
//! line cut at the log's line limit, or its end without a newline). tankd
//! writes a container's log files in it and streams it to `Logs` callers;
//! tankctl shows records as text, or whole with `--timestamps`.
//!
//! Owns the format, both ways; nothing here reads or writes files.

use std::time::SystemTime;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// `stdout` / `stderr`, as in a record.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record, with its newline: `text` (a line without its newline, or a
/// part of one when `partial`) written by `stream` at `time`.
pub fn record(time: SystemTime, stream: Stream, partial: bool, text: &str) -> String {
    let stamp = humantime::format_rfc3339_nanos(time);
    let flag = if partial { 'P' } else { 'F' };
    format!("{stamp} {} {flag} {text}\n", stream.name())
}

/// The text of a record, with its newline unless it is a partial record.
pub fn record_text(record: &str) -> String {
    let mut parts = record.splitn(4, ' ');
    let (_time, _stream, flag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    let text = text.unwrap_or("").trim_end_matches('\n');
    if flag == Some("P") {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_both_ways() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        let full = record(time, Stream::Stdout, false, "hello world");
        assert_eq!(
            full,
            "1970-01-01T00:00:01.500000000Z stdout F hello world\n"
        );
        assert_eq!(record_text(&full), "hello world\n");
        let part = record(time, Stream::Stderr, true, "abc");
        assert_eq!(part, "1970-01-01T00:00:01.500000000Z stderr P abc\n");
        assert_eq!(record_text(&part), "abc");
        assert_eq!(record_text("t stdout P abc"), "abc");
        assert_eq!(record_text("t stdout F abc\n"), "abc\n");
        assert_eq!(record_text("t stdout F \n"), "\n");
    }
}
