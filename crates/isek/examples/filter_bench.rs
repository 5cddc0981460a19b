//! Filter benchmark: a membership of realistic A2A agent cards (3–10 skills
//! each, `isek_testkit::agents`), a query that matches 100 nodes answered
//! through the index, the same query by a full scan, a query no index serves,
//! and the process's RSS with and without the index.
//!
//! ```sh
//! cargo run --release -p isek --example filter_bench -- --nodes 1000000
//! cargo run --release -p isek --example filter_bench -- --nodes 1000000 --no-index
//! ```
//!
//! `--no-index` keeps the nodes in a `HashMap` by id (what a registry keeps
//! without indexes) and answers by scans only: compare its RSS line with the
//! indexed run's. Timings are medians of repeated queries within one run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use isek::filter::Filter;
use isek::{Index, NodeInfo};
use isek_testkit::agents::agent_node;

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let at = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(at).copied().unwrap_or_default()
}

fn compile(source: &str) -> Filter {
    match Filter::compile(source) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("filter_bench: {source}: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = value("--nodes", 1_000_000);
    let queries = value("--queries", 200);
    let scans = value("--scans", 3);
    let no_index = args.iter().any(|a| a == "--no-index");
    let rare_buckets = (n / 100).max(1);
    println!("filter_bench: {n} nodes, {queries} indexed queries, {scans} scans per scan query");
    let rss_start = rss_mib();

    let started = Instant::now();
    let rare = |q: u64| format!("rare-{}", (q * 7919) % rare_buckets);
    let indexed_query =
        |q: u64| format!("{:?} in metadata.agent_card.skills.map(s, s.id)", rare(q));
    let scan_query = |q: u64| {
        format!(
            "metadata.agent_card.skills.exists(s, s.description.startsWith(\"Does {} for\"))",
            rare(q)
        )
    };

    if no_index {
        let mut nodes: HashMap<String, NodeInfo> = HashMap::new();
        for i in 0..n {
            let node = agent_node(i, n);
            nodes.insert(node.node_id.clone(), node);
        }
        let rss = rss_mib();
        println!(
            "loaded in {:.1?}; RSS without index: {:.0} MiB ({:.0} MiB for the nodes)",
            started.elapsed(),
            rss,
            rss - rss_start
        );
        let filter = compile(&indexed_query(1));
        let mut samples = Vec::new();
        let mut matched = 0;
        for _ in 0..scans {
            let t = Instant::now();
            matched = filter.select(nodes.values()).len();
            samples.push(t.elapsed());
        }
        println!(
            "full scan (HashMap, no index) of the 100-match query: p50 {:.1?} ({} matches)",
            median(samples),
            matched
        );
        return;
    }

    let mut index = Index::new();
    for i in 0..n {
        if let Err(e) = index.put(agent_node(i, n)) {
            eprintln!("filter_bench: {e}");
            std::process::exit(1);
        }
    }
    let rss = rss_mib();
    println!(
        "indexed in {:.1?}; RSS with index: {:.0} MiB ({:.0} MiB for nodes and index, {} posting keys)",
        started.elapsed(),
        rss,
        rss - rss_start,
        index.posting_keys()
    );

    let mut samples = Vec::new();
    let mut compiles = Vec::new();
    let mut matches = 0usize;
    for q in 0..queries {
        let source = indexed_query(q);
        let t = Instant::now();
        let filter = compile(&source);
        compiles.push(t.elapsed());
        let t = Instant::now();
        let selection = index.select(&filter);
        samples.push(t.elapsed());
        matches += selection.nodes.len();
        if q == 0 {
            println!(
                "  {source}\n  plan: {} ({} candidates)",
                filter.plan(),
                selection.candidates
            );
        }
    }
    let p50 = median(samples.clone());
    println!(
        "indexed 100-match query (select): p50 {:.1?}, p99 {:.1?}, {:.1} matches on average; compile p50 {:.1?}",
        p50,
        percentile(samples, 0.99),
        matches as f64 / queries as f64,
        median(compiles)
    );

    let compound = compile(&format!(
        "metadata.role == \"planner\" && metadata.agent_card.skills.exists(s, s.id == {:?}) && metadata.agent_card.capabilities.streaming == true",
        rare(3)
    ));
    let t = Instant::now();
    let selection = index.select(&compound);
    println!(
        "compound indexed query: {:.1?}, {} candidates, {} matches, plan {}",
        t.elapsed(),
        selection.candidates,
        selection.nodes.len(),
        compound.plan()
    );

    let same = compile(&indexed_query(1));
    let mut scan_samples = Vec::new();
    let mut matched = 0;
    for _ in 0..scans {
        let t = Instant::now();
        matched = same.select(index.nodes()).len();
        scan_samples.push(t.elapsed());
    }
    let scan_p50 = median(scan_samples);
    println!(
        "full scan of the same 100-match query: p50 {:.1?} ({} matches); indexed is {:.0}x faster",
        scan_p50,
        matched,
        scan_p50.as_secs_f64() / p50.as_secs_f64().max(1e-9)
    );

    let unindexed = compile(&scan_query(2));
    let mut samples = Vec::new();
    let mut matched = 0;
    for _ in 0..scans {
        let t = Instant::now();
        let selection = index.select(&unindexed);
        matched = selection.nodes.len();
        samples.push(t.elapsed());
    }
    println!(
        "query no index serves (plan {}): p50 {:.1?} ({} matches)",
        unindexed.plan(),
        median(samples),
        matched
    );
}
