//! The conformance suite against a real S3 server (scripts/infra/s3-start), plus the failures
//! only a real server shows: a missing bucket and wrong credentials. Built and run when
//! `LAMBDA_IT` lists `s3` (the `needs-s3` feature); then a missing server FAILS these tests.

mod common;

use lambda_storage::{Error, Storage, StorageConfig, UnavailableKind};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: LAMBDA_IT lists s3, so start the server with scripts/infra/s3-start and export what it prints")
    })
}

fn config(bucket: &str, secret: &str) -> StorageConfig {
    let mut cfg = StorageConfig::new(format!("s3://{bucket}"));
    cfg.prefix = format!("it-{}", uuid::Uuid::new_v4());
    cfg.s3.endpoint = Some(env("LAMBDA_IT_S3_ENDPOINT"));
    cfg.s3.region = env("LAMBDA_IT_S3_REGION");
    cfg.s3.access_key_id = Some(env("LAMBDA_IT_S3_ACCESS_KEY"));
    cfg.s3.secret_access_key = Some(secret.to_owned());
    cfg.s3.allow_http = true;
    cfg.s3.max_retries = 1;
    cfg
}

/// The whole suite with writes serialised in-process (`conditional_put = false`): the mode for
/// servers whose conditional writes are not atomic. s3s-fs is one: it answers 412 to a stale
/// `If-Match` / `If-None-Match`, but two racing writers can both pass its check.
mod s3 {
    async fn backend() -> (lambda_storage::Storage, ()) {
        let mut cfg = super::config(
            &super::env("LAMBDA_IT_S3_BUCKET"),
            &super::env("LAMBDA_IT_S3_SECRET_KEY"),
        );
        cfg.s3.conditional_put = false;
        let s = lambda_storage::open(&cfg).unwrap();
        assert_eq!(s.cas_mode(), lambda_storage::CasMode::Serialized);
        (s, ())
    }
    crate::conformance_suite!(backend);
}

/// The conditional-write path on the wire (`If-Match` / `If-None-Match`, 412 → conflict), with
/// the cases that do not race (atomicity under races is the server's job; see above).
mod s3_conditional {
    async fn backend() -> (lambda_storage::Storage, ()) {
        let cfg = super::config(
            &super::env("LAMBDA_IT_S3_BUCKET"),
            &super::env("LAMBDA_IT_S3_SECRET_KEY"),
        );
        let s = lambda_storage::open(&cfg).unwrap();
        assert_eq!(s.cas_mode(), lambda_storage::CasMode::Conditional);
        (s, ())
    }
    crate::conformance_suite!(@cases backend;
        records_crud,
        names_are_unique_per_account,
        a_stale_revision_is_a_conflict,
        list_pages_and_filters,
        a_create_that_crashed_before_its_record_is_cleaned_up,
        healthcheck_passes
    );
}

async fn unavailable(s: Storage) -> UnavailableKind {
    match s.healthcheck().await {
        Err(Error::Unavailable { kind, .. }) => kind,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let s = lambda_storage::open(&config(
        "no-such-bucket-xyz",
        &env("LAMBDA_IT_S3_SECRET_KEY"),
    ))
    .unwrap();
    assert_eq!(unavailable(s).await, UnavailableKind::BucketMissing);
}

#[tokio::test]
async fn wrong_credentials_are_named() {
    let s = lambda_storage::open(&config(&env("LAMBDA_IT_S3_BUCKET"), "wrong-secret")).unwrap();
    assert_eq!(unavailable(s).await, UnavailableKind::Credentials);
}
