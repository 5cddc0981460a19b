//! Canonical JSON: byte-for-byte equality with Python's `json.dumps`.
//!
//! Fixtures: the real entries of the original ISEK (`etcd_entries.json`, copied from the
//! spec) and 600 seeded random values run through CPython 3.11's `json.dumps`
//! (`canonical_python.json`): floats of every magnitude, integers up to the 64-bit limits,
//! control characters, astral characters, nested objects with non-ASCII keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use isek::canonical::{self, KeyOrder};
use isek::wire::etcd::{StoredEntry, encode_entry};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn python_json_dumps_sort_keys_byte_for_byte() {
    let cases = fixture("canonical_python.json");
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 600);
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let expected = case["sorted"].as_str().unwrap();
        let value: Value = serde_json::from_str(input).unwrap();
        let ours = canonical::to_sorted_string(&value);
        if ours != expected {
            failures.push(format!("input {input}\n python {expected}\n ours   {ours}"));
        }
        // Insertion order equals Python's when the input's keys were already sorted.
        if input == expected {
            assert_eq!(canonical::to_insertion_string(&value), input);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn signed_bytes_of_every_sample_match_the_original() {
    let spec = fixture("etcd_entries.json");
    let samples = spec["samples"].as_object().unwrap();
    assert_eq!(samples.len(), 4);
    for (name, sample) in samples {
        let value = sample["value_exact"].as_str().unwrap();
        let entry = StoredEntry::parse(value.as_bytes()).unwrap();
        let expected = sample["signed_bytes_exact"].as_str().unwrap();
        assert_eq!(
            String::from_utf8(entry.signed_bytes()).unwrap(),
            expected,
            "{name}"
        );
        let hex: String = entry
            .signed_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, sample["signed_bytes_hex"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn entries_are_written_like_the_original_value() {
    let spec = fixture("etcd_entries.json");
    for (name, sample) in spec["samples"].as_object().unwrap() {
        let value = sample["value_exact"].as_str().unwrap();
        let entry = StoredEntry::parse(value.as_bytes()).unwrap();
        let ours = encode_entry(&entry.node_info, &entry.signature, None);
        let metadata_keys: Vec<&String> = entry.fields.metadata.keys().collect();
        let mut sorted = metadata_keys.clone();
        sorted.sort();
        if metadata_keys == sorted && name != "unicode_metadata" {
            assert_eq!(ours, value, "{name}");
        }
        // Whatever the metadata order, what we write parses back to the same entry.
        assert_eq!(
            StoredEntry::parse(ours.as_bytes()).unwrap(),
            entry,
            "{name}"
        );
    }
}

#[test]
fn insertion_and_sorted_orders_differ_only_in_key_order() {
    let value: Value =
        serde_json::from_str(r#"{"b": [1, 2.5, {"d": null, "c": true}], "a": "\u00e9"}"#).unwrap();
    assert_eq!(
        canonical::to_sorted_string(&value),
        r#"{"a": "\u00e9", "b": [1, 2.5, {"c": true, "d": null}]}"#
    );
    let mut out = String::new();
    canonical::write_value(&mut out, &Value::Array(vec![]), KeyOrder::Sorted);
    canonical::write_value(
        &mut out,
        &Value::Object(Default::default()),
        KeyOrder::Insertion,
    );
    assert_eq!(out, "[]{}");
}
