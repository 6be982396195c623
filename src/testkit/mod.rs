//! Stand-ins for remote parties, as real HTTP servers that check what they receive. Used by
//! `signrelay demo`, the tests and the benchmarks; never by `serve`.

pub mod drc;
pub mod gosign;
pub mod nrc;
pub mod pkisigning;
pub mod posten;
pub mod postgres;
