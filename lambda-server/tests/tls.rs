//! HTTPS for the API (`[tls] cert`, `key`) with certificates made here: a client that trusts the
//! issuing CA gets answers, one that does not and a plain-HTTP one get none; a certificate
//! renewed in place is served to new connections without a restart, and a broken renewal keeps
//! the previous one; bad files stop the start with what is wrong and where.

mod common;

use common::*;
use lambda_server::server::tls::{Tls, TlsFiles};
use std::path::Path;
use std::time::{Duration, Instant};

/// A CA (its PEM) and a certificate for 127.0.0.1 it issued, written to `cert.pem`/`key.pem`.
fn issue(dir: &Path) -> (String, TlsFiles) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "luna-lambda test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    // The key first: a reload between the two writes sees a mismatched pair and waits.
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.cert, leaf.pem()).unwrap();
    (ca.pem(), files)
}

/// `GET /version` on a new connection from a client that trusts only `ca`.
async fn version_trusting(url: &str, ca: &str) -> Result<u16, String> {
    let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only(certs)
        .build()
        .unwrap();
    match client.get(format!("{url}/version")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_renewed_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (ca1, files) = issue(certs.path());
    let tls = Tls::load(files.clone()).unwrap();
    let p = platform(dir.path(), true, test_config()).await;
    p.start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lambda_server::serve_tls(
        listener,
        p,
        Default::default(),
        async move {
            let _ = stopped.await;
        },
        Some(tls),
    ));

    assert_eq!(version_trusting(&url, &ca1).await, Ok(200));
    let (other_ca, _) = issue(tempfile::tempdir().unwrap().path());
    let refused = version_trusting(&url, &other_ca).await.unwrap_err();
    assert!(
        refused.contains("certificate") || refused.contains("Certificate"),
        "{refused}"
    );
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/version")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // Renewed in place (a new CA, so the old one no longer verifies it).
    let (ca2, _) = issue(certs.path());
    let end = Instant::now() + Duration::from_secs(15);
    while version_trusting(&url, &ca2).await != Ok(200) {
        assert!(
            Instant::now() < end,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(version_trusting(&url, &ca1).await.is_err());

    // A broken renewal: the previous certificate keeps being served through several checks.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(2500) {
        assert_eq!(version_trusting(&url, &ca2).await, Ok(200));
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn bad_files_say_what_is_wrong_and_where() {
    let certs = tempfile::tempdir().unwrap();
    let (_, files) = issue(certs.path());
    let missing = TlsFiles {
        cert: certs.path().join("nope.pem"),
        key: files.key.clone(),
    };
    let e = Tls::load(missing).unwrap_err().to_string();
    assert!(e.contains("[tls] cert") && e.contains("nope.pem"), "{e}");
    std::fs::write(certs.path().join("empty.pem"), "").unwrap();
    let empty = TlsFiles {
        cert: certs.path().join("empty.pem"),
        key: files.key.clone(),
    };
    let e = Tls::load(empty).unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    // The key of another certificate.
    let other = tempfile::tempdir().unwrap();
    let (_, other_files) = issue(other.path());
    let mismatched = TlsFiles {
        cert: files.cert.clone(),
        key: other_files.key,
    };
    let e = Tls::load(mismatched).unwrap_err().to_string();
    assert!(e.contains("do not make a usable pair"), "{e}");
    assert!(Tls::load(files).is_ok());
}
