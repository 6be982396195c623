//! The ZGW side: the notification of the signing pattern, ZGW JWTs, and the NRC client.

pub mod drc;
pub mod jwt;
pub mod notificatie;
pub mod nrc;

pub use notificatie::Notificatie;
pub use nrc::{NrcClient, NrcError};
