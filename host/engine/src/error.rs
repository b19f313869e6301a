//! The library's errors: what went wrong, in lowercase, with user input in backticks and
//! causes kept as sources (and chained with `: ` in the message).
//!
//! Three parties can be at fault, and callers map each differently: the caller's input
//! ([`Error::is_bad_input`]: HTTP 400, exit code 2), a policy (never an `Error`: the
//! decision is denied with `policy-error`), and the host or its ledger (HTTP 500).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

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
    /// A change names a card the program does not know (a decision on an unknown card is
    /// not an error: it is denied `unknown-card`).
    #[error("card `{card}` is not known to program `{program}`")]
    UnknownCard { program: String, card: String },
    /// A caller asked for a change its standing does not allow: a guardian changing a
    /// holder attribute the program's schema does not mark `guardian = true`.
    #[error("{0}")]
    Forbidden(String),
    /// A file or directory could not be read (it is missing, unreadable, or the disk
    /// failed). `what` says what it was for, when the path alone does not.
    #[error("cannot read {}`{}`: {source}", prefix(what), path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A program's policy could not be loaded; the other programs keep working.
    #[error("cannot load policy `{program}`: {source}")]
    Load {
        program: String,
        #[source]
        source: Source,
    },
    /// The same request id was used before for a different request.
    #[error("request id `{0}` was already used for a different request")]
    IdReused(String),
    /// A holder was registered on a card that was replaced: its holder is on `by` now.
    #[error(
        "card `{card}` of program `{program}` was replaced by card `{by}`: a replaced card \
         stays replaced; register the holder on `{by}`"
    )]
    Replaced {
        program: String,
        card: String,
        by: String,
    },
    /// A holder that cannot be erased, now or under its program's rules: money left on
    /// the card, or a duty to archive. The message says what to do instead.
    #[error("{0}")]
    Kept(String),
    /// A request the city cannot decide now: what it reads or changes is lent to a venue
    /// host, which decides it alone until it hands its lease back (see
    /// `crate::offline`). Nothing was decided; the same request may succeed later.
    #[error(
        "cannot decide for card `{card}` of program `{program}` now: {why}; try again once the venue hands its lease back"
    )]
    Held {
        program: String,
        card: String,
        why: String,
        /// The venues whose leases are in the way (the city recalls them).
        venues: Vec<String>,
    },
    /// An upload of a venue's offline decisions that the city does not take: forged,
    /// outside the venue's lease, or out of order. Nothing of it was appended.
    #[error("{0}")]
    Refused(String),
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

    /// A program that could not be loaded, and why (another error, kept as the source, or
    /// a message).
    pub(crate) fn load(program: &str, source: impl Into<Source>) -> Error {
        Error::Load {
            program: program.to_string(),
            source: source.into(),
        }
    }

    /// A file or directory that could not be read.
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Error {
        Error::Read {
            what: "",
            path: path.to_path_buf(),
            source,
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
        match self {
            Error::Invalid(_)
            | Error::UnknownProgram(_)
            | Error::UnknownCard { .. }
            | Error::Forbidden(_)
            | Error::IdReused(_)
            | Error::Kept(_)
            | Error::Held { .. }
            | Error::Refused(_)
            | Error::Replaced { .. } => true,
            // A path that is not there, or not what it should be, was the caller's to give;
            // a disk that fails is not.
            Error::Read { source, .. } => matches!(
                source.kind(),
                ErrorKind::NotFound
                    | ErrorKind::PermissionDenied
                    | ErrorKind::NotADirectory
                    | ErrorKind::IsADirectory
                    | ErrorKind::InvalidInput
                    | ErrorKind::InvalidData
                    | ErrorKind::InvalidFilename
            ),
            _ => false,
        }
    }
}

/// `what ` before a path in a message, or nothing.
fn prefix(what: &str) -> String {
    match what {
        "" => String::new(),
        what => format!("{what} "),
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
