//! `luna-lambda`: the command line of luna-lambda-rs.
//!
//! Exit codes: 0 ok, 1 the operation failed or the input is invalid, 2 usage error (clap).

mod commands;
mod output;
mod remote;
mod task;
mod token;
mod versions;

use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc, with background threads returning freed pages within a second
/// (`.cargo/config.toml` configures it when it is built): the proxy's per-request allocations
/// cost less than with glibc's allocator, and a burst's memory leaves the RSS, which mimalloc's
/// arenas kept (`scripts/bench-proxy`, `scripts/bench-scale`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::process::ExitCode;

/// Serverless Python lambdas: scaffold, validate, pack, ship, watch and call them.
///
/// Start a platform with `luna-lambda serve`, then from another terminal:
/// `luna-lambda init my-lambda`, `luna-lambda create my-lambda --name my-lambda --wait`,
/// `luna-lambda invoke <ID> --data '{"hello": 1}'`.
#[derive(Debug, Parser)]
#[command(
    name = "luna-lambda",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub(crate) struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "LUNA_LAMBDA_URL",
        default_value = "http://127.0.0.1:5210"
    )]
    pub(crate) server: String,
    /// Account id (a UUID) to act for: reads are limited to its lambdas, and lambdas are created
    /// for it (without one, reads see every lambda and creates use 00000000-0000-4000-8000-000000000000).
    #[arg(long, global = true, env = "LUNA_ACCOUNT_ID")]
    pub(crate) account_id: Option<uuid::Uuid>,
    /// API token for a server that requires one (`[auth] mode = "token"`); its account is the
    /// one acted for.
    #[arg(long, global = true, env = "LUNA_LAMBDA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate(s), PEM, to trust for an https:// server besides the system's (e.g. the
    /// CA of the server's `[tls] cert`).
    #[arg(long, global = true, env = "LUNA_LAMBDA_CA")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// Print JSON for scripts instead of human output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print only what was asked for (no progress, no hints).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Lambda types.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum TypeArg {
    /// Requests sent directly to the lambda.
    Standalone,
    /// Requests from luna-handlers.
    Handlers,
    /// Tasks split into subtasks that the platform runs (POST /1/tasks).
    Tasks,
}

impl TypeArg {
    pub(crate) fn core(self) -> lambda_core::LambdaType {
        match self {
            Self::Standalone => lambda_core::LambdaType::Standalone,
            Self::Handlers => lambda_core::LambdaType::Handlers,
            Self::Tasks => lambda_core::LambdaType::Tasks,
        }
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OnOff {
    /// Deployed and serving.
    On,
    /// Undeployed; record and archive kept.
    Off,
}

/// The arguments of `create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// A lambda folder (packed first) or a .zip.
    path: PathBuf,
    /// Lambda name (lowercase letters, digits, '-'; starts with a letter).
    #[arg(long)]
    name: String,
    /// Lambda type.
    #[arg(long = "type", value_enum, default_value = "standalone")]
    lambda_type: TypeArg,
    /// Parameters file (JSON, or TOML when it ends in .toml).
    #[arg(long)]
    param_file: Option<PathBuf>,
    /// Description (overrides the parameters file's).
    #[arg(long)]
    description: Option<String>,
    /// An extra Dockerfile instruction (repeat for several), e.g. "RUN apt-get install -y libgl1".
    #[arg(long = "user-docker-command")]
    user_docker_commands: Vec<String>,
    /// Wait until it runs, showing the stages and the build log.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the platform server (API and proxy). With no config: the embedded default, data in
    /// a local folder, lambdas built into virtualenvs and run as local processes.
    Serve {
        /// TOML configuration file; LUNA_LAMBDA_* environment variables override it.
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
    /// Create a lambda folder that validates and runs as created.
    Init {
        /// The folder to create.
        dir: PathBuf,
        /// Lambda type.
        #[arg(long = "type", value_enum, default_value = "standalone")]
        lambda_type: TypeArg,
    },
    /// Check a lambda (a .zip or a folder) the way the server will: every problem at once.
    ///
    /// Exits 0 when valid (warnings may be printed), 1 when invalid.
    Validate {
        /// A .zip archive or a lambda folder (packed in memory first).
        path: PathBuf,
        /// Lambda type (a tasks lambda defines a BaseLambdaTask subclass instead of main).
        #[arg(long = "type", value_enum, default_value = "standalone")]
        lambda_type: TypeArg,
    },
    /// Pack a lambda folder into a deterministic zip (same folder, same bytes).
    ///
    /// Skips __pycache__, .git, virtualenvs and *.pyc.
    Pack {
        /// The lambda folder.
        dir: PathBuf,
        /// Output file (default: the folder's name with .zip, in the current folder).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Create a lambda from a folder or a .zip.
    Create(CreateArgs),
    /// Update a lambda: a new version from PATH (or the stored archive) and/or parameters.
    Update {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// A lambda folder or .zip; omit to rebuild from the stored archive.
        path: Option<PathBuf>,
        /// Parameters file (JSON or TOML).
        #[arg(long)]
        param_file: Option<PathBuf>,
        /// Wait until the new version runs.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Delete a lambda, its deployment, archives and build artifacts.
    Delete {
        /// Lambda id.
        id: lambda_core::LambdaId,
    },
    /// List lambdas.
    List {
        /// Only lambdas with this name.
        #[arg(long)]
        name: Option<String>,
        /// Page (from 1).
        #[arg(long, default_value_t = 1)]
        page: u64,
        /// Lambdas per page (1..=1000).
        #[arg(long, default_value_t = 100)]
        page_size: u64,
    },
    /// Show a lambda's record.
    Get {
        /// Lambda id.
        id: lambda_core::LambdaId,
    },
    /// Show a lambda's deploy status with each replica (status, reason, restarts).
    Status {
        /// Lambda id.
        id: lambda_core::LambdaId,
    },
    /// Show a lambda's runtime logs.
    Logs {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// Last N lines per replica.
        #[arg(long)]
        tail: Option<usize>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Show a lambda's build log.
    ImageLogs {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// Stream it until the build ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print (or save) a lambda's docs.
    Docs {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// The YAML (OpenAPI) docs instead of the HTML.
        #[arg(long)]
        yaml: bool,
        /// Save to this file instead of printing.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Manage a lambda's user config.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Tasks of tasks lambdas: create, watch, read results, cancel, delete.
    Task {
        #[command(subcommand)]
        action: crate::task::TaskAction,
    },
    /// API tokens: create, list, revoke (with an admin token when the server requires tokens).
    Token {
        #[command(subcommand)]
        action: crate::token::TokenAction,
    },
    /// List a lambda's stored versions: archive, build outcome, whether the artifact is kept.
    Versions {
        /// Lambda id.
        id: lambda_core::LambdaId,
    },
    /// Go back to an earlier version: a new version made of it, with no build while its
    /// artifact is kept.
    Rollback {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// The version to go back to (default: the previous one).
        #[arg(long)]
        to: Option<u64>,
        /// Wait until the new version runs.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Collect garbage: archives, logs and artifacts of versions beyond retention and of deleted
    /// lambdas, unused environments, images and registry manifests, orphaned objects.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Save a lambda (its archive and a manifest) to a zip that `import` makes again.
    Export {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// Where to write the zip (default: ID.export.zip).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Make a lambda from a zip that `export` wrote (on this or another server).
    Import {
        /// The export zip.
        file: PathBuf,
    },
    /// Switch a lambda on or off.
    Switch {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// on or off.
        #[arg(value_enum)]
        state: OnOff,
    },
    /// Call a lambda through the proxy; prints the body. Exits 1 on a non-2xx answer.
    Invoke {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// Request body: JSON text, or @FILE.
        #[arg(long)]
        data: Option<String>,
        /// Path inside the lambda.
        #[arg(long, default_value = "main")]
        path: String,
        /// HTTP method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Extra header K:V (repeat for several).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Also print the status, headers and timing (to stderr).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run one lambda locally with the embedded runtime and no server; restarts it when files in
    /// the folder change.
    Run {
        /// The lambda folder.
        path: PathBuf,
        /// Port to serve on (127.0.0.1).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Lambda type.
        #[arg(long = "type", value_enum, default_value = "standalone")]
        lambda_type: TypeArg,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Replace the user config from a JSON file (or - for standard input) and restart the
    /// lambda with it, without a rebuild.
    Set {
        /// Lambda id.
        id: lambda_core::LambdaId,
        /// JSON file, or - for standard input.
        file: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            ExitCode::from(1)
        }
    }
}
