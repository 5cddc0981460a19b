//! Parsing and validating request bodies, with the original center's messages where
//! it had one and a message naming the field where it accepted bad input.
//!
//! Order of checks follows the original (`if not data`, then `if not all([node_id,
//! host, port])`, then the port type), so every input it rejected gets the same status
//! and message; inputs it wrongly accepted (port `true`, ports outside 1..=65535,
//! non-string ids, non-object metadata) or answered with HTML get a 400 envelope.
//!
//! Bodies become [`crate::command`] values here; the signatures of a signed
//! registration, which cover the body's exact `node_info`, are checked here too (with
//! `policy`'s rules, before anything reaches the writer).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use isek::identity::{PublicKey, Signature, SignatureAlg};
use isek::wire::center::{
    BODY_MUST_BE_JSON_MESSAGE, NODE_ID_REQUIRED_MESSAGE, PORT_NOT_INTEGER_MESSAGE,
    REQUIRED_FIELDS_MESSAGE,
};
use isek::wire::proof::{
    ADMIN_AUTH_SCHEME, node_info_digest, registration_bytes, registration_node_info,
};
use serde_json::{Map, Value};

use super::Rejection;
use crate::command::{Deregister, Register, Renew};
use crate::config::{Limits, Security};
use crate::policy::{self, Proof, Signer, hash_token};
use crate::record::NodeRecord;
use crate::render::to_compact_string;

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

/// Checks a node id against the limits: 1..=max bytes, no control characters, no '/',
/// NFC, no invisible character (the rule of `isek::node_id`); the 400 names which.
pub fn check_node_id(id: &str, limits: &Limits) -> Result<(), Rejection> {
    use isek::node_id::Problem;
    match isek::node_id::check(id, limits.max_node_id_bytes) {
        Ok(()) => Ok(()),
        Err(Problem::Length { .. } | Problem::Character) => Err(Rejection::bad_request(format!(
            "'node_id' must be 1 to {} bytes of UTF-8 without control characters or '/'.",
            limits.max_node_id_bytes
        ))),
        Err(problem) => Err(Rejection::bad_request(format!(
            "'node_id' {problem}: '{}' would look like another id in a listing.",
            isek::node_id::escaped(id)
        ))),
    }
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

/// Validates a register body (fields and limits; signatures: [`register_of`]).
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
        Some(value @ Value::Object(map)) => {
            // An A2A AgentCard in `metadata.agent_card` is kept honest: a malformed
            // one is refused naming the field (the rest of the metadata is ISEK's own
            // and never checked, so the original client's bodies pass unchanged).
            isek::agent_card::validate_metadata(map)
                .map_err(|e| Rejection::bad_request(format!("{e}.")))?;
            to_compact_string(value)
        }
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

/// A whole register request: validation, then the signatures of a signed one.
pub fn register_of(body: &Map<String, Value>, limits: &Limits) -> Result<Register, Rejection> {
    let registration = registration_of(body, limits)?;
    let signer = registration_signer(body)?;
    Ok(Register {
        node_id: registration.node_id,
        record: registration.record,
        signer,
        operator: false,
    })
}

/// A whole renew request.
pub fn renew_of(body: &Map<String, Value>, limits: &Limits) -> Result<Renew, Rejection> {
    let node_id = node_id_of(body, limits)?;
    Ok(Renew::new(node_id, proof_of(body)?))
}

/// A whole deregister request: an admin token in `headers` (when one is configured)
/// makes it the operator's, whatever proof the body carries.
pub fn deregister_of(
    headers: &HeaderMap,
    body: &Map<String, Value>,
    limits: &Limits,
    security: &Security,
) -> Result<Deregister, Rejection> {
    let node_id = node_id_of(body, limits)?;
    if security.is_admin(bearer_token(headers)) {
        return Ok(Deregister::by_operator(node_id));
    }
    Ok(Deregister::new(node_id, proof_of(body)?))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(ADMIN_AUTH_SCHEME))
}

/// A string field of a body: absent/null => `None`, a non-string => 400.
fn optional_str<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Rejection> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::bad_request(format!(
            "'{name}' must be a string."
        ))),
    }
}

/// The `signature_alg` of a body (absent: legacy SHA-1, as in etcd entries).
fn alg_of(body: &Map<String, Value>) -> Result<SignatureAlg, Rejection> {
    let field = optional_str(body, "signature_alg")?;
    SignatureAlg::from_entry_field(field).ok_or_else(|| {
        Rejection::bad_request(format!(
            "'signature_alg' must be '{}' or absent (legacy SHA-1).",
            SignatureAlg::ES256_NAME
        ))
    })
}

/// The `timestamp` of a body: absent/null => `None`, not a non-negative integer => 400.
fn timestamp_of(body: &Map<String, Value>) -> Result<Option<u64>, Rejection> {
    match body.get("timestamp") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(_) => Err(Rejection::bad_request(
            "'timestamp' must be a non-negative integer (Unix milliseconds).",
        )),
    }
}

/// Reads the proof of a renew or deregister body (a token wins over a signature).
pub fn proof_of(body: &Map<String, Value>) -> Result<Proof, Rejection> {
    if let Some(token) = optional_str(body, "lease_token")? {
        return Ok(Proof::Token(hash_token(token)));
    }
    let Some(signature) = optional_str(body, "signature")? else {
        return Ok(Proof::None);
    };
    let signature = Signature::from_base64(signature)
        .map_err(|e| Rejection::bad_request(format!("'signature': {e}.")))?;
    let Some(timestamp) = timestamp_of(body)? else {
        return Err(Rejection::bad_request(
            "A 'signature' needs a 'timestamp' (integer Unix milliseconds).",
        ));
    };
    Ok(Proof::Signature {
        signature,
        alg: alg_of(body)?,
        timestamp,
    })
}

/// Verifies the signatures of a register body, if it has them: `None` for an unsigned
/// registration, the signer for a valid signed one (its `node_info` signature AND its
/// op proof over `register`, the node id, the timestamp and the digest of that
/// `node_info`), 400/403 otherwise.
pub fn registration_signer(body: &Map<String, Value>) -> Result<Option<Signer>, Rejection> {
    let key = optional_str(body, "public_key")?;
    let signature = optional_str(body, "signature")?;
    let (key, signature) = match (key, signature) {
        (None, None) => return Ok(None),
        (Some(k), Some(s)) => (k, s),
        _ => {
            return Err(Rejection::bad_request(
                "A signed registration needs both 'public_key' and 'signature'.",
            ));
        }
    };
    let key = PublicKey::from_base64(key)
        .map_err(|e| Rejection::bad_request(format!("'public_key': {e}.")))?;
    let signature = Signature::from_base64(signature)
        .map_err(|e| Rejection::bad_request(format!("'signature': {e}.")))?;
    let alg = alg_of(body)?;
    // Fields were validated by `registration_of` before; rebuild node_info from them.
    let (Some(Value::String(node_id)), Some(Value::String(host)), Some(port)) = (
        body.get("node_id"),
        body.get("host"),
        body.get("port").and_then(Value::as_u64),
    ) else {
        return Err(Rejection::bad_request(
            "'node_id', 'host', and 'port' are required fields.",
        ));
    };
    let port = u16::try_from(port)
        .map_err(|_| Rejection::bad_request("'port' must be between 1 and 65535."))?;
    let empty = Map::new();
    let metadata = match body.get("metadata") {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let node_info = registration_node_info(node_id, host, port, key.to_base64(), metadata);
    let signed = registration_bytes(&node_info);
    policy::verify_registration(node_id, &key, &signed, &signature, alg)?;
    // The node_info signature has no time in it (it is the etcd entry's): without a
    // fresh op proof, a copy of the registration could be replayed.
    let (Some(timestamp), Some(op_signature)) =
        (timestamp_of(body)?, optional_str(body, "op_signature")?)
    else {
        return Err(policy::missing_op_proof(node_id).into());
    };
    let op_signature = Signature::from_base64(op_signature)
        .map_err(|e| Rejection::bad_request(format!("'op_signature': {e}.")))?;
    // The op proof covers the digest of this record: it cannot be paired with another
    // signed record of the id (an older entry read from etcd, say).
    policy::verify_register_op(
        node_id,
        &key,
        timestamp,
        &node_info_digest(&signed),
        &op_signature,
        alg,
    )?;
    Ok(Some(Signer { key, timestamp }))
}

/// Whether `e` (or an error it wraps) is a body that stopped arriving.
fn stalled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<super::transport::BodyStalled>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Reads the body (bounded by the configured limit) and parses it into an object.
pub async fn read_object(
    limit: usize,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, Rejection> {
    let too_large = || Rejection {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("Request body exceeds the limit of {limit} bytes."),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(e) if stalled(&*e) => {
            return Err(Rejection {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!("The request body stopped arriving: {e}."),
            });
        }
        Err(e) => {
            return Err(Rejection::bad_request(format!(
                "Could not read the request body: {e}."
            )));
        }
    };
    parse_object(headers, &bytes)
}

/// The parameters of a watch query, before the filter is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// `since`: resume after this revision.
    pub since: Option<u64>,
    /// `epoch`: the center incarnation `since` belongs to.
    pub epoch: Option<u64>,
    /// The CEL source of `filter`: a scoped stream.
    pub filter: Option<String>,
}

/// `since`, `epoch` and `filter` of a watch query (URL-encoded; other parameters
/// are ignored); `filter` may appear once.
pub fn watch_query(query: &str) -> Result<WatchQuery, Rejection> {
    let mut parsed = WatchQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match &*key {
            "since" => &mut parsed.since,
            "epoch" => &mut parsed.epoch,
            "filter" => {
                if parsed.filter.replace(value.into_owned()).is_some() {
                    return Err(Rejection::bad_request("'filter' is given more than once."));
                }
                continue;
            }
            _ => continue,
        };
        *slot = Some(value.parse::<u64>().map_err(|_| {
            Rejection::bad_request(format!(
                "'{key}' must be a non-negative integer, got '{value}'."
            ))
        })?);
    }
    Ok(parsed)
}

/// The parameters of a filtered or paged listing, before the filter is compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingQuery {
    /// The CEL source of `filter`.
    pub filter: Option<String>,
    /// `limit`, checked against the page limit.
    pub limit: Option<usize>,
    /// `cursor`, as sent.
    pub cursor: Option<String>,
}

impl ListingQuery {
    /// Whether the query asks for anything but the whole listing.
    pub fn is_plain(&self) -> bool {
        self.filter.is_none() && self.limit.is_none() && self.cursor.is_none()
    }
}

/// Parses `filter`, `limit` and `cursor` (URL-encoded; other parameters are ignored,
/// as everywhere in this API); `limit` must be 1..=`max_page`, and a parameter may
/// appear once.
pub fn listing_query(query: &str, max_page: usize) -> Result<ListingQuery, Rejection> {
    let mut parsed = ListingQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let seen = match &*key {
            "filter" => parsed.filter.replace(value.into_owned()).is_some(),
            "cursor" => parsed.cursor.replace(value.into_owned()).is_some(),
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=max_page).contains(l))
                    .ok_or_else(|| {
                        Rejection::bad_request(format!(
                            "'limit' must be an integer from 1 to {max_page} (the center's --max-page), got '{value}'."
                        ))
                    })?;
                parsed.limit.replace(limit).is_some()
            }
            _ => false,
        };
        if seen {
            return Err(Rejection::bad_request(format!(
                "'{key}' is given more than once."
            )));
        }
    }
    Ok(parsed)
}

/// Compiles a `filter` parameter under `limits`; a refusal is a 400 naming the
/// position (line:column) and the problem, and the flag of a limit that was hit.
pub fn compile_filter(
    source: &str,
    limits: isek::filter::Limits,
) -> Result<isek::filter::Filter, Rejection> {
    use isek::filter::FilterError;
    isek::filter::Filter::compile_with(source, limits).map_err(|e| {
        let flag = match e {
            FilterError::TooLong { .. } => " (the center's --max-filter-bytes)",
            FilterError::TooCostly { .. } => " (the center's --max-filter-cost)",
            _ => "",
        };
        Rejection::bad_request(format!("Invalid 'filter': {e}{flag}."))
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
