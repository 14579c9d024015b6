//! The local builder: a folder with the lambda's files and the runtime, and a virtualenv.
//!
//! Layout under `data_dir`:
//! - `envs/<key>/`: virtualenvs, shared by every lambda whose environment has the same key:
//!   sha256 of the Python version, the runtime's pinned requirements and the lambda's
//!   `requirements.txt`. A code-only change, or a second lambda with the same requirements,
//!   needs no install. An env is made in `envs/<key>.partial-*` and renamed into place when
//!   complete, so a crash or a cancel never leaves a half-made env in use.
//! - `apps/<id>/v<version>/`: `run.py`, `luna_lambda_tools/` and the lambda's files.

use crate::gc::InUse;
use crate::{BuildRequest, Error, ImageBuilder, LogSink, Result, runtime};
use async_trait::async_trait;
use lambda_core::api::GcItem;
use lambda_core::archive::{REQUIREMENTS_FILE, for_each_user_file};
use lambda_core::{Artifact, LambdaId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Marker written into an environment once everything is installed.
const ENV_OK: &str = ".luna-lambda-env-ok";

/// Settings of the local builder.
#[derive(Debug, Clone)]
pub struct LocalBuilderConfig {
    /// Where envs and app folders live.
    pub data_dir: PathBuf,
    /// The Python (>= 3.11) environments are made from.
    pub python: PathBuf,
    /// `uv`, when available: makes environments about 20x faster than venv + pip.
    pub uv: Option<PathBuf>,
    /// Extra options for every install (e.g. `--index-url https://mirror/simple`).
    pub pip_args: Vec<String>,
    /// With no `uv`: install uv once into `<data_dir>/tools/uv` (the `uv` wheel from the package
    /// index, with pip, into a private virtualenv, checked to run) and use it from then on. When
    /// that fails, environments are made with venv + pip and the build log says why.
    pub provision_uv: bool,
}

/// The uv the local builder installs for itself when none is given (`provision_uv`).
pub const PROVISIONED_UV: &str = "uv==0.13.9";

/// Builds lambdas into a folder plus a cached virtualenv.
#[derive(Debug)]
pub struct LocalBuilder {
    cfg: LocalBuilderConfig,
    /// The uv in use, decided at the first environment (`None`: venv + pip).
    uv: tokio::sync::OnceCell<Option<PathBuf>>,
    env_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `python -m pip install` without prompts, progress bars or version checks.
fn pip_install(python: &Path) -> Command {
    let mut pip = Command::new(python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
    ]);
    pip
}

/// Whether `uv --version` runs.
async fn runs(uv: &Path) -> bool {
    Command::new(uv)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Writes the runtime's and the lambda's requirement files into a new env and returns the
/// matching `-r FILE` arguments.
async fn write_requirements(env_dir: &Path, requirements: &str) -> Result<Vec<String>> {
    let reqs_dir = env_dir.join(".requirements");
    tokio::fs::create_dir_all(&reqs_dir)
        .await
        .map_err(io(&reqs_dir))?;
    let runtime_reqs = reqs_dir.join("runtime.txt");
    tokio::fs::write(&runtime_reqs, runtime::REQUIREMENTS)
        .await
        .map_err(io(&runtime_reqs))?;
    let mut args = vec!["-r".to_owned(), runtime_reqs.display().to_string()];
    if !requirements.trim().is_empty() {
        let lambda_reqs = reqs_dir.join("lambda.txt");
        tokio::fs::write(&lambda_reqs, requirements)
            .await
            .map_err(io(&lambda_reqs))?;
        args.extend(["-r".to_owned(), lambda_reqs.display().to_string()]);
    }
    Ok(args)
}

impl LocalBuilder {
    /// A builder over `cfg` (no I/O until the first build or health check).
    pub fn new(cfg: LocalBuilderConfig) -> Self {
        Self {
            cfg,
            uv: tokio::sync::OnceCell::new(),
            env_locks: Mutex::default(),
        }
    }

    fn envs_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("envs")
    }

    fn app_dir(&self, id: &LambdaId, version: u64) -> PathBuf {
        self.cfg
            .data_dir
            .join("apps")
            .join(id.to_string())
            .join(format!("v{version}"))
    }

    /// `Python 3.11.7`, checked to be >= 3.11.
    async fn python_version(&self) -> Result<String> {
        let out = Command::new(&self.cfg.python)
            .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
            .output()
            .await
            .map_err(|e| {
                Error::Unavailable(format!("cannot run {}: {e}", self.cfg.python.display()))
            })?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if !out.status.success() || (major, minor) < (3, 11) {
            return Err(Error::Unavailable(format!(
                "{} is Python {v:?}; lambdas need Python 3.11 or newer",
                self.cfg.python.display()
            )));
        }
        Ok(v)
    }

    /// The environment key of a Python version and a lambda's `requirements.txt`.
    pub fn env_key(python_version: &str, requirements: &str) -> String {
        let mut h = Sha256::new();
        h.update(python_version.as_bytes());
        h.update(b"\0");
        h.update(runtime::REQUIREMENTS.as_bytes());
        h.update(b"\0");
        h.update(requirements.replace("\r\n", "\n").trim().as_bytes());
        lambda_core::hex(&h.finalize()[..12])
    }

    /// Writes the runtime and the lambda's files into a fresh app folder.
    async fn lay_out(&self, req: &BuildRequest) -> Result<PathBuf> {
        let final_dir = self.app_dir(&req.lambda_id, req.version);
        let parent = final_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let partial = parent.join(format!("v{}.partial-{}", req.version, uuid::Uuid::new_v4()));
        let bytes = req.archive_bytes.clone();
        let archive = req.archive.clone();
        let out = partial.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut guard = RemoveOnDrop(Some(out.clone()));
            std::fs::create_dir_all(&out).map_err(io(&out))?;
            let write = |name: &str, data: &[u8]| -> Result<()> {
                let path = out.join(name);
                if !path.starts_with(&out) {
                    return Err(Error::Failed {
                        reason: format!("archive entry {name:?} escapes the app folder"),
                    });
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                std::fs::write(&path, data).map_err(io(&path))
            };
            for f in runtime::files() {
                write(f.path, f.contents)?;
            }
            for_each_user_file::<_, Error>(
                std::io::Cursor::new(&bytes[..]),
                &archive,
                |name, data| write(name, data),
            )?;
            guard.0 = None;
            Ok(())
        })
        .await
        .map_err(|e| Error::Failed {
            reason: format!("laying out files failed: {e}"),
        })??;
        if final_dir.exists() {
            tokio::fs::remove_dir_all(&final_dir)
                .await
                .map_err(io(&final_dir))?;
        }
        tokio::fs::rename(&partial, &final_dir)
            .await
            .map_err(io(&final_dir))?;
        Ok(final_dir)
    }

    /// Runs a command, sending every output line to the log. Fails with the step name, the exit
    /// status and the last lines of output.
    async fn run_logged(&self, step: &str, mut cmd: Command, log: &LogSink) -> Result<()> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Failed {
            reason: format!("{step}: cannot start: {e}"),
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut tail: std::collections::VecDeque<String> = Default::default();
        while let Some(line) = rx.recv().await {
            if tail.len() == 5 {
                tail.pop_front();
            }
            tail.push_back(line.clone());
            let _ = log.send(line);
        }
        let status = child.wait().await.map_err(|e| Error::Failed {
            reason: format!("{step}: {e}"),
        })?;
        if status.success() {
            return Ok(());
        }
        let last: Vec<&str> = tail
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty())
            .collect();
        Err(Error::Failed {
            reason: format!("{step} failed ({status}): {}", last.join(" | ")),
        })
    }

    /// The environment for `requirements`, made once per key.
    /// The uv to make environments with: the configured one, else (with `provision_uv`) one
    /// installed once for this data folder, else none.
    async fn uv(&self, log: &LogSink) -> Option<&PathBuf> {
        self.uv
            .get_or_init(|| async {
                if let Some(uv) = &self.cfg.uv {
                    return Some(uv.clone());
                }
                if !self.cfg.provision_uv {
                    return None;
                }
                match self.provision_uv(log).await {
                    Ok(uv) => Some(uv),
                    Err(e) => {
                        let _ = log.send(format!(
                            "==> uv: could not be installed ({e}); making environments with venv + pip"
                        ));
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// Installs uv into `<data_dir>/tools/uv` unless a working one is there.
    async fn provision_uv(&self, log: &LogSink) -> Result<PathBuf> {
        let tools = self.cfg.data_dir.join("tools");
        let dir = tools.join("uv");
        let uv = dir.join("bin").join("uv");
        if runs(&uv).await {
            return Ok(uv);
        }
        let _ = log.send(format!(
            "==> uv: not on PATH; installing it once for this data folder ({PROVISIONED_UV} with pip into {})",
            dir.display()
        ));
        let started = Instant::now();
        tokio::fs::create_dir_all(&tools)
            .await
            .map_err(io(&tools))?;
        let partial = tools.join(format!("uv.partial-{}", uuid::Uuid::new_v4()));
        let mut guard = RemoveOnDrop(Some(partial.clone()));
        let mut venv = Command::new(&self.cfg.python);
        venv.args(["-m", "venv"]).arg(&partial);
        self.run_logged("python -m venv (uv)", venv, log).await?;
        let mut pip = pip_install(&partial.join("bin").join("python"));
        pip.arg(PROVISIONED_UV).args(&self.cfg.pip_args);
        self.run_logged("pip install uv", pip, log).await?;
        if !runs(&partial.join("bin").join("uv")).await {
            return Err(Error::Failed {
                reason: "the installed uv does not run".into(),
            });
        }
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await.map_err(io(&dir))?;
        }
        tokio::fs::rename(&partial, &dir).await.map_err(io(&dir))?;
        guard.0 = None;
        let _ = log.send(format!(
            "==> uv: ready in {:.1} s; later builds use it",
            started.elapsed().as_secs_f64()
        ));
        Ok(uv)
    }

    async fn ensure_env(
        &self,
        python_version: &str,
        requirements: &str,
        log: &LogSink,
    ) -> Result<PathBuf> {
        let key = Self::env_key(python_version, requirements);
        let envs = self.envs_dir();
        let dir = envs.join(&key);
        let python = dir.join("bin").join("python");
        let lock = {
            let mut locks = self.env_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        if dir.join(ENV_OK).exists() {
            // The marker's time is the env's last use: the cache's LRU order and the
            // collector's grace both read it.
            touch(&dir.join(ENV_OK));
            let _ = log.send(format!("==> environment {key}: cached, nothing to install"));
            return Ok(python);
        }
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await.map_err(io(&dir))?;
        }
        tokio::fs::create_dir_all(&envs).await.map_err(io(&envs))?;
        let partial = envs.join(format!("{key}.partial-{}", uuid::Uuid::new_v4()));
        let mut guard = RemoveOnDrop(Some(partial.clone()));
        let env_python = partial.join("bin").join("python");
        match self.uv(log).await {
            Some(uv) => {
                let _ = log.send(format!("==> environment {key}: creating with uv"));
                let mut venv = Command::new(uv);
                venv.arg("venv")
                    .arg("--quiet")
                    .arg("--python")
                    .arg(&self.cfg.python)
                    .arg(&partial);
                self.run_logged("uv venv", venv, log).await?;
                let req_args = write_requirements(&partial, requirements).await?;
                let mut pip = Command::new(uv);
                pip.args(["pip", "install", "--python"])
                    .arg(&env_python)
                    .args(&req_args)
                    .args(&self.cfg.pip_args);
                self.run_logged("pip install (uv)", pip, log).await?;
            }
            None => {
                let _ = log.send(format!("==> environment {key}: creating with venv + pip"));
                let mut venv = Command::new(&self.cfg.python);
                venv.args(["-m", "venv"]).arg(&partial);
                self.run_logged("python -m venv", venv, log).await?;
                let req_args = write_requirements(&partial, requirements).await?;
                let mut pip = pip_install(&env_python);
                pip.args(&req_args).args(&self.cfg.pip_args);
                self.run_logged("pip install", pip, log).await?;
            }
        }
        let ok = partial.join(ENV_OK);
        tokio::fs::write(&ok, b"").await.map_err(io(&ok))?;
        match tokio::fs::rename(&partial, &dir).await {
            Ok(()) => guard.0 = None,
            // Another process finished the same env first: use theirs.
            Err(_) if dir.join(ENV_OK).exists() => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        Ok(python)
    }

    async fn build_inner(&self, req: &BuildRequest, log: &LogSink) -> Result<Artifact> {
        let started = Instant::now();
        let python_version = self.python_version().await?;
        let _ = log.send(format!(
            "==> lambda {} v{}: local build with Python {python_version}",
            req.lambda_id, req.version
        ));
        let app_dir = self.lay_out(req).await?;
        let _ = log.send(format!("==> files laid out in {}", app_dir.display()));
        let reqs_path = app_dir.join(REQUIREMENTS_FILE);
        let requirements = if req.archive.has_requirements {
            tokio::fs::read_to_string(&reqs_path)
                .await
                .map_err(io(&reqs_path))?
        } else {
            String::new()
        };
        let python = match self.ensure_env(&python_version, &requirements, log).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&app_dir).await;
                return Err(e);
            }
        };
        let _ = log.send(format!(
            "==> built in {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(Artifact::Local { app_dir, python })
    }
}

#[async_trait]
impl ImageBuilder for LocalBuilder {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn build(
        &self,
        req: BuildRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Artifact> {
        if !req.parameters.user_docker_commands.is_empty() {
            return Err(Error::Unsupported(
                "user_docker_commands cannot run in a local build; use the Docker builder ([builder] kind = \"docker\") or remove them".into(),
            ));
        }
        crate::bounded(req.timeout, &cancel, &log, self.build_inner(&req, &log)).await
    }

    async fn remove(&self, lambda_id: &LambdaId, artifact: &Artifact) -> Result<()> {
        if let Artifact::Local { app_dir, .. } = artifact {
            let apps = self.cfg.data_dir.join("apps").join(lambda_id.to_string());
            // Only ever delete inside this lambda's own folder.
            if app_dir.starts_with(&apps) {
                match tokio::fs::remove_dir_all(app_dir).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(app_dir)(e)),
                }
                // The lambda's folder goes when its last version does.
                let _ = tokio::fs::remove_dir(&apps).await;
            }
        }
        Ok(())
    }

    async fn collect(&self, in_use: &InUse, dry_run: bool) -> Result<Vec<GcItem>> {
        let data_dir = self.cfg.data_dir.clone();
        let plan = {
            let in_use = in_use.clone();
            tokio::task::spawn_blocking(move || garbage(&data_dir, &in_use))
                .await
                .map_err(|e| Error::Unavailable(format!("garbage scan: {e}")))??
        };
        if dry_run {
            return Ok(plan.into_iter().map(|(item, _)| item).collect());
        }
        let mut removed = Vec::with_capacity(plan.len());
        for (item, path) in plan {
            // An environment is removed under its lock, and only when no build used it since
            // the scan (a build touches its marker).
            let key = path.file_name().map(|k| k.to_string_lossy().into_owned());
            let lock = (item.kind == "env").then(|| {
                let mut locks = self.env_locks.lock().unwrap_or_else(|p| p.into_inner());
                locks.entry(key.unwrap_or_default()).or_default().clone()
            });
            let _held = match &lock {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            if item.kind == "env" && in_use.young(last_use(&path)) {
                continue;
            }
            let is_app = item.kind == "app";
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => removed.push(item),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            if is_app && let Some(parent) = path.parent() {
                // The lambda's folder goes with its last version.
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Ok(removed)
    }

    async fn health(&self) -> Result<()> {
        self.python_version().await.map(|_| ())
    }
}

/// Sets a file's modification time to now (best effort).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// When an environment was last used: its marker's time (a half-made one: the folder's).
fn last_use(env: &Path) -> std::time::SystemTime {
    std::fs::metadata(env.join(ENV_OK))
        .or_else(|_| std::fs::metadata(env))
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now())
}

/// Bytes of the files under a folder (symlinks are not followed).
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| disk_usage(&e.path()))
                .sum::<u64>()
        })
        .unwrap_or(0)
}

/// What the collector may remove under `data_dir`, with its folder: app folders of versions
/// nothing keeps, half-made environments, and environments no kept artifact uses beyond the
/// cache's size (least recently used first). Nothing younger than the grace.
fn garbage(data_dir: &Path, in_use: &InUse) -> Result<Vec<(GcItem, PathBuf)>> {
    let mut out = Vec::new();
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| std::time::SystemTime::now())
    };
    let apps = data_dir.join("apps");
    for lambda in read_dir(&apps)? {
        let Some(id) = file_name(&lambda).and_then(|n| n.parse::<LambdaId>().ok()) else {
            continue;
        };
        for app in read_dir(&lambda)? {
            let Some(version) =
                file_name(&app).and_then(|n| n.strip_prefix('v')?.parse::<u64>().ok())
            else {
                continue;
            };
            if in_use.keeps(&id, version) || in_use.uses_app(&app) || in_use.young(modified(&app)) {
                continue;
            }
            out.push((
                GcItem::new("app", app.display().to_string(), disk_usage(&app)),
                app,
            ));
        }
    }
    let envs = data_dir.join("envs");
    let mut cached = Vec::new();
    let mut total = 0u64;
    for env in read_dir(&envs)? {
        let Some(name) = file_name(&env) else {
            continue;
        };
        let bytes = disk_usage(&env);
        if name.contains(".partial-") || !env.join(ENV_OK).exists() {
            // Left by a crash: a build in flight is younger than the grace.
            if !in_use.young(modified(&env)) {
                out.push((GcItem::new("env", env.display().to_string(), bytes), env));
            }
            continue;
        }
        total += bytes;
        if !in_use.uses_env(&env) {
            cached.push((last_use(&env), bytes, env));
        }
    }
    cached.sort();
    for (used, bytes, env) in cached {
        if total <= in_use.env_cache_max_bytes {
            break;
        }
        if in_use.young(used) {
            continue;
        }
        total -= bytes;
        out.push((GcItem::new("env", env.display().to_string(), bytes), env));
    }
    Ok(out)
}

/// The entries of a folder (none when it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().map(|e| e.path()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn file_name(p: &Path) -> Option<&str> {
    p.file_name()?.to_str()
}
