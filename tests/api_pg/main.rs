//! The black-box suite's store-facing modules (registry and admin, GoSign REST and SOAP, the
//! relay with its dead letters and replay, the quarantine, PKIsigning's verification, Posten's
//! jobs and pollers, the documents step into the DRC, the throwaway vendor's job queue) again,
//! on the PostgreSQL store:
//! each test on a database of its own on the local server (`SIGNRELAY_TEST_POSTGRES`, by
//! default postgres://postgres@127.0.0.1:5432/postgres), dropped with the test's app.

#[path = "../api/helpers.rs"]
mod helpers;

/// This binary's store.
pub const BACKEND: signrelay::config::Backend = signrelay::config::Backend::Postgres;

#[path = "../api/admin.rs"]
mod admin;
#[path = "../api/documents.rs"]
mod documents;
#[path = "../api/gosign_rest.rs"]
mod gosign_rest;
#[path = "../api/gosign_soap.rs"]
mod gosign_soap;
#[path = "../api/openapi_check.rs"]
mod openapi_check;
mod outage;
#[path = "../api/pkisigning.rs"]
mod pkisigning;
#[path = "../api/posten.rs"]
mod posten;
#[path = "../api/relay.rs"]
mod relay;
#[path = "../api/throwaway.rs"]
mod throwaway;
