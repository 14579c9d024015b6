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

/// The lambda and version of an image a builder pushing to `registry` named (`None`: not one
/// of its names, e.g. an imported image or another registry's).
pub(crate) fn own_image(registry: Option<&str>, reference: &str) -> Option<(LambdaId, u64)> {
    lambda_core::render::parse_lambda_image_ref(reference)
        .filter(|(id, v)| reference == lambda_core::render::lambda_image_ref(registry, id, *v))
}

/// Whether an image stays: not one of the builder's names, kept, run by a kept version, or
/// younger than the grace.
pub(crate) fn image_stays(
    registry: Option<&str>,
    in_use: &InUse,
    reference: &str,
    created: SystemTime,
) -> bool {
    let Some((id, version)) = own_image(registry, reference) else {
        return true;
    };
    in_use.keeps(&id, version) || in_use.uses_image(reference) || in_use.young(created)
}

/// Whether an image is of a lambda the collector knows: its versions are kept by retention
/// alone, with no grace (the grace is for lambdas in flight, e.g. on another server; an
/// engine image's creation time says nothing of when it was tagged: an image rebuilt from
/// cached layers is as old as the first build).
pub(crate) fn of_known_lambda(registry: Option<&str>, in_use: &InUse, reference: &str) -> bool {
    own_image(registry, reference).is_some_and(|(id, _)| in_use.lambdas.contains_key(&id))
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
