//! What the workspace's tests share, written once: the Kubernetes node simulator
//! ([`kube_sim`]), the start gate ([`start_gate`]), and small helpers.

pub mod kube_sim;
pub mod start_gate;

use std::path::PathBuf;

/// The workspace's folder (the repository's root).
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit is a folder of the workspace")
        .to_path_buf()
}

/// A free port on 127.0.0.1, at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: impl std::fmt::Display) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}
