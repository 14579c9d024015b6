//! # lambda-core
//!
//! The pure domain of luna-lambda-rs. Everything the platform decides about a lambda, and none
//! of the doing: no async runtime, no network, no filesystem writes. Inputs are bytes or
//! `Read + Seek`; outputs are plain values. The other crates trust the types built here:
//!
//! - [`archive`]: the verdict on an uploaded zip ([`archive::validate`] → [`archive::ValidatedArchive`]
//!   or a [`problem::ValidationReport`] with every problem).
//! - [`python`], [`runtime_api`], [`requirements`]: the checks of `lambda_main.py` (including its
//!   imports of the runtime and its handler routes) and `requirements.txt`.
//! - [`names`], [`params`], [`docker_commands`]: ids, names, types and parameters, each checked.
//! - [`status`]: the image and lambda status machines.
//! - [`build_steps`]: the dependencies image as plain steps, for builders without a Dockerfile.
//! - [`render`]: Dockerfile, build-context list and Kubernetes objects, as pure functions.
//! - [`api`]: the HTTP API's wire types and error codes.
//! - [`pack`]: deterministic zip of a folder.
#![deny(missing_docs)]

pub mod api;
pub mod archive;
pub mod artifact;
pub mod auth;
pub mod build_steps;
pub mod docker_commands;
pub mod names;
pub mod pack;
pub mod params;
pub mod problem;
pub mod python;
pub mod render;
pub mod requirements;
pub mod runtime_api;
pub mod status;

pub use archive::{Limits, ValidatedArchive, validate, validate_bytes};
pub use artifact::Artifact;
pub use names::{LambdaId, LambdaName, LambdaType};
pub use params::{BaseImage, DeployParameters, Parameters};
pub use problem::{Problem, Severity, ValidationReport};
pub use status::{ImageStatus, LambdaStatus};

/// Lowercase hex of bytes (digests, ids and keys derived from them).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Errors of lambda-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A lambda id that is not a UUID.
    #[error("{0:?} is not a lambda id (a UUID such as 6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11)")]
    InvalidId(String),
    /// A lambda name that breaks the naming rules.
    #[error(
        "lambda name {name:?} {why} (1-63 lowercase letters, digits and '-', starting with a letter)"
    )]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        why: String,
    },
    /// A lambda type other than `standalone`, `handlers` and `tasks`.
    #[error("lambda type {0:?} is not supported; supported types: standalone, handlers, tasks")]
    UnsupportedLambdaType(String),
    /// A status change that the status machine does not allow.
    #[error("{machine} status cannot change from {from} to {to}")]
    InvalidTransition {
        /// `image` or `lambda`.
        machine: &'static str,
        /// Current status.
        from: String,
        /// Requested status.
        to: String,
    },
    /// Packing a folder failed at `path`.
    #[error("cannot pack {path}: {source}")]
    Pack {
        /// The file or folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
