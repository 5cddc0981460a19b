//! A2A AgentCard validation: well-formed 0.3 and 1.0 cards pass, every
//! malformed one is refused with the path of the field at fault, and ISEK's own
//! metadata is accepted as it is.

use isek::Metadata;
use isek::agent_card::{CardError, CardProblem, CardVersion, validate, validate_metadata};
use serde_json::{Value, json};

fn card_v03() -> Value {
    json!({
        "protocolVersion": "0.3.0",
        "name": "Planner", "description": "Plans trips", "url": "https://planner.example/a2a",
        "preferredTransport": "JSONRPC",
        "additionalInterfaces": [{"url": "https://planner.example/grpc", "transport": "GRPC"}],
        "version": "1.2.0",
        "provider": {"organization": "Acme", "url": "https://acme.example"},
        "capabilities": {"streaming": true, "pushNotifications": false,
                         "extensions": [{"uri": "https://ext.example/x"}]},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [{"id": "plan", "name": "Plan", "description": "Plans", "tags": ["planning"],
                    "examples": ["plan a trip"], "inputModes": ["text/plain"]}],
        "supportsAuthenticatedExtendedCard": false,
        "securitySchemes": {}, "security": []
    })
}

fn card_v10() -> Value {
    json!({
        "name": "Searcher", "description": "Searches", "version": "0.1.0",
        "supportedInterfaces": [
            {"url": "https://s.example/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "https://s.example/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0", "tenant": "t1"}
        ],
        "capabilities": {"streaming": false, "extendedAgentCard": true},
        "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"],
        "skills": [{"id": "web-search", "name": "Web search", "description": "Searches the web", "tags": ["search", "web"]}],
        "securityRequirements": [], "signatures": []
    })
}

fn refused(card: &Value) -> CardError {
    match validate(card) {
        Ok(v) => unreachable!("accepted as {v:?}: {card}"),
        Err(e) => e,
    }
}

fn without(mut card: Value, pointer: &str) -> Value {
    let (parent, field) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(Value::Object(o)) = card.pointer_mut(parent) {
        o.remove(field);
    }
    card
}

fn with(mut card: Value, pointer: &str, value: Value) -> Value {
    if let Some(slot) = card.pointer_mut(pointer) {
        *slot = value;
    }
    card
}

#[test]
fn well_formed_cards_of_both_versions_pass() {
    assert_eq!(validate(&card_v03()), Ok(CardVersion::V0_3));
    assert_eq!(validate(&card_v10()), Ok(CardVersion::V1_0));
    // Unknown fields are extensions, kept.
    assert_eq!(
        validate(&with(card_v10(), "/capabilities/streaming", json!(true))),
        Ok(CardVersion::V1_0)
    );
    let mut extra = card_v03();
    extra["x-vendor"] = json!({"anything": [1, 2]});
    assert_eq!(validate(&extra), Ok(CardVersion::V0_3));
}

#[test]
fn every_missing_required_field_is_named() {
    for (card, pointer, path) in [
        (card_v03(), "/name", "metadata.agent_card.name"),
        (
            card_v03(),
            "/description",
            "metadata.agent_card.description",
        ),
        (card_v03(), "/version", "metadata.agent_card.version"),
        (
            card_v03(),
            "/capabilities",
            "metadata.agent_card.capabilities",
        ),
        (
            card_v03(),
            "/defaultInputModes",
            "metadata.agent_card.defaultInputModes",
        ),
        (
            card_v03(),
            "/defaultOutputModes",
            "metadata.agent_card.defaultOutputModes",
        ),
        (card_v03(), "/skills", "metadata.agent_card.skills"),
        (
            card_v03(),
            "/skills/0/id",
            "metadata.agent_card.skills[0].id",
        ),
        (
            card_v03(),
            "/skills/0/name",
            "metadata.agent_card.skills[0].name",
        ),
        (
            card_v03(),
            "/skills/0/description",
            "metadata.agent_card.skills[0].description",
        ),
        (
            card_v03(),
            "/skills/0/tags",
            "metadata.agent_card.skills[0].tags",
        ),
        (
            card_v03(),
            "/provider/organization",
            "metadata.agent_card.provider.organization",
        ),
        (
            card_v03(),
            "/provider/url",
            "metadata.agent_card.provider.url",
        ),
        (
            card_v03(),
            "/additionalInterfaces/0/transport",
            "metadata.agent_card.additionalInterfaces[0].transport",
        ),
        (
            card_v03(),
            "/capabilities/extensions/0/uri",
            "metadata.agent_card.capabilities.extensions[0].uri",
        ),
        (
            card_v10(),
            "/supportedInterfaces/1/protocolBinding",
            "metadata.agent_card.supportedInterfaces[1].protocolBinding",
        ),
        (
            card_v10(),
            "/supportedInterfaces/0/url",
            "metadata.agent_card.supportedInterfaces[0].url",
        ),
        (
            card_v10(),
            "/supportedInterfaces/0/protocolVersion",
            "metadata.agent_card.supportedInterfaces[0].protocolVersion",
        ),
        (
            card_v10(),
            "/skills/0/tags",
            "metadata.agent_card.skills[0].tags",
        ),
    ] {
        let e = refused(&without(card, pointer));
        assert_eq!(
            e,
            CardError {
                path: path.to_owned(),
                problem: CardProblem::Missing
            },
            "{pointer}"
        );
        assert_eq!(
            e.to_string(),
            format!("invalid agent card: {path}: missing (required)")
        );
    }
}

#[test]
fn a_card_without_an_endpoint_says_which_fields_would_do() {
    let e = refused(&without(card_v03(), "/url"));
    assert_eq!(e.path, "metadata.agent_card");
    assert_eq!(e.problem, CardProblem::NoEndpoint);
    let e = refused(&with(card_v10(), "/supportedInterfaces", json!([])));
    assert_eq!(e.path, "metadata.agent_card.supportedInterfaces");
    assert_eq!(e.problem, CardProblem::Empty);
}

#[test]
fn a_wrong_type_is_named_with_what_was_expected() {
    for (card, pointer, value, path, expected) in [
        (
            card_v03(),
            "/name",
            json!(3),
            "metadata.agent_card.name",
            "a string",
        ),
        (
            card_v03(),
            "/url",
            json!(["x"]),
            "metadata.agent_card.url",
            "a string",
        ),
        (
            card_v03(),
            "/skills",
            json!({}),
            "metadata.agent_card.skills",
            "a list",
        ),
        (
            card_v03(),
            "/skills/0",
            json!("plan"),
            "metadata.agent_card.skills[0]",
            "an object",
        ),
        (
            card_v03(),
            "/skills/0/tags/0",
            json!(1),
            "metadata.agent_card.skills[0].tags[0]",
            "a string",
        ),
        (
            card_v03(),
            "/skills/0/examples",
            json!("x"),
            "metadata.agent_card.skills[0].examples",
            "a list",
        ),
        (
            card_v03(),
            "/capabilities",
            json!([]),
            "metadata.agent_card.capabilities",
            "an object",
        ),
        (
            card_v03(),
            "/capabilities/streaming",
            json!("yes"),
            "metadata.agent_card.capabilities.streaming",
            "a bool",
        ),
        (
            card_v03(),
            "/defaultInputModes/0",
            json!(null),
            "metadata.agent_card.defaultInputModes[0]",
            "a string",
        ),
        (
            card_v03(),
            "/provider",
            json!("Acme"),
            "metadata.agent_card.provider",
            "an object",
        ),
        (
            card_v03(),
            "/protocolVersion",
            json!(0.3),
            "metadata.agent_card.protocolVersion",
            "a string",
        ),
        (
            card_v03(),
            "/supportsAuthenticatedExtendedCard",
            json!(1),
            "metadata.agent_card.supportsAuthenticatedExtendedCard",
            "a bool",
        ),
        (
            card_v10(),
            "/supportedInterfaces",
            json!({}),
            "metadata.agent_card.supportedInterfaces",
            "a list",
        ),
        (
            card_v10(),
            "/supportedInterfaces/1/tenant",
            json!(7),
            "metadata.agent_card.supportedInterfaces[1].tenant",
            "a string",
        ),
        (
            card_v10(),
            "/securityRequirements",
            json!({}),
            "metadata.agent_card.securityRequirements",
            "a list",
        ),
    ] {
        let e = refused(&with(card, pointer, value));
        assert_eq!(e.path, path, "{pointer}");
        assert!(
            matches!(e.problem, CardProblem::WrongType { expected: x, .. } if x == expected),
            "{pointer}: {e}"
        );
    }
    let e = refused(&json!("a card"));
    assert_eq!(
        e.to_string(),
        "invalid agent card: metadata.agent_card: must be an object, not a string"
    );
}

#[test]
fn isek_metadata_is_accepted_as_it_is() {
    let isek = json!({
        "name": "Agent One", "bio": "b", "lore": "l", "knowledge": "k", "routine": "r",
        "url": "http://10.0.0.5:9000", "peer_id": "12D3KooW", "p2p_address": "/ip4/10.0.0.5/tcp/9001",
        "role": ["not", "a", "card"]
    });
    let Some(isek) = isek.as_object().cloned() else {
        unreachable!()
    };
    assert_eq!(validate_metadata(&isek), Ok(None));
    let mut with_card: Metadata = isek.clone();
    with_card.insert("agent_card".into(), card_v10());
    assert_eq!(validate_metadata(&with_card), Ok(Some(CardVersion::V1_0)));
    with_card.insert("agent_card".into(), without(card_v10(), "/skills"));
    assert!(
        matches!(validate_metadata(&with_card), Err(CardError { path, .. }) if path == "metadata.agent_card.skills")
    );
}

#[test]
fn the_generated_benchmark_cards_are_well_formed() {
    for i in 0..200 {
        let node = isek_testkit::agents::agent_node(i, 10_000);
        let version = validate_metadata(&node.metadata);
        let expected = if i.is_multiple_of(2) {
            CardVersion::V0_3
        } else {
            CardVersion::V1_0
        };
        assert_eq!(version, Ok(Some(expected)), "node {i}");
    }
}
