//! # lambda-server
//!
//! The Platform service and the axum router (API and proxy). Filled in by the server issue.
//! Depends only on lambda-core for now; see ARCHITECTURE.md for its room.
