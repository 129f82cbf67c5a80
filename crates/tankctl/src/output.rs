//! How tankctl shows things: aligned tables, ages, JSON and YAML documents,
//! a pod's status for people. Pure formatting over tank-api's types; no
//! bus access.

use std::time::{SystemTime, UNIX_EPOCH};

use tank_api::status::{ContainerState, PodDocument, PodStatus};

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

/// A document as `-o json` shows it: pretty JSON.
pub fn json(document: &PodDocument) -> String {
    serde_json::to_string_pretty(document).expect("a pod document serializes")
}

/// A document as `-o yaml` shows it.
pub fn yaml(document: &PodDocument) -> String {
    serde_norway::to_string(document).expect("a pod document serializes")
}

/// What `tankctl ps` shows of a pod's status.
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
    /// The summary of `status` (`None`: not observed yet).
    pub fn of(status: Option<&PodStatus>) -> StatusSummary {
        let mut summary = StatusSummary::default();
        let Some(status) = status else {
            summary.state = "-".to_owned();
            return summary;
        };
        let mut states = Vec::new();
        for c in status.containers.values() {
            summary.total += 1;
            summary.restarts += u64::from(c.restart_count);
            states.push(match &c.state {
                ContainerState::Running { .. } => {
                    summary.ready += 1;
                    "Running".to_owned()
                }
                ContainerState::Waiting { reason, .. } => reason.clone(),
                ContainerState::Terminated {
                    exit_code,
                    signal,
                    reason,
                    ..
                } => match (exit_code, signal) {
                    _ if reason == "OOMKilled" => "OOMKilled".to_owned(),
                    (Some(0), _) => "Completed".to_owned(),
                    (Some(code), _) => format!("Exited({code})"),
                    (_, Some(signal)) => format!("Signaled({signal})"),
                    _ => reason.clone(),
                },
            });
        }
        // The most telling state: anything not running wins.
        summary.state = states
            .iter()
            .find(|s| s.as_str() != "Running")
            .or(states.first())
            .cloned()
            .unwrap_or_else(|| "-".to_owned());
        summary.ips = status.ips.clone();
        summary
    }
}

/// `tankctl describe`: a pod's `Get` document for people.
pub fn describe(doc: &PodDocument) -> String {
    let status = doc.status.0.as_ref();
    let mut out = String::new();
    out.push_str(&format!("Name:        {}\n", doc.name));
    out.push_str(&format!(
        "Generation:  {} (observed {})\n",
        doc.generation,
        status.map_or("-".to_owned(), |s| s.observed_generation.to_string())
    ));
    out.push_str(&format!("Phase:       {}\n", doc.phase));
    if let Some(message) = status.and_then(|s| s.message.as_deref()) {
        out.push_str(&format!("Message:     {message}\n"));
    }
    let ips = status.map(|s| s.ips.join(", ")).unwrap_or_default();
    out.push_str(&format!(
        "IPs:         {}\n",
        if ips.is_empty() { "-" } else { &ips }
    ));
    out.push_str("Containers:\n");
    for (name, c) in status.iter().flat_map(|s| &s.containers) {
        out.push_str(&format!("  {name}:\n"));
        match &c.state {
            ContainerState::Running { pid, started_at } => out.push_str(&format!(
                "    State:     Running (pid {pid}, since {started_at})\n"
            )),
            ContainerState::Waiting { reason, message } => {
                out.push_str(&format!("    State:     Waiting: {reason}\n"));
                if let Some(m) = message {
                    out.push_str(&format!("    Message:   {m}\n"));
                }
            }
            ContainerState::Terminated {
                exit_code,
                signal,
                reason,
                finished_at,
            } => {
                let how = match (exit_code, signal) {
                    (Some(code), _) => format!("exit code {code}"),
                    (_, Some(signal)) => format!("signal {signal}"),
                    _ => "-".to_owned(),
                };
                out.push_str(&format!(
                    "    State:     Terminated: {reason} ({how}, at {finished_at})\n"
                ));
            }
        }
        out.push_str(&format!("    Restarts:  {}\n", c.restart_count));
    }
    out.push_str("Events:\n");
    for e in status.iter().flat_map(|s| &s.events) {
        out.push_str(&format!("  {}  {:<10} {}\n", e.time, e.reason, e.message));
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
        let status: PodStatus = serde_json::from_str(
            r#"{"phase": "Running", "observed_generation": 1, "ips": ["10.0.0.2"], "events": [],
                "containers": {
                "a": {"state": {"running": {"pid": 5, "started_at": "x"}}, "restart_count": 2},
                "b": {"state": {"terminated": {"exit_code": 3, "reason": "Error", "finished_at": "x"}}, "restart_count": 1}}}"#,
        )
        .unwrap();
        let s = StatusSummary::of(Some(&status));
        assert_eq!(
            (s.ready, s.total, s.restarts, s.state.as_str()),
            (1, 2, 3, "Exited(3)")
        );
        assert_eq!(s.ips, ["10.0.0.2"]);
        assert_eq!(StatusSummary::of(None).state, "-");
    }

    #[test]
    fn describe_shows_states_and_events() {
        let doc = PodDocument::from_json(
            r#"{"name": "web", "generation": 2, "created_ms": 1, "updated_ms": 2,
                "phase": "Running", "spec": {"name": "web", "containers": [{"name": "app", "image": "busybox"}]},
                "status": {"phase": "Running", "observed_generation": 2, "ips": ["10.0.0.2"],
                "containers": {"app": {"state": {"terminated": {"exit_code": 3, "reason": "Error",
                    "finished_at": "t1"}}, "restart_count": 4}},
                "events": [{"time": "t0", "reason": "Started", "message": "started app"}]}}"#,
        )
        .unwrap();
        let text = describe(&doc);
        assert!(text.contains("Generation:  2 (observed 2)\n"), "{text}");
        assert!(text.contains("Phase:       Running\n"), "{text}");
        assert!(text.contains("IPs:         10.0.0.2\n"), "{text}");
        assert!(
            text.contains("Terminated: Error (exit code 3, at t1)"),
            "{text}"
        );
        assert!(text.contains("Restarts:  4"), "{text}");
        assert!(text.contains("t0  Started    started app"), "{text}");
        // Not observed yet.
        let doc = PodDocument::from_json(
            r#"{"name": "web", "generation": 1, "created_ms": 1, "updated_ms": 1,
                "phase": "Pending", "status": {},
                "spec": {"name": "web", "containers": [{"name": "app", "image": "busybox"}]}}"#,
        )
        .unwrap();
        let text = describe(&doc);
        assert!(text.contains("Generation:  1 (observed -)\n"), "{text}");
        assert!(text.contains("IPs:         -\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&json(&doc)).unwrap();
        assert_eq!(json["status"], serde_json::json!({}));
        assert_eq!(json["phase"], "Pending");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(300), "5m");
        assert_eq!(format_age(3 * 3600), "3h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }
}
