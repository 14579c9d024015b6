//! `luna-lambda serve` as a user starts it: one control plane per data folder.

mod common;

use common::{exited, free_port, ok, serve, spawn_serve};
use std::path::Path;
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

#[test]
fn tokens_from_the_command_line() {
    const ADMIN: &str = "cli-test-bootstrap-admin-token-0123456789";
    let data = tempfile::tempdir().unwrap();
    let server = common::serve_with(
        data.path(),
        &[
            ("LUNA_LAMBDA_AUTH_MODE", "token"),
            ("LUNA_LAMBDA_ADMIN_TOKEN", ADMIN),
        ],
    );
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_luna-lambda"));
        c.args(args).env("LUNA_LAMBDA_URL", &server.url);
        c.env_remove("LUNA_LAMBDA_TOKEN")
            .env_remove("LUNA_ACCOUNT_ID");
        if let Some(t) = token {
            c.env("LUNA_LAMBDA_TOKEN", t);
        }
        c.output().unwrap()
    };
    let denied = cli(None, &["list"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("12008"));

    let made = cli(
        Some(ADMIN),
        &[
            "token",
            "create",
            "--name",
            "ci",
            "--account",
            common::ACCOUNT,
            "--scope",
            "read",
            "--expires",
            "12h",
            "--json",
        ],
    );
    let made = common::json(&made);
    assert_eq!(made["scope"], "read");
    assert_eq!(made["account_id"], common::ACCOUNT);
    let token = made["token"].as_str().unwrap().to_owned();
    ok(&cli(Some(&token), &["list", "--json"]));
    // Read scope: a change is refused.
    let gc = cli(Some(&token), &["gc", "--dry-run"]);
    assert_eq!(gc.status.code(), Some(1));
    // --token wins over the environment.
    ok(&cli(Some("llt_nonsense"), &["list", "--token", &token]));

    let listed = common::json(&cli(Some(ADMIN), &["token", "list", "--json"]));
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(!listed.to_string().contains(&token));
    let bad = cli(
        Some(ADMIN),
        &[
            "token",
            "create",
            "--name",
            "x",
            "--admin",
            "--expires",
            "5w",
        ],
    );
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    ok(&cli(Some(ADMIN), &["token", "revoke", "ci"]));
    let revoked = cli(Some(&token), &["list"]);
    assert_eq!(revoked.status.code(), Some(1));
    let missing = cli(Some(ADMIN), &["token", "revoke", "ci"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no token named"));
}

/// `[tls]` from the environment: the CLI talks to the https:// server with `--ca` (or
/// `LUNA_LAMBDA_CA`), and without it says the certificate is not trusted; a half-set `[tls]`
/// stops the start.
#[test]
fn https_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_pem, cert, key_pem) = (
        certs.path().join("ca.pem"),
        certs.path().join("cert.pem"),
        certs.path().join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (cert_s, key_s) = (cert.to_str().unwrap(), key_pem.to_str().unwrap());
    let server = common::serve_with(
        data.path(),
        &[
            ("LUNA_LAMBDA_TLS_CERT", cert_s),
            ("LUNA_LAMBDA_TLS_KEY", key_s),
        ],
    );
    let https = server.url.replace("http://", "https://");
    let cli = |args: &[&str], ca: Option<&Path>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_luna-lambda"));
        c.args(args)
            .env("LUNA_LAMBDA_URL", &https)
            .env_remove("LUNA_LAMBDA_CA");
        if let Some(ca) = ca {
            c.env("LUNA_LAMBDA_CA", ca);
        }
        c.output().unwrap()
    };
    ok(&cli(&["list"], Some(&ca_pem)));
    ok(&cli(&["list", "--ca", ca_pem.to_str().unwrap()], None));
    let untrusted = cli(&["list"], None);
    assert_eq!(untrusted.status.code(), Some(1));
    let err = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    let no_ca_file = cli(&["list", "--ca", "/nonexistent/ca.pem"], None);
    assert!(
        String::from_utf8_lossy(&no_ca_file.stderr).contains("/nonexistent/ca.pem"),
        "{}",
        String::from_utf8_lossy(&no_ca_file.stderr)
    );
    drop(server);

    let half = tempfile::tempdir().unwrap();
    let (status, err) = common::exited(common::spawn_serve(
        half.path(),
        &format!("127.0.0.1:{}", common::free_port()),
        &[("LUNA_LAMBDA_TLS_CERT", cert_s)],
    ));
    assert!(!status.success());
    assert!(err.contains("[tls] needs both cert and key"), "{err}");
}

/// Two servers of one host cannot run one Docker orchestrator instance, even with different
/// data folders: the second says which instance and who holds it.
#[test]
fn one_server_per_docker_instance() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path().to_str().unwrap();
    let env: std::collections::HashMap<String, String> = [
        ("LUNA_LAMBDA_BUILDER_KIND", "docker"),
        ("LUNA_LAMBDA_ORCHESTRATOR_KIND", "docker"),
        ("LUNA_LAMBDA_ORCHESTRATOR_INSTANCE", "shared"),
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ("XDG_RUNTIME_DIR", rt),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = lambda_server::Config::load(None, &env).unwrap();
    let path = cfg.instance_lock_path(&env).unwrap();
    assert!(path.starts_with(runtime.path()), "{}", path.display());
    // The first server (this process) holds the instance.
    let _held = lambda_server::server::lock::lock_instance(&path, "shared").unwrap();
    let data = tempfile::tempdir().unwrap();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, err) = exited(spawn_serve(
        data.path(),
        &format!("127.0.0.1:{}", free_port()),
        &envs,
    ));
    assert!(!status.success());
    assert!(
        err.contains("instance \"shared\"") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
}
