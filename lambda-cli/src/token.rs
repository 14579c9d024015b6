//! `luna-lambda token create|list|revoke`: API tokens (an admin token is needed when the server
//! requires tokens).

use crate::output::{self, outln};
use crate::remote::Ctx;
use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use lambda_core::auth::{CreateTokenRequest, TokenRecord, TokenScope, parse_expiry};
use std::process::ExitCode;

/// What a token may do.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ScopeArg {
    /// GET only.
    Read,
    /// Everything on its account's lambdas, the proxy included.
    Write,
    /// Only the proxy (invoking lambdas).
    Invoke,
}

impl From<ScopeArg> for TokenScope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Read => Self::Read,
            ScopeArg::Write => Self::Write,
            ScopeArg::Invoke => Self::Invoke,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Make a token; prints it once (it is not stored, only its hash).
    Create {
        /// Unique name (A-Z a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// The account it acts for.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        account: Option<uuid::Uuid>,
        /// Every account, and the admin routes (tokens, gc, metrics).
        #[arg(long)]
        admin: bool,
        /// What it may do.
        #[arg(long, value_enum, default_value = "write")]
        scope: ScopeArg,
        /// Lifetime: 90s, 15m, 12h, 30d (default: never expires).
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name; every server stops taking it within a second.
    Revoke {
        /// Token id or name.
        #[arg(value_name = "ID|NAME")]
        id_or_name: String,
    },
}

/// Runs one `token` command.
pub(crate) async fn token(ctx: &Ctx, action: TokenAction) -> anyhow::Result<ExitCode> {
    match action {
        TokenAction::Create {
            name,
            account,
            admin,
            scope,
            expires,
        } => {
            let req = CreateTokenRequest {
                name,
                account_id: account,
                admin,
                scope: scope.into(),
                expires_in_secs: expires.map(|d| d.as_secs()),
            };
            let made = ctx.client.create_token(&req).await?;
            if ctx.json {
                output::json(&made);
            } else if ctx.quiet {
                outln!("{}", made.token);
            } else {
                outln!("{}", made.token);
                eprintln!(
                    "token {:?} ({}, {}): shown this once; keep it (e.g. LUNA_LAMBDA_TOKEN)",
                    made.record.name,
                    who(&made.record),
                    made.record.scope.as_str()
                );
            }
        }
        TokenAction::List => {
            let tokens = ctx.client.tokens().await?;
            if ctx.json {
                output::json(&serde_json::json!({ "tokens": tokens }));
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.token_id.to_string(),
                            t.name.clone(),
                            who(t),
                            t.scope.as_str().to_owned(),
                            t.expire_time.map_or("never".into(), output::rfc3339),
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "FOR", "SCOPE", "EXPIRES"], &rows);
            }
        }
        TokenAction::Revoke { id_or_name } => {
            let id = match uuid::Uuid::parse_str(&id_or_name) {
                Ok(id) => id,
                Err(_) => by_name(ctx, &id_or_name).await?,
            };
            ctx.client.revoke_token(&id).await?;
            if ctx.json {
                output::json(&serde_json::json!({ "revoked": id }));
            } else if !ctx.quiet {
                outln!("revoked {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn by_name(ctx: &Ctx, name: &str) -> anyhow::Result<uuid::Uuid> {
    match ctx.client.tokens().await?.iter().find(|t| t.name == name) {
        Some(t) => Ok(t.token_id),
        None => bail!("no token named {name:?} (see `luna-lambda token list`)"),
    }
}

fn who(t: &TokenRecord) -> String {
    match (t.admin, t.account_id) {
        (true, _) => "admin".into(),
        (false, Some(a)) => a.to_string(),
        (false, None) => "-".into(),
    }
}
