//! Fuzz target: arbitrary bytes as a stored etcd value.
//!
//! Parsing and verifying must never panic, and anything that verifies must be one of
//! the known signed samples (`isek_fuzz::samples`): no forgery. A parsed entry also
//! re-encodes (`encode_entry`) to a value that parses back to the same entry.
#![no_main]

use isek::wire::etcd::{StoredEntry, encode_entry};
use isek_fuzz::samples::check_value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_value(data);
    if let Ok(entry) = StoredEntry::parse(data) {
        let text = encode_entry(
            &entry.node_info,
            &entry.signature,
            entry.signature_alg.as_deref(),
        );
        let again = StoredEntry::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded entry does not parse ({e}): {text:?}"));
        assert_eq!(again, entry, "re-encoded entry differs: {text:?}");
        assert_eq!(again.signed_bytes(), entry.signed_bytes());
    }
});
