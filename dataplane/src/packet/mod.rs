//! Wire formats: parsing views over the caller's bytes and in-place rewrites. No allocation; every malformed
//! input is an error value, never a panic.

pub mod codec;
pub mod demux;
pub mod rtcp;
pub mod rtp;
pub mod stun;
pub mod twcc;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
