//! Fuzz target: request bodies through the center's real router.
//!
//! Every input becomes one HTTP request (see `isek_fuzz::harness` for the layout) to
//! an in-memory center. Oracles, beyond "no panic, no hang":
//! - the answer is a JSON envelope `{"code": status, "data": null, "message": ...}\n`,
//!   ASCII, `Content-Type: application/json`, never a 5xx;
//! - status and message equal what the public parsing functions
//!   (`isek_center::http::request`) decide for the same headers and body (413 beyond the
//!   body limit, 405 for `GET register`), for every request in the original
//!   (unsigned) protocol;
//! - requests carrying proofs (issue 4: `public_key`/`signature` on register,
//!   `lease_token`/`signature` on renew and deregister) get a 200, 400, 403 or 404,
//!   and a signed registration never succeeds: the fuzzer cannot sign, so a 200
//!   there would be a forgery;
//! - the strict body parser (`isek_center::body::parse_value`) agrees with
//!   `serde_json` on every body: same value when the JSON has no repeated key, an
//!   error when it has one (keys compared after unescaping, at any depth) or is not
//!   JSON;
//! - an accepted registration is stored exactly as parsed, its metadata is stored as
//!   JSON that reads back to the metadata sent, and `available_nodes` lists it with
//!   the same host, port and metadata.
#![no_main]

use isek::wire::center::{
    deregister_not_found_message, deregistered_message, registered_message,
    renew_not_found_message, renewed_message,
};
use isek_center::http::request::{Registration, node_id_of, parse_object, registration_of};
use isek_fuzz::harness::{Endpoint, FuzzRequest, Harness, LIMITS, RESIDENT_ID};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// What the center must answer.
struct Expected {
    /// HTTP status, or `None` when any of [`PROOF_STATUSES`] is acceptable.
    status: Option<u16>,
    /// Envelope message (checked with the status).
    message: String,
    /// The registration it accepted, for register 200s.
    registration: Option<(Registration, Map<String, Value>)>,
}

/// Answers a request with an unverifiable proof may get.
const PROOF_STATUSES: [u16; 4] = [200, 400, 403, 404];

impl Expected {
    fn plain(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            message: message.into(),
            registration: None,
        }
    }

    fn with_proof() -> Self {
        Self {
            status: None,
            message: String::new(),
            registration: None,
        }
    }
}

/// Whether a body field is present and not `null`.
fn has(object: &Map<String, Value>, name: &str) -> bool {
    object.get(name).is_some_and(|v| !v.is_null())
}

fn expected(
    harness: &Harness,
    request: &FuzzRequest<'_>,
    headers: &axum::http::HeaderMap,
) -> Expected {
    if request.endpoint == Endpoint::WrongMethod {
        return Expected::plain(405, "The method is not allowed for the requested URL.");
    }
    if request.body.len() > LIMITS.max_body_bytes {
        return Expected::plain(
            413,
            format!(
                "Request body exceeds the limit of {} bytes.",
                LIMITS.max_body_bytes
            ),
        );
    }
    let object = match parse_object(headers, request.body) {
        Ok(object) => object,
        Err(r) => return Expected::plain(r.status.as_u16(), r.message),
    };
    let center = harness.center();
    let proof = has(&object, "lease_token") || has(&object, "signature");
    match request.endpoint {
        Endpoint::Register => match registration_of(&object, &LIMITS) {
            Ok(_) if has(&object, "public_key") || has(&object, "signature") => {
                Expected::with_proof()
            }
            Ok(registration) => Expected {
                status: Some(200),
                message: registered_message(&registration.node_id),
                registration: Some((registration, object)),
            },
            Err(r) => Expected::plain(r.status.as_u16(), r.message),
        },
        Endpoint::Renew => match node_id_of(&object, &LIMITS) {
            Ok(_) if proof => Expected::with_proof(),
            Ok(id) if center.is_live(&id) => Expected::plain(200, renewed_message(&id)),
            Ok(id) => Expected::plain(404, renew_not_found_message(&id)),
            Err(r) => Expected::plain(r.status.as_u16(), r.message),
        },
        Endpoint::Deregister => match node_id_of(&object, &LIMITS) {
            Ok(_) if proof => Expected::with_proof(),
            Ok(id) if center.is_live(&id) => Expected::plain(200, deregistered_message(&id)),
            Ok(id) => Expected::plain(404, deregister_not_found_message(&id)),
            Err(r) => Expected::plain(r.status.as_u16(), r.message),
        },
        Endpoint::WrongMethod => unreachable!("handled above"),
    }
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
    assert!(
        nodes[RESIDENT_ID].is_object() || id == RESIDENT_ID,
        "resident missing: {listing}"
    );
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

/// The strict parser against `serde_json` plus [`Duplicates`].
fn check_strict_parser(body: &[u8]) {
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

fuzz_target!(|data: &[u8]| {
    let Some(request) = FuzzRequest::decode(data) else {
        return;
    };
    check_strict_parser(request.body);
    let harness = Harness::get();
    let http = request.to_http();
    let expect = expected(harness, &request, http.headers());
    let answer = harness.send(http);

    let text = String::from_utf8_lossy(&answer.body);
    match expect.status {
        Some(status) => assert_eq!(
            answer.status, status,
            "status for {request:?}: body {text:?}, expected message {:?}",
            expect.message
        ),
        None => assert!(
            PROOF_STATUSES.contains(&answer.status),
            "status for {request:?} with a proof: body {text:?}"
        ),
    }
    if request.endpoint == Endpoint::Register && expect.status.is_none() {
        assert_ne!(
            answer.status, 200,
            "FORGERY: a signed registration the fuzzer made was accepted: {text:?}"
        );
    }
    assert!(answer.status < 500, "server error: {text:?}");
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
    if expect.status.is_some() {
        assert_eq!(
            envelope["message"],
            Value::from(expect.message.as_str()),
            "{text:?}"
        );
    } else {
        assert!(
            envelope["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text:?}"
        );
    }
    assert_eq!(envelope.as_object().map(Map::len), Some(3), "{text:?}");

    match &expect.registration {
        Some((registration, body)) => {
            check_registered(harness, registration, body);
            harness.restore(Some(&registration.node_id));
        }
        None => harness.restore(None),
    }
});
