//! The API's route groups, one module each; the router (`super::api::router`) merges them.

pub(crate) mod lambdas;
pub(crate) mod table;
pub(crate) mod tasks;
pub(crate) mod tokens;
pub(crate) mod versions;
