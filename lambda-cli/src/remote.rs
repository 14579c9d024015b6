//! The commands that talk to a server: one function per command, over
//! `lambda_server::client::Client`.

use crate::commands::read_lambda;
use crate::output::{self, Progress, out, outln};
use crate::{Command, ConfigAction, CreateArgs, OnOff};
use anyhow::{Context, bail};
use futures::StreamExt;
use lambda_core::api::Credentials;
use lambda_core::{LambdaId, LambdaName};
use lambda_server::client::Client;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What every remote command needs: the client and the output mode.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) json: bool,
    pub(crate) quiet: bool,
}

/// Runs one remote command.
pub(crate) async fn remote(ctx: Ctx, cmd: Command) -> anyhow::Result<ExitCode> {
    let ctx = &ctx;
    match cmd {
        Command::Create(args) => create(ctx, args).await,
        Command::Update {
            id,
            path,
            param_file,
            wait,
            timeout,
        } => update(ctx, id, path, param_file, wait, timeout).await,
        Command::Delete { id } => delete(ctx, id).await,
        Command::List {
            name,
            page,
            page_size,
        } => list(ctx, name, page, page_size).await,
        Command::Get { id } => get(ctx, id).await,
        Command::Status { id } => status(ctx, id).await,
        Command::Logs { id, tail, follow } => logs(ctx, id, tail, follow).await,
        Command::ImageLogs { id, follow } => image_logs(ctx, id, follow).await,
        Command::Docs { id, yaml, output } => docs(ctx, id, yaml, output).await,
        Command::Config {
            action: ConfigAction::Set { id, file },
        } => set_config(ctx, id, file).await,
        Command::Switch { id, state } => switch(ctx, id, state).await,
        Command::Task { action } => crate::task::task(ctx, action).await,
        Command::Token { action } => crate::token::token(ctx, action).await,
        Command::Versions { id } => crate::versions::versions(ctx, id).await,
        Command::Rollback {
            id,
            to,
            wait,
            timeout,
        } => crate::versions::rollback(ctx, id, to, wait, timeout).await,
        Command::Gc { dry_run } => crate::versions::gc(ctx, dry_run).await,
        Command::Export { id, output } => crate::versions::export(ctx, id, output).await,
        Command::Import { file } => crate::versions::import(ctx, &file).await,
        Command::Invoke {
            id,
            data,
            path,
            method,
            headers,
            verbose,
        } => invoke(ctx, id, data, path, method, headers, verbose).await,
        other => bail!("{other:?} is not a remote command"),
    }
}

/// `create PATH --name N`: validate locally, upload, optionally wait until it runs.
async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let CreateArgs {
        path,
        name,
        lambda_type,
        param_file,
        description,
        user_docker_commands,
        wait: do_wait,
        timeout,
    } = args;
    let mut progress = Progress::new(quiet || json);
    progress.stage("validating");
    let lambda_name = LambdaName::parse(&name)?;
    let params = parameters(param_file.as_deref(), description, user_docker_commands)?;
    let bytes = read_lambda(&path)?;
    progress.stage("uploading");
    let creds = Credentials {
        lambda_name,
        lambda_type: lambda_type.core(),
    };
    let created = client.create(bytes, &creds, params.as_ref()).await;
    progress.finish();
    let created = created?;
    if do_wait {
        wait(client, &created.lambda_id, 1, timeout, quiet || json).await?;
    }
    if json {
        output::json(&created);
    } else {
        outln!("{}", created.lambda_id);
        if !quiet && !do_wait {
            eprintln!(
                "created; watch it with: luna-lambda status {}",
                created.lambda_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `update ID [PATH]`: a new version, optionally waited for.
async fn update(
    ctx: &Ctx,
    id: LambdaId,
    path: Option<PathBuf>,
    param_file: Option<PathBuf>,
    do_wait: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let bytes = path.as_deref().map(read_lambda).transpose()?;
    let params = parameters(param_file.as_deref(), None, Vec::new())?;
    let r = client.update(&id, bytes, params.as_ref()).await?;
    if do_wait {
        wait(client, &id, r.lambda_version, timeout, quiet || json).await?;
    }
    if json {
        output::json(&r);
    } else {
        outln!("{} v{}", r.lambda_id, r.lambda_version);
    }
    Ok(ExitCode::SUCCESS)
}

/// `delete ID`.
async fn delete(ctx: &Ctx, id: LambdaId) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    client.delete(&id).await?;
    if json {
        output::json(&serde_json::json!({"deleted": id}));
    } else if !quiet {
        outln!("deleted {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`: a table, or the JSON page.
async fn list(
    ctx: &Ctx,
    name: Option<String>,
    page: u64,
    page_size: u64,
) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let list = client.list(page, page_size, name.as_deref()).await?;
    if json {
        output::json(&list);
    } else {
        let rows: Vec<Vec<String>> = list
            .lambdas
            .iter()
            .map(|l| {
                vec![
                    l.lambda_name.to_string(),
                    l.lambda_id.to_string(),
                    l.lambda_type.to_string(),
                    l.status.to_string(),
                    l.image_status.to_string(),
                    l.lambda_version.to_string(),
                    age(l.create_time),
                ]
            })
            .collect();
        output::table(
            &["NAME", "ID", "TYPE", "STATUS", "IMAGE", "VERSION", "AGE"],
            &rows,
        );
        if !quiet && list.count > list.lambdas.len() as u64 {
            eprintln!("({} of {}; see --page)", list.lambdas.len(), list.count);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `get ID`: the record.
async fn get(ctx: &Ctx, id: LambdaId) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let json = ctx.json;
    let rec = client.get(&id).await?;
    if json {
        output::json(&rec);
    } else {
        outln!(
            "{} ({}) v{} {}",
            rec.lambda_name,
            rec.lambda_id,
            rec.lambda_version,
            rec.lambda_type
        );
        outln!(
            "status {} / image {}{}",
            rec.status,
            rec.image_status,
            rec.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let bounds = rec
            .parameters
            .deploy_parameters
            .replica_bounds(rec.parameters.eternal);
        outln!(
            "replicas {} (between {} and {})",
            rec.replicas,
            bounds.min,
            bounds.max
        );
        outln!(
            "alive {}, docs {}, archive {} bytes sha256 {}",
            rec.alive,
            rec.has_docs,
            rec.archive.size,
            rec.archive.sha256
        );
        outln!(
            "created {} ago, updated {} ago, last used {}",
            age(rec.create_time),
            age(rec.last_update_time),
            rec.last_usage
                .map_or_else(|| "never".to_owned(), |t| format!("{} ago", age(t)))
        );
        outln!("parameters {}", serde_json::to_string(&rec.parameters)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `status ID`: the status and a table of replicas.
async fn status(ctx: &Ctx, id: LambdaId) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let json = ctx.json;
    let st = client.status(&id).await?;
    if json {
        output::json(&st);
    } else {
        outln!(
            "{}{}",
            st.status,
            st.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let rows: Vec<Vec<String>> = st
            .replicas
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.status.clone(),
                    r.restarts.to_string(),
                    r.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            output::table(&["REPLICA", "STATUS", "RESTARTS", "REASON"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `logs ID [--tail N] [-f]`: runtime logs per replica; `-f` polls for new lines.
async fn logs(
    ctx: &Ctx,
    id: LambdaId,
    tail: Option<usize>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let logs = client.logs(&id, tail).await?;
    if json && !follow {
        output::json(&logs);
    } else {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (replica, text) in &logs.logs {
            if !quiet && logs.logs.len() > 1 {
                outln!("==> {replica}");
            }
            out(text);
            seen.insert(replica.clone(), text.lines().count());
        }
        if follow {
            // The API has no log stream: poll the full logs and print what is new.
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = client.logs(&id, None).await?;
                for (replica, text) in &now.logs {
                    let lines: Vec<&str> = text.lines().collect();
                    let from = seen.get(replica).copied().unwrap_or(0).min(lines.len());
                    for l in &lines[from..] {
                        outln!("[{replica}] {l}");
                    }
                    seen.insert(replica.clone(), lines.len());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `image-logs ID [-f]`: the build log, streamed with `-f`.
async fn image_logs(ctx: &Ctx, id: LambdaId, follow: bool) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    if follow {
        let mut s = client.follow_image_logs(&id).await?;
        while let Some(chunk) = s.next().await {
            out(&String::from_utf8_lossy(&chunk?));
        }
    } else {
        out(&client.image_logs(&id).await?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `docs ID [--yaml] [-o FILE]`.
async fn docs(
    ctx: &Ctx,
    id: LambdaId,
    yaml: bool,
    save_to: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let quiet = ctx.quiet;
    let body = client.docs(&id, yaml).await?;
    match save_to {
        Some(f) => {
            std::fs::write(&f, &body).with_context(|| format!("cannot write {}", f.display()))?;
            if !quiet {
                eprintln!("saved {}", f.display());
            }
        }
        None => out(&String::from_utf8_lossy(&body)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `config set ID FILE|-`: replace the user config.
async fn set_config(ctx: &Ctx, id: LambdaId, file: String) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let mut text = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
    }
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{file} is not valid JSON"))?;
    let r = client.set_config(&id, &value).await?;
    if json {
        output::json(&r);
    } else if !quiet {
        outln!("config set; {id} restarts with it (no rebuild)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `switch ID on|off`.
async fn switch(ctx: &Ctx, id: LambdaId, state: OnOff) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let (json, quiet) = (ctx.json, ctx.quiet);
    let rec = client.switch(&id, matches!(state, OnOff::On)).await?;
    if json {
        output::json(&rec);
    } else if !quiet {
        outln!("{id} switched {}", if rec.alive { "on" } else { "off" });
    }
    Ok(ExitCode::SUCCESS)
}

/// `invoke ID`: one request through the proxy; exit 1 on a non-2xx answer.
async fn invoke(
    ctx: &Ctx,
    id: LambdaId,
    data: Option<String>,
    path: String,
    method: String,
    headers: Vec<String>,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let client = &ctx.client;
    let body = match data {
        None => None,
        Some(d) => Some(match d.strip_prefix('@') {
            Some(f) => std::fs::read(f).with_context(|| format!("cannot read {f}"))?,
            None => d.into_bytes(),
        }),
    };
    let mut hs = Vec::new();
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} must be K:V"))?;
        hs.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if body.is_some()
        && !hs
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        hs.push(("content-type".into(), "application/json".into()));
    }
    let started = Instant::now();
    let r = client.invoke(&id, &method, &path, &hs, body).await?;
    if verbose {
        eprintln!(
            "HTTP {} in {:.1} ms",
            r.status,
            started.elapsed().as_secs_f64() * 1000.0
        );
        for (k, v) in &r.headers {
            eprintln!("{k}: {v}");
        }
    }
    outln!("{}", String::from_utf8_lossy(&r.body));
    if !(200..300).contains(&r.status) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn parameters(
    file: Option<&Path>,
    description: Option<String>,
    user_docker_commands: Vec<String>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let mut value = match file {
        None => None,
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let v: serde_json::Value = if f.extension().is_some_and(|e| e == "toml") {
                let t: toml::Table = text
                    .parse()
                    .with_context(|| format!("{} is not valid TOML", f.display()))?;
                serde_json::to_value(t)?
            } else {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", f.display()))?
            };
            Some(v)
        }
    };
    if description.is_some() || !user_docker_commands.is_empty() {
        let v = value.get_or_insert_with(|| serde_json::json!({}));
        let obj = v
            .as_object_mut()
            .context("the parameters file must hold an object")?;
        if let Some(d) = description {
            obj.insert("description".into(), serde_json::Value::String(d));
        }
        if !user_docker_commands.is_empty() {
            obj.insert(
                "user_docker_commands".into(),
                serde_json::json!(user_docker_commands),
            );
        }
    }
    Ok(value)
}

fn age(t: time::OffsetDateTime) -> String {
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn stage_of(rec: &lambda_core::api::LambdaRecord) -> &'static str {
    use lambda_core::{ImageStatus::*, LambdaStatus::*};
    match (rec.image_status, rec.status) {
        (Pending, _) => "pending (queued for a build)",
        (InProgress, _) => "building",
        (Completed, Running) => "running",
        (Completed, Waiting) => "deploying",
        (Completed, _) => "deploying",
        (Error, _) => "build failed",
    }
}

/// Waits for `id` to run, with a progress line and the build log streamed under it.
pub(crate) async fn wait(
    client: &Client,
    id: &LambdaId,
    version: u64,
    timeout: u64,
    quiet: bool,
) -> anyhow::Result<()> {
    let progress = std::cell::RefCell::new(Progress::new(quiet));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let log_client = client.clone();
    let log_id = *id;
    let mut follower = tokio::spawn(async move {
        // The build may not have started yet: retry following until it has a log.
        if let Ok(mut stream) = log_client.follow_image_logs(&log_id).await {
            let mut pending = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    let _ = tx.send(line.trim_end().to_owned());
                }
            }
        }
    });
    let waiting =
        client.wait_until_running(id, Some(version), Duration::from_secs(timeout), |rec| {
            progress.borrow_mut().stage(stage_of(rec));
        });
    tokio::pin!(waiting);
    let result = loop {
        tokio::select! {
            r = &mut waiting => break r,
            Some(line) = rx.recv() => progress.borrow().line(&line),
        }
    };
    // The build is over: its log ends by itself. Let the follower deliver what it still has
    // (a fast build can finish before the follow request is even answered), then stop it.
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut follower).await;
    follower.abort();
    while let Ok(line) = rx.try_recv() {
        progress.borrow().line(&line);
    }
    match result {
        Ok(_) => {
            progress.borrow_mut().stage("running");
            progress.borrow().finish();
            Ok(())
        }
        Err(e) => {
            progress.borrow().finish();
            Err(e.into())
        }
    }
}
