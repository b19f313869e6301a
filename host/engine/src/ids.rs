//! Ids, checked at the door: card numbers (`card`, `to-card`, `new-card`, a holder's card,
//! a route's `{card}`), program ids, offer ids and request ids. Every place an id enters
//! the host — a request, a holder, a route's path, a catalogue, a policy's effects — calls
//! [`check`], so the command, the server and the suites refuse the same ids the same way.
//!
//! An id is a key: of the program's state, of the journal's indexes, of a URL. One that
//! is empty, huge, carries control characters or surrounding whitespace cannot be told
//! apart from another when printed, is stored differently than it was sent (PostgreSQL
//! keeps no NUL in a text column), or is refused by an index (PostgreSQL's rows end at
//! about 2.7 KB). Ids recorded in the journal before these rules are read as they are.

use crate::error::{Error, Result};

/// The longest id, in bytes: far more than any card number, offer code or till's request
/// id needs, and small enough for every index and error message that holds one.
pub const MAX_ID_BYTES: usize = 128;

/// How much of a refused id an error shows: enough to recognise it, never a whole 60 KB.
const SHOWN_CHARS: usize = 40;

/// What an id names, which decides whether it may hold `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A card number: a path segment of the HTTP API (`…/cards/{card}`).
    Card,
    /// A program id: a path segment and a directory name.
    Program,
    /// An offer of a catalogue (a query parameter, never a path).
    Offer,
    /// A request's idempotency key (never a path: `till-7/0001` is fine).
    Request,
}

/// Checks `value`, the id given as `field` (`card`, `new-card`, `id`, …): the caller's
/// error (HTTP 400, exit code 2) naming the field and why.
pub fn check(kind: Kind, field: &str, value: &str) -> Result<()> {
    match problem(kind, value) {
        None => Ok(()),
        Some(why) => Err(Error::invalid(format!("`{field}` {why}"))),
    }
}

/// Why `value` cannot be an id of `kind`, phrased to follow the field's name (``is
/// empty``, ``has 61440 bytes, …``), or `None` if it can.
pub fn problem(kind: Kind, value: &str) -> Option<String> {
    let shown = || shown(value);
    if value.is_empty() {
        return Some("is empty: an id has 1 to 128 bytes".into());
    }
    if value.len() > MAX_ID_BYTES {
        return Some(format!(
            "`{}` has {} bytes: an id has at most {MAX_ID_BYTES}",
            shown(),
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(format!(
            "`{}` holds the control character U+{:04X}: an id has none",
            shown(),
            u32::from(c)
        ));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Some(format!(
            "`{}` begins or ends with whitespace: an id does not",
            shown()
        ));
    }
    if matches!(kind, Kind::Card | Kind::Program) {
        let what = match kind {
            Kind::Card => "a card number",
            _ => "a program id",
        };
        if let Some(c) = value.chars().find(|c| matches!(c, '/' | '\\')) {
            return Some(format!(
                "`{}` holds `{c}`: {what} is a path segment of the HTTP API",
                shown()
            ));
        }
        if value == "." || value == ".." {
            return Some(format!(
                "`{value}` is not {what}: `.` and `..` are rewritten as paths"
            ));
        }
    }
    None
}

/// `value` as an error shows it: control characters escaped, at most [`SHOWN_CHARS`]
/// characters and an ellipsis.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: Kind, field: &str, value: &str) -> String {
        let e = check(kind, field, value).unwrap_err();
        assert!(e.is_bad_input(), "{e:?}");
        e.to_string()
    }

    #[test]
    fn ordinary_ids_pass() {
        for card in [
            "AK-1001",
            "BK-2002",
            "D-1-NEW",
            "Ø-7",
            &"x".repeat(MAX_ID_BYTES),
        ] {
            check(Kind::Card, "card", card).unwrap();
        }
        check(Kind::Request, "id", "till-7/0001").unwrap();
        check(Kind::Offer, "offer", "sg-perler").unwrap();
        check(Kind::Program, "program", "albertslund").unwrap();
    }

    #[test]
    fn empty_long_controlled_padded_and_path_like_ids_are_refused_naming_the_field() {
        assert_eq!(
            refused(Kind::Card, "new-card", ""),
            "`new-card` is empty: an id has 1 to 128 bytes"
        );
        let e = refused(Kind::Card, "new-card", &"9".repeat(60_000));
        assert!(
            e.starts_with("`new-card` `9999")
                && e.ends_with("…` has 60000 bytes: an id has at most 128"),
            "{e}"
        );
        assert!(e.len() < 200, "{e}");
        let e = refused(Kind::Card, "new-card", &"é".repeat(65));
        assert!(e.contains("has 130 bytes"), "{e}");
        assert_eq!(
            refused(Kind::Card, "card", "Z\0"),
            "`card` `Z\\0` holds the control character U+0000: an id has none"
        );
        assert!(refused(Kind::Request, "id", "a\u{7f}b").contains("U+007F"));
        assert!(refused(Kind::Offer, "offer", "x\u{85}").contains("U+0085"));
        assert_eq!(
            refused(Kind::Card, "new-card", " "),
            "`new-card` ` ` begins or ends with whitespace: an id does not"
        );
        assert!(refused(Kind::Request, "id", "r-1\u{a0}").contains("whitespace"));
        assert_eq!(
            refused(Kind::Card, "new-card", "../BK-2001"),
            "`new-card` `../BK-2001` holds `/`: a card number is a path segment of the HTTP API"
        );
        assert!(refused(Kind::Program, "program", "a\\b").contains("a program id"));
        assert_eq!(
            refused(Kind::Card, "to-card", ".."),
            "`to-card` `..` is not a card number: `.` and `..` are rewritten as paths"
        );
        // A request id is no path.
        check(Kind::Request, "id", "..").unwrap();
    }
}
