//! Sluice's recorder: subscribes to a meeting, muxes, stores and transcribes.
