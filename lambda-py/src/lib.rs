//! # lambda-py
//!
//! PyO3 module luna_lambda_rs. Filled in by the Python bindings issue.
//! Depends only on lambda-core for now; see ARCHITECTURE.md for its room.
