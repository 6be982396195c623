//! signrelay: vendor callbacks in, one event model, a durable store, relay out to the ZGW NRC.

pub mod auth;
pub mod config;
pub mod event;
pub mod registry;
pub mod store;
pub mod health;
pub mod intake;
pub mod relay;
pub mod telemetry;
pub mod zgw;
pub mod vendors;
pub mod admin;
pub mod problem;
pub mod ops;
pub mod app;
