//! The one error type of lambda-storage.

use std::fmt;

/// Why the store cannot be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableKind {
    /// The bucket does not exist.
    BucketMissing,
    /// The credentials are wrong or lack rights.
    Credentials,
    /// The endpoint cannot be reached.
    Unreachable,
    /// Anything else the backend reported.
    Other,
}

impl fmt::Display for UnavailableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BucketMissing => "the bucket does not exist",
            Self::Credentials => "the credentials were refused",
            Self::Unreachable => "the endpoint cannot be reached",
            Self::Other => "the store failed",
        })
    }
}

/// Errors of lambda-storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object or record does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A name is taken, or a record changed since it was read (compare-and-swap failed).
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicted.
        what: String,
    },
    /// Stored bytes do not match what was recorded (size or sha256), or a document is unreadable.
    #[error("{path} is corrupt: {detail}")]
    Corrupt {
        /// The object key.
        path: String,
        /// What does not match.
        detail: String,
    },
    /// The store cannot be used (startup check): missing bucket, refused credentials, unreachable.
    #[error("storage {backend} is unavailable: {kind} ({detail})")]
    Unavailable {
        /// The backend URL (without credentials).
        backend: String,
        /// Which kind of failure.
        kind: UnavailableKind,
        /// The backend's own words.
        detail: String,
    },
    /// The configuration is wrong (unknown URL scheme, missing credentials, ...).
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),
    /// Reading the input (e.g. an upload stream) failed; nothing was stored.
    #[error("reading the input failed: {source}")]
    Input {
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// Any other backend failure.
    #[error("storage operation on {path} failed: {source}")]
    Backend {
        /// The object key.
        path: String,
        /// The backend error.
        #[source]
        source: object_store::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn backend(path: &object_store::path::Path, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                what: path.to_string(),
            },
            source => Error::Backend {
                path: path.to_string(),
                source,
            },
        }
    }
}
