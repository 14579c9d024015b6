//! # lambda-server
//!
//! The front door of luna-lambda-rs: [`Platform`] (the lifecycle pipeline and the reconciler,
//! over the storage, builder and orchestrator ports), the axum [`api::router`] (the HTTP API
//! of DESIGN.md §4 and the proxy), [`Config`] (TOML + environment), and [`serve`], which runs
//! it all with a graceful shutdown that leaves lambdas running for the next start. With the
//! `client` feature (and without the default `server` feature) it is only the typed HTTP
//! [`client`], shared by the CLI and the Python bindings so that no HTTP code is written twice.

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod console;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod lock;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod openapi;
#[cfg(feature = "server")]
pub mod platform;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod replica_metrics;
#[cfg(feature = "server")]
mod request_body;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod task_api;
#[cfg(feature = "server")]
pub mod tasks;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
mod token_api;
#[cfg(feature = "server")]
pub mod traffic;
#[cfg(feature = "server")]
pub mod upstream;
#[cfg(feature = "server")]
mod version_api;

#[cfg(feature = "server")]
pub use config::{Config, ConfigError};
#[cfg(feature = "server")]
pub use error::{Error, Result};
#[cfg(feature = "server")]
pub use platform::{Platform, PlatformConfig};

#[cfg(feature = "server")]
pub use serve::{serve, serve_tls};
