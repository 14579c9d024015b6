//! The HTTP API of DESIGN.md §4: the router and its state, middleware and extractors
//! ([`api`]), the route groups (`routes`), tokens and scopes ([`auth`]), the audit log
//! ([`audit`]), the web console (`console`), the OpenAPI document ([`openapi`]) and the
//! request bodies the API reads (`request_body`).

pub mod api;
pub mod audit;
pub mod auth;
pub(crate) mod console;
pub mod error;
pub mod openapi;
pub mod paths;
pub(crate) mod request_body;
pub(crate) mod routes;

pub use api::{EdgeSettings, router};
