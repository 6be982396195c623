//! HTTP plumbing: bounded body reading and the per-request log line for the surfaces
//! signrelay serves, and a call budget for the parties it calls.

pub mod body;
pub mod budget;
pub mod log;
