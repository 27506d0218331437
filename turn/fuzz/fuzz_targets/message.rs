//! STUN/TURN messages, ChannelData and stream framing from arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_turn::fuzz::parse(data));
