//! `luna-lambda`: the command line of luna-lambda-rs.
//!
//! Exit codes: 0 ok, 1 the operation failed or the input is invalid, 2 usage error (clap).

use anyhow::Context;
use clap::{Parser, Subcommand};
use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::pack::pack_dir;
use lambda_core::{Severity, ValidationReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Serverless Python lambdas: validate, pack, ship, run.
#[derive(Debug, Parser)]
#[command(name = "luna-lambda", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a lambda (a .zip or a folder) the way the server will: every problem at once.
    ///
    /// Exits 0 when valid (warnings may be printed), 1 when invalid.
    Validate {
        /// A .zip archive or a lambda folder (packed in memory first).
        path: PathBuf,
        /// Print the full report as JSON (every problem's code, path, message, severity, line).
        #[arg(long)]
        json: bool,
    },
    /// Pack a lambda folder into a deterministic zip (same folder, same bytes).
    ///
    /// Skips __pycache__, .git, virtualenvs and *.pyc.
    Pack {
        /// The lambda folder.
        dir: PathBuf,
        /// Output file (default: <folder name>.zip in the current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { path, json } => validate(&path, json),
        Command::Pack { dir, output } => pack(&dir, output),
    }
}

/// Reads a lambda as zip bytes: a folder is packed in memory, anything else is read as a zip.
fn read_lambda(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        Ok(pack_dir(path)?)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn validate(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_lambda(path)?;
    let (ok, report) = match validate_bytes(&bytes, &Limits::default()) {
        Ok(a) => (
            true,
            ValidationReport {
                problems: a.warnings,
            },
        ),
        Err(r) => (false, r),
    };
    if json {
        let out = serde_json::json!({
            "path": path.display().to_string(),
            "valid": ok,
            "problems": report.problems,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        let errors = report
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = report.problems.len() - errors;
        if ok {
            println!("{}: valid ({warnings} warning(s))", path.display());
        } else {
            println!(
                "{}: invalid, {errors} error(s), {warnings} warning(s)",
                path.display()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn pack(dir: &Path, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let bytes = pack_dir(dir)?;
    let output = match output {
        Some(o) => o,
        None => {
            let canon = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            let name = canon
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("lambda");
            PathBuf::from(format!("{name}.zip"))
        }
    };
    let tmp = output.with_extension("zip.partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &output).with_context(|| format!("cannot write {}", output.display()))?;
    println!("{} ({} bytes)", output.display(), bytes.len());
    Ok(ExitCode::SUCCESS)
}
