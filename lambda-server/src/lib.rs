//! # lambda-server
//!
//! The front door of luna-lambda-rs, in rooms whose dependencies run one way
//! (config → server → {proxy, http} → service → storage/build/deploy/core):
//! - [`service`]: the domain, [`Platform`] (the lifecycle pipeline and the reconciler, over the
//!   storage, builder and orchestrator ports), the task runner, traffic and metrics;
//! - [`http`]: the axum [`http::router`], the HTTP API of DESIGN.md §4;
//! - [`proxy`]: the front that routes invocations before the API, and its upstream client;
//! - [`server`]: [`server::start`] (what `luna-lambda serve`, the Python embedded platform and a
//!   Rust program call), [`serve`], which runs it all with a graceful shutdown that leaves
//!   lambdas running for the next start, TLS and the data folder's lock;
//! - [`config`]: [`Config`] (TOML + environment) and the wiring of the adapters
//!   ([`Config::setup`]).
//!
//! `examples/embed.rs` starts the platform in-process, creates a lambda, invokes it and stops.
//!
//! With the `client` feature (and without the default `server` feature) it is only the typed
//! HTTP `client` module, shared by the CLI and the Python bindings so that no HTTP code is
//! written twice.

#![deny(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;

#[cfg(feature = "server")]
pub use config::{Config, ConfigError};
#[cfg(feature = "server")]
pub use server::{serve, serve_tls};
#[cfg(feature = "server")]
pub use service::{Error, Platform, PlatformConfig, Result};
