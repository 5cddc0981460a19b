//! Canonical JSON bytes, byte-for-byte as Python `json.dumps(obj, sort_keys=True)` writes them.
