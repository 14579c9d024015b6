//! Configuration (DESIGN.md §7): one TOML file plus environment overrides, read once by the
//! binary, with unknown keys rejected and a redacted summary for the start-up log.
//!
//! Environment overrides: `LUNA_LAMBDA_<KEY>` for top-level keys and
//! `LUNA_LAMBDA_<SECTION>_<KEY>` for section keys (e.g. `LUNA_LAMBDA_S3_ENDPOINT`,
//! `LUNA_LAMBDA_LIMITS_MAX_ARCHIVE_BYTES`); values are read as TOML (numbers, booleans, arrays)
//! or else as strings. The original service's `LAMBDA_REGISTRY` and `LAMBDA_INSECURE_REGISTRIES`
//! (comma-separated) are honoured too. `LUNA_LAMBDA_CONFIG` (the file), `LUNA_LAMBDA_LOG` (the log
//! filter) and `LUNA_LAMBDA_URL` (the CLI's server) are not settings. The library never reads the process environment: the
//! binary passes it in.

//!
//! `schema` is what may be written (the sections and their defaults), `load` reads and checks it,
//! `wire` builds what it names (the adapters, the service, the edge's settings, TLS, the locks).

mod load;
mod schema;
mod wire;

pub use schema::*;

/// The bootstrap admin token's variable.
pub const ADMIN_TOKEN_ENV: &str = "LUNA_LAMBDA_ADMIN_TOKEN";

/// Configuration errors (reported by the binary, which exits 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys / wrong types.
    #[error("invalid configuration{origin}: {message}")]
    Invalid {
        /// ` in FILE` or ` from the environment`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A setting that cannot work (e.g. an orchestrator that is not available).
    #[error("{0}")]
    Unsupported(String),
    /// An adapter failed to start.
    #[error("{0}")]
    Startup(String),
}
