//! Sluice's recorder (data flow D of the seed architecture): it joins a meeting as a subscriber, spools every
//! track to local disk as it arrives, and when the recording stops muxes per-track WebM files, composes one MP4
//! with ffmpeg, uploads everything to object storage and transcribes each voice into WebVTT subtitles.
//!
//! The pieces that decide (spool format, reordering, depacketizing, muxing, layout, voice activity, subtitles)
//! are plain functions and types with their own tests; [`session`] and [`service`] are the shells that do I/O.

pub mod audio;
pub mod chat_export;
pub mod compose;
pub mod depacketize;
pub mod jitter;
pub mod mux;
pub mod remote;
pub mod service;
pub mod session;
pub mod sphinx;
pub mod spool;
pub mod transcribe;

pub use service::{Recorder, RecorderConfig};
