//! Helpers of the binary's test suites.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub const ACCOUNT: &str = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

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
