//! How tankctl shows things: aligned tables, ages, JSON and YAML documents.
//! Pure formatting; no bus access.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats rows under `header` as left-aligned columns separated by three
/// spaces (kubectl style).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Age of a timestamp in µs since the epoch, kubectl style (`42s`, `5m`,
/// `3h`, `12d`).
pub fn age(timestamp_us: u64) -> String {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format_age(now_us.saturating_sub(timestamp_us) / 1_000_000)
}

pub fn format_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// What `tankctl ps` shows of a pod's status JSON.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatusSummary {
    pub ready: usize,
    pub total: usize,
    pub restarts: u64,
    /// `Running`, a waiting reason (`ImagePullBackOff`…), or how the last
    /// container ended (`Exited(3)`, `OOMKilled`, `Signaled(9)`, `Completed`).
    pub state: String,
    pub ips: Vec<String>,
}

impl StatusSummary {
    pub fn of(status: &serde_json::Value) -> StatusSummary {
        let mut summary = StatusSummary::default();
        let Some(containers) = status["containers"].as_object() else {
            summary.state = "-".to_owned();
            return summary;
        };
        let mut states = Vec::new();
        for c in containers.values() {
            summary.total += 1;
            summary.restarts += c["restart_count"].as_u64().unwrap_or(0);
            let state = &c["state"];
            if state.get("running").is_some() {
                summary.ready += 1;
                states.push("Running".to_owned());
            } else if let Some(w) = state.get("waiting") {
                states.push(w["reason"].as_str().unwrap_or("Waiting").to_owned());
            } else if let Some(t) = state.get("terminated") {
                let reason = t["reason"].as_str().unwrap_or("");
                states.push(match (t["exit_code"].as_i64(), t["signal"].as_i64()) {
                    _ if reason == "OOMKilled" => "OOMKilled".to_owned(),
                    (Some(0), _) => "Completed".to_owned(),
                    (Some(code), _) => format!("Exited({code})"),
                    (_, Some(signal)) => format!("Signaled({signal})"),
                    _ => reason.to_owned(),
                });
            }
        }
        // The most telling state: anything not running wins.
        summary.state = states
            .iter()
            .find(|s| s.as_str() != "Running")
            .or(states.first())
            .cloned()
            .unwrap_or_else(|| "-".to_owned());
        if let Some(ips) = status["ips"].as_array() {
            summary.ips = ips
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["web".to_owned(), "Pending".to_owned()],
            vec!["database".to_owned(), "Running".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "PHASE"], &rows),
            "NAME       PHASE\nweb        Pending\ndatabase   Running\n"
        );
    }

    #[test]
    fn status_summaries() {
        let status: serde_json::Value = serde_json::from_str(
            r#"{"containers": {
                "a": {"state": {"running": {"pid": 5, "started_at": "x"}}, "restart_count": 2},
                "b": {"state": {"terminated": {"exit_code": 3, "reason": "Error", "finished_at": "x"}}, "restart_count": 1}}}"#,
        )
        .unwrap();
        let s = StatusSummary::of(&status);
        assert_eq!(
            (s.ready, s.total, s.restarts, s.state.as_str()),
            (1, 2, 3, "Exited(3)")
        );
        assert_eq!(StatusSummary::of(&serde_json::Value::Null).state, "-");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(300), "5m");
        assert_eq!(format_age(3 * 3600), "3h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }
}
