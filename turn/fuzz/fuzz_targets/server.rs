//! The whole TURN server over a session of length-prefixed messages.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_turn::fuzz::server(data));
