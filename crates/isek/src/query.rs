//! [`Query`] and [`Page`]: a filtered, paged listing of nodes, the typed form of a
//! center's `GET /v1/nodes?filter=&limit=&cursor=`.
//!
//! Why here: every backend answers the same question with the same evaluator. A center
//! of ours answers it from its indexes; etcd, the in-memory registry and the original
//! Python center (which has no filter) are answered by [`evaluate`]: the full listing,
//! narrowed by the same [`Filter::matches`] a center runs, sorted by id and cut into
//! pages. Those local pages are keyed by the last node id (`after:<id>`), not pinned to
//! a revision: a node registered between two pages appears if it sorts after the
//! cursor. A cursor the answering side does not know is [`crate::Error::NotFound`]:
//! start over without it.

use std::collections::BTreeMap;

use crate::{Error, Filter, NodeInfo, Result};

/// Prefix of the cursors of locally evaluated pages.
const LOCAL_CURSOR: &str = "after:";

/// What to list: the nodes a filter matches, a page at a time.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only the nodes this filter matches (all when `None`).
    pub filter: Option<Filter>,
    /// Most nodes in one page; `None`: a center's default page size (its
    /// `--max-page`), every match when evaluated locally.
    pub limit: Option<usize>,
    /// The `cursor` of the previous page, to get the next one.
    pub cursor: Option<String>,
}

impl Query {
    /// Every node `filter` matches, from the first page.
    pub fn filter(filter: Filter) -> Self {
        Self {
            filter: Some(filter),
            ..Self::default()
        }
    }

    /// This query with at most `limit` nodes a page.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The query for the page after `page` (`None` after the last page).
    pub fn next(&self, page: &Page) -> Option<Query> {
        page.cursor.as_ref().map(|cursor| Query {
            cursor: Some(cursor.clone()),
            ..self.clone()
        })
    }
}

/// One page of a [`Query`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The matching nodes of this page, sorted by id.
    pub nodes: Vec<NodeInfo>,
    /// The cursor of the next page; `None` on the last one.
    pub cursor: Option<String>,
    /// How a center found them (`index` or `scan`); `None` when evaluated locally or
    /// when the center did not say (an unfiltered, unpaged listing).
    pub plan: Option<String>,
    /// The revision all pages of a center's query show; `None` when evaluated locally.
    pub revision: Option<u64>,
    /// Whether this client evaluated the filter (etcd, memory, the original center).
    pub local: bool,
}

/// Answers `query` from `nodes`, a full listing: the evaluation every backend without a
/// server-side filter uses (the default [`crate::Registry::query`]).
pub fn evaluate(nodes: BTreeMap<String, NodeInfo>, query: &Query) -> Result<Page> {
    if query.limit == Some(0) {
        return Err(Error::InvalidArgument(
            "a query's limit must be at least 1".into(),
        ));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(cursor.strip_prefix(LOCAL_CURSOR).ok_or_else(|| {
            Error::NotFound(format!(
                "cursor '{cursor}' is unknown here; start the query over without it"
            ))
        })?),
    };
    let candidates = nodes
        .into_values()
        .filter(|node| after.is_none_or(|after| node.node_id.as_str() > after));
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut matching: Vec<NodeInfo> = Vec::new();
    let mut more = false;
    let check = |node: &NodeInfo| query.filter.as_ref().is_none_or(|f| f.matches(node));
    for node in candidates {
        if !check(&node) {
            continue;
        }
        if matching.len() == limit {
            more = true;
            break;
        }
        matching.push(node);
    }
    let cursor = match (more, matching.last()) {
        (true, Some(last)) => Some(format!("{LOCAL_CURSOR}{}", last.node_id)),
        _ => None,
    };
    Ok(Page {
        nodes: matching,
        cursor,
        plan: None,
        revision: None,
        local: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(ports: &[u16]) -> BTreeMap<String, NodeInfo> {
        ports
            .iter()
            .map(|p| {
                let id = format!("n{p:02}");
                (
                    id.clone(),
                    NodeInfo::new(id, "127.0.0.1", *p, crate::Metadata::new()),
                )
            })
            .collect()
    }

    #[test]
    fn pages_walk_every_match_once_in_id_order() {
        let Ok(filter) = Filter::compile("port % 2 == 0") else {
            panic!("filter compiles");
        };
        let query = Query::filter(filter).limit(2);
        let nodes = listing(&[1, 2, 3, 4, 5, 6, 7, 8, 10]);
        let mut seen = Vec::new();
        let mut next = Some(query.clone());
        while let Some(q) = next {
            let page = evaluate(nodes.clone(), &q).unwrap_or_else(|e| panic!("{e}"));
            assert!(page.local && page.nodes.len() <= 2);
            seen.extend(page.nodes.iter().map(|n| n.port));
            next = q.next(&page);
        }
        assert_eq!(seen, [2, 4, 6, 8, 10]);
    }

    #[test]
    fn foreign_cursors_and_zero_limits_are_refused() {
        let query = Query {
            cursor: Some("c2VydmVyCg".into()),
            ..Query::default()
        };
        assert!(matches!(
            evaluate(listing(&[1]), &query),
            Err(Error::NotFound(_))
        ));
        let zero = Query::default().limit(0);
        assert!(matches!(
            evaluate(listing(&[1]), &zero),
            Err(Error::InvalidArgument(_))
        ));
    }
}
