//! The memory a snapshot event costs while it is rendered (issue 15): the frame is
//! written into one buffer, so the peak resident memory of rendering it is about the
//! frame's own size, not twice it (the data was rendered into a string, then copied
//! into the frame).
//!
//! Measured with the kernel's own peak-RSS counter: `/proc/self/clear_refs` (5)
//! resets `VmHWM`, the render runs, and `VmHWM` less the RSS before it is what the
//! render touched at its peak. Linux only; nextest runs this test in a process of its
//! own, so nothing else allocates meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use isek_center::NodeRecord;
use isek_center::render::snapshot_frame;

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

#[test]
fn rendering_a_snapshot_touches_about_one_frame_of_memory() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: no /proc/self/clear_refs (not Linux)");
        return;
    }
    const NODES: usize = 100_000;
    let ids: Vec<String> = (0..NODES).map(|i| format!("node-{i:06}")).collect();
    let records: Vec<NodeRecord> = (0..NODES)
        .map(|i| {
            let metadata = format!(r#"{{"name":"agent-{i}","role":"worker"}}"#);
            NodeRecord::new("10.0.0.1", 9000, &metadata)
        })
        .collect();

    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let frame = snapshot_frame(ids.iter().map(String::as_str).zip(records.iter()), NODES, 1);
    let peak = status_bytes("VmHWM:");
    let touched = peak.saturating_sub(before);
    let ratio = touched as f64 / frame.len() as f64;
    eprintln!(
        "snapshot of {NODES} nodes: frame {} bytes, peak RSS growth {touched} bytes ({ratio:.2}x the frame)",
        frame.len()
    );
    assert!(frame.starts_with(b"event: snapshot\nid: 1\ndata: {\"nodes\":{"));
    assert!(frame.ends_with(b",\"revision\":1}\n\n"));
    assert!(
        ratio < 1.5,
        "rendering a {}-byte snapshot frame touched {touched} bytes ({ratio:.2}x): a copy of the frame",
        frame.len()
    );
}
