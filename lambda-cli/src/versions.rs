//! `luna-lambda versions ID` and `luna-lambda rollback ID [--to N]`.

use crate::output::{self, outln};
use crate::remote::Ctx;
use lambda_core::LambdaId;
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
                v.record
                    .create_time
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
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
