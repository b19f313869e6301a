//! What operators count about decisions (the server's `GET /metrics`): which limit or
//! fault a `policy-error` hit, as a label from a fixed, small set.

use crate::model::Decision;
use crate::policy::FaultKind;

/// The labels [`policy_error_kind`] may answer, in the order operators read them.
pub const POLICY_ERROR_KINDS: [&str; 9] = [
    "fuel",
    "deadline",
    "memory",
    "table",
    "stack",
    "trap",
    "output",
    "answer",
    "host-call",
];

/// The kind of a `policy-error` decision (see [`FaultKind`]), or `None` for any other
/// decision. Taken from the fault the pipeline recorded, never from the message.
pub fn policy_error_kind(decision: &Decision) -> Option<&'static str> {
    decision.fault.map(FaultKind::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_is_a_listed_label() {
        let labels: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels, POLICY_ERROR_KINDS);
    }
}
