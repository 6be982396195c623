//! Black-box tests: the real app on a random port, a temporary sled store on disk, and a real
//! HTTP NRC stand-in that validates every notification.

mod helpers;

/// This binary's store; `tests/api_pg` runs the store-facing modules on PostgreSQL.
pub const BACKEND: signrelay::config::Backend = signrelay::config::Backend::Sled;

mod admin;
mod crash;
mod documents;
mod documents_crash;
mod faults;
mod gosign_rest;
mod gosign_soap;
mod hostile;
mod idp;
mod jwt_auth;
mod kanaal;
mod limits;
mod openapi;
mod openapi_api;
mod openapi_check;
mod pacing;
mod pkisigning;
mod posten;
mod relay;
mod retention;
mod schemathesis;
mod throwaway;
