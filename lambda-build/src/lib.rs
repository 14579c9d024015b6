//! # lambda-build
//!
//! ImageBuilder trait, LocalBuilder (virtualenv) and DockerBuilder; owns the Python runtime sources (runtime/). Filled in by the builder issues.
//! Depends only on lambda-core for now; see ARCHITECTURE.md for its room.
