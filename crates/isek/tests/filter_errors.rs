//! A bad filter gets a typed error naming the line, the column and the
//! problem; what could make evaluation expensive is refused at compile time
//! (size, operators, depth, macro nesting, cost) or per node (input limits).

use isek::NodeInfo;
use isek::filter::{EvalError, Filter, FilterError, Limits};
use serde_json::json;

fn error(source: &str) -> FilterError {
    match Filter::compile(source) {
        Ok(f) => unreachable!("{source} compiled: {f:?}"),
        Err(e) => e,
    }
}

fn compiles(source: &str) -> Filter {
    match Filter::compile(source) {
        Ok(f) => f,
        Err(e) => unreachable!("{source}: {e}"),
    }
}

fn node(metadata: serde_json::Value) -> NodeInfo {
    let Some(metadata) = metadata.as_object().cloned() else {
        unreachable!()
    };
    NodeInfo::new("n1", "127.0.0.1", 9000, metadata)
}

#[test]
fn a_filter_is_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Filter>();
}

#[test]
fn a_syntax_error_names_line_column_and_problem() {
    let e = error(r#"metadata.role == "x" ||"#);
    assert_eq!(e.position(), Some((1, 24)), "{e}");
    assert!(
        matches!(&e, FilterError::Syntax { problem, .. } if problem.contains("mismatched input '<EOF>'")),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("filter 1:24: "), "{e}");

    let e = error("metadata.role == 'a' &&\n  (metadata.level >");
    assert_eq!(e.position(), Some((2, 20)), "{e}");

    let e = error(r#"metadata.role = "x""#);
    assert!(
        matches!(
            e,
            FilterError::Syntax {
                line: 1,
                column: 15,
                ..
            }
        ),
        "{e:?}"
    );

    let e = error(r#"metadata.role == "unterminated"#);
    assert!(matches!(e, FilterError::Syntax { line: 1, .. }), "{e:?}");

    let e = error("has(metadata)");
    assert!(
        matches!(&e, FilterError::Syntax { line: 1, column: 5, problem } if problem.contains("has()")),
        "{e:?}"
    );
}

#[test]
fn an_unknown_name_is_refused_where_it_is() {
    let e = error(r#"metadata.role == "x" && rol == "y""#);
    assert_eq!(
        e,
        FilterError::UnknownName {
            line: 1,
            column: 25,
            name: "rol".to_owned()
        }
    );
    let e = error("metadata.agent_card.skills.exists(s,\n t.id == 'x')");
    assert_eq!(
        e,
        FilterError::UnknownName {
            line: 2,
            column: 2,
            name: "t".to_owned()
        }
    );
    // A macro's variable is known inside it only.
    compiles("metadata.agent_card.skills.exists(s, s.id == 'x')");
    let e = error("metadata.agent_card.skills.exists(s, s.id == 'x') && s.id == 'y'");
    assert!(
        matches!(e, FilterError::UnknownName { column: 54, .. }),
        "{e:?}"
    );
}

#[test]
fn a_long_source_is_refused_before_parsing() {
    let source = format!("metadata.bio == \"{}\"", "a".repeat(3000));
    assert_eq!(
        error(&source),
        FilterError::TooLong {
            bytes: 3018,
            max: 2048
        }
    );
}

#[test]
fn too_many_operators_are_refused_at_the_first_over_the_limit() {
    let source = vec!["1"; 300].join("+");
    // "1+1+...": the 257th '+' is at column 2 * 257.
    assert_eq!(
        error(&source),
        FilterError::TooManyOperators {
            line: 1,
            column: 514,
            max: 256
        }
    );
    let words = vec!["1 in []"; 100].join(" || ");
    assert!(matches!(
        error(&words),
        FilterError::TooManyOperators { .. }
    ));
}

#[test]
fn the_longest_chains_allowed_compile_and_evaluate_on_a_small_stack() {
    // Every test runs on a 2 MiB thread: what the limits allow must fit there.
    let plus = format!("{} == 255", vec!["1"; 255].join("+"));
    let f = compiles(&plus);
    assert_eq!(f.evaluate(&node(json!({}))), Ok(true));
    let and = vec!["metadata.role == 'x'"; 85].join(" && ");
    let f = compiles(&and);
    assert_eq!(f.evaluate(&node(json!({"role": "x"}))), Ok(true));
    let nested = format!("{}true{}", "(".repeat(48), ")".repeat(48));
    assert_eq!(compiles(&nested).evaluate(&node(json!({}))), Ok(true));
    let lists = format!("size({}1{}) == 1", "[".repeat(47), "]".repeat(47));
    assert_eq!(compiles(&lists).evaluate(&node(json!({}))), Ok(true));
    let select = format!("has(metadata{})", ".a".repeat(120));
    assert!(compiles(&select).evaluate(&node(json!({}))).is_err());
}

#[test]
fn deep_nesting_is_refused_where_it_passes_the_limit() {
    let source = format!("{}true{}", "(".repeat(49), ")".repeat(49));
    assert_eq!(
        error(&source),
        FilterError::TooDeep {
            line: 1,
            column: 49,
            max: 48
        }
    );
    let source = format!(
        "metadata.role == 'x' &&\n {}1{} == 1",
        "[".repeat(60),
        "]".repeat(60)
    );
    assert!(matches!(
        error(&source),
        FilterError::TooDeep {
            line: 2,
            column: 50,
            ..
        }
    ));
    // Brackets inside a string literal are not nesting.
    compiles(&format!("metadata.bio == \"{}\"", "((([[[{{{".repeat(20)));
    compiles(&format!(
        "metadata.bio == '{}' && metadata.x == r\"\\\"",
        ")+-*/".repeat(60)
    ));
    // A raw string has no escapes: what follows its end is counted.
    let hidden = format!(
        "metadata.x == r\"\\\" + {} + \"\"",
        vec!["'1'"; 300].join("+")
    );
    assert!(matches!(
        error(&hidden),
        FilterError::TooManyOperators { .. }
    ));
}

#[test]
fn nested_macros_and_costly_expressions_are_refused() {
    let e = error("metadata.a.exists(x, metadata.b.exists(y, metadata.c.exists(z, z == y)))");
    assert_eq!(
        e,
        FilterError::MacroNesting {
            line: 1,
            column: 60,
            max: 2
        }
    );
    compiles("metadata.agent_card.skills.exists(s, s.tags.exists(t, t == 'web'))");
    let e = error("metadata.a.exists(x, metadata.b.exists(y, y in metadata.c && x in metadata.d))");
    assert!(
        matches!(e, FilterError::TooCostly { max: 1_000_000, .. }),
        "{e:?}"
    );
    let strict = Limits {
        max_cost: 100,
        ..Limits::default()
    };
    assert!(matches!(
        Filter::compile_with("metadata.tags.exists(t, t == 'x')", strict),
        Err(FilterError::TooCostly { .. })
    ));
    assert!(Filter::compile_with("metadata.role == 'x'", strict).is_ok());
}

#[test]
fn an_input_over_the_limits_does_not_match_and_says_why() {
    let skills: Vec<_> = (0..300).map(|i| json!({"id": format!("s{i}")})).collect();
    let big = node(json!({"role": "x", "agent_card": {"skills": skills}}));
    let touches = compiles("metadata.agent_card.skills.exists(s, s.id == 's1')");
    assert!(matches!(
        touches.evaluate(&big),
        Err(EvalError::InputTooLarge { path, .. }) if path == "metadata.agent_card.skills"
    ));
    assert!(!touches.matches(&big));
    // A filter that reads other fields is not affected by the large list.
    assert!(compiles("metadata.role == 'x'").matches(&big));

    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!({ "d": deep });
    }
    let deep = node(json!({ "deep": deep }));
    assert!(matches!(
        compiles("has(metadata.deep)").evaluate(&deep),
        Err(EvalError::InputTooLarge { .. })
    ));
}

#[test]
fn a_result_that_is_not_a_bool_is_no_match() {
    let f = compiles("metadata.level");
    let n = node(json!({"level": 3}));
    assert_eq!(f.evaluate(&n), Err(EvalError::NotBool("int".to_owned())));
    assert!(!f.matches(&n));
    let missing = compiles("metadata.level == 3").evaluate(&node(json!({})));
    assert!(matches!(missing, Err(EvalError::Cel(m)) if m.contains("level")));
}
