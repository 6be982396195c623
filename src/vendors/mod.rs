//! Vendor surfaces: each vendor is one folder that parses, authenticates and normalizes its
//! callbacks, then hands them to the shared intake.

pub mod body;
pub mod gosign;
pub mod soap;

use crate::event::Vendor;

/// The `index`-th inline document of an archived payload, decoded: (mime type, bytes).
pub fn document(
    vendor: Vendor,
    surface: &str,
    body: &[u8],
    index: usize,
) -> Option<(Option<String>, Vec<u8>)> {
    match vendor {
        Vendor::Gosign => gosign::document(surface, body, index),
        Vendor::Pkisigning | Vendor::Posten => None,
    }
}
