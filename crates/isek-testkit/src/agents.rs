//! Realistic A2A agent cards for tests and benchmarks, generated
//! deterministically from a node's number.
//!
//! Node `i` of a membership of `n` carries an A2A 0.3 or 1.0 card with 3 to 10
//! skills: common skills drawn from a vocabulary of 200, and one rare skill
//! `rare-{i % (n / 100)}` held by exactly 100 nodes (when `n` is a multiple
//! of 100), so that a query for one rare skill matches 100 nodes at any size.

use isek::{Metadata, NodeInfo};
use serde_json::{Value, json};

const TAGS: [&str; 24] = [
    "search",
    "web",
    "nlp",
    "planning",
    "code",
    "vision",
    "audio",
    "translation",
    "math",
    "data",
    "finance",
    "travel",
    "legal",
    "medical",
    "retail",
    "chat",
    "summarization",
    "scheduling",
    "email",
    "sql",
    "python",
    "images",
    "maps",
    "weather",
];
const ROLES: [&str; 5] = ["planner", "executor", "critic", "scout", "router"];
const MODES: [&str; 5] = [
    "text/plain",
    "application/json",
    "image/png",
    "audio/wav",
    "text/markdown",
];

/// A small deterministic generator (SplitMix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Node `i` of a membership of `n`, with ISEK metadata and an A2A card.
pub fn agent_node(i: u64, n: u64) -> NodeInfo {
    let mut mix = Mix(i);
    let rare_buckets = (n / 100).max(1);
    let skill_count = 3 + mix.below(8);
    let mut skills = Vec::new();
    for k in 0..skill_count {
        let id = if k == 0 {
            format!("rare-{}", i % rare_buckets)
        } else {
            format!("skill-{}", mix.below(200))
        };
        let tags: Vec<&str> = (0..1 + mix.below(3)).map(|_| mix.pick(&TAGS)).collect();
        skills.push(json!({
            "id": id,
            "name": format!("Skill {id}"),
            "description": format!("Does {id} for agent {i}, well and quickly."),
            "tags": tags,
            "examples": [format!("please {id} this"), "another example request"],
        }));
    }
    let org = format!("org-{}", mix.below(1000));
    let url = format!("https://agent-{i}.example/a2a");
    let mut card = json!({
        "name": format!("Agent {i}"),
        "description": format!("Agent number {i}: a realistic agent card for benchmarks."),
        "version": format!("1.{}.0", mix.below(10)),
        "provider": {"organization": org, "url": format!("https://{org}.example")},
        "capabilities": {"streaming": mix.below(2) == 0, "pushNotifications": mix.below(4) == 0},
        "defaultInputModes": [mix.pick(&MODES), "text/plain"],
        "defaultOutputModes": [mix.pick(&MODES)],
        "skills": skills,
    });
    if i.is_multiple_of(2) {
        card["url"] = json!(url);
        card["protocolVersion"] = json!("0.3.0");
        card["preferredTransport"] = json!("JSONRPC");
    } else {
        card["supportedInterfaces"] =
            json!([{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]);
    }
    let mut metadata = Metadata::new();
    metadata.insert("name".into(), json!(format!("Agent {i}")));
    metadata.insert("role".into(), json!(mix.pick(&ROLES)));
    metadata.insert("url".into(), json!(url));
    metadata.insert("agent_card".into(), card);
    NodeInfo::new(
        format!("agent-{i:07}"),
        format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        9000 + (i % 1000) as u16,
        metadata,
    )
}

/// The agent card of a node made by [`agent_node`].
pub fn card_of(node: &NodeInfo) -> Option<&Value> {
    node.metadata.get("agent_card")
}

/// The smallest metadata a test node needs: `{"role": role}`, a field filters and
/// watchers can tell nodes apart by.
pub fn card(role: &str) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.insert("role".into(), role.into());
    metadata
}
