//! The black-box suite's store-facing modules (registry and admin, GoSign REST and SOAP, the
//! relay with its dead letters and replay, the quarantine) again, on the PostgreSQL store:
//! each test on a database of its own on the local server (`SIGNRELAY_TEST_POSTGRES`, by
//! default postgres://postgres@127.0.0.1:5432/postgres), dropped with the test's app.

#[path = "../api/helpers.rs"]
mod helpers;

/// This binary's store.
pub const BACKEND: signrelay::config::Backend = signrelay::config::Backend::Postgres;

#[path = "../api/admin.rs"]
mod admin;
#[path = "../api/gosign_rest.rs"]
mod gosign_rest;
#[path = "../api/gosign_soap.rs"]
mod gosign_soap;
mod outage;
#[path = "../api/relay.rs"]
mod relay;
