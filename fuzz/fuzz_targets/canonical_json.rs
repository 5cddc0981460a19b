//! Fuzz target: Python-exact JSON writers on any JSON `serde_json` accepts.
//!
//! For every value parsed from the input, each writer (`json.dumps(sort_keys=True)`
//! as signed, plain `json.dumps` as stored in etcd, Flask's compact `jsonify` as the
//! center answers) must produce ASCII JSON text that parses back to the same value
//! and is a fixed point (writing the re-parsed value gives the same text).
#![no_main]

use isek::canonical::{to_insertion_string, to_sorted_bytes, to_sorted_string};
use isek_center::render::to_compact_string;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let writers: [(&str, fn(&Value) -> String); 3] = [
        ("sorted", to_sorted_string),
        ("insertion", to_insertion_string),
        ("compact", to_compact_string),
    ];
    for (name, write) in writers {
        let text = write(&value);
        assert!(text.is_ascii(), "{name}: not ASCII: {text:?}");
        let back: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: output is not JSON ({e}): {text:?}"));
        assert_eq!(
            back, value,
            "{name}: round trip changed the value: {text:?}"
        );
        assert_eq!(write(&back), text, "{name}: not idempotent");
    }
    assert_eq!(
        to_sorted_bytes(&value),
        to_sorted_string(&value).into_bytes()
    );
});
