//! Property tests: for random memberships, random filters and random
//! put/delete sequences, the index (`Index::select`) answers exactly what a
//! brute-force scan (`Filter::matches` on every node) answers.

use std::collections::BTreeMap;

use isek::filter::Filter;
use isek::{Index, NodeInfo};
use proptest::prelude::*;
use serde_json::{Value, json};

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

const ROLES: &[&str] = &["planner", "executor", "critic", "Planner", "planner "];
const TAGS: &[&str] = &["x", "y", "z", "fast"];
const SKILLS: &[&str] = &["a", "b", "web", "web-search"];
const ORGS: &[&str] = &["Acme", "Acme Labs", "Globex"];
const MODES: &[&str] = &["text/plain", "application/json"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        pick(ROLES).prop_map(Value::from),
        (0i64..4).prop_map(Value::from),
        (0i64..4).prop_map(|n| json!(n as f64)),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn strings(vocab: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::collection::vec(pick(vocab), 0..4).prop_map(|v| json!(v)),
        1 => pick(vocab).prop_map(|t| json!({ t: true })),
        1 => scalar(),
    ]
}

fn skill() -> impl Strategy<Value = Value> {
    (
        proptest::option::weighted(0.85, pick(SKILLS)),
        proptest::option::weighted(0.8, strings(TAGS)),
    )
        .prop_map(|(id, tags)| {
            let mut skill = serde_json::Map::new();
            if let Some(id) = id {
                skill.insert("id".into(), json!(id));
            }
            if let Some(tags) = tags {
                skill.insert("tags".into(), tags);
            }
            Value::Object(skill)
        })
}

fn card() -> impl Strategy<Value = Value> {
    let object = (
        proptest::option::weighted(0.9, proptest::collection::vec(skill(), 0..4)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(pick(ORGS)),
        proptest::option::of(strings(MODES)),
    )
        .prop_map(|(skills, streaming, org, modes)| {
            let mut card = serde_json::Map::new();
            if let Some(skills) = skills {
                card.insert("skills".into(), json!(skills));
            }
            if let Some(streaming) = streaming {
                card.insert("capabilities".into(), json!({ "streaming": streaming }));
            }
            if let Some(org) = org {
                card.insert("provider".into(), json!({ "organization": org }));
            }
            if let Some(modes) = modes {
                card.insert("defaultInputModes".into(), modes);
            }
            Value::Object(card)
        });
    prop_oneof![6 => object, 1 => scalar()]
}

fn metadata() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    (
        proptest::option::weighted(0.8, scalar()),
        proptest::option::of(scalar()),
        proptest::option::of(strings(TAGS)),
        proptest::option::weighted(0.7, card()),
    )
        .prop_map(|(role, level, tags, card)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("role", role),
                ("level", level),
                ("tags", tags),
                ("agent_card", card),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            m
        })
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(ROLES).prop_map(|r| format!("metadata.role == {r:?}")),
        pick(ROLES).prop_map(|r| format!("metadata.role != {r:?}")),
        (pick(ROLES), pick(ROLES)).prop_map(|(a, b)| format!("metadata.role in [{a:?}, {b:?}]")),
        Just("has(metadata.role)".to_owned()),
        Just("has(metadata.agent_card)".to_owned()),
        (0i64..4).prop_map(|n| format!("metadata.level == {n}")),
        (0i64..4).prop_map(|n| format!("metadata.level == {n}.0")),
        (0i64..4).prop_map(|n| format!("metadata.level > {n}")),
        any::<bool>().prop_map(|b| format!("metadata.level == {b}")),
        Just("metadata.level == null".to_owned()),
        pick(TAGS).prop_map(|t| format!("{t:?} in metadata.tags")),
        pick(TAGS).prop_map(|t| format!("metadata.tags.exists(t, t == {t:?})")),
        pick(SKILLS).prop_map(|s| format!("{s:?} in metadata.agent_card.skills.map(s, s.id)")),
        pick(SKILLS).prop_map(|s| format!("metadata.agent_card.skills.exists(s, s.id == {s:?})")),
        pick(TAGS).prop_map(|t| format!("metadata.agent_card.skills.exists(s, {t:?} in s.tags)")),
        (pick(SKILLS), pick(TAGS)).prop_map(|(s, t)| format!(
            "metadata.agent_card.skills.exists(s, s.id == {s:?} && {t:?} in s.tags)"
        )),
        pick(SKILLS)
            .prop_map(|s| format!("metadata.agent_card.skills.exists(s, s.id.startsWith({s:?}))")),
        pick(SKILLS).prop_map(|s| format!("metadata.agent_card.skills.all(s, s.id != {s:?})")),
        any::<bool>().prop_map(|b| format!("metadata.agent_card.capabilities.streaming == {b}")),
        pick(ORGS).prop_map(|o| format!("metadata.agent_card.provider.organization == {o:?}")),
        pick(&["Acme", "Glo", "x"])
            .prop_map(|o| format!("metadata.agent_card.provider.organization.startsWith({o:?})")),
        pick(MODES).prop_map(|m| format!("{m:?} in metadata.agent_card.defaultInputModes")),
        (0u16..12).prop_map(|n| format!("node_id == \"n{n}\"")),
        (0u16..12).prop_map(|n| format!("port > {}", 9000 + n)),
        Just("metadata.role.startsWith(\"pl\")".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
    ]
}

fn filter() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

fn node(n: u16, metadata: serde_json::Map<String, Value>) -> NodeInfo {
    NodeInfo::new(format!("n{n}"), "127.0.0.1", 9000 + n, metadata)
}

fn scan(nodes: &BTreeMap<u16, NodeInfo>, filter: &Filter) -> Vec<String> {
    nodes
        .values()
        .filter(|n| filter.matches(n))
        .map(|n| n.node_id.clone())
        .collect()
}

fn indexed(index: &Index, filter: &Filter) -> Vec<String> {
    let mut ids: Vec<String> = index
        .select(filter)
        .nodes
        .iter()
        .map(|n| n.node_id.clone())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, serde_json::Map<String, Value>),
    Delete(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => ((0u16..12), metadata()).prop_map(|(n, m)| Op::Put(n, m)),
        1 => (0u16..12).prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn index_answers_what_a_scan_answers(
        members in proptest::collection::vec(metadata(), 0..24),
        sources in proptest::collection::vec(filter(), 1..4),
    ) {
        let mut index = Index::new();
        let mut model = BTreeMap::new();
        for (n, m) in members.into_iter().enumerate() {
            let n = u16::try_from(n).unwrap_or(u16::MAX);
            let node = node(n, m);
            model.insert(n, node.clone());
            prop_assert!(index.put(node).is_ok());
        }
        for source in &sources {
            let filter = Filter::compile(source);
            prop_assert!(filter.is_ok(), "{source}: {filter:?}");
            let Ok(filter) = filter else { continue };
            prop_assert_eq!(indexed(&index, &filter), sorted(scan(&model, &filter)), "{}", source);
        }
    }

    #[test]
    fn puts_and_deletes_keep_the_index_equal_to_a_scan(
        ops in proptest::collection::vec(op(), 1..40),
        sources in proptest::collection::vec(filter(), 1..4),
    ) {
        let filters: Vec<Filter> = sources.iter().filter_map(|s| Filter::compile(s).ok()).collect();
        prop_assert_eq!(filters.len(), sources.len());
        let mut index = Index::new();
        let mut model: BTreeMap<u16, NodeInfo> = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(n, m) => {
                    let node = node(n, m);
                    let previous = index.put(node.clone());
                    prop_assert_eq!(previous, Ok(model.insert(n, node)));
                }
                Op::Delete(n) => {
                    prop_assert_eq!(index.remove(&format!("n{n}")), model.remove(&n));
                }
            }
            prop_assert_eq!(index.len(), model.len());
            for (filter, source) in filters.iter().zip(&sources) {
                prop_assert_eq!(indexed(&index, filter), sorted(scan(&model, filter)), "step {}: {}", step, source);
            }
        }
    }
}
