//! The process around the platform: [`serve`] (plain and TLS, with a graceful shutdown that
//! leaves lambdas running), the TLS settings ([`tls`]) and the data folder's lock ([`lock`]).

pub mod lock;
mod serve;
pub mod tls;

pub use serve::{serve, serve_tls};
