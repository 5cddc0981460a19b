//! The one rule for node ids, shared by every backend, the center and the CLI.
//!
//! A node id is one etcd key segment (`/{parent}/{node_id}`) and one name in a
//! center's table, so every place that takes one refuses the same ids: empty, longer
//! than the limit, containing `/` (the key separator) or a control character. Pure:
//! each caller words the refusal in its own protocol (an HTTP envelope, an
//! [`crate::Error::InvalidArgument`], a CLI line) from the [`Problem`] returned here.

/// Longest node id accepted by default, in UTF-8 bytes (a center can lower or raise
/// its own limit; the library backends use this one).
pub const MAX_BYTES: usize = 256;

/// Why an id is not a node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Empty, or longer than the limit in force.
    #[error("must be 1 to {max_bytes} bytes")]
    Length {
        /// The limit in force, in UTF-8 bytes.
        max_bytes: usize,
    },
    /// Holds `/` or a control character.
    #[error("must not contain '/' or control characters")]
    Character,
}

/// Checks `id` against the rule with a limit of `max_bytes`.
pub fn check(id: &str, max_bytes: usize) -> Result<(), Problem> {
    if id.is_empty() || id.len() > max_bytes {
        return Err(Problem::Length { max_bytes });
    }
    if id.chars().any(|c| c == '/' || c.is_control()) {
        return Err(Problem::Character);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_empty_long_slashed_and_control_ids() {
        assert_eq!(check("planner-1", MAX_BYTES), Ok(()));
        assert_eq!(check("ünïcode", MAX_BYTES), Ok(()));
        assert_eq!(check(&"a".repeat(MAX_BYTES), MAX_BYTES), Ok(()));
        let long = Problem::Length {
            max_bytes: MAX_BYTES,
        };
        assert_eq!(check("", MAX_BYTES), Err(long));
        assert_eq!(check(&"a".repeat(MAX_BYTES + 1), MAX_BYTES), Err(long));
        assert_eq!(check("a/b", MAX_BYTES), Err(Problem::Character));
        assert_eq!(check("a\nb", MAX_BYTES), Err(Problem::Character));
        assert_eq!(check("a\u{7f}", MAX_BYTES), Err(Problem::Character));
        assert_eq!(check("abc", 2), Err(Problem::Length { max_bytes: 2 }));
    }
}
