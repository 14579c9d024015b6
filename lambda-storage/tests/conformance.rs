//! The conformance suite on the backends that need nothing installed: memory and local folder.
//! (Real S3: tests/needs_s3.rs.) Plus the S3 failure that needs no server: an unreachable endpoint.

mod common;

mod memory {
    async fn backend() -> (lambda_storage::Storage, ()) {
        (
            lambda_storage::open(&lambda_storage::StorageConfig::new("memory://")).unwrap(),
            (),
        )
    }
    crate::conformance_suite!(backend);
}

mod local_folder {
    async fn backend() -> (lambda_storage::Storage, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        let s = lambda_storage::open(&lambda_storage::StorageConfig::new(url)).unwrap();
        assert_eq!(s.cas_mode(), lambda_storage::CasMode::Serialized);
        (s, dir)
    }
    crate::conformance_suite!(backend);
}

#[tokio::test]
async fn an_unreachable_s3_endpoint_is_named() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = lambda_storage::StorageConfig::new("s3://bucket");
    cfg.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
    cfg.s3.allow_http = true;
    cfg.s3.access_key_id = Some("k".into());
    cfg.s3.secret_access_key = Some("s".into());
    cfg.s3.max_retries = 0;
    let s = lambda_storage::open(&cfg).unwrap();
    let e = s.healthcheck().await.unwrap_err();
    match &e {
        lambda_storage::Error::Unavailable { kind, .. } => {
            assert_eq!(*kind, lambda_storage::UnavailableKind::Unreachable, "{e}")
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    assert!(e.to_string().contains("cannot be reached"), "{e}");
}

#[test]
fn bad_urls_and_missing_credentials_are_config_errors() {
    for url in [
        "ftp://x",
        "file://relative/path",
        "s3://",
        "s3://bucket/with/prefix",
    ] {
        let e = lambda_storage::open(&lambda_storage::StorageConfig::new(url)).unwrap_err();
        assert!(
            matches!(e, lambda_storage::Error::InvalidConfig(_)),
            "{url}: {e}"
        );
    }
    let e = lambda_storage::open(&lambda_storage::StorageConfig::new("s3://bucket")).unwrap_err();
    assert!(e.to_string().contains("access_key_id"), "{e}");
}
