//! The library's errors: what went wrong, in lowercase, with user input in backticks and
//! causes chained with `: `.

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
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
    #[error("ledger: {0}")]
    Ledger(String),
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

    /// Whether the caller's input is at fault (as opposed to the host or its ledger).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::UnknownProgram(_) | Error::IdReused(_)
        )
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Ledger(e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
