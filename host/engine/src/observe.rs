//! What operators count about decisions (the server's `GET /metrics`): which limit a
//! `policy-error` hit.
//!
//! A decision's `error` is text for people; [`policy_error_kind`] names the limit or fault
//! behind it with one word from a fixed, small set, so that it can be a metric label. The
//! words follow the messages the sandbox and the host's checks give; anything else is
//! `other`, never a new label.

/// The kinds [`policy_error_kind`] may answer, in the order operators read them.
pub const POLICY_ERROR_KINDS: [&str; 9] = [
    "fuel", "deadline", "memory", "table", "stack", "trap", "output", "answer", "other",
];

/// The limit or fault behind a `policy-error` decision's `error`: `fuel`, `deadline`,
/// `memory`, `table` or `stack` (a limit of the sandbox was hit), `trap` (the guest
/// trapped: a panic, an unreachable), `output` (its answer was too large or had too many
/// effects), `answer` (its answer made no sense: an undeclared reason or asset, effects the
/// ledger refused), or `other`.
pub fn policy_error_kind(error: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("fuel limit of ", "fuel"),
        ("deadline of ", "deadline"),
        ("memory limit of ", "memory"),
        ("table limit of ", "table"),
        ("stack overflow", "stack"),
        ("trap: ", "trap"),
        ("decision has ", "output"),
        ("decision is ", "output"),
        ("the policy returned reason ", "answer"),
        ("the policy admitted ", "answer"),
        ("the policy's effects were refused", "answer"),
        ("effect ", "answer"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| error.starts_with(prefix))
        .map_or("other", |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_and_unknown_text_is_other() {
        for (error, kind) in [
            (
                "fuel limit of 1000 instructions exhausted (fuel used 1000 of 1000; …)",
                "fuel",
            ),
            (
                "deadline of 50 ms exceeded (memory reached 0 of 1 bytes)",
                "deadline",
            ),
            (
                "memory limit of 65536 bytes exceeded: the policy asked to grow",
                "memory",
            ),
            ("trap: wasm `unreachable` instruction executed", "trap"),
            (
                "decision is 70000 bytes, more than the limit of 65536 bytes",
                "output",
            ),
            (
                "the policy returned reason `x`, which it does not declare",
                "answer",
            ),
            ("something new", "other"),
        ] {
            assert_eq!(policy_error_kind(error), kind, "{error}");
            assert!(POLICY_ERROR_KINDS.contains(&kind));
        }
    }
}
