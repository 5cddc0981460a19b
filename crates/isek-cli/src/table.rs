//! The human-readable node table printed by `isek nodes`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use isek::NodeInfo;

/// Widest metadata column before it is cut with `…` (the full value is in `--json`).
pub(crate) const METADATA_WIDTH: usize = 60;

/// Column titles, in order.
const HEADERS: [&str; 5] = ["NODE_ID", "HOST", "PORT", "EXPIRES_IN", "METADATA"];

/// Unix time now in seconds, the `now` of [`render`].
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Renders `nodes` as an aligned table with a header, or a one-line note when empty.
/// `now` (Unix seconds) turns each `expires_at` into the time left.
pub fn render(nodes: &BTreeMap<String, NodeInfo>, now: f64) -> String {
    if nodes.is_empty() {
        return "No available nodes.\n".to_owned();
    }
    let rows: Vec<[String; 5]> = nodes
        .iter()
        .map(|(id, node)| {
            [
                printable(id),
                printable(&node.host),
                node.port.to_string(),
                expires_in(node.expires_at, now),
                truncate(&printable(&compact_json(&node.metadata)), METADATA_WIDTH),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &HEADERS.map(str::to_owned), &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    out
}

/// Appends one row, columns padded to `widths` and separated by two spaces.
fn push_row(out: &mut String, cells: &[String; 5], widths: &[usize; 5]) {
    let last = cells.len() - 1;
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == last {
            out.push_str(cell);
        } else {
            let _ = write!(out, "{cell:<width$}  ");
        }
    }
    out.push('\n');
}

/// Seconds left on the lease, `expired`, or `-` when the backend does not say.
fn expires_in(expires_at: Option<f64>, now: f64) -> String {
    match expires_at {
        Some(at) if at > now => format!("{:.0}s", (at - now).ceil()),
        Some(_) => "expired".to_owned(),
        None => "-".to_owned(),
    }
}

/// The metadata as one line of JSON.
pub(crate) fn compact_json(metadata: &isek::Metadata) -> String {
    serde_json::to_string(metadata).unwrap_or_default()
}

/// Control characters replaced, so a hostile entry cannot rewrite the terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `text` cut to `max` characters, the last one `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_listing_is_one_line() {
        assert_eq!(render(&BTreeMap::new(), 0.0), "No available nodes.\n");
    }

    #[test]
    fn columns_are_aligned_and_long_metadata_cut() {
        let mut nodes = BTreeMap::new();
        let mut metadata = isek::Metadata::new();
        metadata.insert("card".into(), "x".repeat(100).into());
        let mut a = NodeInfo::new("a", "10.0.0.1", 80, metadata);
        a.expires_at = Some(1_000.2);
        nodes.insert("a".to_owned(), a);
        nodes.insert(
            "long-node\nid".to_owned(),
            NodeInfo::new("long-node\nid", "h", 65535, isek::Metadata::new()),
        );
        let table = render(&nodes, 990.0);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NODE_ID       HOST      PORT   EXPIRES_IN  METADATA"));
        assert!(lines[1].starts_with("a             10.0.0.1  80     11s         {"));
        assert!(lines[1].ends_with('…'));
        assert_eq!(
            lines[1]
                .split("  ")
                .last()
                .map(|m| m.trim_start().chars().count()),
            Some(60)
        );
        assert!(lines[2].starts_with("long-node\u{fffd}id  h         65535  -           {}"));
    }
}
