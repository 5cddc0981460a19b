//! Compiling a filter's source: size and shape limits before the CEL parser
//! runs (so that no input makes it recurse deeply), then checks of the parsed
//! expression (unknown names, macro nesting, static cost).

use std::collections::BTreeSet;

use cel::common::ast::{Expr, IdedExpr, SourceInfo};
use cel::parser::Parser;

use super::{FilterError, Limits, VARIABLES, children};

/// A parsed expression that passed every check.
pub(super) struct Checked {
    pub(super) expr: IdedExpr,
    pub(super) variables: BTreeSet<&'static str>,
    pub(super) cost: u64,
}

/// Parses `source` and checks it against `limits`.
pub(super) fn check(source: &str, limits: &Limits) -> Result<Checked, FilterError> {
    if source.len() > limits.max_source_bytes {
        return Err(FilterError::TooLong {
            bytes: source.len(),
            max: limits.max_source_bytes,
        });
    }
    scan_tokens(source, limits)?;
    let parser = Parser::new().max_recursion_depth(limits.max_depth.saturating_mul(2));
    let (expr, info) = match parser.parse_with_source_info(source) {
        Ok(parsed) => parsed,
        Err(errors) => return Err(syntax_error(source, &errors, limits)),
    };
    let mut walk = Walk {
        source,
        info: &info,
        limits,
        bound: Vec::new(),
        variables: BTreeSet::new(),
    };
    walk.names(&expr)?;
    walk.nesting(&expr, 0)?;
    let cost = cost(&expr, 1, limits.max_list_items as u64);
    if cost > limits.max_cost {
        return Err(FilterError::TooCostly {
            cost,
            max: limits.max_cost,
        });
    }
    Ok(Checked {
        expr,
        variables: walk.variables,
        cost,
    })
}

/// Counts operators and bracket nesting without parsing, skipping string
/// literals, and refuses the source at the first one over a limit.
fn scan_tokens(source: &str, limits: &Limits) -> Result<(), FilterError> {
    let chars: Vec<char> = source.chars().collect();
    let mut operators = 0usize;
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        match c {
            '"' | '\'' => {
                i = skip_string(&chars, i, false);
                continue;
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > usize::from(limits.max_depth) {
                    let (line, column) = line_column(source, at);
                    return Err(FilterError::TooDeep {
                        line,
                        column,
                        max: limits.max_depth,
                    });
                }
                operators += 1;
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => operators += 1,
            '+' | '-' | '*' | '/' | '%' | '!' | '<' | '>' | '?' | ':' | ',' => {
                operators += 1;
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                }
            }
            '=' | '&' | '|' => {
                operators += 1;
                if chars.get(i + 1) == Some(&c) {
                    i += 1;
                }
            }
            _ if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word == "in" {
                    operators += 1;
                    if operators > limits.max_operators {
                        let (line, column) = line_column(source, start);
                        return Err(FilterError::TooManyOperators {
                            line,
                            column,
                            max: limits.max_operators,
                        });
                    }
                }
                // A raw string (r"..", rb"..") has no escapes.
                let prefix = word.len() <= 2 && word.chars().all(|c| "rRbB".contains(c));
                if prefix && matches!(chars.get(i), Some('"' | '\'')) {
                    i = skip_string(&chars, i, word.contains(['r', 'R']));
                }
                continue;
            }
            _ => {}
        }
        if operators > limits.max_operators {
            let (line, column) = line_column(source, at);
            return Err(FilterError::TooManyOperators {
                line,
                column,
                max: limits.max_operators,
            });
        }
        i += 1;
    }
    Ok(())
}

/// The index just past the string literal that starts at `start` (single,
/// double or triple quoted; backslash escapes skipped unless `raw`).
fn skip_string(chars: &[char], start: usize, raw: bool) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = if triple { start + 3 } else { start + 1 };
    while i < chars.len() {
        if chars[i] == '\\' && !raw {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        if !triple && chars[i] == '\n' {
            return i;
        }
        i += 1;
    }
    chars.len()
}

/// Line and column (from 1) of the character at index `at` of `source`.
pub(super) fn line_column(source: &str, at: usize) -> (u32, u32) {
    let mut line = 1u32;
    let mut column = 1u32;
    for c in source.chars().take(at) {
        if c == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    (line, column)
}

/// The first parse error, as a positioned [`FilterError`].
fn syntax_error(source: &str, errors: &cel::ParseErrors, limits: &Limits) -> FilterError {
    let Some(first) = errors.errors.first() else {
        return FilterError::Syntax {
            line: 1,
            column: 1,
            problem: "not a CEL expression".to_owned(),
        };
    };
    let inner = first
        .source
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if inner.contains("Recursion limit") || first.msg.contains("Recursion limit") {
        return FilterError::TooDeep {
            line: 1,
            column: 1,
            max: limits.max_depth,
        };
    }
    let (line, column) = if first.pos.0 >= 1 && first.pos.1 >= 1 {
        (
            u32::try_from(first.pos.0).unwrap_or(u32::MAX),
            u32::try_from(first.pos.1).unwrap_or(u32::MAX),
        )
    } else {
        line_column(source, source.chars().count())
    };
    let problem = first
        .msg
        .strip_prefix("Syntax error: ")
        .unwrap_or(&first.msg)
        .to_owned();
    let problem = if problem == "UNKNOWN" && !inner.is_empty() {
        inner
    } else {
        problem
    };
    FilterError::Syntax {
        line,
        column,
        problem,
    }
}

/// Walks the parsed expression once per check.
struct Walk<'a> {
    source: &'a str,
    info: &'a SourceInfo,
    limits: &'a Limits,
    bound: Vec<String>,
    variables: BTreeSet<&'static str>,
}

impl Walk<'_> {
    fn position(&self, expr: &IdedExpr) -> (u32, u32) {
        match self.info.offset_for(expr.id) {
            Some((start, _)) => line_column(self.source, start as usize),
            None => (1, 1),
        }
    }

    /// Every free name must be one of [`VARIABLES`].
    fn names(&mut self, expr: &IdedExpr) -> Result<(), FilterError> {
        match &expr.expr {
            Expr::Ident(name) => {
                if self.bound.iter().any(|b| b == name) {
                    return Ok(());
                }
                match VARIABLES.iter().find(|v| **v == name.as_str()) {
                    Some(v) => {
                        self.variables.insert(v);
                        Ok(())
                    }
                    None => {
                        let (line, column) = self.position(expr);
                        Err(FilterError::UnknownName {
                            line,
                            column,
                            name: name.clone(),
                        })
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.names(&c.iter_range)?;
                self.names(&c.accu_init)?;
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2.clone());
                }
                self.bound.push(c.accu_var.clone());
                let inner = self
                    .names(&c.loop_cond)
                    .and_then(|()| self.names(&c.loop_step))
                    .and_then(|()| self.names(&c.result));
                self.bound.truncate(before);
                inner
            }
            _ => {
                for child in children(expr) {
                    self.names(child)?;
                }
                Ok(())
            }
        }
    }

    /// Macros (comprehensions) nest at most `max_macro_nesting` deep.
    fn nesting(&self, expr: &IdedExpr, level: usize) -> Result<(), FilterError> {
        let level = match &expr.expr {
            Expr::Comprehension(_) => {
                let level = level + 1;
                if level > self.limits.max_macro_nesting {
                    let (line, column) = self.position(expr);
                    return Err(FilterError::MacroNesting {
                        line,
                        column,
                        max: self.limits.max_macro_nesting,
                    });
                }
                level
            }
            _ => level,
        };
        for child in children(expr) {
            self.nesting(child, level)?;
        }
        Ok(())
    }
}

/// The static cost estimate of `expr` evaluated `times` times: one step per
/// node, a loop body `list` times per iteration of its macro, and `in` over a
/// computed list (not a literal) `list` steps.
fn cost(expr: &IdedExpr, times: u64, list: u64) -> u64 {
    let own = match &expr.expr {
        Expr::Call(call)
            if call.func_name == cel::common::ast::operators::IN
                && !matches!(call.args.get(1).map(|a| &a.expr), Some(Expr::List(_))) =>
        {
            times.saturating_mul(list)
        }
        _ => times,
    };
    match &expr.expr {
        Expr::Comprehension(c) => {
            let body = times.saturating_mul(list);
            own.saturating_add(cost(&c.iter_range, times, list))
                .saturating_add(cost(&c.accu_init, times, list))
                .saturating_add(cost(&c.loop_cond, body, list))
                .saturating_add(cost(&c.loop_step, body, list))
                .saturating_add(cost(&c.result, times, list))
        }
        _ => children(expr).into_iter().fold(own, |acc, child| {
            acc.saturating_add(cost(child, times, list))
        }),
    }
}
