//! The one rule for node ids, shared by every backend, the center and the CLI.
//!
//! A node id is one etcd key segment (`/{parent}/{node_id}`) and one name in a
//! center's table, so every place that takes one refuses the same ids: empty, longer
//! than the limit, containing `/` (the key separator) or a control character, not in
//! Unicode normalization form C, or holding an invisible character. The last two close
//! a phishing vector among agents: `café` in NFC and in NFD, or `n1` and `n1` followed
//! by a zero-width space, are different ids that look the same in every listing. Pure:
//! each caller words the refusal in its own protocol (an HTTP envelope, an
//! [`crate::Error::InvalidArgument`], a CLI line) from the [`Problem`] returned here.
//!
//! "Invisible" is Unicode general category Cf (format: zero-width space and joiners,
//! bidi controls, BOM, soft hyphen, tags), every Default_Ignorable_Code_Point (fillers,
//! variation selectors, the combining grapheme joiner) and the line and paragraph
//! separators.

use unicode_normalization::{IsNormalized, is_nfc_quick};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

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
    /// Not in Unicode normalization form C (e.g. `e` + U+0301 instead of `é`).
    #[error("must be in Unicode normalization form C (NFC)")]
    NotNfc,
    /// Holds an invisible or format character (zero-width, bidi control, BOM, ...).
    #[error("must not contain invisible or format characters (U+{:04X} found)", *.0 as u32)]
    Invisible(char),
}

/// Checks `id` against the rule with a limit of `max_bytes`.
pub fn check(id: &str, max_bytes: usize) -> Result<(), Problem> {
    if id.is_empty() || id.len() > max_bytes {
        return Err(Problem::Length { max_bytes });
    }
    if id.chars().any(|c| c == '/' || c.is_control()) {
        return Err(Problem::Character);
    }
    if let Some(c) = id.chars().find(|&c| is_invisible(c)) {
        return Err(Problem::Invisible(c));
    }
    let nfc = match is_nfc_quick(id.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => unicode_normalization::is_nfc(id),
    };
    if !nfc {
        return Err(Problem::NotNfc);
    }
    Ok(())
}

/// `id` with every character outside printable ASCII written as `\u{XXXX}`, so a
/// refusal shows what differs between two ids that look alike.
pub fn escaped(id: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:04X}}}", u32::from(c));
        }
    }
    out
}

/// Whether `c` shows nothing (or nothing of its own) in a listing: general category
/// Cf, a default-ignorable code point, or a line/paragraph separator.
fn is_invisible(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || is_default_ignorable(c)
}

/// Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties) outside category Cf:
/// the fillers, variation selectors and reserved ignorables.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2065}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
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

    #[test]
    fn look_alike_ids_are_refused_naming_the_problem() {
        // NFC is fine, NFD of the same word is not.
        assert_eq!(check("caf\u{e9}", MAX_BYTES), Ok(()));
        assert_eq!(check("cafe\u{301}", MAX_BYTES), Err(Problem::NotNfc));
        assert_eq!(
            check("\u{212b}ngstr\u{f6}m", MAX_BYTES),
            Err(Problem::NotNfc)
        );
        for c in [
            '\u{200b}',  // zero-width space
            '\u{200c}',  // zero-width non-joiner
            '\u{200d}',  // zero-width joiner
            '\u{2060}',  // word joiner
            '\u{feff}',  // BOM
            '\u{200e}',  // left-to-right mark
            '\u{202e}',  // right-to-left override
            '\u{2067}',  // right-to-left isolate
            '\u{00ad}',  // soft hyphen
            '\u{034f}',  // combining grapheme joiner
            '\u{fe0f}',  // variation selector 16
            '\u{3164}',  // Hangul filler
            '\u{2028}',  // line separator
            '\u{e0041}', // tag latin capital A
        ] {
            assert_eq!(
                check(&format!("n1{c}"), MAX_BYTES),
                Err(Problem::Invisible(c)),
                "U+{:04X}",
                c as u32
            );
        }
        assert_eq!(
            Problem::Invisible('\u{200b}').to_string(),
            "must not contain invisible or format characters (U+200B found)"
        );
        assert_eq!(escaped("cafe\u{301}"), "cafe\\u{0301}");
        assert_eq!(escaped("n1\u{200b}"), "n1\\u{200B}");
        // Scripts, emoji and symbols that show are ids like any other.
        for id in ["智能体-7", "агент", "🤖-planner", "a b", "x_y.z:1"] {
            assert_eq!(check(id, MAX_BYTES), Ok(()), "{id}");
        }
    }
}
