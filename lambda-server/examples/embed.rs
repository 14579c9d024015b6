//! The platform embedded in a Rust program: started in-process on a temporary folder (the
//! embedded default: local storage, a virtualenv build, local processes), a lambda created from
//! `examples/hello`, invoked through the proxy, its status read, deleted, and the server stopped.
//!
//! `cargo run --example embed -p lambda-server` (Python 3 on `PATH`; `uv` too, if it is there).

use anyhow::{Context, bail};
use lambda_core::LambdaName;
use lambda_core::api::Credentials;
use lambda_core::{LambdaStatus, LambdaType};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    // The binary's environment: the library reads none of its own (PATH locates Python and uv).
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = lambda_server::Config::load(None, &env)?;
    let setup = config.setup(data.path(), &env).await?;
    let server = lambda_server::server::start(setup, "127.0.0.1:0").await?;
    println!("serving on {}", server.url());

    let platform = server.platform();
    let account = uuid::Uuid::new_v4();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let archive = lambda_core::pack::pack_dir(&hello)?;
    let credentials = Credentials {
        lambda_name: LambdaName::parse("hello")?,
        lambda_type: LambdaType::Standalone,
    };
    let id = platform
        .create(account, credentials, None, archive.into())
        .await?;
    println!("created lambda {id}; building and starting it");
    // Deleted whatever happens next: its replica is a process of its own, which a stopped
    // server leaves running for the next one to re-adopt.
    let used = wait_and_invoke(&server, id, account).await;
    platform.delete(&id, Some(account)).await?;
    used?;
    println!("deleted; stopping");
    server.stop().await?;
    Ok(())
}

/// Waits until the lambda runs, invokes it through the proxy and reads its status.
async fn wait_and_invoke(
    server: &lambda_server::server::Running,
    id: lambda_core::LambdaId,
    account: uuid::Uuid,
) -> anyhow::Result<()> {
    let platform = server.platform();

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = platform.status(&id, Some(account)).await?;
        match status.status {
            LambdaStatus::Running => break,
            LambdaStatus::Terminated => bail!("the lambda did not start: {:?}", status.reason),
            _ if Instant::now() > deadline => bail!("the lambda did not start in 10 min"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/1/lambdas/{id}/proxy/main", server.url()))
        .header("Luna-Account-Id", account.to_string())
        .json(&serde_json::json!({"hello": "from Rust"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("the lambda's answer")?;
    println!("the lambda answered {answer}");
    if answer != serde_json::json!({"echo": {"hello": "from Rust"}}) {
        bail!("unexpected answer {answer}");
    }

    let status = platform.status(&id, Some(account)).await?;
    println!(
        "status: {:?}, {} replica(s)",
        status.status,
        status.replicas.len()
    );
    Ok(())
}
