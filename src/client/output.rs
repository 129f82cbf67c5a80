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
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(300), "5m");
        assert_eq!(format_age(3 * 3600), "3h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }
}
