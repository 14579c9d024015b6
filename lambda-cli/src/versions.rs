//! `luna-lambda versions ID`, `rollback ID [--to N]`, `gc [--dry-run]`, `export ID -o FILE` and
//! `import FILE`.

use crate::output::{self, outln};
use crate::remote::Ctx;
use anyhow::Context;
use lambda_core::LambdaId;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `versions ID`: every stored version, oldest first.
pub(crate) async fn versions(ctx: &Ctx, id: LambdaId) -> anyhow::Result<ExitCode> {
    let list = ctx.client.versions(&id).await?;
    if ctx.json {
        output::json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .versions
        .iter()
        .map(|v| {
            let mut marks = Vec::new();
            if v.current {
                marks.push("current".to_owned());
            }
            if v.running {
                marks.push("running".to_owned());
            }
            if let Some(from) = v.record.rolled_back_from {
                marks.push(format!("rollback to v{from}"));
            }
            vec![
                format!("v{}", v.record.version),
                output::rfc3339(v.record.create_time),
                v.record.image_status.map_or("-".into(), |s| s.to_string()),
                if v.artifact_exists { "kept" } else { "gone" }.to_owned(),
                v.record.archive.sha256.chars().take(12).collect(),
                v.record.archive.size.to_string(),
                marks.join(", "),
            ]
        })
        .collect();
    output::table(
        &[
            "VERSION", "CREATED", "IMAGE", "ARTIFACT", "SHA256", "BYTES", "",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `rollback ID [--to N] [--wait]`: a new version made of version N (default: the previous one).
pub(crate) async fn rollback(
    ctx: &Ctx,
    id: LambdaId,
    to: Option<u64>,
    wait: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let r = ctx.client.rollback(&id, to).await?;
    if wait {
        crate::remote::wait(
            &ctx.client,
            &id,
            r.lambda_version,
            timeout,
            ctx.quiet || ctx.json,
        )
        .await?;
    }
    if ctx.json {
        output::json(&r);
    } else {
        let how = if r.rebuild {
            "its artifact was gone: built again from its archive"
        } else {
            "its artifact is deployed again, no build"
        };
        outln!(
            "{} v{} = v{} ({how})",
            r.lambda_id,
            r.lambda_version,
            r.rolled_back_from
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `gc [--dry-run]`: one collection; prints each thing removed (or that would be) and the bytes.
pub(crate) async fn gc(ctx: &Ctx, dry_run: bool) -> anyhow::Result<ExitCode> {
    let report = ctx.client.gc(dry_run).await?;
    if ctx.json {
        output::json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = report
        .removed
        .iter()
        .map(|i| vec![i.kind.clone(), i.bytes.to_string(), i.what.clone()])
        .collect();
    if !rows.is_empty() {
        output::table(&["KIND", "BYTES", "WHAT"], &rows);
    }
    outln!(
        "{} {} things, {} bytes",
        if dry_run { "would remove" } else { "removed" },
        report.removed.len(),
        report.bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// `export ID [-o FILE]`: writes the export zip.
pub(crate) async fn export(
    ctx: &Ctx,
    id: LambdaId,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let zip = ctx.client.export(&id).await?;
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{id}.export.zip")));
    std::fs::write(&path, &zip).with_context(|| format!("writing {}", path.display()))?;
    if ctx.json {
        output::json(&serde_json::json!({"lambda_id": id, "file": path, "bytes": zip.len()}));
    } else {
        outln!("{} ({} bytes)", path.display(), zip.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `import FILE`: makes a lambda from an export; prints its id.
pub(crate) async fn import(ctx: &Ctx, file: &Path) -> anyhow::Result<ExitCode> {
    let zip = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let created = ctx.client.import(zip).await?;
    if ctx.json {
        output::json(&created);
    } else {
        outln!("{}", created.lambda_id);
    }
    Ok(ExitCode::SUCCESS)
}
