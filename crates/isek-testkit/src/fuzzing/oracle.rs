//! What the center must answer to a fuzz input, and what it may change.
//!
//! Beyond "no panic, no hang":
//! - every answer is an ASCII `{"code","data":null,"message"}` envelope with
//!   `Content-Type: application/json`, and never a 5xx except the node cap's 503;
//! - status and message equal what the public parsing functions
//!   (`isek_center::http::request`) and the rules below decide for the same headers
//!   and body (413 beyond the body limit, 405 for `GET register`);
//! - an unsigned registration under `--require-signatures` is a 401; a new id at the
//!   node cap a 503 `center is full`; an id that looks like a resident's a 409;
//!   taking over, renewing or deregistering the signed resident without proof a 403;
//! - a deregistration carrying the admin token (`Bearer <token>`, blanks trimmed) is
//!   the operator's, whatever its body's proof: 200 for any live node, the signed
//!   resident included; no other `Authorization` header gives that power;
//! - requests with proofs the fuzzer cannot make (signatures, lease tokens) get one
//!   of a few statuses, and never act on the signed resident; a signed registration
//!   never succeeds (that would be a forgery);
//! - a refused request changes nothing; the signed resident changes only by the
//!   admin's deregistration; the live nodes never exceed the cap;
//! - an accepted registration is stored exactly as parsed and listed by
//!   `available_nodes` with the same host, port and metadata.

use axum::http::HeaderMap;
use isek::wire::center::{
    deregister_not_found_message, deregistered_message, registered_message,
    renew_not_found_message, renewed_message,
};
use isek_center::http::request::{Registration, node_id_of, parse_object, registration_of};
use isek_center::skeleton::skeleton_of;
use serde_json::{Map, Value};

use super::harness::{Harness, LIMITS, RESIDENTS, SIGNED_ID, UNSIGNED_ID};
use super::input::{ADMIN_TOKEN, Endpoint, FuzzRequest};

/// The statuses an answer may have.
#[derive(Debug)]
enum Status {
    /// Exactly this one, with this message.
    Exact(u16, String),
    /// Any of these (a proof the oracle cannot judge), with a non-empty message.
    OneOf(&'static [u16]),
}

/// What the center must answer, and what it may change.
#[derive(Debug)]
struct Expected {
    /// Status (and message).
    status: Status,
    /// The registration it accepts (register 200s).
    registration: Option<(Registration, Map<String, Value>)>,
    /// Whether the request is the admin's.
    admin: bool,
}

impl Expected {
    fn exact(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Status::Exact(status, message.into()),
            registration: None,
            admin: false,
        }
    }

    fn one_of(statuses: &'static [u16]) -> Self {
        Self {
            status: Status::OneOf(statuses),
            registration: None,
            admin: false,
        }
    }
}

/// A renew or deregister with a proof, on a node without an owner or unknown.
const PROOF_STATUSES: &[u16] = &[200, 400, 403, 404];
/// A proof the fuzzer made for the signed resident, or a signed registration.
const UNPROVEN_STATUSES: &[u16] = &[400, 403];

/// The message of an act without proof on the signed resident.
fn owned_message(id: &str) -> String {
    format!(
        "Node '{id}' is owned by a key: this needs its 'lease_token' or a 'signature' with a 'timestamp'."
    )
}

/// Whether a body field is present and not `null`.
fn has(object: &Map<String, Value>, name: &str) -> bool {
    object.get(name).is_some_and(|v| !v.is_null())
}

/// Whether `authorization` is the admin's header: visible ASCII (else the header is
/// not text), the `Bearer ` scheme exactly, then the token with blanks around it.
pub fn is_admin_header(authorization: Option<&[u8]>) -> bool {
    let Some(bytes) = authorization else {
        return false;
    };
    if !bytes
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
    {
        return false;
    }
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("Bearer ")
        .is_some_and(|token| token.trim_matches([' ', '\t']) == ADMIN_TOKEN)
}

/// The answer `request` must get from `harness` (holding only its residents).
fn expected(harness: &Harness, request: &FuzzRequest<'_>, headers: &HeaderMap) -> Expected {
    let settings = harness.settings();
    if request.endpoint == Endpoint::WrongMethod {
        return Expected::exact(405, "The method is not allowed for the requested URL.");
    }
    if request.body.len() > LIMITS.max_body_bytes {
        let message = format!(
            "Request body exceeds the limit of {} bytes.",
            LIMITS.max_body_bytes
        );
        return Expected::exact(413, message);
    }
    let object = match parse_object(headers, request.body) {
        Ok(object) => object,
        Err(r) => return Expected::exact(r.status.as_u16(), r.message),
    };
    let live = |id: &str| [UNSIGNED_ID, SIGNED_ID].contains(&id);
    let proof = has(&object, "lease_token") || has(&object, "signature");
    match request.endpoint {
        Endpoint::Register => {
            let registration = match registration_of(&object, &LIMITS) {
                Ok(registration) => registration,
                Err(r) => return Expected::exact(r.status.as_u16(), r.message),
            };
            let id = registration.node_id.clone();
            if has(&object, "public_key") || has(&object, "signature") {
                return Expected::one_of(UNPROVEN_STATUSES);
            }
            if settings.require_signatures {
                return Expected::exact(
                    401,
                    "This center requires signed registrations: add 'public_key' and 'signature' (see isek register --identity).",
                );
            }
            if id == SIGNED_ID {
                return Expected::exact(
                    403,
                    format!(
                        "Node '{id}' is owned by a key: re-registering it needs a signature by that key."
                    ),
                );
            }
            if !live(&id) {
                let skeleton = skeleton_of(&id);
                if let Some(other) = [UNSIGNED_ID, SIGNED_ID]
                    .into_iter()
                    .find(|other| skeleton_of(other) == skeleton)
                {
                    return Expected::exact(
                        409,
                        format!(
                            "'node_id' '{}' looks like the live node '{}' (the same Unicode confusable skeleton, UTS #39): look-alike ids are refused (--confusable-ids).",
                            isek::node_id::escaped(&id),
                            isek::node_id::escaped(other),
                        ),
                    );
                }
                if settings.max_nodes.is_some_and(|max| RESIDENTS >= max) {
                    return Expected::exact(503, format!("center is full ({RESIDENTS} nodes)"));
                }
            }
            Expected {
                status: Status::Exact(200, registered_message(&id)),
                registration: Some((registration, object)),
                admin: false,
            }
        }
        Endpoint::Renew => match node_id_of(&object, &LIMITS) {
            Err(r) => Expected::exact(r.status.as_u16(), r.message),
            Ok(id) if id == SIGNED_ID && proof => Expected::one_of(UNPROVEN_STATUSES),
            Ok(_) if proof => Expected::one_of(PROOF_STATUSES),
            Ok(id) if id == SIGNED_ID => Expected::exact(403, owned_message(&id)),
            Ok(id) if live(&id) => Expected::exact(200, renewed_message(&id)),
            Ok(id) => Expected::exact(404, renew_not_found_message(&id)),
        },
        Endpoint::Deregister => {
            let admin = settings.admin_token && is_admin_header(request.authorization.as_deref());
            let mut expect = match node_id_of(&object, &LIMITS) {
                Err(r) => Expected::exact(r.status.as_u16(), r.message),
                Ok(id) if admin && live(&id) => Expected::exact(200, deregistered_message(&id)),
                Ok(id) if admin => Expected::exact(404, deregister_not_found_message(&id)),
                Ok(id) if id == SIGNED_ID && proof => Expected::one_of(UNPROVEN_STATUSES),
                Ok(_) if proof => Expected::one_of(PROOF_STATUSES),
                Ok(id) if id == SIGNED_ID => Expected::exact(403, owned_message(&id)),
                Ok(id) if live(&id) => Expected::exact(200, deregistered_message(&id)),
                Ok(id) => Expected::exact(404, deregister_not_found_message(&id)),
            };
            expect.admin = admin;
            expect
        }
        Endpoint::WrongMethod => unreachable!("handled above"),
    }
}

/// Sends `request` to `harness`, checks the answer and what changed, and puts the
/// center back.
pub fn run(harness: &Harness, request: &FuzzRequest<'_>) {
    let http = request.to_http();
    let expect = expected(harness, request, http.headers());
    let answer = harness.send(http);
    let text = String::from_utf8_lossy(&answer.body);
    if matches!(expect.status, Status::OneOf(s) if s == UNPROVEN_STATUSES) {
        assert_ne!(
            answer.status, 200,
            "FORGERY: a proof the fuzzer made was accepted: {request:?} answered {text:?}"
        );
    }
    match &expect.status {
        Status::Exact(status, message) => assert_eq!(
            answer.status, *status,
            "status for {request:?}: body {text:?}, expected message {message:?}"
        ),
        Status::OneOf(statuses) => assert!(
            statuses.contains(&answer.status),
            "status for {request:?} with a proof: body {text:?}, expected one of {statuses:?}"
        ),
    }
    let envelope = check_envelope(&answer, &expect);

    let center = harness.center();
    let touched_signed = expect.admin
        && answer.status == 200
        && envelope["message"].as_str() == Some(deregistered_message(SIGNED_ID).as_str());
    assert!(
        touched_signed || harness.resident_intact(SIGNED_ID),
        "the signed resident changed without the admin token: {request:?} answered {text:?}"
    );
    if answer.status != 200 {
        assert!(
            harness.resident_intact(UNSIGNED_ID) && center.live_count() == RESIDENTS,
            "a refused request changed the center: {request:?} answered {text:?}"
        );
    }
    if let Some(max) = harness.settings().max_nodes {
        assert!(center.live_count() <= max, "over the node cap: {text:?}");
    }
    match &expect.registration {
        Some((registration, body)) => {
            check_registered(harness, registration, body);
            harness.restore(Some(&registration.node_id));
        }
        None => harness.restore(None),
    }
}

/// The answer is an ASCII JSON envelope with the expected message; returns it.
fn check_envelope(answer: &super::harness::Answer, expect: &Expected) -> Value {
    let text = String::from_utf8_lossy(&answer.body);
    let exact_503 = matches!(expect.status, Status::Exact(503, _));
    assert!(answer.status < 500 || exact_503, "server error: {text:?}");
    assert_eq!(
        answer.content_type.as_deref(),
        Some(&b"application/json"[..])
    );
    assert!(
        answer.body.is_ascii() && answer.body.ends_with(b"}\n"),
        "body {text:?}"
    );
    let envelope: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text:?}"));
    assert_eq!(envelope["code"], Value::from(answer.status), "{text:?}");
    assert_eq!(envelope["data"], Value::Null, "{text:?}");
    match &expect.status {
        Status::Exact(_, message) => {
            assert_eq!(
                envelope["message"],
                Value::from(message.as_str()),
                "{text:?}"
            );
        }
        Status::OneOf(_) => assert!(
            envelope["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text:?}"
        ),
    }
    assert_eq!(envelope.as_object().map(Map::len), Some(3), "{text:?}");
    envelope
}

/// The registration is stored as parsed and listed with what was sent.
fn check_registered(harness: &Harness, registration: &Registration, body: &Map<String, Value>) {
    let id = registration.node_id.as_str();
    let stored = harness.center().get(id).map(|(record, _)| record);
    assert_eq!(
        stored.as_ref(),
        Some(&registration.record),
        "stored record of {id:?}"
    );
    let sent_metadata = match body.get("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(m) => m.clone(),
    };
    let stored_metadata: Value = serde_json::from_str(registration.record.metadata())
        .unwrap_or_else(|e| {
            panic!(
                "stored metadata is not JSON ({e}): {:?}",
                registration.record.metadata()
            )
        });
    assert_eq!(stored_metadata, sent_metadata, "metadata round trip");
    assert!(
        registration.record.metadata().is_ascii(),
        "stored metadata not ASCII"
    );

    let listing = harness.send(
        axum::http::Request::get("/isek_center/available_nodes")
            .body(axum::body::Body::empty())
            .unwrap_or_else(|e| panic!("request: {e}")),
    );
    assert_eq!(listing.status, 200);
    let listing: Value = serde_json::from_slice(&listing.body).unwrap_or_else(|e| {
        panic!(
            "available_nodes is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&listing.body)
        )
    });
    let nodes = &listing["data"]["available_nodes"];
    for resident in [UNSIGNED_ID, SIGNED_ID] {
        assert!(
            nodes[resident].is_object() || id == resident,
            "resident {resident} missing: {listing}"
        );
    }
    let node = &nodes[id];
    assert_eq!(node["node_id"], Value::from(id), "listing: {listing}");
    assert_eq!(
        node["host"],
        Value::from(registration.record.host()),
        "listing: {listing}"
    );
    assert_eq!(
        node["port"],
        Value::from(registration.record.port()),
        "listing: {listing}"
    );
    assert_eq!(node["metadata"], sent_metadata, "listing: {listing}");
    assert!(node["expires_at"].is_f64(), "listing: {listing}");
}

/// Whether a JSON document repeats a key within one object, at any depth: an
/// independent reference for the strict parser, built on `serde_json`'s own reader.
struct Duplicates(bool);

impl<'de> serde::Deserialize<'de> for Duplicates {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Walk;
        impl<'de> serde::de::Visitor<'de> for Walk {
            type Value = Duplicates;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_unit<E>(self) -> Result<Duplicates, E> {
                Ok(Duplicates(false))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Duplicates, A::Error> {
                let mut found = false;
                while let Some(Duplicates(d)) = seq.next_element()? {
                    found |= d;
                }
                Ok(Duplicates(found))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Duplicates, A::Error> {
                let mut keys = std::collections::HashSet::new();
                let mut found = false;
                while let Some(key) = map.next_key::<String>()? {
                    found |= !keys.insert(key);
                    let Duplicates(d) = map.next_value()?;
                    found |= d;
                }
                Ok(Duplicates(found))
            }
        }
        deserializer.deserialize_any(Walk)
    }
}

/// The strict body parser (`isek_center::body::parse_value`) against `serde_json`
/// plus [`Duplicates`]: the same value when the JSON has no repeated key, an error
/// when it has one (keys compared after unescaping, at any depth) or is not JSON.
pub fn check_strict_parser(body: &[u8]) {
    let strict = isek_center::body::parse_value(body);
    let text = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Value>(body) {
        Err(_) => assert!(
            strict.is_err(),
            "strict parser accepted invalid JSON: {text:?}"
        ),
        Ok(value) => {
            let repeated = serde_json::from_slice::<Duplicates>(body)
                .unwrap_or_else(|e| panic!("reference walk failed ({e}) on JSON {text:?}"))
                .0;
            match strict {
                Ok(_) if repeated => panic!("repeated key accepted: {text:?}"),
                Ok(parsed) => assert_eq!(parsed, value, "strict parser disagrees: {text:?}"),
                Err(e) if !repeated => panic!("valid JSON refused ({e}): {text:?}"),
                Err(_) => {}
            }
        }
    }
}
