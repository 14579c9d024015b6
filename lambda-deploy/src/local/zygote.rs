//! Zygotes: warm Python processes that have imported the lambda runtime and its server, and fork
//! replicas that only import their own `lambda_main` (tens of milliseconds instead of a whole
//! interpreter start). One per interpreter and runtime files; started on first use; when one
//! cannot start or answer, replicas start plainly (the caller's fallback).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The zygote's program, written under the data folder.
const PROGRAM: &str = include_str!("zygote.py");

/// How long a new zygote may take to import the runtime.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct Zygote {
    child: tokio::process::Child,
    socket: PathBuf,
}

/// What a replica is forked with.
pub(super) struct Fork<'a> {
    /// Its app folder, where it works and imports its `lambda_main` from.
    pub app_dir: &'a Path,
    /// Exactly its environment.
    pub env: &'a [(String, String)],
    /// The file its output is appended to.
    pub log: &'a Path,
    /// The listening socket it serves on (sent to the zygote with the request).
    pub listener: &'a std::net::TcpListener,
}

/// The zygotes of one orchestrator.
#[derive(Debug)]
pub(super) struct Zygotes {
    dir: PathBuf,
    base_env: Vec<(String, String)>,
    /// Per key: the running zygote, or `None` once it could not be had (plain starts then).
    live: tokio::sync::Mutex<HashMap<String, Option<Zygote>>>,
}

/// The key of the zygote that may fork replicas of `app_dir` run by `python`: the interpreter
/// and the runtime files the app carries.
pub(super) fn key(python: &Path, app_dir: &Path) -> String {
    let mut h = Sha256::new();
    h.update(python.as_os_str().as_encoded_bytes());
    h.update([0]);
    let runtime = app_dir.join("luna_lambda_tools");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&runtime)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.push(app_dir.join("run.py"));
    files.sort();
    for f in files {
        h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    lambda_core::hex(&h.finalize()[..8])
}

impl Zygotes {
    pub(super) fn new(dir: PathBuf, base_env: Vec<(String, String)>) -> Self {
        Self {
            dir,
            base_env,
            live: tokio::sync::Mutex::default(),
        }
    }

    /// Forks a replica: its pid, or `None` when no zygote can (then start it plainly).
    pub(super) async fn fork(&self, key: &str, python: &Path, fork: Fork<'_>) -> Option<u32> {
        let socket = self.socket_for(key, python, fork.app_dir).await?;
        let request = serde_json::json!({
            "app_dir": fork.app_dir,
            "env": fork.env.iter().cloned().collect::<HashMap<String, String>>(),
            "log": fork.log,
        });
        match ask(&socket, &request, fork.listener.as_fd()).await {
            Ok(pid) => Some(pid),
            Err(why) => {
                tracing::warn!(zygote = %key, %why, "the zygote did not fork; starting the replica plainly");
                // Gone or broken: the next start makes a new one.
                if let Some(Some(mut z)) = self.live.lock().await.remove(key) {
                    let _ = z.child.start_kill();
                }
                None
            }
        }
    }

    /// The socket of the zygote for `key`, started when there is none.
    async fn socket_for(&self, key: &str, python: &Path, app_dir: &Path) -> Option<PathBuf> {
        let mut live = self.live.lock().await;
        match live.get_mut(key) {
            Some(None) => return None,
            Some(Some(z)) => {
                if matches!(z.child.try_wait(), Ok(None)) {
                    return Some(z.socket.clone());
                }
                // It ended: start another.
            }
            None => {}
        }
        let started = self.start(key, python, app_dir).await;
        if let Err(why) = &started {
            tracing::warn!(zygote = %key, %why, "no zygote: replicas of this environment start plainly");
        }
        let z = started.ok();
        let socket = z.as_ref().map(|z| z.socket.clone());
        live.insert(key.to_owned(), z);
        socket
    }

    async fn start(&self, key: &str, python: &Path, app_dir: &Path) -> Result<Zygote, String> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let program = self.dir.join("zygote.py");
        if tokio::fs::read_to_string(&program).await.ok().as_deref() != Some(PROGRAM) {
            tokio::fs::write(&program, PROGRAM)
                .await
                .map_err(|e| format!("{}: {e}", program.display()))?;
        }
        // Its own copy of the runtime files: the app folder they came from may be removed while
        // the zygote lives, and the runtime's later imports resolve against this copy.
        let runtime = self.dir.join(key);
        let (from, to) = (app_dir.to_path_buf(), runtime.clone());
        tokio::task::spawn_blocking(move || copy_runtime(&from, &to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("copying the runtime to {}: {e}", runtime.display()))?;
        let socket = self.dir.join(format!("{key}.sock"));
        let _ = tokio::fs::remove_file(&socket).await;
        let log_path = self.dir.join(format!("{key}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new(python)
            .arg(&program)
            .arg(&socket)
            .arg(&runtime)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.base_env.iter().cloned())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let out = tokio::fs::read_to_string(&log_path)
                    .await
                    .unwrap_or_default();
                return Err(format!("the zygote {status}: {}", out.trim()));
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                return Err(format!(
                    "the zygote was not ready in {} s",
                    READY_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Zygote { child, socket })
    }

    /// Stops every zygote (the replicas they forked run on).
    pub(super) async fn stop(&self) {
        for (_, z) in self.live.lock().await.drain() {
            if let Some(mut z) = z {
                let _ = z.child.start_kill();
                let _ = z.child.wait().await;
                let _ = tokio::fs::remove_file(&z.socket).await;
            }
        }
    }
}

/// Copies `run.py` and the `luna_lambda_tools` package (without bytecode caches) of an app
/// folder to `to`, afresh.
fn copy_runtime(app_dir: &Path, to: &Path) -> std::io::Result<()> {
    fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let (src, dst) = (entry.path(), to.join(entry.file_name()));
            if entry.file_type()?.is_dir() {
                if entry.file_name() != "__pycache__" {
                    copy_tree(&src, &dst)?;
                }
            } else {
                std::fs::copy(&src, &dst)?;
            }
        }
        Ok(())
    }
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    copy_tree(
        &app_dir.join("luna_lambda_tools"),
        &to.join("luna_lambda_tools"),
    )?;
    std::fs::copy(app_dir.join("run.py"), to.join("run.py"))?;
    Ok(())
}

/// Sends the first bytes of `data` that the socket takes, with `fd` attached (`SCM_RIGHTS`):
/// how many were sent.
async fn send_with_fd(s: &UnixStream, data: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    loop {
        s.writable().await?;
        let sent = s.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg(
                s,
                &[std::io::IoSlice::new(data)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// One fork request, with the replica's listening socket: the child's pid.
async fn ask(
    socket: &Path,
    request: &serde_json::Value,
    listener: BorrowedFd<'_>,
) -> Result<u32, String> {
    let exchange = async {
        let mut s = UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        let mut line = request.to_string();
        line.push('\n');
        let sent = send_with_fd(&s, line.as_bytes(), listener)
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        s.write_all(&line.as_bytes()[sent..])
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        answer
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("answered {:?}", answer.trim()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
}
