//! Canonical JSON bytes, byte-for-byte as Python `json.dumps(obj, sort_keys=True)` writes them.
//!
//! The original ISEK signs `json.dumps(node_info, sort_keys=True).encode()`, so a Rust node
//! can only verify (and produce) signatures Python nodes accept if it reproduces those bytes
//! exactly: keys sorted at every depth, `", "` and `": "` separators, `ensure_ascii`
//! escapes (`\uXXXX` lowercase, surrogate pairs beyond U+FFFF), Python's integer and float
//! formatting (`1.0`, `1e+16`, `1e-05`).
//!
//! The same writer in [`KeyOrder::Insertion`] mode produces the non-sorted `json.dumps`
//! the original uses for the stored etcd value (readers accept any JSON there).
//!
//! Known limit: numbers are what `serde_json` parsed, so an integer beyond the `u64`/`i64`
//! range (which Python keeps exact) has already become a float and prints differently.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// How object keys are ordered in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// Sorted by code point at every depth, as `sort_keys=True` (the signed bytes).
    Sorted,
    /// The map's own iteration order, as plain `json.dumps` of a dict.
    Insertion,
}

/// `json.dumps(value, sort_keys=True)` as a string (pure ASCII by construction).
pub fn to_sorted_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, KeyOrder::Sorted);
    out
}

/// `json.dumps(value, sort_keys=True).encode("utf-8")`: the bytes ISEK signs.
pub fn to_sorted_bytes(value: &Value) -> Vec<u8> {
    to_sorted_string(value).into_bytes()
}

/// `json.dumps(value)` keeping the map's iteration order.
pub fn to_insertion_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, KeyOrder::Insertion);
    out
}

/// The separators between items and after keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separators {
    /// `", "` and `": "`: `json.dumps` defaults, the signed and stored bytes.
    Python,
    /// `","` and `":"`: the smallest text, for bodies a center serves.
    Compact,
}

impl Separators {
    /// Between two items of an array or object.
    fn item(self) -> &'static str {
        match self {
            Self::Python => ", ",
            Self::Compact => ",",
        }
    }

    /// Between a key and its value.
    fn key(self) -> &'static str {
        match self {
            Self::Python => ": ",
            Self::Compact => ":",
        }
    }
}

/// Appends `value` to `out` in Python `json.dumps` format with the given key order.
pub fn write_value(out: &mut String, value: &Value, order: KeyOrder) {
    write_with(out, value, order, Separators::Python);
}

/// Appends `value` to `out` with `order` and `separators`; every other choice
/// (escapes, number formatting) is Python's, so one writer serves signatures, the
/// etcd value and a center's compact bodies.
pub fn write_with(out: &mut String, value: &Value, order: KeyOrder, separators: Separators) {
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
                    out.push_str(separators.item());
                }
                write_with(out, item, order, separators);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if order == KeyOrder::Sorted {
                // Rust compares strings by UTF-8 bytes, which orders like code points:
                // exactly Python's str ordering.
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(separators.item());
                }
                write_str(out, key);
                out.push_str(separators.key());
                write_with(out, item, order, separators);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a Python `ensure_ascii=True` JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Python escapes everything outside printable ASCII (' '..='~'), 0x7f included.
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Appends a number as Python prints the int or float `json.loads` would have made of it.
pub fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    } else {
        // Only reachable with serde_json's arbitrary_precision: keep the literal text.
        out.push_str(&n.to_string());
    }
}

/// Appends `f` as Python's `float.__repr__` (the "shortest round-trip" repr).
///
/// Python picks the shortest digit string that reads back as the same double, then
/// writes it in fixed notation when the decimal exponent is in `-4 <= e < 16`, otherwise
/// as `d.ddde+XX` (at least two exponent digits); fixed notation always has a fraction.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point after the first `decpt` digits (Python's dtoa `decpt`).
    let decpt = exp + 1;
    if (-3..=16).contains(&decpt) {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = decpt as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, f);
        s
    }

    #[test]
    fn floats_print_like_python_repr() {
        for (f, py) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (1e300, "1e+300"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123.456, "123.456"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (1234567890123456.7, "1234567890123456.8"),
        ] {
            assert_eq!(float(f), py, "{f:?}");
        }
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{7f}é🤖/");
        assert_eq!(s, r#""a\"b\\c\n\r\t\b\f\u0001\u007f\u00e9\ud83e\udd16/""#);
    }
}
