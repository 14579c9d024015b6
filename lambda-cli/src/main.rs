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
    /// Run the platform server (API and proxy). With no config: the embedded default, data in
    /// a local folder, lambdas built into virtualenvs and run as local processes.
    Serve {
        /// TOML configuration file (see ARCHITECTURE.md, "Configuration"); environment
        /// variables LUNA_LAMBDA_* override it.
        #[arg(long, env = "LUNA_LAMBDA_CONFIG")]
        config: Option<PathBuf>,
        /// Data folder of the embedded default (default: $XDG_DATA_HOME/luna-lambda or
        /// ~/.local/share/luna-lambda).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:5210).
        #[arg(long)]
        listen: Option<String>,
    },
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
        Command::Serve {
            config,
            data_dir,
            listen,
        } => serve(config, data_dir, listen),
        Command::Validate { path, json } => validate(&path, json),
        Command::Pack { dir, output } => pack(&dir, output),
    }
}

fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
) -> anyhow::Result<ExitCode> {
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUNA_LAMBDA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = lambda_server::Config::load(config.as_deref(), &env)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = data_dir {
        cfg.local.data_dir = Some(d);
    }
    let default_dir = env
        .get("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(|| PathBuf::from("."))
        .join("luna-lambda");
    let data_dir = cfg.data_dir(&default_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        tracing::info!(config = %cfg.summary(&data_dir), "starting luna-lambda-rs {}", env!("CARGO_PKG_VERSION"));
        let platform = cfg.platform(&data_dir, &env).await?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        platform.start().await?;
        tracing::info!("listening on http://{}", listener.local_addr()?);
        lambda_server::serve(listener, platform, shutdown_signal()).await?;
        tracing::info!("stopped; lambdas keep running and are re-adopted at the next start");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
