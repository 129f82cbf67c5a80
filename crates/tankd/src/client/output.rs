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

/// `tankctl describe`: a pod's `Get` document for people.
pub fn describe(doc: &serde_json::Value) -> String {
    let status = &doc["status"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    out.push_str(&format!("Name:        {}\n", text(&doc["name"])));
    out.push_str(&format!(
        "Generation:  {} (observed {})\n",
        doc["generation"], status["observed_generation"]
    ));
    out.push_str(&format!("Phase:       {}\n", text(&doc["phase"])));
    if let Some(message) = status["message"].as_str() {
        out.push_str(&format!("Message:     {message}\n"));
    }
    let ips: Vec<String> = status["ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "IPs:         {}\n",
        if ips.is_empty() {
            "-".to_owned()
        } else {
            ips.join(", ")
        }
    ));
    out.push_str("Containers:\n");
    if let Some(containers) = status["containers"].as_object() {
        for (name, c) in containers {
            out.push_str(&format!("  {name}:\n"));
            let state = &c["state"];
            if let Some(r) = state.get("running") {
                out.push_str(&format!(
                    "    State:     Running (pid {}, since {})\n",
                    r["pid"],
                    text(&r["started_at"])
                ));
            } else if let Some(w) = state.get("waiting") {
                out.push_str(&format!("    State:     Waiting: {}\n", text(&w["reason"])));
                if let Some(m) = w["message"].as_str() {
                    out.push_str(&format!("    Message:   {m}\n"));
                }
            } else if let Some(t) = state.get("terminated") {
                let how = match (t["exit_code"].as_i64(), t["signal"].as_i64()) {
                    (Some(code), _) => format!("exit code {code}"),
                    (_, Some(signal)) => format!("signal {signal}"),
                    _ => "-".to_owned(),
                };
                out.push_str(&format!(
                    "    State:     Terminated: {} ({how}, at {})\n",
                    text(&t["reason"]),
                    text(&t["finished_at"])
                ));
            }
            out.push_str(&format!("    Restarts:  {}\n", c["restart_count"]));
        }
    }
    out.push_str("Events:\n");
    for e in status["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}  {:<10} {}\n",
            text(&e["time"]),
            text(&e["reason"]),
            text(&e["message"])
        ));
    }
    out
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
    fn describe_shows_states_and_events() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"name": "web", "generation": 2, "phase": "Running", "status": {
                "observed_generation": 2, "ips": ["10.0.0.2"],
                "containers": {"app": {"state": {"terminated": {"exit_code": 3, "reason": "Error",
                    "finished_at": "t1"}}, "restart_count": 4}},
                "events": [{"time": "t0", "reason": "Started", "message": "started app"}]}}"#,
        )
        .unwrap();
        let text = describe(&doc);
        assert!(text.contains("Phase:       Running\n"), "{text}");
        assert!(text.contains("IPs:         10.0.0.2\n"), "{text}");
        assert!(
            text.contains("Terminated: Error (exit code 3, at t1)"),
            "{text}"
        );
        assert!(text.contains("Restarts:  4"), "{text}");
        assert!(text.contains("t0  Started    started app"), "{text}");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(300), "5m");
        assert_eq!(format_age(3 * 3600), "3h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }
}
