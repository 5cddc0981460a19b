//! The filter language's conformance table: every expression against one fixed
//! membership, answered by a brute-force scan (`Filter::matches` on every node)
//! and through the index (`Index::select`), both compared with the ids written
//! by hand, and the plan (`index` or `scan`) the planner chose.

use isek::filter::{Filter, PlanKind};
use isek::{Index, Metadata, NodeInfo};
use serde_json::json;

fn node(n: u16, metadata: serde_json::Value) -> NodeInfo {
    let Some(metadata) = metadata.as_object().cloned() else {
        unreachable!("test metadata is an object")
    };
    NodeInfo::new(
        format!("n{n:02}"),
        format!("10.0.0.{n}"),
        9000 + n,
        metadata,
    )
}

/// Sixteen nodes covering the shapes a filter meets: ISEK-only metadata, A2A
/// 0.3 and 1.0 cards, missing and mistyped fields, numbers of every kind.
fn membership() -> Vec<NodeInfo> {
    let mut nodes = vec![
        node(
            1,
            json!({"name": "Alpha", "bio": "planner bot", "role": "planner", "level": 3, "url": "http://a"}),
        ),
        node(
            2,
            json!({"role": "planner", "level": 5, "tags": ["fast", "cheap"], "agent_card": {
            "name": "Two", "description": "d", "url": "http://two", "version": "1.0.0",
            "skills": [{"id": "web-search", "name": "Search", "description": "d", "tags": ["search", "web"]},
                       {"id": "summarize", "name": "Sum", "description": "d", "tags": ["nlp"]}],
            "capabilities": {"streaming": true, "pushNotifications": false},
            "provider": {"organization": "Acme", "url": "http://acme"},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain", "application/json"]}}),
        ),
        node(
            3,
            json!({"role": "executor", "level": 5.0, "agent_card": {
            "name": "Three", "description": "d", "version": "2.1",
            "supportedInterfaces": [{"url": "http://three", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "skills": [{"id": "translate", "name": "T", "description": "d", "tags": ["nlp", "lang"]}],
            "capabilities": {"streaming": false},
            "provider": {"organization": "Acme Labs", "url": "http://labs"},
            "defaultInputModes": ["application/json"], "defaultOutputModes": ["application/json"]}}),
        ),
        node(
            4,
            json!({"role": "executor", "level": "5", "agent_card": {
            "skills": [{"id": "web-search", "tags": ["search"]}, {"id": "code", "tags": ["dev"]}],
            "capabilities": {"streaming": true}, "provider": {"organization": "Globex"},
            "defaultInputModes": ["text/plain", "image/png"], "defaultOutputModes": ["text/plain"]}}),
        ),
        node(
            5,
            json!({"role": "critic", "tags": ["slow"], "active": true}),
        ),
        node(6, json!({"role": null, "active": false, "level": 1})),
        node(
            8,
            json!({"role": "planner", "agent_card": {
            "skills": [{"name": "no id", "tags": ["x"]}, {"id": "web-search"}]}}),
        ),
        node(9, json!({"role": "Planner", "agent_card": "not an object"})),
        node(10, json!({"role": "planner", "tags": {"fast": true}})),
        node(
            11,
            json!({"role": "executor", "agent_card": {
            "skills": [{"id": "summarize", "tags": ["nlp", "fast"]}],
            "capabilities": {"streaming": true, "extensions": [{"uri": "x"}]},
            "provider": {"organization": "Globex"},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/markdown"]}}),
        ),
        node(
            12,
            json!({"role": "planner", "level": 10, "agent_card": {
            "skills": [{"id": "plan", "tags": ["planning", "search"]}, {"id": "web-search", "tags": ["web"]}],
            "capabilities": {"streaming": false, "pushNotifications": true},
            "provider": {"organization": "Initech"},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["application/json"]}}),
        ),
        node(
            13,
            json!({"role": "planner ", "level": -2, "name": "Omega"}),
        ),
        node(
            14,
            json!({"role": "executor", "agent_card": {
            "skills": [], "capabilities": {}, "defaultInputModes": [], "defaultOutputModes": []}}),
        ),
        node(
            15,
            json!({"role": "scout", "level": 3, "tags": ["fast", ["nested"]], "agent_card": {
            "skills": [{"id": "web-search", "tags": ["search", "web", "fast"]}, {"id": "scrape", "tags": ["web"]},
                       {"id": "summarize", "tags": []}],
            "capabilities": {"streaming": true}, "provider": {"organization": "Acme"},
            "defaultInputModes": ["text/plain", "application/json"], "defaultOutputModes": ["application/json"]}}),
        ),
        node(
            16,
            json!({"role": "planner", "level": 7, "agent_card": {
            "skills": [{"id": "translate", "tags": ["lang"]}],
            "provider": {"organization": "Initech"}, "capabilities": {"streaming": true}}}),
        ),
    ];
    nodes.push(NodeInfo::new("n07", "localhost", 80, Metadata::new()));
    nodes[9].public_key = Some("PK11".to_owned());
    nodes
}

const I: PlanKind = PlanKind::Index;
const S: PlanKind = PlanKind::Scan;

/// (expression, plan, matching node numbers).
const TABLE: &[(&str, PlanKind, &[u16])] = &[
    (r#"metadata.role == "planner""#, I, &[1, 2, 8, 10, 12, 16]),
    (
        r#"metadata.role != "planner""#,
        S,
        &[3, 4, 5, 6, 9, 11, 13, 14, 15],
    ),
    (r#"metadata.role == "executor""#, I, &[3, 4, 11, 14]),
    (r#"metadata.role in ["critic", "scout"]"#, I, &[5, 15]),
    (r#"metadata.role == null"#, I, &[6]),
    (
        r#"has(metadata.role)"#,
        I,
        &[1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    ),
    (r#"!has(metadata.role)"#, S, &[7]),
    (
        r#"has(metadata.agent_card)"#,
        I,
        &[2, 3, 4, 8, 9, 11, 12, 14, 15, 16],
    ),
    (r#"metadata.level == 5"#, I, &[2, 3]),
    (r#"metadata.level > 4"#, S, &[2, 3, 12, 16]),
    (
        r#"metadata.level >= 3 && metadata.level < 6"#,
        S,
        &[1, 2, 3, 15],
    ),
    (r#"metadata.level == 5.0"#, I, &[2, 3]),
    (r#"metadata.level == "5""#, I, &[4]),
    (r#"metadata.active == true"#, I, &[5]),
    (r#"metadata.active == false"#, I, &[6]),
    (r#"metadata.active"#, S, &[5]),
    (r#"!metadata.active"#, S, &[6]),
    (r#""fast" in metadata.tags"#, I, &[2, 10, 15]),
    (r#""slow" in metadata.tags"#, I, &[5]),
    (
        r#""web-search" in metadata.agent_card.skills.map(s, s.id)"#,
        I,
        &[2, 4, 12, 15],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "web-search")"#,
        I,
        &[2, 4, 8, 12, 15],
    ),
    (
        r#"metadata.role == "planner" && "web-search" in metadata.agent_card.skills.map(s, s.id)"#,
        I,
        &[2, 12],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, "nlp" in s.tags)"#,
        I,
        &[2, 3, 11],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.tags.exists(t, t == "web"))"#,
        I,
        &[2, 12, 15],
    ),
    (
        r#""search" in metadata.agent_card.skills.map(s, s.tags)"#,
        S,
        &[],
    ),
    (
        r#"metadata.agent_card.capabilities.streaming == true"#,
        I,
        &[2, 4, 11, 15, 16],
    ),
    (
        r#"metadata.agent_card.capabilities.streaming"#,
        S,
        &[2, 4, 11, 15, 16],
    ),
    (
        r#"metadata.agent_card.capabilities.pushNotifications == true"#,
        I,
        &[12],
    ),
    (
        r#"!metadata.agent_card.capabilities.streaming"#,
        S,
        &[3, 12],
    ),
    (
        r#"metadata.agent_card.provider.organization == "Acme""#,
        I,
        &[2, 15],
    ),
    (
        r#"metadata.agent_card.provider.organization.startsWith("Acme")"#,
        I,
        &[2, 3, 15],
    ),
    (
        r#"metadata.agent_card.provider.organization in ["Globex", "Initech"]"#,
        I,
        &[4, 11, 12, 16],
    ),
    (
        r#""text/plain" in metadata.agent_card.defaultInputModes"#,
        I,
        &[2, 4, 11, 12, 15],
    ),
    (
        r#""application/json" in metadata.agent_card.defaultOutputModes"#,
        I,
        &[2, 3, 12, 15],
    ),
    (
        r#""text/plain" in metadata.agent_card.defaultInputModes && "application/json" in metadata.agent_card.defaultOutputModes"#,
        I,
        &[2, 12, 15],
    ),
    (
        r#""image/png" in metadata.agent_card.defaultInputModes || metadata.agent_card.provider.organization == "Initech""#,
        I,
        &[4, 12, 16],
    ),
    (
        r#"metadata.role == "planner" || metadata.role == "executor""#,
        I,
        &[1, 2, 3, 4, 8, 10, 11, 12, 14, 16],
    ),
    (
        r#"metadata.role == "planner" || port == 80"#,
        S,
        &[1, 2, 7, 8, 10, 12, 16],
    ),
    (
        r#"metadata.role == "planner" && port > 9005"#,
        I,
        &[8, 10, 12, 16],
    ),
    (r#"node_id == "n05""#, I, &[5]),
    (r#"node_id in ["n01", "n03", "nx"]"#, I, &[1, 3]),
    (
        r#"node_id.startsWith("n1")"#,
        S,
        &[10, 11, 12, 13, 14, 15, 16],
    ),
    (r#"host == "localhost""#, S, &[7]),
    (
        r#"host.startsWith("10.0.0.")"#,
        S,
        &[1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    ),
    (r#"public_key == "PK11""#, S, &[11]),
    (
        r#"public_key == null"#,
        S,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16],
    ),
    (r#"metadata.name.contains("meg")"#, S, &[13]),
    (r#"metadata.bio.startsWith("planner")"#, I, &[1]),
    (r#"size(metadata.agent_card.skills) == 0"#, S, &[14]),
    (r#"size(metadata.agent_card.skills) >= 3"#, S, &[15]),
    (
        r#"metadata.agent_card.skills.all(s, has(s.id))"#,
        S,
        &[2, 3, 4, 11, 12, 14, 15, 16],
    ),
    (
        r#"metadata.agent_card.skills.exists_one(s, s.id == "summarize")"#,
        S,
        &[2, 11, 15],
    ),
    (
        r#"metadata.agent_card.skills.filter(s, "web" in s.tags).size() > 0"#,
        S,
        &[2, 12, 15],
    ),
    (r#"metadata["role"] == "critic""#, I, &[5]),
    (
        r#"metadata.role == "planner" && !("web-search" in metadata.agent_card.skills.map(s, s.id))"#,
        I,
        &[16],
    ),
    (r#"false"#, I, &[]),
    (
        r#"true"#,
        S,
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    ),
    (
        r#"metadata.level == 5 && metadata.role == "executor""#,
        I,
        &[3],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "translate" && "lang" in s.tags)"#,
        I,
        &[3, 16],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "summarize" || s.id == "code")"#,
        I,
        &[2, 4, 11, 15],
    ),
    (
        r#""fast" in metadata.agent_card.skills.map(s, s.id)"#,
        I,
        &[],
    ),
    (
        r#"metadata.agent_card.skills.map(s, s.id).exists(i, i.startsWith("web"))"#,
        S,
        &[2, 4, 12, 15],
    ),
    (r#"metadata.tags.exists(t, t == "cheap")"#, I, &[2]),
    (
        r#"metadata.level == 3 || metadata.level == 10"#,
        I,
        &[1, 12, 15],
    ),
    (
        r#"has(metadata.agent_card) && !has(metadata.agent_card.provider)"#,
        I,
        &[8, 14],
    ),
    (r#"metadata.agent_card.version == "1.0.0""#, S, &[2]),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "web-search") && metadata.agent_card.capabilities.streaming == true && metadata.agent_card.provider.organization == "Acme""#,
        I,
        &[2, 15],
    ),
    (
        r#"metadata.role.startsWith("plan")"#,
        I,
        &[1, 2, 8, 10, 12, 13, 16],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id.startsWith("sum"))"#,
        I,
        &[2, 11, 15],
    ),
    (
        r#"metadata.role == "planner" && (metadata.level > 5 || "cheap" in metadata.tags)"#,
        I,
        &[2, 12, 16],
    ),
    (
        r#"metadata.agent_card.skills.map(s, 1).size() == 2 && metadata.role != "executor""#,
        S,
        &[2, 8, 12],
    ),
    (
        "metadata.role == 'planner' &&\n  metadata.level == 7",
        I,
        &[16],
    ),
    (
        r#"metadata.agent_card.skills.map(s, s).size() == 2"#,
        S,
        &[2, 4, 8, 12],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s == {"id": "web-search"})"#,
        S,
        &[8],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "web-search" && size(s.tags) == 1)"#,
        I,
        &[4, 12],
    ),
    (
        r#"metadata.agent_card.skills.exists(s, s.id == "plan") && metadata.agent_card.skills.exists(s, size(s) == 2)"#,
        I,
        &[12],
    ),
];

fn ids(nodes: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = nodes.into_iter().collect();
    ids.sort();
    ids
}

#[test]
fn the_table_has_at_least_sixty_expressions() {
    assert!(TABLE.len() >= 60, "{} expressions", TABLE.len());
}

#[test]
fn index_and_scan_agree_with_the_expected_nodes() {
    let nodes = membership();
    let mut index = Index::new();
    for n in &nodes {
        assert_eq!(index.put(n.clone()), Ok(None));
    }
    let mut failures = Vec::new();
    for (source, plan, expected) in TABLE {
        let filter = match Filter::compile(source) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{source}: does not compile: {e}"));
                continue;
            }
        };
        let expected = ids(expected.iter().map(|n| format!("n{n:02}")));
        let scanned = ids(nodes
            .iter()
            .filter(|n| filter.matches(n))
            .map(|n| n.node_id.clone()));
        let selection = index.select(&filter);
        let indexed = ids(selection.nodes.iter().map(|n| n.node_id.clone()));
        let selected = ids(filter.select(&nodes).into_iter().map(|n| n.node_id.clone()));
        if selected != scanned {
            failures.push(format!(
                "{source}: Filter::select gave {selected:?}, a scan {scanned:?}"
            ));
        }
        if scanned != expected {
            failures.push(format!(
                "{source}: scan gave {scanned:?}, expected {expected:?}"
            ));
        }
        if indexed != expected {
            failures.push(format!(
                "{source}: index gave {indexed:?}, expected {expected:?}"
            ));
        }
        if filter.plan().kind() != *plan || selection.plan != *plan {
            failures.push(format!("{source}: plan {}, expected {plan}", filter.plan()));
        }
        if selection.plan == PlanKind::Scan && selection.candidates != nodes.len() as u64 {
            failures.push(format!(
                "{source}: a scan evaluated {} nodes",
                selection.candidates
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn an_index_plan_evaluates_only_its_candidates() {
    let nodes = membership();
    let mut index = Index::new();
    for n in &nodes {
        assert_eq!(index.put(n.clone()), Ok(None));
    }
    let filter = Filter::compile(r#"metadata.agent_card.provider.organization == "Acme""#);
    let Ok(filter) = filter else {
        unreachable!("compiles")
    };
    let selection = index.select(&filter);
    assert_eq!(selection.plan, PlanKind::Index);
    assert_eq!(selection.candidates, 2);
}

#[test]
fn an_update_moves_a_node_between_posting_lists_and_a_removal_drops_it() {
    let mut index = Index::new();
    for n in membership() {
        assert_eq!(index.put(n), Ok(None));
    }
    let Ok(planners) = Filter::compile(r#"metadata.role == "planner""#) else {
        unreachable!()
    };
    let Ok(critics) = Filter::compile(r#"metadata.role == "critic""#) else {
        unreachable!()
    };
    let count = |index: &Index, f: &Filter| index.select(f).nodes.len();
    assert_eq!((count(&index, &planners), count(&index, &critics)), (6, 1));
    let Some(mut one) = index.get("n01").cloned() else {
        unreachable!()
    };
    one.metadata.insert("role".into(), json!("critic"));
    let previous = index.put(one);
    assert!(matches!(previous, Ok(Some(p)) if p.metadata["role"] == "planner"));
    assert_eq!((count(&index, &planners), count(&index, &critics)), (5, 2));
    assert!(index.remove("n05").is_some());
    assert!(index.remove("n05").is_none());
    assert_eq!((count(&index, &planners), count(&index, &critics)), (5, 1));
    assert_eq!(index.len(), 15);
}
