//! JSON text exactly as Flask's `jsonify` writes it.
//!
//! Flask 3 serializes with `sort_keys=True`, `ensure_ascii=True` and compact
//! separators (`,` and `:`), then appends `"\n"`. Python's string escapes and
//! number formats come from [`isek::canonical`]; this module only changes the
//! separators and frames the `{code, data, message}` envelope.

use isek::canonical::{write_number, write_str};
use serde_json::Value;

/// Appends `value` compactly, keys sorted at every depth, non-ASCII escaped.
pub fn write_compact(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-8 byte order is code point order: Python's `sort_keys` order.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                write_compact(out, item);
            }
            out.push('}');
        }
    }
}

/// `value` as compact Flask JSON text (no trailing newline).
pub fn to_compact_string(value: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, value);
    out
}

/// A whole response body `{"code":C,"data":null,"message":M}\n`.
pub fn envelope_without_data(code: u16, message: &str) -> String {
    let mut out = String::with_capacity(40 + message.len());
    out.push_str("{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"data\":null,\"message\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_sorted_ascii() {
        let v = json!({"b": [1, 2.5, "é"], "a": {"z": null, "y": true}, "c": 1e16});
        assert_eq!(
            to_compact_string(&v),
            r#"{"a":{"y":true,"z":null},"b":[1,2.5,"\u00e9"],"c":1e+16}"#
        );
    }

    #[test]
    fn envelope_matches_flask() {
        assert_eq!(
            envelope_without_data(200, "Node 'n1' registered successfully."),
            "{\"code\":200,\"data\":null,\"message\":\"Node 'n1' registered successfully.\"}\n"
        );
        assert_eq!(
            envelope_without_data(404, "Node 'ü\"' not found."),
            "{\"code\":404,\"data\":null,\"message\":\"Node '\\u00fc\\\"' not found.\"}\n"
        );
    }
}
