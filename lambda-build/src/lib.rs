//! # lambda-build
//!
//! Builds runnable artifacts of lambdas. Today it owns the Python runtime that every lambda runs
//! under (`runtime/`: `run.py`, the `luna_lambda_tools` package and its pinned
//! `requirements.txt`), embedded into the binary at compile time so every build is
//! self-contained. The `ImageBuilder` trait and its local and Docker implementations come with the
//! builder issues.

pub mod runtime;
