//! signrelay: vendor callbacks in, one event model, a durable store, relay out to the ZGW NRC.

pub mod admin;
pub mod app;
pub mod auth;
pub mod bounds;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod documents;
pub mod event;
pub mod health;
pub mod http;
pub mod intake;
pub mod jobs;
pub mod ops;
pub mod payload;
pub mod problem;
pub mod registry;
pub mod relay;
pub mod rules;
pub mod secret;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod vendors;
pub mod zgw;
