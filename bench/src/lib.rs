//! Sluice's benchmarks and load generator. Every figure is a ratio measured side by side in one run (Sluice
//! against a bare forwarder or another server), because the machines they run on are shared and noisy.

pub mod bare;
mod batch;
pub mod chart;
mod clock;
mod engine;
pub mod fanout;
pub mod janus;
pub mod meeting;
pub mod qoe;
pub mod turn;
mod uring_rx;
pub mod webdriver;
