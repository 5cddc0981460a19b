//! A node's metadata as a CEL value: only the parts the filter reads
//! (its projection), converted within the input limits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::Value;
use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::objects::{Key, Map};

use super::{EvalError, Limits, children};
use crate::node::Metadata;

/// Which parts of `metadata` a filter reads: everything below a path it names
/// (`metadata.a.b`, `has(metadata.a.b)`, `metadata["a"]`), and nothing else.
/// Converting only those keeps the cost of a node independent of the size of
/// the metadata the filter ignores, with the same answers.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Projection {
    /// The whole value.
    All,
    /// Only these keys of an object (a non-object is taken whole).
    Fields(BTreeMap<String, Projection>),
}

impl Projection {
    /// The projection of `metadata` that `expr` reads.
    pub(super) fn of(expr: &IdedExpr) -> Projection {
        let mut projection = Projection::Fields(BTreeMap::new());
        collect(expr, &mut Vec::new(), &mut projection);
        projection
    }

    fn mark(&mut self, path: &[String]) {
        let Projection::Fields(fields) = self else {
            return;
        };
        match path.split_first() {
            None => *self = Projection::All,
            Some((first, rest)) => {
                let child = fields
                    .entry(first.clone())
                    .or_insert_with(|| Projection::Fields(BTreeMap::new()));
                child.mark(rest);
            }
        }
    }
}

/// The path below `metadata` that `expr` names, if it is a chain of field
/// selections or constant string indexes on the free variable `metadata`.
pub(super) fn metadata_path(expr: &IdedExpr, bound: &[String]) -> Option<Vec<String>> {
    match &expr.expr {
        Expr::Ident(name) if name == "metadata" && !bound.iter().any(|b| b == name) => {
            Some(Vec::new())
        }
        Expr::Select(select) => {
            let mut path = metadata_path(&select.operand, bound)?;
            path.push(select.field.clone());
            Some(path)
        }
        Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
            let Expr::Literal(LiteralValue::String(key)) = &call.args[1].expr else {
                return None;
            };
            let mut path = metadata_path(&call.args[0], bound)?;
            path.push(key.inner().to_owned());
            Some(path)
        }
        _ => None,
    }
}

fn collect(expr: &IdedExpr, bound: &mut Vec<String>, projection: &mut Projection) {
    if let Some(path) = metadata_path(expr, bound) {
        projection.mark(&path);
        return;
    }
    if let Expr::Comprehension(c) = &expr.expr {
        collect(&c.iter_range, bound, projection);
        collect(&c.accu_init, bound, projection);
        let before = bound.len();
        bound.push(c.iter_var.clone());
        if let Some(v2) = &c.iter_var2 {
            bound.push(v2.clone());
        }
        bound.push(c.accu_var.clone());
        collect(&c.loop_cond, bound, projection);
        collect(&c.loop_step, bound, projection);
        collect(&c.result, bound, projection);
        bound.truncate(before);
        return;
    }
    for child in children(expr) {
        collect(child, bound, projection);
    }
}

/// `metadata` as the CEL map the filter reads, or why it is over the limits.
pub(super) fn convert_metadata(
    metadata: &Metadata,
    projection: &Projection,
    limits: &Limits,
) -> Result<Value, EvalError> {
    let mut budget = Budget {
        limits,
        values: 0,
        path: Vec::new(),
    };
    budget.object(metadata, projection, 0)
}

struct Budget<'a> {
    limits: &'a Limits,
    values: usize,
    path: Vec<String>,
}

impl Budget<'_> {
    fn too_large(&self, problem: String) -> EvalError {
        let mut path = String::from("metadata");
        for p in &self.path {
            path.push('.');
            path.push_str(p);
        }
        EvalError::InputTooLarge { path, problem }
    }

    fn count(&mut self, depth: usize) -> Result<(), EvalError> {
        self.values += 1;
        if self.values > self.limits.max_input_values {
            return Err(
                self.too_large(format!("more than {} values", self.limits.max_input_values))
            );
        }
        if depth > self.limits.max_input_depth {
            return Err(self.too_large(format!(
                "nested deeper than {}",
                self.limits.max_input_depth
            )));
        }
        Ok(())
    }

    fn object(
        &mut self,
        object: &serde_json::Map<String, serde_json::Value>,
        projection: &Projection,
        depth: usize,
    ) -> Result<Value, EvalError> {
        self.count(depth)?;
        let mut map = HashMap::new();
        match projection {
            Projection::All => {
                for (k, v) in object {
                    self.path.push(k.clone());
                    let value = self.value(v, &Projection::All, depth + 1)?;
                    self.path.pop();
                    map.insert(Key::String(Arc::new(k.clone())), value);
                }
            }
            Projection::Fields(fields) => {
                for (k, p) in fields {
                    if let Some(v) = object.get(k) {
                        self.path.push(k.clone());
                        let value = self.value(v, p, depth + 1)?;
                        self.path.pop();
                        map.insert(Key::String(Arc::new(k.clone())), value);
                    }
                }
            }
        }
        Ok(Value::Map(Map { map: Arc::new(map) }))
    }

    fn value(
        &mut self,
        value: &serde_json::Value,
        projection: &Projection,
        depth: usize,
    ) -> Result<Value, EvalError> {
        Ok(match value {
            serde_json::Value::Object(object) => return self.object(object, projection, depth),
            serde_json::Value::Array(items) => {
                self.count(depth)?;
                if items.len() > self.limits.max_list_items {
                    return Err(self.too_large(format!(
                        "a list of {} items, at most {}",
                        items.len(),
                        self.limits.max_list_items
                    )));
                }
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    list.push(self.value(item, &Projection::All, depth + 1)?);
                }
                Value::List(Arc::new(list))
            }
            scalar => {
                self.count(depth)?;
                scalar_value(scalar)
            }
        })
    }
}

/// A JSON scalar as CEL sees it: integers as `int` (or `uint` past `i64`),
/// other numbers as `double`.
fn scalar_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Value::Null,
    }
}
