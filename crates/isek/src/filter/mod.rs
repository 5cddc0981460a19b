//! One filter language for nodes: CEL (the Common Expression Language of
//! Kubernetes and Envoy) over a node's fields and metadata, through the `cel`
//! crate.
//!
//! A [`Filter`] is compiled once and evaluated per node. Its variables are
//! `node_id`, `host`, `port`, `public_key` (a string, or `null` for an unsigned
//! node) and `metadata` (the node's metadata object, agent card included):
//!
//! ```
//! use isek::filter::Filter;
//! let filter = Filter::compile(
//!     r#"metadata.role == "planner" && "web-search" in metadata.agent_card.skills.map(s, s.id)"#,
//! ).unwrap();
//! assert_eq!(filter.plan().kind().as_str(), "index");
//! ```
//!
//! **Bounded.** Compiling refuses what could make an evaluation expensive
//! ([`Limits`]): a long source, too many operators, deep nesting, macros
//! (`map`, `exists`, ...) nested in one another more than twice, and a static
//! cost estimate above [`Limits::max_cost`]. Evaluation refuses inputs larger
//! than the estimate assumes (a list longer than [`Limits::max_list_items`],
//! deeper than [`Limits::max_input_depth`], more than
//! [`Limits::max_input_values`] values): such a node does not match, with an
//! [`EvalError`]. So one node costs at most about `max_cost` interpreter steps
//! plus converting at most `max_input_values` JSON values, whatever the
//! expression. The estimate assumes every list has `max_list_items` items, so
//! a typical filter is estimated at a few thousand steps and costs far fewer.
//!
//! **Semantics.** CEL's: a missing field is an error, and an error is not a
//! match (`!(metadata.x == 1)` does not match a node without `x`; test with
//! `has(metadata.x)`). `&&` and `||` absorb errors as CEL specifies.
//!
//! [`plan`] extracts the index-servable part of a filter; [`crate::index::Index`]
//! answers it from posting lists and evaluates only the candidates.

pub mod plan;
mod syntax;
mod value;

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::{Expr, IdedExpr};
use cel::common::types::{CelInt, CelNull, CelString};
use cel::common::value::Val;
use cel::{Context, Env, Value};

use crate::node::NodeInfo;

pub use plan::{Plan, PlanKind};

/// The variables a filter may use, besides those its macros bind.
pub const VARIABLES: [&str; 5] = ["node_id", "host", "port", "public_key", "metadata"];

/// What bounds a filter's cost. Every limit has a default; a center exposes them
/// as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest source accepted, in bytes.
    pub max_source_bytes: usize,
    /// Most operators (`.`, `==`, `&&`, `(`, `,`, ...) in one expression; keeps
    /// the parser's and the evaluator's recursion shallow.
    pub max_operators: usize,
    /// Deepest nesting of parentheses, brackets and braces (outside string
    /// literals), checked before parsing; the CEL parser's own recursion limit
    /// is set to twice this as a backstop.
    pub max_depth: u16,
    /// Most macros (`map`, `filter`, `exists`, `all`, `exists_one`) nested in
    /// one another.
    pub max_macro_nesting: usize,
    /// Highest static cost estimate accepted, in interpreter steps per node:
    /// every expression node counts one, times [`Limits::max_list_items`] per
    /// enclosing macro; `in` over a computed list counts a whole list.
    pub max_cost: u64,
    /// Longest list a filter sees in a node's input (longer: no match).
    pub max_list_items: usize,
    /// Deepest JSON nesting a filter sees in a node's input (deeper: no match).
    pub max_input_depth: usize,
    /// Most JSON values converted for one node (more: no match).
    pub max_input_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_source_bytes: 2048,
            max_operators: 256,
            max_depth: 48,
            max_macro_nesting: 2,
            max_cost: 1_000_000,
            max_list_items: 256,
            max_input_depth: 16,
            max_input_values: 8192,
        }
    }
}

/// Why a filter was refused. Every variant that concerns one place in the
/// source names its line and column (both from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The source is not a CEL expression.
    #[error("filter {line}:{column}: {problem}")]
    Syntax {
        /// Line of the problem, from 1.
        line: u32,
        /// Column of the problem, from 1.
        column: u32,
        /// What is wrong there.
        problem: String,
    },
    /// The expression names a variable that does not exist.
    #[error(
        "filter {line}:{column}: unknown name '{name}' (a filter can use node_id, host, port, public_key, metadata)"
    )]
    UnknownName {
        /// Line of the name, from 1.
        line: u32,
        /// Column of the name, from 1.
        column: u32,
        /// The name.
        name: String,
    },
    /// The source is longer than [`Limits::max_source_bytes`].
    #[error("filter too long: {bytes} bytes, at most {max}")]
    TooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The expression has more operators than [`Limits::max_operators`].
    #[error("filter {line}:{column}: too many operators (at most {max})")]
    TooManyOperators {
        /// Line of the first operator over the limit.
        line: u32,
        /// Its column.
        column: u32,
        /// The limit.
        max: usize,
    },
    /// The expression nests deeper than [`Limits::max_depth`].
    #[error("filter {line}:{column}: nested too deeply (depth limit {max})")]
    TooDeep {
        /// Line where the limit was passed.
        line: u32,
        /// Its column.
        column: u32,
        /// The limit.
        max: u16,
    },
    /// Macros nest deeper than [`Limits::max_macro_nesting`].
    #[error("filter {line}:{column}: macros nested too deeply (at most {max})")]
    MacroNesting {
        /// Line of the innermost macro over the limit.
        line: u32,
        /// Its column.
        column: u32,
        /// The limit.
        max: usize,
    },
    /// The static cost estimate is above [`Limits::max_cost`].
    #[error("filter too costly: estimated {cost} steps per node, at most {max}")]
    TooCostly {
        /// The estimate.
        cost: u64,
        /// The limit.
        max: u64,
    },
}

impl FilterError {
    /// Line and column of the problem, when it concerns one place in the source.
    pub fn position(&self) -> Option<(u32, u32)> {
        match self {
            FilterError::Syntax { line, column, .. }
            | FilterError::UnknownName { line, column, .. }
            | FilterError::TooManyOperators { line, column, .. }
            | FilterError::TooDeep { line, column, .. }
            | FilterError::MacroNesting { line, column, .. } => Some((*line, *column)),
            FilterError::TooLong { .. } | FilterError::TooCostly { .. } => None,
        }
    }
}

/// Why one node's evaluation gave no answer; such a node does not match.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The node's input is larger than the filter's bound allows.
    #[error("input too large at {path}: {problem}")]
    InputTooLarge {
        /// Where in `metadata`.
        path: String,
        /// Which limit.
        problem: String,
    },
    /// CEL evaluation failed (missing field, wrong type, ...).
    #[error("{0}")]
    Cel(String),
    /// The expression gave something other than a bool.
    #[error("filter gave a {0}, not a bool")]
    NotBool(String),
}

/// A compiled filter: parse and checks once, then [`Filter::matches`] per node.
#[derive(Clone)]
pub struct Filter {
    source: Arc<str>,
    expr: Arc<IdedExpr>,
    env: Arc<Env>,
    variables: BTreeSet<&'static str>,
    projection: value::Projection,
    plan: Plan,
    cost: u64,
    limits: Limits,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .field("plan", &self.plan)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Filter {
    /// Compiles `source` with the default [`Limits`].
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        Filter::compile_with(source, Limits::default())
    }

    /// Compiles `source`, refusing it when it exceeds `limits`.
    pub fn compile_with(source: &str, limits: Limits) -> Result<Filter, FilterError> {
        // The CEL parser (ANTLR) recurses deeply per nesting level, far more in
        // debug builds: parse on a stack of its own, whatever thread calls.
        let checked = stacker::grow(PARSE_STACK, || syntax::check(source, &limits))?;
        let variables = checked.variables;
        let projection = value::Projection::of(&checked.expr);
        let plan = Plan::of(&checked.expr);
        Ok(Filter {
            source: source.into(),
            expr: Arc::new(checked.expr),
            env: shared_env(),
            variables,
            projection,
            plan,
            cost: checked.cost,
            limits,
        })
    }

    /// The source this filter was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How an index answers this filter: from posting lists, or by a scan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The static cost estimate, in interpreter steps per node.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// Whether `node` matches: the expression evaluates to `true`. An
    /// evaluation error is no match.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        matches!(self.evaluate(node), Ok(true))
    }

    /// The nodes of `nodes` that match, by evaluating each: what a backend
    /// without an index (etcd, the original center, a listing held by a client)
    /// answers with, the same evaluator as [`crate::index::Index::select`].
    /// Cheaper than calling [`Filter::matches`] in a loop: the stack check is
    /// made once.
    pub fn select<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeInfo>) -> Vec<&'a NodeInfo> {
        with_eval_stack(|| nodes.into_iter().filter(|n| self.matches(n)).collect())
    }

    /// Evaluates the expression for `node`, saying why when it gives no bool.
    pub fn evaluate(&self, node: &NodeInfo) -> Result<bool, EvalError> {
        with_eval_stack(|| self.evaluate_here(node))
    }

    fn evaluate_here(&self, node: &NodeInfo) -> Result<bool, EvalError> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        for name in &self.variables {
            let value: Box<dyn Val + '_> = match *name {
                "node_id" => Box::new(CelString::from(node.node_id.as_str())),
                "host" => Box::new(CelString::from(node.host.as_str())),
                "port" => Box::new(CelInt::from(i64::from(node.port))),
                "public_key" => match &node.public_key {
                    Some(key) => Box::new(CelString::from(key.as_str())),
                    None => Box::new(CelNull),
                },
                "metadata" => {
                    value::convert_metadata(&node.metadata, &self.projection, &self.limits)?
                }
                _ => continue,
            };
            ctx.add_variable_as_val(*name, value);
        }
        match Value::resolve(&self.expr, &ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBool(other.type_of().to_string())),
            Err(e) => Err(EvalError::Cel(e.to_string())),
        }
    }
}

/// The stack the CEL parser gets (reserved address space; only what it
/// touches is committed).
const PARSE_STACK: usize = 256 << 20;

/// The stack an evaluation may need: the evaluator recurses once per level of
/// the expression, which [`Limits::max_operators`] and [`Limits::max_depth`]
/// bound. Measured for the deepest expression the default limits allow (a
/// chain of 255 `+`): about 10 MiB in a debug build, under 2 MiB in release.
const EVAL_RED_ZONE: usize = if cfg!(debug_assertions) {
    16 << 20
} else {
    2 << 20
};

/// The stack allocated when less than [`EVAL_RED_ZONE`] remains.
const EVAL_STACK: usize = 2 * EVAL_RED_ZONE;

/// Runs `f` (evaluations) where at least [`EVAL_RED_ZONE`] of stack remains,
/// on a new stack segment when the current one is short. Cheap when it is not:
/// [`crate::index::Index::select`] calls it once around all its evaluations.
pub(crate) fn with_eval_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(EVAL_RED_ZONE, EVAL_STACK, f)
}

/// The standard CEL environment (functions and macros), built once per process.
fn shared_env() -> Arc<Env> {
    static ENV: std::sync::OnceLock<Arc<Env>> = std::sync::OnceLock::new();
    Arc::clone(ENV.get_or_init(|| Arc::new(Env::stdlib())))
}

/// The children of an expression node, in source order.
pub(crate) fn children(expr: &IdedExpr) -> Vec<&IdedExpr> {
    match &expr.expr {
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| &**t)
            .chain(call.args.iter())
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .flat_map(|e| match &e.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter()
            .flat_map(|e| match &e.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Select(select) => vec![&select.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}
