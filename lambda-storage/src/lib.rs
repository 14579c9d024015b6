//! # lambda-storage
//!
//! Archives, build logs and lambda records on object_store (memory://, file://, s3://). Filled in by the storage issue.
//! Depends only on lambda-core for now; see ARCHITECTURE.md for its room.
