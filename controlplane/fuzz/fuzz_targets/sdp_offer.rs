#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_controlplane::fuzz::sdp_offer(data));
