//! Vendors in. Each vendor is one folder behind the two small interfaces of `seam.rs`; the
//! rest of signrelay iterates over the list at the bottom of this file and names no vendor.
//!
//! Shared by the vendors: `receive.rs`, the one pipeline every callback goes through, and
//! `soap.rs`, bounded SOAP envelope parsing.

pub mod gosign;
pub mod pkisigning;
pub mod posten;
pub mod receive;
pub mod seam;
pub mod soap;
#[cfg(feature = "throwaway-vendor")]
pub mod throwaway;

use serde::{Deserialize, Serialize};

pub use seam::{Connector, Connectors, InlineDocument, Settings, VendorSection, Wiring};

/// Builds every enabled vendor.
pub fn build(sections: &Sections, wiring: &mut Wiring<'_>) -> anyhow::Result<Connectors> {
    let mut out = Vec::new();
    for s in sections.all() {
        if let Some(c) = s.build(wiring)? {
            out.push(c);
        }
    }
    Ok(Connectors::new(out))
}

/// The list of vendors: one line each. A line names the config section (the key in the
/// config file) and its type, which implements [`VendorSection`].
macro_rules! vendor_list {
    ($( $(#[$attr:meta])* $name:ident: $section:ty ),* $(,)?) => {
        /// Every vendor's config section.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Sections {
            $( $(#[$attr])* pub $name: $section, )*
        }

        impl Sections {
            /// The section names, as in the config file.
            // A line of the list may be switched off by a feature: pushed one by one.
            #[allow(clippy::vec_init_then_push)]
            pub fn names() -> Vec<&'static str> {
                let mut names = Vec::new();
                $( $(#[$attr])* names.push(stringify!($name)); )*
                names
            }

            #[allow(clippy::vec_init_then_push)]
            pub fn all(&self) -> Vec<&dyn VendorSection> {
                let mut all: Vec<&dyn VendorSection> = Vec::new();
                $( $(#[$attr])* all.push(&self.$name); )*
                all
            }
        }
    };
}

vendor_list! {
    gosign: gosign::config::GosignConfig,
    pkisigning: pkisigning::config::PkisigningConfig,
    posten: posten::config::PostenConfig,
    #[cfg(feature = "throwaway-vendor")]
    throwaway: throwaway::ThrowawayConfig,
}
