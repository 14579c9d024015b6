//! The domain service: [`Platform`] (the lifecycle pipeline, its background jobs, the
//! reconciler, routing and admission for the proxy, scale, idle, versions, garbage collection,
//! export), the task runner of `tasks` lambdas, the traffic and metrics it keeps, and its one
//! error enum. It knows nothing of HTTP's server side: the API and the proxy call it.

pub mod error;
pub mod metrics;
pub mod platform;
pub mod tasks;
pub mod traffic;

pub use error::{Error, Result};
pub use platform::{Platform, PlatformConfig};
