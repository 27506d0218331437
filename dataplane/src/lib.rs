//! Sluice's media dataplane: the sans-IO WebRTC forwarding core and the thread-per-core workers that drive it.
//!
//! The core takes `now` and bytes and returns bytes and events; it owns no socket, thread or clock (house style:
//! sans-IO core, thin I/O shell). The runtime is that shell: pinned worker threads, their sockets and rings.

pub mod bwe;
pub mod core;
pub mod fuzz;
pub mod packet;
#[cfg(target_os = "linux")]
pub mod runtime;
pub mod srtp;
pub mod testpeer;
