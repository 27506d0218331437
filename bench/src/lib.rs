//! Sluice's load generator and benchmark report.
