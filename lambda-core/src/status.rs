//! The two status machines of DESIGN.md §3: the image (build) status and the lambda (deploy)
//! status. Transitions not listed in `can_become` are refused with [`crate::Error::InvalidTransition`].

use crate::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Build status of a lambda's image.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Waiting for a build slot.
    Pending,
    /// Being built.
    InProgress,
    /// Built and pushed.
    Completed,
    /// The build failed; `reason` says why.
    Error,
}

/// Deployment status of a lambda.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LambdaStatus {
    /// Not running yet (building, deploying, or switched off).
    Waiting,
    /// Every replica serves.
    Running,
    /// Stopped by a failure; `reason` says why.
    Terminated,
    /// The orchestrator no longer knows the deployment.
    NotFound,
    /// Scaled to zero after `idle_timeout_secs` without a request: no replica runs, and the
    /// next request wakes it.
    Idle,
}

impl ImageStatus {
    /// Whether `self → next` is allowed.
    pub fn can_become(self, next: ImageStatus) -> bool {
        use ImageStatus::*;
        matches!(
            (self, next),
            (Pending, InProgress)
                | (Pending, Error)
                | (InProgress, Completed)
                | (InProgress, Error)
                // an interrupted build is queued again by the reconciler
                | (InProgress, Pending)
                // an update rebuilds
                | (Completed, Pending)
                | (Error, Pending)
        )
    }

    /// `self → next`, or an error naming both.
    pub fn transition(self, next: ImageStatus) -> Result<ImageStatus, Error> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(Error::InvalidTransition {
                machine: "image",
                from: self.to_string(),
                to: next.to_string(),
            })
        }
    }

    /// Whether the build has ended (successfully or not).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Error)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Error => "error",
        }
    }
}

impl LambdaStatus {
    /// Whether `self → next` is allowed.
    pub fn can_become(self, next: LambdaStatus) -> bool {
        use LambdaStatus::*;
        matches!(
            (self, next),
            (Waiting, Running)
                | (Waiting, Terminated)
                | (Running, Waiting)
                | (Running, Terminated)
                | (Running, NotFound)
                | (Terminated, Waiting)
                | (Terminated, Running)
                | (NotFound, Waiting)
                | (Waiting, NotFound)
                // scaled to zero, and woken
                | (Running, Idle)
                | (Idle, Running)
                // an update or a switch off of an idle lambda
                | (Idle, Waiting)
                | (Idle, Terminated)
                | (Idle, NotFound)
        )
    }

    /// `self → next`, or an error naming both.
    pub fn transition(self, next: LambdaStatus) -> Result<LambdaStatus, Error> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(Error::InvalidTransition {
                machine: "lambda",
                from: self.to_string(),
                to: next.to_string(),
            })
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Terminated => "terminated",
            Self::NotFound => "not_found",
            Self::Idle => "idle",
        }
    }
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LambdaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: [ImageStatus; 4] = [
        ImageStatus::Pending,
        ImageStatus::InProgress,
        ImageStatus::Completed,
        ImageStatus::Error,
    ];
    const LAMBDA: [LambdaStatus; 5] = [
        LambdaStatus::Waiting,
        LambdaStatus::Running,
        LambdaStatus::Terminated,
        LambdaStatus::NotFound,
        LambdaStatus::Idle,
    ];

    #[test]
    fn the_build_path_is_allowed() {
        let s = ImageStatus::Pending;
        let s = s.transition(ImageStatus::InProgress).unwrap();
        assert_eq!(
            s.transition(ImageStatus::Completed).unwrap(),
            ImageStatus::Completed
        );
        let s = LambdaStatus::Waiting
            .transition(LambdaStatus::Running)
            .unwrap();
        assert_eq!(
            s.transition(LambdaStatus::Terminated).unwrap(),
            LambdaStatus::Terminated
        );
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let illegal_image = [
            (ImageStatus::Pending, ImageStatus::Completed),
            (ImageStatus::Completed, ImageStatus::InProgress),
            (ImageStatus::Completed, ImageStatus::Error),
            (ImageStatus::Error, ImageStatus::Completed),
            (ImageStatus::Error, ImageStatus::InProgress),
        ];
        for (a, b) in illegal_image {
            let e = a.transition(b).unwrap_err();
            assert!(
                e.to_string().contains(a.as_str()) && e.to_string().contains(b.as_str()),
                "{e}"
            );
        }
        assert!(
            LambdaStatus::NotFound
                .transition(LambdaStatus::Running)
                .is_err()
        );
        assert!(
            LambdaStatus::NotFound
                .transition(LambdaStatus::Terminated)
                .is_err()
        );
        // No status may "transition" to itself: a repeated write is a bug upstream.
        for s in IMAGE {
            assert!(!s.can_become(s));
        }
        for s in LAMBDA {
            assert!(!s.can_become(s));
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(
            serde_json::to_string(&ImageStatus::InProgress).unwrap(),
            "\"in_progress\""
        );
        assert_eq!(
            serde_json::to_string(&LambdaStatus::NotFound).unwrap(),
            "\"not_found\""
        );
        for s in IMAGE {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in LAMBDA {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }

    #[test]
    fn a_lambda_idles_and_wakes() {
        let s = LambdaStatus::Running
            .transition(LambdaStatus::Idle)
            .unwrap();
        assert_eq!(
            s.transition(LambdaStatus::Running).unwrap(),
            LambdaStatus::Running
        );
        assert!(
            LambdaStatus::Waiting
                .transition(LambdaStatus::Idle)
                .is_err()
        );
        assert!(
            LambdaStatus::Terminated
                .transition(LambdaStatus::Idle)
                .is_err()
        );
    }
}
