//! Wire types of the HTTP API (DESIGN.md §4), shared by the server, the CLI and the Python
//! bindings so that there is one definition of every body.

use crate::names::{LambdaId, LambdaName, LambdaType};
use crate::params::Parameters;
use crate::problem::Problem;
use crate::status::{ImageStatus, LambdaStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Header carrying the request id (`<unix seconds>,<uuid>`).
pub const REQUEST_ID_HEADER: &str = "Luna-Request-Id";
/// Header carrying the account id.
pub const ACCOUNT_ID_HEADER: &str = "Luna-Account-Id";
/// Header carrying the lambda version on proxied responses.
pub const LAMBDA_VERSION_HEADER: &str = "Lambda-Version";

/// Error codes of the API, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 42001 / 404: lambda not found.
    LambdaNotFound,
    /// 42002 / 409: a lambda with this name already exists for this account.
    NameConflict,
    /// 42004 / 500: exception in the user's code.
    UserException,
    /// 42005 / 400: archive or parameters failed validation.
    Validation,
    /// 42006 / 409: update failed or not allowed now.
    UpdateNotAllowed,
    /// 42011 / 409: the lambda runs an imported image and cannot be updated with an archive.
    ImportedImage,
    /// 42012 / 410: the stored archive is gone.
    ArchiveGone,
    /// 42013 / 503: the lambda is not running.
    NotRunning,
    /// 42014 / 409: the lambda is switched off.
    SwitchedOff,
    /// 42015 / 504: the lambda did not answer in time.
    LambdaTimeout,
    /// 42021 / 404: task not found.
    TaskNotFound,
    /// 42022 / 400: the lambda of a task is not a `tasks` lambda.
    NotATasksLambda,
    /// 42023 / 409: the task is over (done, failed or cancelled) and cannot be cancelled.
    TaskFinished,
    /// 42016 / 409: the lambda is not running from an image, so it has none to export.
    NotExportable,
    /// 42017 / 409: the account has as many lambdas as `[limits] max_lambdas_per_account` allows.
    LambdaLimit,
    /// 12001 / 400: the body is not valid JSON or has the wrong shape.
    BadJson,
    /// 12002 / 415: wrong content type (e.g. create without multipart).
    BadContentType,
    /// 12003 / 413: the body is larger than allowed.
    BodyTooLarge,
    /// 12004 / 400: bad query parameter.
    BadQuery,
    /// 12005 / 400: a required header or multipart part is missing or malformed.
    BadRequest,
    /// 12006 / 404: no such route.
    RouteNotFound,
    /// 12007 / 405: method not allowed on this route.
    MethodNotAllowed,
    /// 12008 / 401: no token, or one that is malformed, unknown, expired or revoked.
    Unauthorized,
    /// 12009 / 403: a known token outside its scope or account.
    Forbidden,
    /// 12010 / 429: the token's request rate is exceeded.
    TooManyRequests,
    /// 12011 / 404: token not found.
    TokenNotFound,
    /// 12012 / 409: a token with this name exists.
    TokenNameConflict,
    /// 12013 / 408: an upload's body did not arrive in time.
    RequestTimeout,
    /// 10000 / 500: internal error (details are logged, not returned).
    Internal,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u32 {
        match self {
            Self::LambdaNotFound => 42001,
            Self::NameConflict => 42002,
            Self::UserException => 42004,
            Self::Validation => 42005,
            Self::UpdateNotAllowed => 42006,
            Self::ArchiveGone => 42012,
            Self::NotRunning => 42013,
            Self::SwitchedOff => 42014,
            Self::LambdaTimeout => 42015,
            Self::TaskNotFound => 42021,
            Self::NotATasksLambda => 42022,
            Self::TaskFinished => 42023,
            Self::NotExportable => 42016,
            Self::LambdaLimit => 42017,
            Self::ImportedImage => 42011,
            Self::BadJson => 12001,
            Self::BadContentType => 12002,
            Self::BodyTooLarge => 12003,
            Self::BadQuery => 12004,
            Self::BadRequest => 12005,
            Self::RouteNotFound => 12006,
            Self::MethodNotAllowed => 12007,
            Self::Unauthorized => 12008,
            Self::Forbidden => 12009,
            Self::TooManyRequests => 12010,
            Self::TokenNotFound => 12011,
            Self::TokenNameConflict => 12012,
            Self::RequestTimeout => 12013,
            Self::Internal => 10000,
        }
    }

    /// The HTTP status that goes with it.
    pub fn http_status(self) -> u16 {
        match self {
            Self::LambdaNotFound
            | Self::RouteNotFound
            | Self::TaskNotFound
            | Self::TokenNotFound => 404,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::TooManyRequests => 429,
            Self::RequestTimeout => 408,
            Self::NameConflict
            | Self::TokenNameConflict
            | Self::UpdateNotAllowed
            | Self::SwitchedOff
            | Self::TaskFinished
            | Self::NotExportable
            | Self::LambdaLimit
            | Self::ImportedImage => 409,
            Self::UserException | Self::Internal => 500,
            Self::Validation
            | Self::BadJson
            | Self::BadQuery
            | Self::BadRequest
            | Self::NotATasksLambda => 400,
            Self::ArchiveGone => 410,
            Self::NotRunning => 503,
            Self::LambdaTimeout => 504,
            Self::BadContentType => 415,
            Self::BodyTooLarge => 413,
            Self::MethodNotAllowed => 405,
        }
    }

    /// Short description (the `desc` of an error body).
    pub fn desc(self) -> &'static str {
        match self {
            Self::LambdaNotFound => "Lambda not found",
            Self::NameConflict => "Lambda name already exists",
            Self::UserException => "Lambda exception",
            Self::Validation => "Lambda validation exception",
            Self::UpdateNotAllowed => "Lambda update exception",
            Self::ArchiveGone => "Lambda archive gone",
            Self::NotRunning => "Lambda is not running",
            Self::SwitchedOff => "Lambda is switched off",
            Self::LambdaTimeout => "Lambda did not answer in time",
            Self::TaskNotFound => "Task not found",
            Self::NotATasksLambda => "Lambda is not a tasks lambda",
            Self::TaskFinished => "Task is finished",
            Self::NotExportable => "Lambda isn't running and cannot be exported",
            Self::ImportedImage => "Lambda update conflict: it uses an imported image",
            Self::LambdaLimit => "Lambda limit reached for this account",
            Self::BadJson => "Bad JSON",
            Self::BadContentType => "Bad content type",
            Self::BodyTooLarge => "Request body too large",
            Self::BadQuery => "Bad query parameter",
            Self::BadRequest => "Bad request",
            Self::RouteNotFound => "Resource not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "Too many requests",
            Self::TokenNotFound => "Token not found",
            Self::TokenNameConflict => "Token name already exists",
            Self::RequestTimeout => "Request body timeout",
            Self::Internal => "Internal server error",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 29] = [
        Self::LambdaNotFound,
        Self::NameConflict,
        Self::UserException,
        Self::Validation,
        Self::UpdateNotAllowed,
        Self::ImportedImage,
        Self::ArchiveGone,
        Self::NotRunning,
        Self::SwitchedOff,
        Self::LambdaTimeout,
        Self::TaskNotFound,
        Self::NotATasksLambda,
        Self::TaskFinished,
        Self::NotExportable,
        Self::LambdaLimit,
        Self::BadJson,
        Self::BadContentType,
        Self::BodyTooLarge,
        Self::BadQuery,
        Self::BadRequest,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::TooManyRequests,
        Self::TokenNotFound,
        Self::TokenNameConflict,
        Self::RequestTimeout,
        Self::Internal,
    ];
}

/// An error body: `{"error_code", "desc", "detail"}` plus `problems` on validation failures.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Numeric code (see [`ErrorCode`]).
    pub error_code: u32,
    /// Short description.
    pub desc: String,
    /// What exactly went wrong.
    pub detail: String,
    /// Every validation problem (42005 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
}

impl ErrorBody {
    /// A body for `code` with a detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            error_code: code.code(),
            desc: code.desc().to_owned(),
            detail: detail.into(),
            problems: None,
        }
    }
}

/// `credentials` part of a create request.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The lambda's name, unique per account.
    pub lambda_name: LambdaName,
    /// The lambda's type.
    pub lambda_type: LambdaType,
}

/// Size and digest of a stored archive.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

impl ArchiveInfo {
    /// From the size and the SHA-256 digest of an archive hashed as it streamed.
    pub fn from_digest(size: u64, sha256: &[u8]) -> Self {
        Self {
            size,
            sha256: crate::hex(sha256),
        }
    }

    /// Of an archive in memory.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self::from_digest(bytes.len() as u64, &sha2::Sha256::digest(bytes))
    }
}

/// A lambda as the API shows it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaRecord {
    /// Id.
    pub lambda_id: LambdaId,
    /// Name.
    pub lambda_name: LambdaName,
    /// Type.
    pub lambda_type: LambdaType,
    /// Owning account.
    pub account_id: uuid::Uuid,
    /// Description (from parameters).
    pub description: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub create_time: time::OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub last_update_time: time::OffsetDateTime,
    /// Version, starting at 1, incremented by every update.
    pub lambda_version: u64,
    /// Build status.
    pub image_status: ImageStatus,
    /// Deploy status.
    pub status: LambdaStatus,
    /// Why the build or the deployment failed, when it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// Switched on (`true`) or off.
    pub alive: bool,
    /// The version that serves requests now (during an update it is the previous one until
    /// the new one answers); `None` when nothing serves.
    #[serde(default)]
    pub running_version: Option<u64>,
    /// Parameters in force.
    pub parameters: Parameters,
    /// The stored archive.
    pub archive: ArchiveInfo,
    /// The archive has docs.
    pub has_docs: bool,
    /// The image it was created from (`import_image`): no archive, no build; such a lambda
    /// cannot be updated (42011).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_image: Option<String>,
    /// When the proxy last forwarded a request to it (written every few seconds, not per
    /// request; `null`: never).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<String>", extend("format" = "date-time"))
    )]
    pub last_usage: Option<time::OffsetDateTime>,
    /// Replicas it runs now (0 when idle, switched off or not deployed); between
    /// `deploy_parameters.scale.min_replicas` and `max_replicas` while it runs.
    #[serde(default)]
    pub replicas: u32,
}

/// `POST /1/lambdas` with `Content-Type: application/json`: a lambda from an image built
/// elsewhere, with no archive and no build.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportImageRequest {
    /// `{"lambda_name", "lambda_type"}`, as in the multipart create.
    pub credentials: serde_json::Value,
    /// The parameters, as in the multipart create.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// The image: a reference in a registry the platform's engine or cluster can pull from;
    /// it must serve the runtime contract (`/healthcheck`, `/main`, ...).
    pub import_image: String,
}

/// `201` answer of create.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResponse {
    /// The new lambda's id.
    pub lambda_id: LambdaId,
}

/// `202` answer of update.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResponse {
    /// The lambda's id.
    pub lambda_id: LambdaId,
    /// The new version being built.
    pub lambda_version: u64,
}

/// One version of a lambda as stored beside its archive (`lambdas/<id>/v<N>/version.json`):
/// what it was made of, so that it can be listed and rolled back to.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version number.
    pub version: u64,
    /// When it was made (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub create_time: time::OffsetDateTime,
    /// Its archive.
    pub archive: ArchiveInfo,
    /// Its parameters.
    pub parameters: Parameters,
    /// Its archive has `docs/`.
    pub has_docs: bool,
    /// The version it is a rollback to, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u64>,
    /// How its build ended (`completed` or `error`); absent while it was not built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_status: Option<ImageStatus>,
}

/// One item of `GET /1/lambdas/{id}/versions`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// What the version is made of.
    #[serde(flatten)]
    pub record: VersionRecord,
    /// What its build produced (an image reference and digest, or a local environment), when
    /// it is still kept.
    pub artifact: Option<crate::Artifact>,
    /// Its artifact is still kept: a rollback to it needs no build.
    pub artifact_exists: bool,
    /// It is the lambda's current version.
    pub current: bool,
    /// It is the version that serves.
    pub running: bool,
}

/// `GET /1/lambdas/{id}/versions` answer, oldest first.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionList {
    /// The lambda.
    pub lambda_id: LambdaId,
    /// Every version whose archive is still stored.
    pub versions: Vec<VersionEntry>,
}

/// `POST /1/lambdas/{id}/rollback` body.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to go back to (default: the one before the current version).
    #[serde(default)]
    pub version: Option<u64>,
}

/// `202` answer of a rollback.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackResponse {
    /// The lambda's id.
    pub lambda_id: LambdaId,
    /// The new version, made of the old one's archive, parameters and artifact.
    pub lambda_version: u64,
    /// The version rolled back to.
    pub rolled_back_from: u64,
    /// Its artifact was gone, so the new version is built from its archive.
    pub rebuild: bool,
}

/// `manifest.json` of an export (`GET /1/lambdas/{id}/export`): what `POST /1/lambdas/import`
/// needs to make the lambda again, and the digest that proves `archive.zip` is the one exported.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportManifest {
    /// Format of the export (1).
    pub format: u32,
    /// The lambda's name.
    pub lambda_name: LambdaName,
    /// The lambda's type.
    pub lambda_type: LambdaType,
    /// The exported version.
    pub version: u64,
    /// Its parameters.
    pub parameters: Parameters,
    /// Size and sha256 of `archive.zip`.
    pub archive: ArchiveInfo,
    /// The lambda it was exported from.
    pub source_lambda_id: LambdaId,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub exported_at: time::OffsetDateTime,
}

/// `GET /1/lambdas/{id}/image`: the image the lambda runs, for use elsewhere.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageExport {
    /// The lambda.
    pub lambda_id: LambdaId,
    /// The version that runs.
    pub lambda_version: u64,
    /// `<registry>/luna-lambda/<id>:v<version>`
    pub reference: String,
    /// The pushed digest (`sha256:...`), when known.
    pub digest: Option<String>,
}

/// One thing the garbage collector removed (or, in a dry run, would remove).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GcItem {
    /// What it is: `version` (a stored version's archive, build log, docs and records),
    /// `lambda` (stored objects of a deleted lambda), `orphan` (an object no record explains),
    /// `artifact` (a collected version's built artifact), `app` (a local app folder), `env` (a
    /// local environment), `image` (an image in the Docker engine), `manifest` (a registry
    /// manifest), `dependencies image` (a registry manifest of the Kubernetes builder's
    /// dependencies images no lambda image is built on).
    pub kind: String,
    /// Which one: a storage key, a folder, an image reference.
    pub what: String,
    /// Bytes it held (for a registry manifest: the bytes of the layers it references).
    pub bytes: u64,
}

impl GcItem {
    /// One thing removed: its kind, what it is, and its bytes.
    pub fn new(kind: &str, what: impl Into<String>, bytes: u64) -> Self {
        Self {
            kind: kind.to_owned(),
            what: what.into(),
            bytes,
        }
    }
}

/// `POST /1/gc` answer: the garbage collector's report.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GcReport {
    /// Nothing was removed: this is what a real run would remove.
    pub dry_run: bool,
    /// Each thing removed (or that would be), in a stable order.
    pub removed: Vec<GcItem>,
    /// Their bytes in all.
    pub bytes: u64,
}

/// `GET /1/lambdas` answer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaList {
    /// The page.
    pub lambdas: Vec<LambdaRecord>,
    /// Total matching lambdas (all pages).
    pub count: u64,
}

/// One write the API received (`GET /1/audit`): who, what, on what, and how it ended.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the answer was sent.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub time: time::OffsetDateTime,
    /// The operation (`createLambda`, `deleteLambda`, `createToken`, ...; the OpenAPI operation id).
    pub action: String,
    /// HTTP method and path as requested.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The token's name (`None` when the server runs without tokens, or none was usable).
    pub token: Option<String>,
    /// The account acted for (the token's, else `Luna-Account-Id`), when there is one.
    pub account_id: Option<uuid::Uuid>,
    /// The request id (`Luna-Request-Id`).
    pub request_id: String,
    /// The lambda acted on (for a create: the lambda made).
    pub lambda_id: Option<LambdaId>,
    /// The task or token acted on, when the route names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The error code when it failed.
    pub error_code: Option<u32>,
}

/// `GET /1/audit` answer, oldest first.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// The entries since the asked time (at most `limit`).
    pub entries: Vec<AuditEntry>,
}

/// `PATCH /1/lambdas/{id}` body.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// Switch on (`true`) or off.
    pub alive: bool,
}

/// One replica in a status answer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Replica (pod, container or process) name.
    pub name: String,
    /// `running`, `starting`, `crashed`, ...
    pub status: String,
    /// Why it is not running, when it is not.
    #[serde(default)]
    pub reason: Option<String>,
    /// How often it was restarted.
    pub restarts: u32,
}

/// `GET /1/lambdas/{id}/status` answer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Deploy status.
    pub status: LambdaStatus,
    /// Why, when not running.
    #[serde(default)]
    pub reason: Option<String>,
    /// Replicas.
    pub replicas: Vec<ReplicaStatus>,
}

/// `GET /1/lambdas/{id}/image/status` answer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStatusResponse {
    /// Build status.
    pub status: ImageStatus,
    /// Why, when it failed.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /1/lambdas/{id}/logs` answer.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// Log text per replica.
    pub logs: BTreeMap<String, String>,
}

/// `GET /version` answer: `{"Version": {...}}`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// The version.
    #[serde(rename = "Version")]
    pub version: VersionInfo,
}

/// API and release version numbers.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// API version (1).
    pub api: u32,
    /// Release major.
    pub major: u32,
    /// Release minor.
    pub minor: u32,
    /// Release patch.
    pub patch: u32,
}

/// `POST /1/tasks`: a task for a `tasks` lambda.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What the lambda's `splitTasksContent` gets; `lambda_id` names the lambda.
    pub content: serde_json::Map<String, serde_json::Value>,
}

/// `201` answer of `POST /1/tasks`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    /// The new task.
    pub task_id: uuid::Uuid,
}

/// Where a task is.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Created, not started.
    Pending,
    /// The lambda is splitting it into subtasks.
    Splitting,
    /// Subtasks are running.
    InProgress,
    /// Every subtask ended and at least one succeeded (or there were none).
    Done,
    /// The split failed, or every subtask failed.
    Failed,
    /// Cancelled: no new subtask starts.
    Cancelled,
}

impl TaskStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Splitting => "splitting",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the task is over (nothing runs for it any more).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Self::Pending,
            Self::Splitting,
            Self::InProgress,
            Self::Done,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| {
            format!("{s:?} is not a task status (pending, splitting, in_progress, done, failed, cancelled)")
        })
    }
}

/// Subtask counts of a task.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// Subtasks the split made.
    pub total: u64,
    /// Ended with a result.
    pub done: u64,
    /// Ended with an error (after every attempt).
    pub failed: u64,
    /// Running now.
    pub in_flight: u64,
}

/// A task as the API shows it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Id.
    pub task_id: uuid::Uuid,
    /// The `tasks` lambda that runs it.
    pub lambda_id: LambdaId,
    /// Owning account (the lambda's).
    pub account_id: uuid::Uuid,
    /// Free text.
    pub description: String,
    /// The content given at creation.
    pub content: serde_json::Map<String, serde_json::Value>,
    /// Where it is.
    pub status: TaskStatus,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Subtask counts.
    pub subtasks: TaskCounts,
    /// Created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub create_time: time::OffsetDateTime,
    /// Split started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub start_time: Option<time::OffsetDateTime>,
    /// Ended (done, failed or cancelled).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub end_time: Option<time::OffsetDateTime>,
}

/// `GET /1/tasks`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// This page.
    pub tasks: Vec<TaskRecord>,
    /// Matching tasks in all.
    pub count: u64,
}

/// `GET /1/tasks/{id}/result`: one entry per subtask, in order; `null` for a failed or
/// unfinished one.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResults {
    /// The results.
    pub results: Vec<Option<serde_json::Value>>,
}

/// One failed subtask (`GET /1/tasks/{id}/errors` is a list of them).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// The subtask's index (from 0), or absent for the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<u64>,
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_info_is_size_and_lowercase_hex_sha256() {
        let info = ArchiveInfo::of(b"abc");
        assert_eq!(info.size, 3);
        assert_eq!(
            info.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn error_codes_are_unique_and_mapped() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "{c:?}");
            assert!((400..600).contains(&c.http_status()));
        }
        assert_eq!(ErrorCode::Validation.code(), 42005);
        assert_eq!(ErrorCode::Validation.http_status(), 400);
        assert_eq!(ErrorCode::ArchiveGone.http_status(), 410);
    }

    #[test]
    fn the_error_code_table_lists_every_code() {
        let doc = include_str!("../../docs/error-codes.md");
        for c in ErrorCode::ALL {
            let row = format!("| {} | {} |", c.code(), c.http_status());
            assert!(
                doc.contains(&row),
                "docs/error-codes.md lacks {row} ({c:?})"
            );
        }
    }

    #[test]
    fn record_round_trips_with_rfc3339_times() {
        let rec = LambdaRecord {
            lambda_id: LambdaId::new(),
            lambda_name: LambdaName::parse("hello").unwrap(),
            lambda_type: LambdaType::Standalone,
            account_id: uuid::Uuid::new_v4(),
            description: String::new(),
            create_time: time::macros::datetime!(2026-11-29 10:00 UTC),
            last_update_time: time::macros::datetime!(2026-11-29 10:00 UTC),
            lambda_version: 1,
            image_status: ImageStatus::Pending,
            status: LambdaStatus::Waiting,
            reason: None,
            alive: true,
            running_version: None,
            parameters: Parameters::default(),
            archive: ArchiveInfo {
                size: 10,
                sha256: "ab".into(),
            },
            has_docs: false,
            import_image: None,
            last_usage: None,
            replicas: 0,
        };
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["create_time"], "2026-11-29T10:00:00Z");
        assert_eq!(json["image_status"], "pending");
        let back: LambdaRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, rec);
        let v = serde_json::to_value(VersionResponse {
            version: VersionInfo {
                api: 1,
                major: 0,
                minor: 1,
                patch: 0,
            },
        })
        .unwrap();
        assert_eq!(v["Version"]["api"], 1);
    }

    #[test]
    fn credentials_refuse_bad_names_and_types() {
        assert!(
            serde_json::from_str::<Credentials>(
                r#"{"lambda_name":"ok","lambda_type":"standalone"}"#
            )
            .is_ok()
        );
        assert!(
            serde_json::from_str::<Credentials>(
                r#"{"lambda_name":"Bad","lambda_type":"standalone"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<Credentials>(r#"{"lambda_name":"ok","lambda_type":"agent"}"#)
                .is_err()
        );
    }
}
