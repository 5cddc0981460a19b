//! Which part of a filter an index can answer, and the key space of that index.
//!
//! A [`Plan`] is either a [`Term`] over posting lists, whose answer is a
//! *superset* of the matching nodes (every candidate is then evaluated in
//! full), or [`Plan::Scan`] when no index serves the filter's selecting terms.
//!
//! Terms an index serves (`P` a served path, `L` a literal):
//!
//! | filter | term |
//! |---|---|
//! | `P == L`, `L == P`, `P in [L, ...]` | the posting list of `P = L` (a union for `in`) |
//! | `L in P` (a list or map) | the posting list of `P[] = L` |
//! | `L in R.map(v, v.f)` | the posting list of `R[].f = L` |
//! | `R.exists(v, BODY)` | `BODY` planned with `v` standing for `R[]` |
//! | `P.startsWith("s")` | the union of the posting lists of `P = "s..."` |
//! | `has(metadata.k)` | the nodes whose metadata has the top-level key `k` |
//! | `node_id == "x"`, `node_id in [...]` | those ids |
//! | `A && B` | intersection (a side no index serves is left to evaluation) |
//! | `A \|\| B` | union (scan unless both sides are served) |
//!
//! Served paths below `metadata`: every top-level key `k` (its scalar value,
//! and the scalars of a list or the keys of a map at `k`), and in the agent
//! card `agent_card.skills[].id`, `agent_card.skills[].tags[]`,
//! `agent_card.capabilities.*`, `agent_card.provider.organization`,
//! `agent_card.defaultInputModes[]` and `agent_card.defaultOutputModes[]`.
//! Anything else (`!`, `?:`, numeric order, `contains`, `all`, ...) is
//! evaluated per node, on the candidates when another term narrows them, by a
//! scan otherwise.
//!
//! Why a superset is enough: `A && B` is true only when both are (CEL's `&&`
//! gives `false` or an error otherwise), `A || B` only when one is, and every
//! key term contains every node for which its CEL term is true.

use std::collections::BTreeSet;
use std::fmt;

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};

use crate::node::Metadata;

/// One step of a path below `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object's field.
    Field(String),
    /// Any element of a list (or key of a map).
    Each,
}

/// Whether an index answers a filter, as an API reports it (`"plan": "index"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// Candidates come from posting lists.
    Index,
    /// Every node is evaluated.
    Scan,
}

impl PlanKind {
    /// `"index"` or `"scan"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Index => "index",
            PlanKind::Scan => "scan",
        }
    }
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an index answers a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The candidates are the nodes of this term; each is then evaluated.
    Index(Term),
    /// No index serves the filter: every node is evaluated.
    Scan,
}

impl Plan {
    /// `index` or `scan`.
    pub fn kind(&self) -> PlanKind {
        match self {
            Plan::Index(_) => PlanKind::Index,
            Plan::Scan => PlanKind::Scan,
        }
    }

    /// The plan of a parsed filter expression.
    pub(crate) fn of(expr: &IdedExpr) -> Plan {
        let mut planner = Planner { scope: Vec::new() };
        match planner.term(expr) {
            Some(term) => Plan::Index(term),
            None => Plan::Scan,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Index(term) => write!(f, "index {term}"),
            Plan::Scan => f.write_str("scan"),
        }
    }
}

/// A set of nodes computed from posting lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The nodes with this posting key ([`key`]).
    Key(String),
    /// The nodes with any posting key that starts with this.
    Prefix(String),
    /// The nodes with these ids.
    Ids(BTreeSet<String>),
    /// Every term's nodes.
    And(Vec<Term>),
    /// Any term's nodes (none when empty).
    Or(Vec<Term>),
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, terms: &[Term], op: &str| {
            f.write_str("(")?;
            for (i, t) in terms.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{t}")?;
            }
            f.write_str(")")
        };
        match self {
            Term::Key(k) => f.write_str(&show_key(k)),
            Term::Prefix(k) => write!(f, "{}*", show_key(k)),
            Term::Ids(ids) => write!(f, "node_id in {ids:?}"),
            Term::And(terms) => list(f, terms, "&&"),
            Term::Or(terms) => list(f, terms, "||"),
        }
    }
}

/// Separates a posting key's path from its value.
const SEP: char = '\u{0}';

fn show_key(key: &str) -> String {
    match key.split_once(SEP) {
        Some((path, value)) => match value.split_at_checked(1) {
            Some(("s", s)) => format!("{path} = {s:?}"),
            Some(("p", _)) => format!("has({path})"),
            Some((_, v)) => format!("{path} = {v}"),
            None => path.to_owned(),
        },
        None => key.to_owned(),
    }
}

fn path_text(path: &[Segment]) -> String {
    let mut text = String::new();
    for (i, segment) in path.iter().enumerate() {
        match segment {
            Segment::Field(name) => {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(name);
            }
            Segment::Each => text.push_str("[]"),
        }
    }
    text
}

/// A scalar value as the index keys it: CEL's equality classes (every number
/// by its `double` value, so `3`, `3u` and `3.0` share a key).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(&'a str),
    /// A bool.
    Bool(bool),
    /// A number.
    Num(f64),
    /// `null`.
    Null,
}

impl Scalar<'_> {
    fn encode(&self) -> String {
        match self {
            Scalar::Str(s) => format!("s{s}"),
            Scalar::Bool(b) => format!("b{}", u8::from(*b)),
            Scalar::Num(n) => {
                let n = if *n == 0.0 { 0.0 } else { *n };
                format!("n{n:?}")
            }
            Scalar::Null => "z".to_owned(),
        }
    }

    fn of_json(value: &serde_json::Value) -> Option<Scalar<'_>> {
        match value {
            serde_json::Value::String(s) => Some(Scalar::Str(s)),
            serde_json::Value::Bool(b) => Some(Scalar::Bool(*b)),
            serde_json::Value::Number(n) => n.as_f64().map(Scalar::Num),
            serde_json::Value::Null => Some(Scalar::Null),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
        }
    }

    fn of_literal(literal: &LiteralValue) -> Option<Scalar<'_>> {
        match literal {
            LiteralValue::String(s) => Some(Scalar::Str(s.inner())),
            LiteralValue::Boolean(b) => Some(Scalar::Bool(*b.inner())),
            LiteralValue::Int(i) => Some(Scalar::Num(*i.inner() as f64)),
            LiteralValue::UInt(u) => Some(Scalar::Num(*u.inner() as f64)),
            LiteralValue::Double(d) => Some(Scalar::Num(*d.inner())),
            LiteralValue::Null => Some(Scalar::Null),
            LiteralValue::Bytes(_) => None,
        }
    }
}

/// The posting key of "the value at `path` equals `value`".
pub fn key(path: &[Segment], value: &Scalar<'_>) -> String {
    format!("{}{SEP}{}", path_text(path), value.encode())
}

/// The posting key of "metadata has the top-level key at `path`".
fn presence_key(path: &[Segment]) -> String {
    format!("{}{SEP}p", path_text(path))
}

fn is(segment: &Segment, name: &str) -> bool {
    matches!(segment, Segment::Field(f) if f == name)
}

/// Whether the index keeps the scalar values found at `path`.
pub fn serves(path: &[Segment]) -> bool {
    use Segment::{Each, Field};
    match path {
        [Field(_)] | [Field(_), Each] => true,
        [card, rest @ ..] if is(card, "agent_card") => match rest {
            [skills, Each, id] => is(skills, "skills") && is(id, "id"),
            [skills, Each, tags, Each] => is(skills, "skills") && is(tags, "tags"),
            [modes, Each] => is(modes, "defaultInputModes") || is(modes, "defaultOutputModes"),
            [caps, Field(_)] if is(caps, "capabilities") => true,
            [provider, org] => is(provider, "provider") && is(org, "organization"),
            _ => false,
        },
        _ => false,
    }
}

/// Every posting key of a node with this metadata (what [`serves`] promises).
pub fn keys_of(metadata: &Metadata) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut path = Vec::new();
    for (name, value) in metadata {
        path.clear();
        path.push(Segment::Field(name.clone()));
        keys.insert(presence_key(&path));
        scalar_or_each(value, &mut path, &mut keys);
    }
    let Some(serde_json::Value::Object(card)) = metadata.get("agent_card") else {
        return keys;
    };
    let field = |name: &str| Segment::Field(name.to_owned());
    if let Some(serde_json::Value::Array(skills)) = card.get("skills") {
        for skill in skills {
            let serde_json::Value::Object(skill) = skill else {
                continue;
            };
            let mut path = vec![field("agent_card"), field("skills"), Segment::Each];
            if let Some(id) = skill.get("id").and_then(Scalar::of_json) {
                path.push(field("id"));
                keys.insert(key(&path, &id));
                path.pop();
            }
            if let Some(tags) = skill.get("tags") {
                path.push(field("tags"));
                each(tags, &mut path, &mut keys);
            }
        }
    }
    if let Some(serde_json::Value::Object(caps)) = card.get("capabilities") {
        for (name, value) in caps {
            if let Some(value) = Scalar::of_json(value) {
                let path = [field("agent_card"), field("capabilities"), field(name)];
                keys.insert(key(&path, &value));
            }
        }
    }
    if let Some(serde_json::Value::Object(provider)) = card.get("provider")
        && let Some(org) = provider.get("organization").and_then(Scalar::of_json)
    {
        let path = [
            field("agent_card"),
            field("provider"),
            field("organization"),
        ];
        keys.insert(key(&path, &org));
    }
    for modes in ["defaultInputModes", "defaultOutputModes"] {
        if let Some(value) = card.get(modes) {
            let mut path = vec![field("agent_card"), field(modes)];
            each(value, &mut path, &mut keys);
        }
    }
    keys
}

/// Keys of a scalar at `path`, or of the elements (keys) of a list (map) there.
fn scalar_or_each(value: &serde_json::Value, path: &mut Vec<Segment>, keys: &mut BTreeSet<String>) {
    match Scalar::of_json(value) {
        Some(scalar) => {
            keys.insert(key(path, &scalar));
        }
        None => each(value, path, keys),
    }
}

/// Keys of the scalar elements of a list, or the keys of a map, at `path`.
fn each(value: &serde_json::Value, path: &mut Vec<Segment>, keys: &mut BTreeSet<String>) {
    path.push(Segment::Each);
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                if let Some(scalar) = Scalar::of_json(item) {
                    keys.insert(key(path, &scalar));
                }
            }
        }
        serde_json::Value::Object(map) => {
            for name in map.keys() {
                keys.insert(key(path, &Scalar::Str(name)));
            }
        }
        _ => {}
    }
    path.pop();
}

/// Builds terms from an expression; `None` is "no index serves this".
struct Planner {
    /// Variables bound by enclosing macros, with the path each stands for.
    scope: Vec<(String, Option<Vec<Segment>>)>,
}

impl Planner {
    /// The path below `metadata` that `expr` names.
    fn path(&self, expr: &IdedExpr) -> Option<Vec<Segment>> {
        match &expr.expr {
            Expr::Ident(name) => match self.scope.iter().rev().find(|(n, _)| n == name) {
                Some((_, path)) => path.clone(),
                None if name == "metadata" => Some(Vec::new()),
                None => None,
            },
            Expr::Select(select) if !select.test => {
                let mut path = self.path(&select.operand)?;
                path.push(Segment::Field(select.field.clone()));
                Some(path)
            }
            Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
                let Expr::Literal(LiteralValue::String(name)) = &call.args[1].expr else {
                    return None;
                };
                let mut path = self.path(&call.args[0])?;
                path.push(Segment::Field(name.inner().to_owned()));
                Some(path)
            }
            _ => None,
        }
    }

    /// Whether `expr` is the free variable `node_id`.
    fn is_node_id(&self, expr: &IdedExpr) -> bool {
        matches!(&expr.expr, Expr::Ident(n) if n == "node_id" && !self.scope.iter().any(|(b, _)| b == n))
    }

    fn term(&mut self, expr: &IdedExpr) -> Option<Term> {
        match &expr.expr {
            Expr::Literal(LiteralValue::Boolean(b)) if !*b.inner() => Some(Term::Or(Vec::new())),
            Expr::Call(call) => self.call(call),
            Expr::Select(select) if select.test => {
                let mut path = self.path(&select.operand)?;
                path.push(Segment::Field(select.field.clone()));
                matches!(path.as_slice(), [Segment::Field(_)])
                    .then(|| Term::Key(presence_key(&path)))
            }
            Expr::Comprehension(c) => self.exists(c),
            _ => None,
        }
    }

    fn call(&mut self, call: &CallExpr) -> Option<Term> {
        let args = call.args.as_slice();
        match (call.func_name.as_str(), args) {
            (operators::LOGICAL_AND, [a, b]) => match (self.term(a), self.term(b)) {
                (Some(a), Some(b)) => Some(and(a, b)),
                (Some(t), None) | (None, Some(t)) => Some(t),
                (None, None) => None,
            },
            (operators::LOGICAL_OR, [a, b]) => {
                let (a, b) = (self.term(a)?, self.term(b)?);
                Some(or(a, b))
            }
            (operators::EQUALS, [a, b]) => self.equals(a, b).or_else(|| self.equals(b, a)),
            (operators::IN, [needle, haystack]) => self.contains(needle, haystack),
            ("startsWith", [prefix]) => {
                let target = call.target.as_deref()?;
                let Expr::Literal(LiteralValue::String(prefix)) = &prefix.expr else {
                    return None;
                };
                let path = self.path(target)?;
                serves(&path).then(|| Term::Prefix(key(&path, &Scalar::Str(prefix.inner()))))
            }
            _ => None,
        }
    }

    /// `subject == literal`.
    fn equals(&self, subject: &IdedExpr, literal: &IdedExpr) -> Option<Term> {
        let Expr::Literal(literal) = &literal.expr else {
            return None;
        };
        if self.is_node_id(subject) {
            let LiteralValue::String(id) = literal else {
                return Some(Term::Or(Vec::new()));
            };
            return Some(Term::Ids(BTreeSet::from([id.inner().to_owned()])));
        }
        let path = self.path(subject)?;
        let value = Scalar::of_literal(literal)?;
        serves(&path).then(|| Term::Key(key(&path, &value)))
    }

    /// `needle in haystack`.
    fn contains(&mut self, needle: &IdedExpr, haystack: &IdedExpr) -> Option<Term> {
        // `subject in [literals]`.
        if let Expr::List(list) = &haystack.expr {
            if !list.optional_indices.is_empty() {
                return None;
            }
            let terms = list
                .elements
                .iter()
                .map(|element| self.equals(needle, element))
                .collect::<Option<Vec<_>>>()?;
            return Some(Term::Or(terms));
        }
        let Expr::Literal(literal) = &needle.expr else {
            return None;
        };
        let value = Scalar::of_literal(literal)?;
        // `literal in path`.
        if let Some(mut path) = self.path(haystack) {
            path.push(Segment::Each);
            return serves(&path).then(|| Term::Key(key(&path, &value)));
        }
        // `literal in R.map(v, v.path)`.
        let Expr::Comprehension(c) = &haystack.expr else {
            return None;
        };
        let body = map_body(c)?;
        let mut range = self.path(&c.iter_range)?;
        range.push(Segment::Each);
        self.scope.push((c.iter_var.clone(), Some(range)));
        self.scope.push((c.accu_var.clone(), None));
        let path = self.path(body);
        self.scope.truncate(self.scope.len() - 2);
        let path = path?;
        serves(&path).then(|| Term::Key(key(&path, &value)))
    }

    /// `R.exists(v, BODY)`: `BODY` with `v` standing for `R[]`.
    fn exists(&mut self, c: &ComprehensionExpr) -> Option<Term> {
        if c.iter_var2.is_some() {
            return None;
        }
        let Expr::Literal(LiteralValue::Boolean(init)) = &c.accu_init.expr else {
            return None;
        };
        let Expr::Call(step) = &c.loop_step.expr else {
            return None;
        };
        let predicate = match step.args.as_slice() {
            [accu, predicate]
                if !*init.inner()
                    && step.func_name == operators::LOGICAL_OR
                    && matches!(&accu.expr, Expr::Ident(a) if *a == c.accu_var) =>
            {
                predicate
            }
            _ => return None,
        };
        let mut range = self.path(&c.iter_range)?;
        range.push(Segment::Each);
        self.scope.push((c.iter_var.clone(), Some(range)));
        self.scope.push((c.accu_var.clone(), None));
        let term = self.term(predicate);
        self.scope.truncate(self.scope.len() - 2);
        term
    }
}

/// The element expression of a `map` macro (`R.map(v, BODY)` or
/// `R.map(v, FILTER, BODY)`), if `c` is one.
fn map_body(c: &ComprehensionExpr) -> Option<&IdedExpr> {
    if c.iter_var2.is_some() {
        return None;
    }
    let Expr::List(init) = &c.accu_init.expr else {
        return None;
    };
    if !init.elements.is_empty() {
        return None;
    }
    match &c.loop_step.expr {
        Expr::Call(call) if call.func_name == operators::CONDITIONAL => {
            match call.args.as_slice() {
                [_, then, otherwise] if matches!(&otherwise.expr, Expr::Ident(a) if *a == c.accu_var) => {
                    append(c, then)
                }
                _ => None,
            }
        }
        _ => append(c, &c.loop_step),
    }
}

/// The element of `accu + [element]`, the step of a `map` macro.
fn append<'a>(c: &ComprehensionExpr, step: &'a IdedExpr) -> Option<&'a IdedExpr> {
    let Expr::Call(call) = &step.expr else {
        return None;
    };
    match call.args.as_slice() {
        [accu, element_list] if call.func_name == operators::ADD => {
            if !matches!(&accu.expr, Expr::Ident(a) if *a == c.accu_var) {
                return None;
            }
            match &element_list.expr {
                Expr::List(list) if list.elements.len() == 1 => list.elements.first(),
                _ => None,
            }
        }
        _ => None,
    }
}

fn and(a: Term, b: Term) -> Term {
    let mut terms = Vec::new();
    for t in [a, b] {
        match t {
            Term::And(inner) => terms.extend(inner),
            other => terms.push(other),
        }
    }
    Term::And(terms)
}

fn or(a: Term, b: Term) -> Term {
    let mut terms = Vec::new();
    for t in [a, b] {
        match t {
            Term::Or(inner) => terms.extend(inner),
            other => terms.push(other),
        }
    }
    Term::Or(terms)
}
