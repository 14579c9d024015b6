//! Problems found while validating an archive or parameters, and the report that carries them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a [`Problem`] is. Errors make the input invalid; warnings do not.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input is rejected.
    Error,
    /// The input is accepted, but the user should know.
    Warning,
}

/// One thing wrong (or worth knowing) about an input.
///
/// `code` is stable and documented (see `docs/validation-codes.md`); `path` is the entry inside the
/// archive (`lambda_main.py`, `docs/lambda.yml`) or the parameter (`deploy_parameters.namespace`);
/// `line`/`column` are 1-based and present where a position inside a file is known.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable machine-readable code, e.g. `main.not_async`.
    pub code: String,
    /// Where: an entry name inside the archive or a parameter path; empty for the whole archive.
    pub path: String,
    /// Human explanation that says what is wrong and how to fix it.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line inside the file at `path`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column (in characters) inside the file at `path`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl Problem {
    /// An error-severity problem.
    pub fn error(code: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            path: path.into(),
            message: message.into(),
            severity: Severity::Error,
            line: None,
            column: None,
        }
    }

    /// A warning-severity problem.
    pub fn warning(code: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, path, message)
        }
    }

    /// The same problem with a position inside its file.
    #[must_use]
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Whether this problem makes the input invalid.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev} [{}]", self.code)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one input, errors and warnings alike.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// All problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    /// Adds one problem.
    pub fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Adds every problem of another report.
    pub fn extend(&mut self, other: ValidationReport) {
        self.problems.extend(other.problems);
    }

    /// True when no problem is an error (warnings are allowed).
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(Problem::is_error)
    }

    /// The error-severity problems.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }

    /// The warning-severity problems.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.is_error())
    }

    /// Whether a problem with this code is present.
    pub fn has(&self, code: &str) -> bool {
        self.problems.iter().any(|p| p.code == code)
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
