//! The storage conformance suite: every case runs against every backend.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use lambda_core::api::{ArchiveInfo, LambdaRecord};
use lambda_core::{ImageStatus, LambdaId, LambdaName, LambdaStatus, LambdaType, Parameters};
use lambda_storage::{Error, ListQuery, Revision, Storage};
use object_store::ObjectStoreExt;
use std::time::Duration;

pub fn record(account: uuid::Uuid, name: &str) -> LambdaRecord {
    let now = time::OffsetDateTime::now_utc();
    LambdaRecord {
        lambda_id: LambdaId::new(),
        lambda_name: LambdaName::parse(name).unwrap(),
        lambda_type: LambdaType::Standalone,
        account_id: account,
        description: String::new(),
        create_time: now,
        last_update_time: now,
        lambda_version: 1,
        image_status: ImageStatus::Pending,
        status: LambdaStatus::Waiting,
        reason: None,
        alive: true,
        running_version: None,
        parameters: Parameters::default(),
        archive: ArchiveInfo {
            size: 0,
            sha256: String::new(),
        },
        has_docs: false,
        import_image: None,
        last_usage: None,
        replicas: 0,
    }
}

pub async fn records_crud(s: Storage) {
    let repo = s.records();
    let acc = uuid::Uuid::new_v4();
    let r = record(acc, "crud");
    let id = r.lambda_id;
    let created = repo.create(r.clone()).await.unwrap();
    assert_eq!(created.revision, Revision(1));
    let got = repo.get(&id).await.unwrap();
    assert_eq!(got.value, r);
    let mut next = got.value.clone();
    next.description = "changed".into();
    next.image_status = ImageStatus::InProgress;
    let updated = repo.update(&id, got.revision, next).await.unwrap();
    assert_eq!(updated.revision, Revision(2));
    assert_eq!(repo.get(&id).await.unwrap().value.description, "changed");
    repo.delete(&id).await.unwrap();
    assert!(matches!(repo.get(&id).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        repo.delete(&id).await,
        Err(Error::NotFound { .. })
    ));
    // The name is free again once deleted.
    repo.create(record(acc, "crud")).await.unwrap();
}

pub async fn names_are_unique_per_account(s: Storage) {
    let repo = s.records();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    repo.create(record(a, "same")).await.unwrap();
    let e = repo.create(record(a, "same")).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("same"), "{e}");
    repo.create(record(b, "same")).await.unwrap();
}

pub async fn concurrent_creates_of_one_name_exactly_one_wins(s: Storage) {
    let repo = s.records();
    let acc = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.create(record(acc, "racer")).await })
        })
        .collect();
    let mut wins = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 19));
    let q = ListQuery {
        account_id: Some(acc),
        ..ListQuery::default()
    };
    let (page, count) = repo.list(&q).await.unwrap();
    assert_eq!((page.len(), count), (1, 1));
}

pub async fn concurrent_updates_lose_nothing(s: Storage) {
    let repo = s.records();
    let r = record(uuid::Uuid::new_v4(), "counter");
    let id = r.lambda_id;
    repo.create(r).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.update_with::<_, Error>(&id, |rec| {
                    rec.lambda_version += 1;
                    rec.description.push_str(&format!("[{i}]"));
                    Ok(())
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let v = repo.get(&id).await.unwrap();
    assert_eq!(v.value.lambda_version, 21, "an update was lost");
    assert_eq!(v.revision, Revision(21));
    for i in 0..20 {
        assert!(v.value.description.contains(&format!("[{i}]")));
    }
}

pub async fn a_stale_revision_is_a_conflict(s: Storage) {
    let repo = s.records();
    let r = record(uuid::Uuid::new_v4(), "stale");
    let id = r.lambda_id;
    let v1 = repo.create(r).await.unwrap();
    repo.update(&id, v1.revision, v1.value.clone())
        .await
        .unwrap();
    let e = repo
        .update(&id, v1.revision, v1.value.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    let mut renamed = v1.value.clone();
    renamed.lambda_name = LambdaName::parse("other").unwrap();
    let e = repo.update(&id, Revision(2), renamed).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
}

pub async fn list_pages_and_filters(s: Storage) {
    let repo = s.records();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for i in 0..25 {
        let mut r = record(if i % 5 == 0 { b } else { a }, &format!("l{i}"));
        r.create_time += Duration::from_secs(i);
        if i % 2 == 0 {
            r.parameters.deploy_parameters.namespace = "team-x".into();
        }
        repo.create(r).await.unwrap();
    }
    let q = |page, page_size| ListQuery {
        account_id: Some(a),
        page,
        page_size,
        ..ListQuery::default()
    };
    let (p1, count) = repo.list(&q(1, 7)).await.unwrap();
    assert_eq!((p1.len(), count), (7, 20));
    assert_eq!(p1[0].lambda_name.as_str(), "l24", "newest first");
    let (p3, _) = repo.list(&q(3, 7)).await.unwrap();
    let (p4, _) = repo.list(&q(4, 7)).await.unwrap();
    assert_eq!((p3.len(), p4.len()), (6, 0));
    let by_name = ListQuery {
        lambda_name: Some("l3".into()),
        ..ListQuery::default()
    };
    let (one, n) = repo.list(&by_name).await.unwrap();
    assert_eq!((one.len(), n), (1, 1));
    let ns = ListQuery {
        account_id: Some(b),
        namespace: Some("team-x".into()),
        ..ListQuery::default()
    };
    let (_, n) = repo.list(&ns).await.unwrap();
    assert_eq!(n, 3); // 0, 10, 20
    // A namespace change moves the lambda in the index.
    let target = one[0].lambda_id;
    repo.update_with::<_, Error>(&target, |r| {
        r.parameters.deploy_parameters.namespace = "moved".into();
        Ok(())
    })
    .await
    .unwrap();
    let moved = ListQuery {
        namespace: Some("moved".into()),
        ..ListQuery::default()
    };
    assert_eq!(repo.list(&moved).await.unwrap().1, 1);
}

pub async fn archives_round_trip_and_are_verified(s: Storage) {
    let art = s.artifacts();
    let id = LambdaId::new();
    let small = Bytes::from_static(b"PK\x05\x06 pretend zip");
    let info = art.put_archive_bytes(&id, 1, small.clone()).await.unwrap();
    assert_eq!(info.size, small.len() as u64);
    assert_eq!(info.sha256.len(), 64);
    assert_eq!(art.read_archive(&id, 1, &info).await.unwrap(), small);
    // Large: streamed in chunks through a multipart upload.
    let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
    let stream =
        futures::stream::iter((0..12).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let big = art.put_archive(&id, 2, stream).await.unwrap();
    assert_eq!(big.size, 12 * 1024 * 1024);
    assert_eq!(
        art.read_archive(&id, 2, &big).await.unwrap().len(),
        12 * 1024 * 1024
    );
    // A failing input stream stores nothing.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 9 * 1024 * 1024])),
        Err(std::io::Error::other("client went away")),
    ]);
    let e = art.put_archive(&id, 3, failing).await.unwrap_err();
    assert!(matches!(e, Error::Input { .. }), "{e}");
    let e = art.read_archive(&id, 3, &info).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

pub async fn corrupt_and_missing_archives_are_errors(s: Storage) {
    let art = s.artifacts();
    let id = LambdaId::new();
    let info = art
        .put_archive_bytes(&id, 1, Bytes::from_static(b"original bytes"))
        .await
        .unwrap();
    let key = object_store::path::Path::parse(art.archive_key(&id, 1)).unwrap();
    // Same size, different content.
    s.object_store()
        .put(&key, Bytes::from_static(b"tampered bytes").into())
        .await
        .unwrap();
    let e = art.read_archive(&id, 1, &info).await.unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // Truncated.
    s.object_store()
        .put(&key, Bytes::from_static(b"orig").into())
        .await
        .unwrap();
    let e = art.read_archive(&id, 1, &info).await.unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // Gone.
    art.delete_lambda(&id).await.unwrap();
    assert!(matches!(
        art.read_archive(&id, 1, &info).await,
        Err(Error::NotFound { .. })
    ));
}

pub async fn a_create_that_crashed_before_its_record_is_cleaned_up(s: Storage) {
    // The create flow claims the name, stores the archive, then writes the record. Simulate a
    // crash after the archive: the claim and the archive exist, the record does not.
    let repo = s.records();
    let art = s.artifacts();
    let acc = uuid::Uuid::new_v4();
    let r = record(acc, "crashed");
    let key = object_store::path::Path::parse(format!("names/{acc}/crashed")).unwrap();
    let key = prefixed(&s, key);
    s.object_store()
        .put(&key, serde_json::to_vec(&r.lambda_id).unwrap().into())
        .await
        .unwrap();
    art.put_archive_bytes(&r.lambda_id, 1, Bytes::from_static(b"zip"))
        .await
        .unwrap();
    // A live lambda next to it must survive recovery.
    let live = record(acc, "live");
    repo.create(live.clone()).await.unwrap();
    let live_info = art
        .put_archive_bytes(&live.lambda_id, 1, Bytes::from_static(b"live zip"))
        .await
        .unwrap();
    // Within the grace period nothing is touched (a create may be in flight).
    let report = repo.recover(&art, Duration::from_secs(3600)).await.unwrap();
    assert!(report.orphan_artifacts_removed.is_empty() && report.stale_names_removed == 0);
    let report = repo.recover(&art, Duration::ZERO).await.unwrap();
    assert_eq!(report.orphan_artifacts_removed, vec![r.lambda_id]);
    assert_eq!(report.stale_names_removed, 1);
    assert!(
        art.lambda_ids()
            .await
            .unwrap()
            .iter()
            .all(|(id, _)| *id != r.lambda_id)
    );
    assert_eq!(
        art.read_archive(&live.lambda_id, 1, &live_info)
            .await
            .unwrap()
            .as_ref(),
        b"live zip"
    );
    // The name can be used again.
    repo.create(record(acc, "crashed")).await.unwrap();
}

pub async fn a_create_that_crashed_before_its_index_entry_is_completed(s: Storage) {
    let repo = s.records();
    let r = record(uuid::Uuid::new_v4(), "unindexed");
    // Write the record document directly, as if the process died before the index update.
    let key = prefixed(
        &s,
        object_store::path::Path::parse(format!("records/{}.json", r.lambda_id)).unwrap(),
    );
    let doc = serde_json::json!({"revision": 1, "record": r});
    s.object_store()
        .put(&key, serde_json::to_vec(&doc).unwrap().into())
        .await
        .unwrap();
    let q = ListQuery {
        account_id: Some(r.account_id),
        ..ListQuery::default()
    };
    assert_eq!(repo.list(&q).await.unwrap().1, 0);
    let report = repo.recover(&s.artifacts(), Duration::ZERO).await.unwrap();
    assert_eq!(report.index_entries_added, 1);
    assert_eq!(repo.list(&q).await.unwrap().1, 1);
}

pub async fn build_logs_and_docs(s: Storage) {
    let art = s.artifacts();
    let id = LambdaId::new();
    art.put_build_log(&id, 1, Bytes::from_static(b"step 1\nstep 2\n"))
        .await
        .unwrap();
    assert_eq!(
        art.get_build_log(&id, 1).await.unwrap().as_ref(),
        b"step 1\nstep 2\n"
    );
    assert!(matches!(
        art.get_build_log(&id, 2).await,
        Err(Error::NotFound { .. })
    ));
    art.put_docs(
        &id,
        1,
        Bytes::from_static(b"<h1/>"),
        Bytes::from_static(b"a: 1\n"),
    )
    .await
    .unwrap();
    assert_eq!(
        art.get_doc(&id, 1, lambda_storage::DocKind::Yaml)
            .await
            .unwrap()
            .as_ref(),
        b"a: 1\n"
    );
    assert_eq!(art.delete_version(&id, 1).await.unwrap(), 3);
    assert!(art.lambda_ids().await.unwrap().is_empty());
}

pub async fn healthcheck_passes(s: Storage) {
    s.healthcheck().await.unwrap();
}

pub fn task(lambda: LambdaId) -> lambda_core::api::TaskRecord {
    lambda_core::api::TaskRecord {
        task_id: uuid::Uuid::new_v4(),
        lambda_id: lambda,
        account_id: uuid::Uuid::new_v4(),
        description: "sum".into(),
        content: serde_json::json!({"lambda_id": lambda.to_string(), "n": 3})
            .as_object()
            .unwrap()
            .clone(),
        status: lambda_core::api::TaskStatus::Pending,
        reason: None,
        subtasks: Default::default(),
        create_time: time::OffsetDateTime::now_utc(),
        start_time: None,
        end_time: None,
    }
}

/// A task's record (compare-and-swap, concurrent updates keep every change), its split and its
/// outcomes (one per subtask, however often written), listed and deleted.
pub async fn tasks_round_trip(s: Storage) {
    use lambda_storage::SubtaskOutcome;
    let tasks = s.tasks();
    let t = task(LambdaId::new());
    let id = t.task_id;
    tasks.create(t.clone()).await.unwrap();
    assert!(matches!(
        tasks.create(t.clone()).await,
        Err(Error::Conflict { .. })
    ));
    let mut joins = Vec::new();
    for _ in 0..10 {
        let tasks = tasks.clone();
        joins.push(tokio::spawn(async move {
            tasks
                .update_with(&id, |r| {
                    r.subtasks.done += 1;
                    Ok::<_, Error>(())
                })
                .await
                .unwrap()
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let got = tasks.get(&id).await.unwrap();
    assert_eq!((got.value.subtasks.done, got.revision), (10, Revision(11)));
    assert_eq!(tasks.subtasks(&id).await.unwrap(), None);
    let split: Vec<serde_json::Map<String, serde_json::Value>> = (0..3)
        .map(|i| serde_json::json!({"i": i}).as_object().unwrap().clone())
        .collect();
    tasks.put_subtasks(&id, &split).await.unwrap();
    assert_eq!(tasks.subtasks(&id).await.unwrap(), Some(split));
    tasks
        .put_outcome(&id, 2, &SubtaskOutcome::Error("boom".into()))
        .await
        .unwrap();
    for _ in 0..2 {
        tasks
            .put_outcome(&id, 0, &SubtaskOutcome::Result(serde_json::json!({"s": 1})))
            .await
            .unwrap();
    }
    assert_eq!(tasks.ended(&id).await.unwrap(), vec![0, 2]);
    let outcomes = tasks.outcomes(&id).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        outcomes[&0],
        SubtaskOutcome::Result(serde_json::json!({"s": 1}))
    );
    assert_eq!(outcomes[&2], SubtaskOutcome::Error("boom".into()));
    let other = task(LambdaId::new());
    tasks.create(other.clone()).await.unwrap();
    let listed: Vec<uuid::Uuid> = tasks
        .list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(listed, vec![id, other.task_id]);
    assert_eq!(tasks.delete(&id).await.unwrap(), 4); // task.json, subtasks.json, 2 outcomes
    assert!(matches!(tasks.get(&id).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        tasks.delete(&id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(tasks.list().await.unwrap().len(), 1);
}

/// The store key of `key` under the storage's prefix.
fn prefixed(s: &Storage, key: object_store::path::Path) -> object_store::path::Path {
    let mut p = s.prefix().clone();
    for part in key.parts() {
        p = p.clone().join(part);
    }
    p
}

/// The collector's view: one listing gives each lambda's versions with their keys; deleting
/// those keys in bulk reports every one gone, missing ones too, and the objects are gone.
pub async fn inventory_and_bulk_delete(s: Storage) {
    let art = s.artifacts();
    let id = LambdaId::new();
    for v in 1..=3 {
        art.put_archive_bytes(&id, v, Bytes::from_static(b"PK pretend"))
            .await
            .unwrap();
    }
    art.put_build_log(&id, 2, Bytes::from_static(b"log"))
        .await
        .unwrap();
    let inv = art.inventory().await.unwrap();
    let mine = &inv.lambdas[&id];
    assert_eq!(mine.versions.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(mine.versions[&1].archive);
    assert_eq!(mine.keys[&2].len(), 2, "{:?}", mine.keys);
    let mut keys: Vec<String> = mine.keys[&1]
        .iter()
        .chain(&mine.keys[&2])
        .cloned()
        .collect();
    // Removed meanwhile (another collector, a crash repair): still counts as gone.
    art.delete_version(&id, 1).await.unwrap();
    keys.sort();
    let (gone, failed) = art.delete_keys(&keys).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(gone.into_iter().collect::<Vec<_>>(), keys);
    let after = art.inventory().await.unwrap();
    let left: Vec<u64> = after.lambdas[&id].versions.keys().copied().collect();
    assert_eq!(left, [3]);
}

fn token(name: &str) -> lambda_storage::StoredToken {
    lambda_storage::StoredToken {
        record: lambda_core::auth::TokenRecord {
            token_id: uuid::Uuid::new_v4(),
            name: name.into(),
            account_id: Some(uuid::Uuid::new_v4()),
            admin: false,
            scope: lambda_core::auth::TokenScope::Read,
            create_time: time::OffsetDateTime::now_utc(),
            expire_time: None,
        },
        hash: "ab".repeat(32),
    }
}

/// Tokens: names are unique, a revoked token is gone and its name free again, and a name claim
/// a half-done revoke left behind does not block the name.
pub async fn tokens_round_trip(s: Storage) {
    let store = s.tokens();
    let a = token("ci");
    store.create(&a).await.unwrap();
    let e = store.create(&token("ci")).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert_eq!(
        store.get(&a.record.token_id).await.unwrap(),
        Some(a.clone())
    );
    let b = token("deploy");
    store.create(&b).await.unwrap();
    let names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["ci", "deploy"]);
    assert!(store.delete(&a.record.token_id).await.unwrap());
    assert!(!store.delete(&a.record.token_id).await.unwrap());
    assert_eq!(store.get(&a.record.token_id).await.unwrap(), None);
    store.create(&token("ci")).await.unwrap();
    // A claim whose token is gone (a revoke that stopped after deleting the token).
    let key = prefixed(
        &s,
        object_store::path::Path::from(format!("tokens/{}.json", b.record.token_id)),
    );
    s.object_store().delete(&key).await.unwrap();
    store.create(&token("deploy")).await.unwrap();
}

fn audit_entry(i: usize, time: time::OffsetDateTime) -> lambda_core::api::AuditEntry {
    lambda_core::api::AuditEntry {
        time,
        action: "createLambda".into(),
        method: "POST".into(),
        path: "/1/lambdas".into(),
        token: Some(format!("t{i}")),
        account_id: Some(uuid::Uuid::new_v4()),
        request_id: format!("r{i}"),
        lambda_id: None,
        target_id: None,
        status: 201,
        error_code: None,
    }
}

/// The audit log: appends racing on one hour lose nothing, entries go to their hour, and a
/// read from a time gives what came at or after it, oldest first, up to a limit.
pub async fn audit_appends_lose_nothing(s: Storage) {
    let audit = s.audit();
    let hour = time::macros::datetime!(2026-12-02 08:00 UTC);
    let appends = (0..16).map(|i| {
        let audit = audit.clone();
        async move {
            let at = hour + time::Duration::seconds(i as i64);
            audit.append(&[audit_entry(i, at)]).await
        }
    });
    for r in futures::future::join_all(appends).await {
        r.unwrap();
    }
    let next = hour + time::Duration::hours(1);
    audit
        .append(&[
            audit_entry(100, next),
            audit_entry(101, next + time::Duration::minutes(5)),
        ])
        .await
        .unwrap();
    let all = audit.since(hour, 1000).await.unwrap();
    assert_eq!(all.len(), 18);
    assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
    let mut ids: Vec<String> = all.iter().map(|e| e.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 18, "an append was lost or doubled");
    let later = audit.since(next, 1000).await.unwrap();
    assert_eq!(
        later
            .iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        ["r100", "r101"]
    );
    assert_eq!(audit.since(hour, 5).await.unwrap().len(), 5);
    // Retention: the first hour is over before `next`; the second is not.
    let expired = audit.expired(next).await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].0.ends_with("audit/2026-12-02/08.json") && expired[0].1 > 0);
    assert!(audit.expired(hour).await.unwrap().is_empty());
    assert!(
        audit
            .since(next + time::Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Generates one test per case for a backend constructor.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:path) => {
        $crate::conformance_suite!(@cases $backend;
            records_crud,
            names_are_unique_per_account,
            concurrent_creates_of_one_name_exactly_one_wins,
            concurrent_updates_lose_nothing,
            a_stale_revision_is_a_conflict,
            list_pages_and_filters,
            archives_round_trip_and_are_verified,
            corrupt_and_missing_archives_are_errors,
            a_create_that_crashed_before_its_record_is_cleaned_up,
            a_create_that_crashed_before_its_index_entry_is_completed,
            build_logs_and_docs,
            healthcheck_passes,
            tasks_round_trip,
            inventory_and_bulk_delete,
            tokens_round_trip,
            audit_appends_lose_nothing
        );
    };
    (@cases $backend:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (storage, _guard) = $backend().await;
                $crate::common::$case(storage).await;
            }
        )*
    };
}
