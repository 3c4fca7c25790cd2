//! Syncs between a folder of the gateway's storage and a path on a remote.
//!
//! - [`plan`]: which files a run copies and which way, decided from the
//!   two sides' listings alone (no I/O), so a dry run prints exactly what a
//!   real run does.
//! - [`walk`]: the recursive listing of one side.
//! - [`copy`]: one verified copy (published whole, checked by size and
//!   checksum, abandoned if the source changes).
//! - [`run`]: one run: plan, parallel copies, deletes of verified sources,
//!   emptied folders, trigger file, time limit.
//! - [`records`]: run records and the one-run-at-a-time lock, in the
//!   state store.
//! - [`schedule`], [`filter`]: when a sync runs and which files it takes.
//! - [`scheduler`]: the loop inside `gateway serve` that starts due runs.

pub mod copy;
pub mod filter;
pub mod plan;
pub mod records;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod settings;
pub mod walk;
