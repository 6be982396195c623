//! GoSign REST JSON, both formats (WorkNotification and Extended): `model::parse_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::gosign_json(data));
