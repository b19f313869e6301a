//! The library's errors: what went wrong, in lowercase, with user input in backticks and
//! causes kept as sources (and chained with `: ` in the message).
//!
//! Three parties can be at fault, and callers map each differently: the caller's input
//! ([`Error::is_bad_input`]: HTTP 400, exit code 2), a policy (never an `Error`: the
//! decision is denied with `policy-error`), and the host or its ledger (HTTP 500).

/// A cause kept behind an error.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that cannot be used as it is: a malformed request, suite, manifest or holder.
    #[error("{0}")]
    Invalid(String),
    /// A request names a program that is not loaded.
    #[error("unknown program `{0}`")]
    UnknownProgram(String),
    /// A program's policy could not be loaded; the other programs keep working.
    #[error("cannot load policy `{program}`: {reason}")]
    Load { program: String, reason: String },
    /// The same request id was used before for a different request.
    #[error("request id `{0}` was already used for a different request")]
    IdReused(String),
    /// The ledger failed; nothing was committed.
    #[error("ledger: {context}: {source}")]
    Ledger {
        context: String,
        #[source]
        source: Source,
    },
    /// The ledger cannot be reached or is busy for now; the same request may succeed later.
    #[error("ledger unavailable: {context}: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: Source,
    },
    /// The host itself failed (the engine, a thread, a watcher): neither the caller's
    /// fault nor a policy's.
    #[error("{context}: {source}")]
    Host {
        context: String,
        #[source]
        source: Source,
    },
}

impl Error {
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    pub(crate) fn load(program: &str, reason: impl std::fmt::Display) -> Error {
        Error::Load {
            program: program.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A ledger failure, with what was being done and why it failed.
    pub fn ledger(context: impl Into<String>, source: impl Into<Source>) -> Error {
        Error::Ledger {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The ledger is unreachable or busy: nothing was decided, try again later.
    pub fn unavailable(context: impl Into<String>, source: impl Into<Source>) -> Error {
        Error::Unavailable {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A failure of the host itself.
    pub fn host(context: impl Into<String>, source: impl Into<Source>) -> Error {
        Error::Host {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Whether the caller's input is at fault (as opposed to the host or its ledger).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::UnknownProgram(_) | Error::IdReused(_)
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
