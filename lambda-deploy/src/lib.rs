//! # lambda-deploy
//!
//! Orchestrator trait, LocalOrchestrator, DockerOrchestrator and KubeOrchestrator. Filled in by the orchestrator issues.
//! Depends only on lambda-core for now; see ARCHITECTURE.md for its room.
