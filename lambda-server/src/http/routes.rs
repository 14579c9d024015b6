//! Route groups of the API beside the lambdas' own (which are in [`super::api`]).

pub(crate) mod tasks;
pub(crate) mod tokens;
pub(crate) mod versions;
