//! # lambda-storage
//!
//! Everything the control plane keeps, in one object store: the uploaded archives, build logs
//! and docs ([`ArtifactStore`]), the lambda records ([`LambdaRepository`]) and the tasks of `tasks`
//! lambdas ([`TaskStore`]). The backend is
//! chosen by URL ([`open`]): `memory://`, `file:///path` (the embedded default) or `s3://bucket`.
//!
//! ## Key layout
//!
//! Under an optional prefix `P`:
//!
//! | key | holds |
//! |---|---|
//! | `P/lambdas/<id>/v<version>/archive.zip` | the uploaded archive |
//! | `P/lambdas/<id>/v<version>/build.log` | the build log of that version |
//! | `P/lambdas/<id>/v<version>/docs/lambda.html`, `.../lambda.yml` | the archive's docs |
//! | `P/lambdas/<id>/v<version>/version.json` | what the version is made of (archive, parameters, build outcome) |
//! | `P/lambdas/<id>/v<version>/artifact.json` | what its build produced, while it is kept |
//! | `P/records/<id>.json` | the record: `{"revision": n, "record": {...}}` (the source of truth) |
//! | `P/names/<account>/<name>` | the name claim (holds the lambda id): names are unique per account |
//! | `P/index/lambdas.json` | the list index (id, account, name, namespace, create time) |
//! | `P/tasks/<task>/task.json` | a task's record `{"revision": n, "record": {...}}` (compare-and-swap) |
//! | `P/tasks/<task>/subtasks.json` | the task's split: each subtask's content |
//! | `P/tasks/<task>/results/<n / 1000>/<n>.json` | subtask `n`'s outcome, `{"result": ...}` or `{"error": "..."}` |
//! | `P/tokens/<token id>.json` | an API token's record and the sha256 of its secret (never the secret) |
//! | `P/token-names/<name>` | the token name claim (holds the token id) |
//! | `P/audit/<YYYY-MM-DD>/<HH>.json` | the audit log of one hour (UTC): `{"entries": [...]}`, appended to by compare-and-swap |
//! | `P/.healthcheck/<uuid>` | short-lived probe of [`Storage::healthcheck`] |
//!
//! ## Concurrency
//!
//! Where the backend offers conditional writes (memory, and S3 servers that honour `If-Match` /
//! `If-None-Match`), every record and index update is compare-and-swap on the object's e-tag, so
//! any number of processes can share the store. The local folder cannot do conditional updates:
//! there, writes are serialised in-process, and **a `file://` store serves one server process
//! only**. Name claims are atomic creates on every backend, so two racing creates of the same
//! name cannot both win.

mod artifacts;
mod audit;
mod backend;
mod error;
mod records;
mod tasks;
mod tokens;

pub use artifacts::{ArtifactStore, DocKind, Inventory, StoredLambda, StoredObject, VersionFiles};
pub use audit::AuditStore;
pub use backend::{CasMode, S3Options, Storage, StorageConfig, open};
pub use error::{Error, Result, UnavailableKind};
pub use records::{LambdaRepository, ListQuery, RecoveryReport, Revision, Versioned};
pub use tasks::{SubtaskOutcome, TaskStore};
pub use tokens::{StoredToken, TokenStore};
