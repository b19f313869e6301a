//! Why a policy gave no usable answer: a [`PolicyFault`], whose [`FaultKind`] names the
//! limit or fault behind it in one word (the decision's log line and the `/metrics` label
//! take it from here) and whose message says what happened, for people.

use std::fmt;

/// What kind of fault a `policy-error` is. The set is fixed and small, so that it can be
/// a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultKind {
    /// The policy ran out of fuel (instructions, host calls included).
    Fuel,
    /// The policy ran past its wall-clock deadline.
    Deadline,
    /// The policy asked for more linear memory than its limit.
    Memory,
    /// The policy asked for more table elements than its limit.
    Table,
    /// The policy recursed deeper than the wasm stack.
    Stack,
    /// The policy trapped: a panic, an `unreachable`, a division by zero.
    Trap,
    /// The policy's answer was too large, or had too many effects.
    Output,
    /// The policy's answer made no sense: an undeclared reason or asset, more persons
    /// admitted than asked, effects the ledger refused.
    Answer,
    /// A host call the policy made failed (e.g. the ledger read during `describe`).
    HostCall,
}

impl FaultKind {
    /// Every kind, in the order operators read them.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Fuel,
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::Table,
        FaultKind::Stack,
        FaultKind::Trap,
        FaultKind::Output,
        FaultKind::Answer,
        FaultKind::HostCall,
    ];

    /// The kind as one lowercase word (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Fuel => "fuel",
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::Table => "table",
            FaultKind::Stack => "stack",
            FaultKind::Trap => "trap",
            FaultKind::Output => "output",
            FaultKind::Answer => "answer",
            FaultKind::HostCall => "host-call",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy's fault: its kind and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyFault {
    kind: FaultKind,
    message: String,
}

impl PolicyFault {
    pub(crate) fn new(kind: FaultKind, message: impl Into<String>) -> PolicyFault {
        PolicyFault {
            kind,
            message: message.into(),
        }
    }

    /// A nonsensical answer (see [`FaultKind::Answer`]).
    pub(crate) fn answer(message: impl Into<String>) -> PolicyFault {
        PolicyFault::new(FaultKind::Answer, message)
    }

    /// What kind of fault it is.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// What happened, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message, taken.
    pub(crate) fn into_message(self) -> String {
        self.message
    }
}
