//! The layering rule of `crates/isek-center/src`, checked on the source text.
//!
//! Every top-level module has a level (see [`LEVELS`] and ARCHITECTURE.md); a module
//! may name (`crate::x`) only modules of its own level or below, the modules must not
//! form a cycle, and the crates of the edges stay at the edges: HTTP crates (axum,
//! hyper, tower, rustls, ...) only in `http`, `rusqlite` only in `store`.
//!
//! Unit-test modules (`#[cfg(test)]` to the end of a file) and comments are not
//! checked: a test may build whatever it needs, and doc links are not imports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The level of every top-level module of the crate: level 0 is pure (values, rules,
/// rendering), 1 state and storage, 2 the workers, 3 the center, 4 HTTP.
const LEVELS: &[(&str, u8)] = &[
    ("body", 0),
    ("command", 0),
    ("config", 0),
    ("cursor", 0),
    ("encoding", 0),
    ("error", 0),
    ("lease", 0),
    ("metrics", 0),
    ("policy", 0),
    ("skeleton", 0),
    ("record", 0),
    ("render", 0),
    ("dirlock", 1),
    ("reserve", 1),
    ("feed", 1),
    ("snapshot", 1),
    ("state", 1),
    ("store", 1),
    ("follower", 2),
    ("holder", 2),
    ("reaper", 2),
    ("stream", 2),
    ("writer", 2),
    ("center", 3),
    ("admission", 4),
    ("http", 4),
    ("socket", 4),
];

/// External crates allowed only in some modules: (crate, the modules that may use it).
const EDGE_CRATES: &[(&str, &[&str])] = &[
    ("axum", &["http"]),
    ("hyper", &["http"]),
    ("hyper_util", &["http"]),
    ("http_body_util", &["http"]),
    ("form_urlencoded", &["http"]),
    ("tower", &["http"]),
    ("tokio_rustls", &["http"]),
    ("rustls", &["http"]),
    ("rustls_pki_types", &["http"]),
    ("rusqlite", &["store"]),
    ("etcd_client", &["store"]),
    ("reqwest", &["http"]),
    ("prometheus_client", &["metrics", "http"]),
    ("utoipa", &["http"]),
    ("rustix", &["admission", "http"]),
    ("unicode_security", &["skeleton"]),
    ("flate2", &["encoding"]),
];

/// The checked part of a source file: before its unit tests, without comments.
fn checked_text(source: &str) -> String {
    let code = source.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifier characters.
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The modules `text` names through `crate::`: `crate::x::...` and the members of
/// `use crate::{x, y::z}` groups.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue; // e.g. `isek_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// Whether `text` uses the external crate `name` (`name::` not preceded by an
/// identifier character or `::`).
fn uses_crate(text: &str, name: &str) -> bool {
    let pattern = format!("{name}::");
    text.match_indices(&pattern).any(|(at, _)| {
        let before = &text[..at];
        !(before.ends_with(is_ident) || before.ends_with("::"))
    })
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, text).
fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(&path, base, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(base)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((rel, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// The violations of the rule in the crate source under `src` (empty: it holds).
fn violations(src: &Path) -> Vec<String> {
    let levels: BTreeMap<&str, u8> = LEVELS.iter().copied().collect();
    let mut files = Vec::new();
    if let Err(e) = sources(src, src, &mut files) {
        return vec![format!("cannot read {}: {e}", src.display())];
    }
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, source) in &files {
        let first = rel.split(['/', '\\']).next().unwrap_or(rel);
        let module = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = checked_text(source);
        let Some(&level) = levels.get(module.as_str()) else {
            problems.push(format!(
                "{rel}: module `{module}` has no level (add it to LEVELS and ARCHITECTURE.md)"
            ));
            continue;
        };
        for name in crate_refs(&text) {
            if name == module {
                continue;
            }
            match levels.get(name.as_str()) {
                Some(&target) if target > level => problems.push(format!(
                    "{rel}: `{module}` (level {level}) imports `{name}` (level {target}): imports must point down"
                )),
                Some(_) => {
                    graph.entry(module.clone()).or_default().insert(name);
                }
                None => {} // a crate-root item such as `crate::Result`
            }
        }
        for (krate, allowed) in EDGE_CRATES {
            if !allowed.contains(&module.as_str()) && uses_crate(&text, krate) {
                problems.push(format!(
                    "{rel}: `{module}` uses `{krate}`, which belongs only in {allowed:?}"
                ));
            }
        }
    }
    problems.extend(cycles(&graph));
    problems
}

/// The import cycles of `graph` (depth-first search for back edges).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    /// Visits `node`, reporting a cycle for every edge back into `path`.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        found: &mut Vec<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|&p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            found.push(format!("import cycle: {}", cycle.join(" -> ")));
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, found);
        }
        path.pop();
        done.insert(node);
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn every_import_points_down_and_http_and_sqlite_stay_at_their_edges() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(
        problems.is_empty(),
        "the layering rule is broken:\n{}",
        problems.join("\n")
    );
}

/// Writes `files` into a fresh directory and returns the checker's findings.
fn check_tree(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (path, text) in files {
        let path = dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    }
    violations(dir.path())
}

#[test]
fn the_checker_finds_upward_imports_cycles_unknown_modules_and_misplaced_crates() {
    // A correct tree passes (unit tests and comments are not checked).
    let good = check_tree(&[
        ("lib.rs", "pub mod record; pub mod http;"),
        (
            "record.rs",
            "//! see crate::http\n#[cfg(test)]\nuse crate::http::x;",
        ),
        (
            "http/mod.rs",
            "use crate::{record, state::Core};\nuse axum::Router;",
        ),
        ("state.rs", "use crate::record::NodeRecord;"),
    ]);
    assert!(good.is_empty(), "{good:?}");

    let upward = check_tree(&[("record.rs", "use crate::center::Center;")]);
    assert!(
        upward.iter().any(|p| p.contains("imports `center`")),
        "{upward:?}"
    );

    let grouped = check_tree(&[("store.rs", "use crate::{record::Owner, writer::Plan};")]);
    assert!(
        grouped.iter().any(|p| p.contains("imports `writer`")),
        "{grouped:?}"
    );

    let cycle = check_tree(&[
        ("render.rs", "use crate::policy::Refusal;"),
        ("policy.rs", "fn f() { crate::render::frame(); }"),
    ]);
    assert!(
        cycle.iter().any(|p| p.starts_with("import cycle")),
        "{cycle:?}"
    );

    let unknown = check_tree(&[("utils.rs", "")]);
    assert!(
        unknown.iter().any(|p| p.contains("has no level")),
        "{unknown:?}"
    );

    let http_low = check_tree(&[("policy.rs", "use axum::http::StatusCode;")]);
    assert!(
        http_low.iter().any(|p| p.contains("uses `axum`")),
        "{http_low:?}"
    );
    let sql_high = check_tree(&[("writer/mod.rs", "fn f(c: rusqlite::Connection) {}")]);
    assert!(
        sql_high.iter().any(|p| p.contains("uses `rusqlite`")),
        "{sql_high:?}"
    );
}
