//! What a builder produces and an orchestrator runs.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A built, runnable lambda version.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Artifact {
    /// A folder with the lambda's files and the runtime, and the Python of a virtualenv.
    Local {
        /// The folder holding `run.py`, `luna_lambda_tools/` and the lambda's files.
        app_dir: PathBuf,
        /// The interpreter of the lambda's environment.
        python: PathBuf,
    },
    /// A container image in a registry.
    Image {
        /// `<registry>/luna-lambda/<id>:v<version>`
        reference: String,
        /// The pushed digest (`sha256:...`), when known.
        digest: Option<String>,
    },
}
