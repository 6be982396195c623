//! SOAP envelopes: `vendors::soap::parse`, then GoSign `workNotification` and LegalBus `OperationDone`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::soap_envelope(data));
