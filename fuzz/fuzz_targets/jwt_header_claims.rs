//! JWT headers and claims, signrelay's JWT checks (without network) and Authorization parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::jwt_header_claims(data));
