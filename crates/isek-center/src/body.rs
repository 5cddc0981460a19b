//! Strict parsing of request bodies: JSON whose objects repeat a key, at any depth,
//! is refused.
//!
//! `serde_json` keeps the last of duplicate keys silently, so two readers of one body
//! (a proxy, a logger, this center) could see different values; for signed bodies that
//! is an ambiguity an attacker can use. [`parse_value`] builds the same
//! [`serde_json::Value`] in one pass and fails on the first repeated key. The
//! deserializer's recursion limit (128 levels) still applies: deep nesting is an error,
//! never a stack overflow.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as JSON, refusing objects with a repeated key.
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A seed building a [`Value`] that refuses duplicate keys.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key '{key}'")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_values_as_serde_json_without_duplicates() {
        let text =
            r#"{"a": [1, -2, 2.5, 1e300, "é", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let strict = parse_value(text.as_bytes()).unwrap_or(Value::Null);
        let plain: Value = serde_json::from_str(text).unwrap_or(Value::Bool(false));
        assert_eq!(strict, plain);
    }

    #[test]
    fn duplicates_depth_and_trailing_garbage_are_errors() {
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"x": {"a": 1, "b": 2, "a": 1}}"#,
            r#"[{"k": 1, "k": 1}]"#,
            r#"{"a": 1} x"#,
            "1e400",
        ] {
            assert!(parse_value(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_value(deep.as_bytes()).is_err());
        assert!(parse_value(br#"{"a": {"a": 1}}"#).is_ok());
    }
}
