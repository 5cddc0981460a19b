//! Parsing and validating request bodies, with the original center's messages where
//! it had one and a message naming the field where it accepted bad input.
//!
//! Order of checks follows the original (`if not data`, then `if not all([node_id,
//! host, port])`, then the port type), so every input it rejected gets the same status
//! and message; inputs it wrongly accepted (port `true`, ports outside 1..=65535,
//! non-string ids, non-object metadata) or answered with HTML get a 400 envelope.

use axum::http::{HeaderMap, StatusCode, header};
use isek::wire::center::{
    BODY_MUST_BE_JSON_MESSAGE, NODE_ID_REQUIRED_MESSAGE, PORT_NOT_INTEGER_MESSAGE,
    REQUIRED_FIELDS_MESSAGE,
};
use serde_json::{Map, Value};

use crate::config::Limits;
use crate::json::to_compact_string;
use crate::registry::NodeRecord;

/// A request refused before it reached the registry: status and envelope message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (and envelope `code`).
    pub status: StatusCode,
    /// Envelope `message`.
    pub message: String,
}

impl Rejection {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// A validated registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The node id (validated against the limits).
    pub node_id: String,
    /// What the center stores about the node.
    pub record: NodeRecord,
}

/// Whether the `Content-Type` is JSON as Flask's `request.is_json` sees it:
/// `application/json` or `application/*+json`, parameters ignored.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Python truthiness of a JSON value (`if not data:` in the original).
fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Checks the content type and parses the body into a non-empty JSON object.
pub fn parse_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if !is_json_content_type(headers) {
        return Err(Rejection::bad_request(
            "Content-Type must be 'application/json'.",
        ));
    }
    // Strict: a key repeated in any object is refused (see `crate::body`).
    let value: Value = crate::body::parse_value(body)
        .map_err(|e| Rejection::bad_request(format!("Request body is not valid JSON: {e}.")))?;
    if is_falsy(&value) {
        return Err(Rejection::bad_request(BODY_MUST_BE_JSON_MESSAGE));
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Rejection::bad_request(
            "Request body must be a JSON object.",
        )),
    }
}

/// Checks a node id against the limits: 1..=max bytes, no control characters, no '/'.
pub fn check_node_id(id: &str, limits: &Limits) -> Result<(), Rejection> {
    if id.is_empty()
        || id.len() > limits.max_node_id_bytes
        || id.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(Rejection::bad_request(format!(
            "'node_id' must be 1 to {} bytes of UTF-8 without control characters or '/'.",
            limits.max_node_id_bytes
        )));
    }
    Ok(())
}

/// The `node_id` of a renew or deregister body.
pub fn node_id_of(body: &Map<String, Value>, limits: &Limits) -> Result<String, Rejection> {
    let id = match body.get("node_id") {
        None => return Err(Rejection::bad_request(NODE_ID_REQUIRED_MESSAGE)),
        Some(v) if is_falsy(v) => return Err(Rejection::bad_request(NODE_ID_REQUIRED_MESSAGE)),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Rejection::bad_request("'node_id' must be a string.")),
    };
    check_node_id(&id, limits)?;
    Ok(id)
}

/// Validates a register body.
pub fn registration_of(
    body: &Map<String, Value>,
    limits: &Limits,
) -> Result<Registration, Rejection> {
    let field = |name: &str| body.get(name).filter(|v| !is_falsy(v));
    let (Some(node_id), Some(host), Some(port)) = (field("node_id"), field("host"), field("port"))
    else {
        return Err(Rejection::bad_request(REQUIRED_FIELDS_MESSAGE));
    };
    // JSON `true` is a Python int (and was accepted); we require a real integer.
    let Some(port) = port.as_i64().or_else(|| port.as_u64().map(|_| i64::MAX)) else {
        return Err(Rejection::bad_request(PORT_NOT_INTEGER_MESSAGE));
    };
    let Ok(port @ 1..=u16::MAX) = u16::try_from(port) else {
        return Err(Rejection::bad_request(
            "'port' must be between 1 and 65535.",
        ));
    };
    let Value::String(node_id) = node_id else {
        return Err(Rejection::bad_request("'node_id' must be a string."));
    };
    check_node_id(node_id, limits)?;
    let Value::String(host) = host else {
        return Err(Rejection::bad_request("'host' must be a string."));
    };
    if host.len() > limits.max_host_bytes || host.chars().any(char::is_control) {
        return Err(Rejection::bad_request(format!(
            "'host' must be 1 to {} bytes without control characters.",
            limits.max_host_bytes
        )));
    }
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(value @ Value::Object(_)) => to_compact_string(value),
        Some(_) => {
            return Err(Rejection::bad_request("'metadata' must be a JSON object."));
        }
    };
    if metadata.len() > limits.max_metadata_bytes {
        return Err(Rejection::bad_request(format!(
            "'metadata' must serialize to at most {} bytes.",
            limits.max_metadata_bytes
        )));
    }
    Ok(Registration {
        node_id: node_id.clone(),
        record: NodeRecord::new(host, port, &metadata),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(v: Value) -> Result<Registration, Rejection> {
        let Value::Object(map) = v else {
            return Err(Rejection::bad_request("not an object"));
        };
        registration_of(&map, &Limits::default())
    }

    fn message(r: Result<Registration, Rejection>) -> String {
        r.err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn falsy_values_follow_python() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(is_falsy(&v), "{v}");
        }
        for v in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!(" "),
            json!([0]),
            json!({"a": 0}),
        ] {
            assert!(!is_falsy(&v), "{v}");
        }
    }

    #[test]
    fn port_checks() {
        let m = |port: Value| message(reg(json!({"node_id": "n", "host": "h", "port": port})));
        assert_eq!(m(json!(true)), PORT_NOT_INTEGER_MESSAGE);
        assert_eq!(m(json!(9000.0)), PORT_NOT_INTEGER_MESSAGE);
        assert_eq!(m(json!("9000")), PORT_NOT_INTEGER_MESSAGE);
        assert_eq!(m(json!(0)), REQUIRED_FIELDS_MESSAGE);
        assert_eq!(m(json!(false)), REQUIRED_FIELDS_MESSAGE);
        for bad in [json!(-5), json!(65536), json!(u64::MAX), json!(i64::MIN)] {
            assert!(m(bad).contains("'port'"));
        }
        assert!(reg(json!({"node_id": "n", "host": "h", "port": 65535})).is_ok());
    }

    #[test]
    fn node_id_rules() {
        let limits = Limits::default();
        assert!(check_node_id("agent-1.example_ü", &limits).is_ok());
        for bad in ["", "a/b", "a\nb", "a\u{7f}", "a\u{85}"] {
            assert!(check_node_id(bad, &limits).is_err(), "{bad:?}");
        }
        assert!(check_node_id(&"x".repeat(256), &limits).is_ok());
        assert!(check_node_id(&"x".repeat(257), &limits).is_err());
        // 86 three-byte characters = 258 bytes.
        assert!(check_node_id(&"€".repeat(86), &limits).is_err());
    }

    #[test]
    fn metadata_is_stored_compact_and_sorted() {
        let r =
            reg(json!({"node_id": "n", "host": "h", "port": 1, "metadata": {"b": 1, "a": [true]}}));
        assert_eq!(
            r.map(|r| r.record.metadata().to_owned())
                .unwrap_or_default(),
            r#"{"a":[true],"b":1}"#
        );
        let r = reg(json!({"node_id": "n", "host": "h", "port": 1, "metadata": null}));
        assert_eq!(
            r.map(|r| r.record.metadata().to_owned())
                .unwrap_or_default(),
            "{}"
        );
        assert!(
            message(reg(
                json!({"node_id": "n", "host": "h", "port": 1, "metadata": "x"})
            ))
            .contains("'metadata'")
        );
    }
}
