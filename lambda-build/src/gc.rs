//! What a builder may collect: the garbage collector says what is in use ([`InUse`]); each
//! builder finds what it made that nothing uses and, unless it is a dry run, removes exactly
//! that ([`ImageBuilder::collect`](crate::ImageBuilder::collect)), so a dry run lists what the
//! real run that follows removes.

use lambda_core::{Artifact, LambdaId};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What the platform still uses: nothing in it is ever collected.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    /// Every lambda with a record: the versions it keeps, and its current version (newer ones
    /// are being made right now: an update between storing the archive and moving the record).
    pub lambdas: HashMap<LambdaId, KeptVersions>,
    /// The artifacts kept versions run from (a rollback's version runs an older one's).
    pub artifacts: Vec<Artifact>,
    /// Anything younger than this is left alone: creates and builds in flight.
    pub grace: Duration,
    /// Local environments no kept artifact uses stay as a cache for later builds up to this many
    /// bytes of environments in all; beyond it the least recently used go first.
    pub env_cache_max_bytes: u64,
}

/// The versions of one lambda that stay.
#[derive(Debug, Clone, Default)]
pub struct KeptVersions {
    /// Kept versions (the newest `keep_versions`, the current and the running one).
    pub versions: BTreeSet<u64>,
    /// The current version: every newer one is kept too.
    pub current: u64,
}

impl InUse {
    /// Whether version `version` of lambda `id` stays. Lambdas without a record (deleted, or
    /// created after the records were read) are judged by age alone.
    pub fn keeps(&self, id: &LambdaId, version: u64) -> bool {
        self.lambdas
            .get(id)
            .is_some_and(|k| version > k.current || k.versions.contains(&version))
    }

    /// Whether something last changed at `modified` is too young to collect.
    pub fn young(&self, modified: SystemTime) -> bool {
        SystemTime::now()
            .duration_since(modified)
            .map_or(true, |age| age < self.grace)
    }

    /// Whether a local app folder is one a kept artifact runs from.
    pub fn uses_app(&self, dir: &Path) -> bool {
        self.artifacts
            .iter()
            .any(|a| matches!(a, Artifact::Local { app_dir, .. } if app_dir == dir))
    }

    /// Whether a local environment is one a kept artifact runs in.
    pub fn uses_env(&self, env: &Path) -> bool {
        self.artifacts
            .iter()
            .any(|a| matches!(a, Artifact::Local { python, .. } if python.starts_with(env)))
    }

    /// Whether an image reference is one a kept artifact runs.
    pub fn uses_image(&self, image: &str) -> bool {
        self.artifacts
            .iter()
            .any(|a| matches!(a, Artifact::Image { reference, .. } if reference == image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_than_the_current_one_are_kept_and_unknown_lambdas_are_not() {
        let id = LambdaId::new();
        let mut in_use = InUse::default();
        in_use.lambdas.insert(
            id,
            KeptVersions {
                versions: [4, 5].into(),
                current: 5,
            },
        );
        assert!(!in_use.keeps(&id, 3));
        assert!(in_use.keeps(&id, 4));
        assert!(in_use.keeps(&id, 6), "being made by an update in flight");
        assert!(!in_use.keeps(&LambdaId::new(), 1));
    }
}
