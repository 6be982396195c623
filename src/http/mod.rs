//! HTTP plumbing every surface shares: bounded body reading and the per-request log line.

pub mod body;
pub mod log;
