//! The one error type of lambda-server's service. Its mapping to HTTP is done once, in
//! `http::error`.

use lambda_core::api::{ErrorBody, ErrorCode};
use lambda_core::{LambdaId, ValidationReport};

/// Errors of the platform.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such lambda (or not this account's).
    #[error("lambda {0} not found")]
    NotFound(LambdaId),
    /// The account already has a lambda with this name.
    #[error("{0}")]
    NameConflict(String),
    /// The archive or the parameters failed validation.
    #[error("the archive or the parameters are invalid ({} problem(s))", .0.errors().count())]
    Invalid(ValidationReport),
    /// The update is not allowed now.
    #[error("{0}")]
    UpdateNotAllowed(String),
    /// The stored archive is gone.
    #[error("the archive of lambda {0} is gone from the store")]
    ArchiveGone(LambdaId),
    /// The lambda is not running (proxy).
    #[error("lambda {0} is not running")]
    NotRunning(LambdaId),
    /// An idle lambda did not wake (proxy): every request held for the wake gets the reason.
    #[error("lambda {0} was idle and could not be woken: {1}")]
    WakeFailed(LambdaId, String),
    /// Too many requests are held for an idle lambda's wake (503, with `Retry-After`).
    #[error(
        "lambda {0} is waking and already holds {1} requests ([scale] max_waiting); retry shortly"
    )]
    WakeQueueFull(LambdaId, usize),
    /// The lambda is switched off (proxy).
    #[error("lambda {0} is switched off")]
    SwitchedOff(LambdaId),
    /// The lambda did not answer in time (proxy).
    #[error("lambda {0} did not answer within {1:?}")]
    LambdaTimeout(LambdaId, std::time::Duration),
    /// A malformed request (missing part or header, bad JSON part, bad query).
    #[error("{1}")]
    BadRequest(ErrorCode, String),
    /// A storage failure.
    #[error(transparent)]
    Storage(#[from] lambda_storage::Error),
    /// An orchestrator failure.
    #[error(transparent)]
    Deploy(#[from] lambda_deploy::Error),
    /// The lambda changed (was updated or deleted) while a background job ran for it.
    #[error("lambda {0} changed while this operation ran")]
    Superseded(LambdaId),
    /// No such task (or not this account's).
    #[error("task {0} not found")]
    TaskNotFound(uuid::Uuid),
    /// A task was asked of a lambda that is not a `tasks` lambda.
    #[error("lambda {0} is a {1} lambda; tasks run on tasks lambdas (lambda_type \"tasks\")")]
    NotATasksLambda(LambdaId, lambda_core::LambdaType),
    /// The task is over and cannot be cancelled.
    #[error("task {0} is {status} already", status = .1.as_str())]
    TaskFinished(uuid::Uuid, lambda_core::api::TaskStatus),
    /// The account has as many lambdas as it may (`[limits] max_lambdas_per_account`).
    #[error(
        "the account has {0} lambdas, as many as it may ([limits] max_lambdas_per_account); delete one first"
    )]
    LambdaLimit(usize),
    /// Anything else; details are logged, not returned.
    #[error("{0}")]
    Internal(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The API error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::LambdaNotFound,
            Self::NameConflict(_) => ErrorCode::NameConflict,
            Self::Invalid(_) => ErrorCode::Validation,
            Self::UpdateNotAllowed(_) => ErrorCode::UpdateNotAllowed,
            Self::ArchiveGone(_) => ErrorCode::ArchiveGone,
            Self::NotRunning(_) | Self::WakeFailed(..) | Self::WakeQueueFull(..) => {
                ErrorCode::NotRunning
            }
            Self::SwitchedOff(_) => ErrorCode::SwitchedOff,
            Self::LambdaTimeout(..) => ErrorCode::LambdaTimeout,
            Self::BadRequest(code, _) => *code,
            Self::TaskNotFound(_) => ErrorCode::TaskNotFound,
            Self::NotATasksLambda(..) => ErrorCode::NotATasksLambda,
            Self::TaskFinished(..) => ErrorCode::TaskFinished,
            Self::LambdaLimit(_) => ErrorCode::LambdaLimit,
            Self::Storage(lambda_storage::Error::Conflict { .. }) | Self::Superseded(_) => {
                ErrorCode::UpdateNotAllowed
            }
            Self::Storage(_) | Self::Deploy(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// How long the client should wait before trying again (`Retry-After`), when it should.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            // A wake takes about a second or less.
            Self::WakeQueueFull(..) => Some(1),
            _ => None,
        }
    }

    /// The body sent to the client (5xx details are not leaked).
    pub fn body(&self) -> ErrorBody {
        let code = self.code();
        let mut body = ErrorBody::new(
            code,
            if code == ErrorCode::Internal {
                "internal error; see the server log for this request id".to_owned()
            } else {
                self.to_string()
            },
        );
        if let Self::Invalid(report) = self {
            body.detail = report
                .errors()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            body.problems = Some(report.problems.clone());
        }
        body
    }
}
