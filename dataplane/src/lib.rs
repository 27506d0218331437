//! Sluice's media dataplane: the sans-IO WebRTC forwarding core and the thread-per-core workers that drive it.
