//! What a sync is, as the configuration sets it: [`SyncSettings`] and
//! its parts. `config` validates `[[syncs]]` into these; this module and
//! the rest of `sync` never look at the configuration file.

use std::time::Duration;

use backends::StoragePath;
use serde::Deserialize;

use super::filter::PathFilter;
use super::schedule::Schedule;

/// Files copied at once unless a sync says otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// A validated sync.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Its name.
    pub name: String,
    /// The folder of the gateway's storage.
    pub folder: StoragePath,
    /// The remote's name.
    pub remote: String,
    /// The path under the remote's root.
    pub remote_path: StoragePath,
    /// Which way files go.
    pub direction: SyncDirection,
    /// What happens to a source after a verified copy.
    pub after_copy: AfterCopy,
    /// When the sync runs by itself (`every`, `cron` + `time_zone`, or
    /// only on demand).
    pub schedule: Schedule,
    /// Which files under the folder are synced (`include`, `exclude`).
    pub filter: PathFilter,
    /// Files modified within this are left for a later run.
    pub settle: Duration,
    /// A run's time limit.
    pub time_limit: Duration,
    /// Files copied at once.
    pub parallel: usize,
    /// Remove folders emptied by deletes.
    pub delete_empty_folders: bool,
    /// Written at the destination when a run finishes.
    pub trigger_file: Option<String>,
}

/// `direction` of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    /// Gateway folder to remote.
    Push,
    /// Remote to gateway folder.
    Pull,
    /// Both ways, never deleting.
    TwoWay,
}

/// `after_copy` of a sync: what happens to a source file once its copy
/// is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AfterCopy {
    /// The source stays.
    #[default]
    Keep,
    /// The source is deleted.
    Delete,
}
