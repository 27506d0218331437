//! Sluice's media dataplane: the sans-IO WebRTC forwarding core and the thread-per-core workers that drive it.
//!
//! Everything here takes `now` and bytes and returns bytes and events; nothing here owns a socket, a thread or a
//! clock (house style: sans-IO core, thin I/O shell).

pub mod core;
pub mod fuzz;
pub mod packet;
pub mod srtp;
pub mod testpeer;
