//! Syncs between a folder of the gateway's storage and a path on a remote.
//!
//! - [`plan`]: which files a run copies and which way, decided from the
//!   two sides' listings alone (no I/O), so a dry run prints exactly what a
//!   real run does.

pub mod plan;
