//! `luna-lambda serve` as a user starts it: one control plane per data folder.

mod common;

use common::{exited, ok, serve, spawn_serve};

#[test]
fn a_second_server_on_one_data_folder_refuses_and_a_dead_ones_lock_is_taken_over() {
    let data = tempfile::tempdir().unwrap();
    let first = serve(data.path());
    let pid = first.child.id();

    // A second terminal, the same folder: refused, naming the holder and the way out.
    let (status, err) = exited(spawn_serve(data.path(), "127.0.0.1:0", &[]));
    assert!(!status.success(), "{err}");
    assert!(err.contains(&format!("PID {pid}")), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    assert!(
        err.contains(&data.path().canonicalize().unwrap().display().to_string()),
        "{err}"
    );

    // The first is killed where it stands (no clean shutdown): its lock goes with it.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let again = serve(data.path());
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(["list", "--json", "--server", &again.url])
        .output()
        .unwrap();
    ok(&list);
}
