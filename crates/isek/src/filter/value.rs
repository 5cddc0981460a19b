//! A node's metadata as a CEL value: only the parts the filter reads
//! (its projection), converted within the input limits.

use std::collections::{BTreeMap, HashMap};

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;

use super::{EvalError, Limits, children};
use crate::node::Metadata;

/// Which parts of `metadata` a filter reads: everything below a path it names
/// (`metadata.a.b`, `has(metadata.a.b)`, `metadata["a"]`), and through a macro
/// over a named list only the element paths its variable names
/// (`metadata.a.skills.map(s, s.id)` reads each skill's `id`). Converting only
/// those keeps the cost of a node independent of the metadata the filter
/// ignores, with the same answers: what is left out is never accessed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Projection {
    /// The whole value.
    All,
    /// Only these keys of an object (any other value is taken whole).
    Fields(BTreeMap<String, Projection>),
    /// Every element of a list, each projected so (any other value is taken whole).
    Items(Box<Projection>),
}

/// One step of a path below `metadata`.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Each,
}

impl Projection {
    /// The projection of `metadata` that `expr` reads.
    pub(super) fn of(expr: &IdedExpr) -> Projection {
        let mut projection = Projection::empty();
        collect(expr, &mut Vec::new(), &mut projection);
        projection
    }

    fn empty() -> Projection {
        Projection::Fields(BTreeMap::new())
    }

    /// Reads the whole value at `path` (`whole`), or only makes sure the path
    /// is kept (its leaf at least an empty projection).
    fn mark(&mut self, path: &[Step], whole: bool) {
        let Some((first, rest)) = path.split_first() else {
            if whole {
                *self = Projection::All;
            }
            return;
        };
        match (first, &mut *self) {
            (_, Projection::All) => {}
            (Step::Field(name), Projection::Fields(fields)) => fields
                .entry(name.clone())
                .or_insert_with(Projection::empty)
                .mark(rest, whole),
            (Step::Each, Projection::Items(items)) => items.mark(rest, whole),
            (Step::Each, Projection::Fields(fields)) if fields.is_empty() => {
                let mut items = Projection::empty();
                items.mark(rest, whole);
                *self = Projection::Items(Box::new(items));
            }
            // Read both as an object and as a list: take it whole.
            (Step::Field(_), Projection::Items(_)) | (Step::Each, Projection::Fields(_)) => {
                *self = Projection::All;
            }
        }
    }
}

/// A variable bound by a macro, and the metadata path its values come from.
type Binding = (String, Option<Vec<Step>>);

/// The path below `metadata` that `expr` names, if it is a chain of field
/// selections or constant string indexes on the free variable `metadata` or on
/// a macro variable bound to a metadata path.
fn metadata_path(expr: &IdedExpr, bound: &[Binding]) -> Option<Vec<Step>> {
    match &expr.expr {
        Expr::Ident(name) => match bound.iter().rev().find(|(b, _)| b == name) {
            Some((_, path)) => path.clone(),
            None if name == "metadata" => Some(Vec::new()),
            None => None,
        },
        Expr::Select(select) => {
            let mut path = metadata_path(&select.operand, bound)?;
            path.push(Step::Field(select.field.clone()));
            Some(path)
        }
        Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
            let Expr::Literal(LiteralValue::String(key)) = &call.args[1].expr else {
                return None;
            };
            let mut path = metadata_path(&call.args[0], bound)?;
            path.push(Step::Field(key.inner().to_owned()));
            Some(path)
        }
        _ => None,
    }
}

fn collect(expr: &IdedExpr, bound: &mut Vec<Binding>, projection: &mut Projection) {
    if let Some(path) = metadata_path(expr, bound) {
        projection.mark(&path, true);
        return;
    }
    if let Expr::Comprehension(c) = &expr.expr {
        // Over a metadata list with one variable: the variable stands for its
        // elements, and the list is kept (its length, its elements' presence).
        let element = match (&c.iter_var2, metadata_path(&c.iter_range, bound)) {
            (None, Some(mut range)) => {
                range.push(Step::Each);
                projection.mark(&range, false);
                Some(range)
            }
            _ => {
                collect(&c.iter_range, bound, projection);
                None
            }
        };
        collect(&c.accu_init, bound, projection);
        let before = bound.len();
        bound.push((c.iter_var.clone(), element));
        if let Some(v2) = &c.iter_var2 {
            bound.push((v2.clone(), None));
        }
        bound.push((c.accu_var.clone(), None));
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

/// `metadata` as the CEL map the filter reads, borrowing the node's strings,
/// or why it is over the limits.
pub(super) fn convert_metadata<'v>(
    metadata: &'v Metadata,
    projection: &Projection,
    limits: &Limits,
) -> Result<Box<dyn Val + 'v>, EvalError> {
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
    path: Vec<&'a str>,
}

impl<'a> Budget<'a> {
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

    fn object<'v: 'a>(
        &mut self,
        object: &'v serde_json::Map<String, serde_json::Value>,
        projection: &Projection,
        depth: usize,
    ) -> Result<Box<dyn Val + 'v>, EvalError> {
        self.count(depth)?;
        let mut map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::new();
        match projection {
            Projection::All | Projection::Items(_) => {
                for (k, v) in object {
                    self.path.push(k);
                    let value = self.value(v, &Projection::All, depth + 1)?;
                    self.path.pop();
                    map.insert(CelMapKey::from(k.as_str()), value);
                }
            }
            Projection::Fields(fields) => {
                for (k, p) in fields {
                    if let Some((k, v)) = object.get_key_value(k) {
                        self.path.push(k);
                        let value = self.value(v, p, depth + 1)?;
                        self.path.pop();
                        map.insert(CelMapKey::from(k.as_str()), value);
                    }
                }
            }
        }
        Ok(Box::new(CelMap::from(map)))
    }

    fn value<'v: 'a>(
        &mut self,
        value: &'v serde_json::Value,
        projection: &Projection,
        depth: usize,
    ) -> Result<Box<dyn Val + 'v>, EvalError> {
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
                let each = match projection {
                    Projection::Items(each) => each,
                    Projection::All | Projection::Fields(_) => &Projection::All,
                };
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    list.push(self.value(item, each, depth + 1)?);
                }
                Box::new(CelList::from(list))
            }
            serde_json::Value::Null => {
                self.count(depth)?;
                Box::new(CelNull)
            }
            serde_json::Value::Bool(b) => {
                self.count(depth)?;
                Box::new(CelBool::from(*b))
            }
            serde_json::Value::Number(n) => {
                self.count(depth)?;
                number(n)
            }
            serde_json::Value::String(s) => {
                self.count(depth)?;
                Box::new(CelString::from(s.as_str()))
            }
        })
    }
}

/// A JSON number as CEL sees it: an integer as `int` (or `uint` past `i64`),
/// any other number as `double`.
fn number<'v>(n: &serde_json::Number) -> Box<dyn Val + 'v> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}
