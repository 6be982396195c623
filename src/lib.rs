//! signrelay: vendor callbacks in, one event model, a durable store, relay out to the ZGW NRC.

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod demo;
pub mod event;
pub mod health;
pub mod intake;
pub mod ops;
pub mod problem;
pub mod registry;
pub mod relay;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod vendors;
pub mod zgw;
