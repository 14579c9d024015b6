//! `luna-lambda serve` as a user starts it: one control plane per data folder.

mod common;

use common::{exited, free_port, ok, serve, spawn_serve};
use std::time::{Duration, Instant};

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

#[test]
fn off_loopback_it_needs_auth_or_an_explicit_none() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (status, err) = exited(spawn_serve(data.path(), &listen, &[]));
    assert!(!status.success(), "{err}");
    assert!(err.contains("not loopback"), "{err}");
    assert!(err.contains("[auth] mode = \"token\""), "{err}");
    assert!(err.contains("LUNA_LAMBDA_ADMIN_TOKEN"), "{err}");

    // Open on purpose: it starts, says so at start and in /healthcheck.
    let (child, log) = spawn_serve(data.path(), &listen, &[("LUNA_LAMBDA_AUTH_MODE", "none")]);
    let mut server = common::Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let end = Instant::now() + Duration::from_secs(60);
    let health = loop {
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!(
                "exited {st}: {}",
                std::fs::read_to_string(&server.log).unwrap()
            );
        }
        if let Ok(body) = http_get(port, "/healthcheck") {
            break body;
        }
        assert!(Instant::now() < end, "did not listen");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.contains("authentication is off"), "{health}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("authentication is off"), "{log}");
    assert!(log.contains("no isolation"), "{log}");

    // With tokens: a bootstrap token shorter than 32 characters is refused.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let (status, err) = exited(spawn_serve(
        data.path(),
        &listen,
        &[
            ("LUNA_LAMBDA_AUTH_MODE", "token"),
            ("LUNA_LAMBDA_ADMIN_TOKEN", "short"),
        ],
    ));
    assert!(!status.success());
    assert!(err.contains("at least 32 characters"), "{err}");
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    c.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}
