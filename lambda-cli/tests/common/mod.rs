//! Helpers of the binary's test suites.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";

pub use lambda_testkit::workspace;

/// The command's stdout, after checking it exited 0 (both outputs shown when not).
pub fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command's stdout as JSON, after checking it exited 0.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// A `luna-lambda serve` process; killed and reaped when dropped (also on a panic).
pub struct Serve {
    pub child: Child,
    pub url: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use lambda_testkit::free_port;

/// `luna-lambda serve --data-dir data --listen listen` with `envs`, not waited for; its stderr
/// goes to the returned file (a file, not a pipe nobody reads, which would stall it).
pub fn spawn_serve(data: &Path, listen: &str, envs: &[(&str, &str)]) -> (Child, PathBuf) {
    let path = format!(
        "{}:{}",
        workspace().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = data.join(format!("serve-{}.stderr", free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", listen])
        .env("PATH", path)
        .env("LUNA_LAMBDA_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// `luna-lambda serve` on a free port over `data` with `envs`, ready when it listens.
pub fn serve_with(data: &Path, envs: &[(&str, &str)]) -> Serve {
    std::fs::create_dir_all(data).unwrap();
    let port = free_port();
    let (child, log) = spawn_serve(data, &format!("127.0.0.1:{port}"), envs);
    let mut server = Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let end = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let err = std::fs::read_to_string(&server.log).unwrap_or_default();
            panic!("the server exited ({status}) before listening: {err}");
        }
        assert!(
            Instant::now() < end,
            "the server did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// `luna-lambda serve` on a free port over `data`, ready when it listens.
pub fn serve(data: &Path) -> Serve {
    serve_with(data, &[])
}

/// Waits (up to 60 s) for a `serve` that should end by itself; its status and stderr.
pub fn exited((mut child, log): (Child, PathBuf)) -> (std::process::ExitStatus, String) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
