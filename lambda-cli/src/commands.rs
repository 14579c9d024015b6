//! The commands.

use crate::output::{self, outln};
use crate::{Cli, Command, TypeArg};
use anyhow::{Context, bail};
use lambda_core::archive::{Limits, validate_bytes_for};
use lambda_core::pack::pack_dir;
use lambda_core::{LambdaId, Severity, ValidationReport};
use lambda_server::client::Client;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (json, quiet) = (cli.json, cli.quiet);
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => serve(config, data_dir, listen),
        Command::Validate { path, lambda_type } => validate(&path, lambda_type, json),
        Command::Pack { dir, output } => pack(&dir, output, json),
        Command::Init { dir, lambda_type } => init(&dir, lambda_type, json, quiet),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "luna-lambda", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            path,
            port,
            lambda_type,
        } => run_local(&path, port, lambda_type),
        other => {
            let mut client =
                Client::new(&cli.server, cli.account_id)?.with_token(cli.token.clone());
            if let Some(ca) = &cli.ca {
                client = client.with_ca_file(ca)?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::remote::remote(
                crate::remote::Ctx {
                    client,
                    json,
                    quiet,
                },
                other,
            ))
        }
    }
}

/// Reads a lambda as zip bytes: a folder is packed in memory, anything else is read as a zip.
pub(crate) fn read_lambda(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        Ok(pack_dir(path)?)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn validate(path: &Path, ty: TypeArg, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_lambda(path)?;
    let (ok, report) = match validate_bytes_for(&bytes, &Limits::default(), ty.core()) {
        Ok(a) => (
            true,
            ValidationReport {
                problems: a.warnings,
            },
        ),
        Err(r) => (false, r),
    };
    if json {
        output::json(&serde_json::json!({
            "path": path.display().to_string(),
            "valid": ok,
            "problems": report.problems,
        }));
    } else {
        for p in &report.problems {
            outln!("{p}");
        }
        let errors = report
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = report.problems.len() - errors;
        if ok {
            outln!("{}: valid ({warnings} warning(s))", path.display());
        } else {
            outln!(
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

fn pack(dir: &Path, output: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
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
    if json {
        output::json(
            &serde_json::json!({"path": output.display().to_string(), "size": bytes.len()}),
        );
    } else {
        outln!("{} ({} bytes)", output.display(), bytes.len());
    }
    Ok(ExitCode::SUCCESS)
}

const STANDALONE_MAIN: &str = r#""""A standalone lambda: called directly through the platform's proxy."""

from luna_lambda_tools import StandaloneLambdaRequest, UserException, logger


async def main(request: StandaloneLambdaRequest) -> dict:
    data = request.json or {}
    if not isinstance(data, dict):
        raise UserException(400, "send a JSON object")
    name = data.get("name", "world")
    logger.info("greeting %s", name)
    return {"greeting": f"hello, {name}"}
"#;

const TASKS_MAIN: &str = r#""""A tasks lambda: POST /1/tasks splits a task into subtasks that run across its replicas."""

from luna_lambda_tools.public.exceptions import UserTaskLambdaException
from luna_lambda_tools.public.tasks import BaseLambdaTask


class Task(BaseLambdaTask):
    async def splitTasksContent(self, content: dict) -> list[dict]:
        items = content.get("items")
        if not isinstance(items, list):
            raise UserTaskLambdaException("content needs a list 'items'")
        return [{"item": item} for item in items]

    async def executeSubtask(self, subTaskContent: dict) -> dict:
        return {"item": subTaskContent["item"], "length": len(str(subTaskContent["item"]))}
"#;

const HANDLERS_MAIN: &str = r#""""A handlers lambda: luna-handlers sends it event sources. `request.data` is the body
parsed into EventSourceSchema; a body that does not match answers 400 naming the field."""

from luna_lambda_tools import HandlersLambdaRequest


async def main(request: HandlersLambdaRequest) -> dict:
    sources = request.data.sources
    return {"handler_id": request.handlerId, "sources": len(sources), "filenames": [s.filename for s in sources]}
"#;

/// The README of a new lambda folder: what it is and the commands to try it.
fn init_readme(name: &str, ty: TypeArg, type_flag: &str) -> String {
    let (what, try_it) = match ty {
        TypeArg::Tasks => (
            "a BaseLambdaTask subclass: `splitTasksContent` splits a task, `executeSubtask` runs one part",
            format!(
                "luna-lambda validate . --type tasks               # every problem at once\nluna-lambda create . --name {name} --type tasks --wait   # ship it to the platform\nluna-lambda task create <ID> --content '{{\"items\": [\"a\", \"bb\"]}}' --wait\nluna-lambda task result <TASK_ID>\n"
            ),
        ),
        TypeArg::Standalone | TypeArg::Handlers => {
            let example = if matches!(ty, TypeArg::Handlers) {
                r#"'{"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}]}' -H 'Luna-Handler-Id: h1'"#
            } else {
                r#"'{"name": "ann"}'"#
            };
            (
                "`async def main(request) -> dict`",
                format!(
                    "luna-lambda validate .{type_flag}                         # every problem at once\nluna-lambda run .{type_flag}                              # serve it on 127.0.0.1:8000, reloading on change\npython run.py                                  # or so, with the runtime installed (pip install lambda-build/runtime)\ncurl -s -X POST -d {example} 127.0.0.1:8000/main\nluna-lambda create . --name {name}{type_flag} --wait   # ship it to the platform\nluna-lambda invoke <ID> --data {example}\n"
                ),
            )
        }
    };
    format!(
        "# {name}\n\nA luna-lambda{type_flag} lambda. `lambda_main.py` holds {what}; add\npackages to `requirements.txt`; `docs/` is served at `GET /1/lambdas/<id>/docs`.\n\n```sh\n{try_it}```\n"
    )
}

fn init(dir: &Path, ty: TypeArg, json: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; pick a new folder",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("my-lambda")
        .to_ascii_lowercase()
        .replace(['_', ' ', '.'], "-");
    let (main, lambda_type, type_flag) = match ty {
        TypeArg::Standalone => (STANDALONE_MAIN, "standalone", ""),
        TypeArg::Handlers => (HANDLERS_MAIN, "handlers", " --type handlers"),
        TypeArg::Tasks => (TASKS_MAIN, "tasks", " --type tasks"),
    };
    let readme = init_readme(&name, ty, type_flag);
    let files: Vec<(&str, String)> = vec![
        ("lambda_main.py", main.to_owned()),
        (
            "run.py",
            format!(
                "# Serves this lambda on LAMBDA_PORT (default 8000) as a deployed replica does, as the original\n# documents it: `pip install <luna-lambda-rs>/lambda-build/runtime`, then `python run.py`.\nfrom luna_lambda_tools.public.run import run\n\nrun(lambdaType=\"{lambda_type}\")\n"
            ),
        ),
        (
            "requirements.txt",
            "# One requirement per line, e.g.\n# requests==2.32.3\n".to_owned(),
        ),
        (
            "docs/lambda.html",
            format!(
                "<!doctype html>\n<html><head><title>{name}</title></head>\n<body><h1>{name}</h1><p>What this lambda does, and what to send to /main.</p></body></html>\n"
            ),
        ),
        (
            "docs/lambda.yml",
            format!(
                "openapi: 3.0.0\ninfo:\n  title: {name}\n  version: \"1.0\"\npaths:\n  /main:\n    post:\n      responses:\n        \"200\": {{description: the result}}\n"
            ),
        ),
        ("README.md", readme),
    ];
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if json {
        output::json(
            &serde_json::json!({"path": dir.display().to_string(), "name": name, "files": files.iter().map(|(f, _)| *f).collect::<Vec<_>>()}),
        );
    } else if !quiet {
        outln!("created {} ({} lambda)", dir.display(), lambda_type);
        outln!(
            "next: luna-lambda create {} --name {name}{type_flag} --wait",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Parameters from a file (JSON, or TOML by extension) with command-line additions.
fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
) -> anyhow::Result<ExitCode> {
    let env: HashMap<String, String> = std::env::vars().collect();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LUNA_LAMBDA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        let setup = cfg.setup(&data_dir, &env).await?;
        warn_how_open(&cfg, &setup.edge);
        let running = lambda_server::server::start(setup, &cfg.listen).await?;
        tracing::info!("listening on {}", running.url());
        running.serve_until(shutdown_signal()).await?;
        tracing::info!("stopped; lambdas keep running and are re-adopted at the next start");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Says at start what a server reachable from the network should not do quietly.
fn warn_how_open(cfg: &lambda_server::Config, edge: &lambda_server::http::EdgeSettings) {
    let auth = &edge.auth;
    if let Some(w) = &auth.open_warning {
        tracing::warn!("{w}");
    }
    if auth.enabled && auth.admin_token.is_none() {
        tracing::warn!(
            "tokens are required and no bootstrap admin token is set ({}): tokens can only be made with an admin token",
            lambda_server::config::ADMIN_TOKEN_ENV
        );
    }
    if !cfg.on_loopback() && cfg.orchestrator.kind == "local" {
        tracing::warn!(
            "the local orchestrator runs every lambda as a process of this user with no isolation between them: it is for development, not for a server others reach"
        );
    }
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

/// Newest modification time of the files a lambda folder would pack.
fn fingerprint(dir: &Path) -> u128 {
    fn walk(d: &Path, acc: &mut u128) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if lambda_core::pack::SKIPPED_DIRS.contains(&name.as_ref()) || name.ends_with(".pyc") {
                continue;
            }
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    walk(&p, acc);
                } else if let Ok(t) = m.modified() {
                    let ns = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    *acc = acc.wrapping_add(ns ^ m.len() as u128);
                }
            }
        }
    }
    let mut acc = 0;
    walk(dir, &mut acc);
    acc
}

fn run_local(path: &Path, port: u16, ty: TypeArg) -> anyhow::Result<ExitCode> {
    use lambda_build::{BuildRequest, ImageBuilder, LocalBuilder, LocalBuilderConfig};
    if !path.is_dir() {
        bail!("{} is not a lambda folder", path.display());
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let cache = env
        .get("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("luna-lambda")
        .join("run");
    let uv = env.get("PATH").and_then(|p| {
        p.split(':')
            .map(|d| Path::new(d).join("uv"))
            .find(|p| p.is_file())
    });
    let builder = LocalBuilder::new(LocalBuilderConfig {
        data_dir: cache,
        python: "python3".into(),
        // Without uv on PATH, uv is installed once into the cache folder, as `serve` does.
        provision_uv: uv.is_none(),
        uv,
        pip_args: Vec::new(),
    });
    let id = LambdaId::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut version = 0u64;
    loop {
        version += 1;
        let bytes = pack_dir(path)?;
        let archive = match validate_bytes_for(&bytes, &Limits::default(), ty.core()) {
            Ok(a) => a,
            Err(report) => {
                eprintln!("{report}");
                eprintln!("fix the problems above; waiting for changes...");
                let before = fingerprint(path);
                while fingerprint(path) == before {
                    std::thread::sleep(Duration::from_millis(300));
                }
                continue;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let req = BuildRequest {
            lambda_id: id,
            version,
            lambda_type: ty.core(),
            archive_bytes: bytes.into(),
            archive,
            parameters: lambda_core::Parameters::default(),
            timeout: Duration::from_secs(600),
        };
        let built = rt.block_on(builder.build(req, tx, tokio_util_cancel()));
        while let Ok(l) = rx.try_recv() {
            eprintln!("  {l}");
        }
        let lambda_core::Artifact::Local { app_dir, python } = built? else {
            bail!("the local builder made something other than a folder");
        };
        eprintln!(
            "serving {} on http://127.0.0.1:{port}/main (Ctrl-C stops; edits restart it)",
            path.display()
        );
        let mut child = std::process::Command::new(&python)
            .arg(app_dir.join("run.py"))
            .current_dir(&app_dir)
            .env("LAMBDA_PORT", port.to_string())
            .env("LAMBDA_HOST", "127.0.0.1")
            .env("LAMBDA_TYPE", ty.core().as_str())
            .env("LAMBDA_VERSION", version.to_string())
            .spawn()
            .with_context(|| format!("cannot start {}", python.display()))?;
        let before = fingerprint(path);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            if let Some(status) = child.try_wait()? {
                eprintln!("the lambda exited ({status}); waiting for changes...");
                while fingerprint(path) == before {
                    std::thread::sleep(Duration::from_millis(300));
                }
                break;
            }
            if fingerprint(path) != before {
                eprintln!("change detected; restarting");
                let _ = std::process::Command::new("kill")
                    .arg(child.id().to_string())
                    .status();
                let _ = child.wait();
                break;
            }
        }
        let _ = rt.block_on(builder.remove(&id, &lambda_core::Artifact::Local { app_dir, python }));
    }
}

fn tokio_util_cancel() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}
