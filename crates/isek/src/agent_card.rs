//! Validation of an A2A AgentCard carried in a node's `metadata.agent_card`.
//!
//! A node may describe itself to A2A clients with an AgentCard; a registry
//! that indexes and serves cards must keep them honest, so a malformed card is
//! refused with the path of the field at fault
//! (`metadata.agent_card.skills[2].tags: missing`).
//!
//! Two field sets are accepted, told apart by how the card says where the
//! agent is:
//!
//! - **A2A 0.3**: `url` (with optional `protocolVersion`, `preferredTransport`,
//!   `additionalInterfaces[]` of `{url, transport}`);
//! - **A2A 1.0**: `supportedInterfaces[]`, non-empty, of
//!   `{url, protocolBinding, protocolVersion}` (optional `tenant`).
//!
//! Both require `name`, `description`, `version`, `capabilities` (an object),
//! `defaultInputModes[]` and `defaultOutputModes[]` (strings) and `skills[]`,
//! each with `id`, `name`, `description` and `tags[]`. Optional fields are
//! checked for their type when present (`provider` needs `organization` and
//! `url`); unknown fields are kept, as A2A's extension rules ask.
//!
//! ISEK's own metadata (`name`, `bio`, `lore`, `knowledge`, `routine`, `url`,
//! `peer_id`, `p2p_address`, anything else) is not touched: only the
//! `agent_card` key is validated.

use serde_json::Value;

use crate::node::Metadata;

/// Which A2A field set a card follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardVersion {
    /// A2A 0.3: the card has `url`.
    V0_3,
    /// A2A 1.0: the card has `supportedInterfaces`.
    V1_0,
}

/// What is wrong with one field of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardProblem {
    /// A required field is absent.
    Missing,
    /// The field has the wrong JSON type.
    WrongType {
        /// What the schema asks for.
        expected: &'static str,
        /// What the card has.
        found: &'static str,
    },
    /// A list that must not be empty is.
    Empty,
    /// The card has neither `url` (A2A 0.3) nor `supportedInterfaces` (A2A 1.0).
    NoEndpoint,
}

impl std::fmt::Display for CardProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardProblem::Missing => f.write_str("missing (required)"),
            CardProblem::WrongType { expected, found } => {
                write!(f, "must be {expected}, not {found}")
            }
            CardProblem::Empty => f.write_str("must not be empty"),
            CardProblem::NoEndpoint => {
                f.write_str("needs `url` (A2A 0.3) or `supportedInterfaces` (A2A 1.0)")
            }
        }
    }
}

/// A malformed card: the path of the field at fault, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid agent card: {path}: {problem}")]
pub struct CardError {
    /// Where, from `metadata` (`metadata.agent_card.skills[0].id`).
    pub path: String,
    /// What.
    pub problem: CardProblem,
}

/// Validates `metadata.agent_card` when there is one: `Ok(None)` without a
/// card, the card's field set when it is well formed.
pub fn validate_metadata(metadata: &Metadata) -> Result<Option<CardVersion>, CardError> {
    match metadata.get("agent_card") {
        None => Ok(None),
        Some(card) => validate(card).map(Some),
    }
}

/// Validates one AgentCard (the JSON document an agent serves at
/// `/.well-known/agent-card.json`); errors name paths from `metadata.agent_card`.
pub fn validate(card: &Value) -> Result<CardVersion, CardError> {
    let at = Path("metadata.agent_card".to_owned());
    let object = at.object(card)?;
    let version = if object.contains_key("supportedInterfaces") {
        CardVersion::V1_0
    } else if object.contains_key("url") {
        CardVersion::V0_3
    } else {
        return Err(at.error(CardProblem::NoEndpoint));
    };
    for field in ["name", "description", "version"] {
        at.required_string(object, field)?;
    }
    at.field(object, "capabilities")
        .required()
        .and_then(|(p, v)| capabilities(&p, v))?;
    for field in ["defaultInputModes", "defaultOutputModes"] {
        let (p, v) = at.field(object, field).required()?;
        p.strings(v)?;
    }
    let (p, skills) = at.field(object, "skills").required()?;
    for (i, skill) in p.array(skills)?.iter().enumerate() {
        self::skill(&p.index(i), skill)?;
    }
    match version {
        CardVersion::V1_0 => {
            let (p, v) = at.field(object, "supportedInterfaces").required()?;
            let interfaces = p.array(v)?;
            if interfaces.is_empty() {
                return Err(p.error(CardProblem::Empty));
            }
            for (i, interface) in interfaces.iter().enumerate() {
                let p = p.index(i);
                let o = p.object(interface)?;
                for field in ["url", "protocolBinding", "protocolVersion"] {
                    p.required_string(o, field)?;
                }
                p.optional_string(o, "tenant")?;
            }
        }
        CardVersion::V0_3 => {
            at.required_string(object, "url")?;
            at.optional_string(object, "protocolVersion")?;
            at.optional_string(object, "preferredTransport")?;
            if let Some(v) = object.get("additionalInterfaces") {
                let p = at.child("additionalInterfaces");
                for (i, interface) in p.array(v)?.iter().enumerate() {
                    let p = p.index(i);
                    let o = p.object(interface)?;
                    p.required_string(o, "url")?;
                    p.required_string(o, "transport")?;
                }
            }
        }
    }
    if let Some(v) = object.get("provider") {
        let p = at.child("provider");
        let o = p.object(v)?;
        p.required_string(o, "organization")?;
        p.required_string(o, "url")?;
    }
    for field in ["iconUrl", "documentationUrl"] {
        at.optional_string(object, field)?;
    }
    if let Some(v) = object.get("supportsAuthenticatedExtendedCard") {
        at.child("supportsAuthenticatedExtendedCard").boolean(v)?;
    }
    if let Some(v) = object.get("securitySchemes") {
        at.child("securitySchemes").object(v)?;
    }
    for field in ["security", "securityRequirements", "signatures"] {
        if let Some(v) = object.get(field) {
            at.child(field).array(v)?;
        }
    }
    Ok(version)
}

fn capabilities(p: &Path, value: &Value) -> Result<(), CardError> {
    let o = p.object(value)?;
    for flag in [
        "streaming",
        "pushNotifications",
        "stateTransitionHistory",
        "extendedAgentCard",
    ] {
        if let Some(v) = o.get(flag) {
            p.child(flag).boolean(v)?;
        }
    }
    if let Some(v) = o.get("extensions") {
        let p = p.child("extensions");
        for (i, extension) in p.array(v)?.iter().enumerate() {
            let p = p.index(i);
            let o = p.object(extension)?;
            p.required_string(o, "uri")?;
        }
    }
    Ok(())
}

fn skill(p: &Path, value: &Value) -> Result<(), CardError> {
    let o = p.object(value)?;
    for field in ["id", "name", "description"] {
        p.required_string(o, field)?;
    }
    let (tp, tags) = p.field(o, "tags").required()?;
    tp.strings(tags)?;
    for field in ["examples", "inputModes", "outputModes"] {
        if let Some(v) = o.get(field) {
            p.child(field).strings(v)?;
        }
    }
    Ok(())
}

/// A field path being checked, for error messages.
struct Path(String);

/// A field of an object, present or not.
struct Field<'a> {
    path: Path,
    value: Option<&'a Value>,
}

impl<'a> Field<'a> {
    fn required(self) -> Result<(Path, &'a Value), CardError> {
        match self.value {
            Some(v) => Ok((self.path, v)),
            None => Err(self.path.error(CardProblem::Missing)),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Path {
    fn child(&self, name: &str) -> Path {
        Path(format!("{}.{name}", self.0))
    }

    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    fn field<'a>(&self, object: &'a serde_json::Map<String, Value>, name: &str) -> Field<'a> {
        Field {
            path: self.child(name),
            value: object.get(name),
        }
    }

    fn error(&self, problem: CardProblem) -> CardError {
        CardError {
            path: self.0.clone(),
            problem,
        }
    }

    fn wrong(&self, expected: &'static str, value: &Value) -> CardError {
        self.error(CardProblem::WrongType {
            expected,
            found: kind(value),
        })
    }

    fn object<'a>(
        &self,
        value: &'a Value,
    ) -> Result<&'a serde_json::Map<String, Value>, CardError> {
        value
            .as_object()
            .ok_or_else(|| self.wrong("an object", value))
    }

    fn array<'a>(&self, value: &'a Value) -> Result<&'a Vec<Value>, CardError> {
        value.as_array().ok_or_else(|| self.wrong("a list", value))
    }

    fn boolean(&self, value: &Value) -> Result<(), CardError> {
        value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| self.wrong("a bool", value))
    }

    fn string(&self, value: &Value) -> Result<(), CardError> {
        value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| self.wrong("a string", value))
    }

    fn strings(&self, value: &Value) -> Result<(), CardError> {
        for (i, item) in self.array(value)?.iter().enumerate() {
            self.index(i).string(item)?;
        }
        Ok(())
    }

    fn required_string(
        &self,
        object: &serde_json::Map<String, Value>,
        name: &str,
    ) -> Result<(), CardError> {
        let (p, v) = self.field(object, name).required()?;
        p.string(v)
    }

    fn optional_string(
        &self,
        object: &serde_json::Map<String, Value>,
        name: &str,
    ) -> Result<(), CardError> {
        match object.get(name) {
            Some(v) => self.child(name).string(v),
            None => Ok(()),
        }
    }
}
