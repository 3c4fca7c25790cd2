//! `[[syncs]]`: validated into [`SyncSettings`], every problem named with
//! its file, line and key.

use std::collections::HashSet;
use std::time::Duration;

use backends::StoragePath;

use super::file::SyncSection;
use super::{RemoteSettings, Reporter};
use crate::sync::filter::PathFilter;
use crate::sync::schedule::{parse_time_zone, CronSchedule, Schedule};
use crate::sync::settings::{AfterCopy, SyncDirection, SyncSettings, DEFAULT_PARALLEL};

/// A folder path as written in the config (`/outbound`, `inbox/a`).
fn folder_path(text: &str) -> Result<StoragePath, String> {
    StoragePath::parse(text.trim_matches('/'))
        .map_err(|e| format!("`{text}` is not a usable folder path: {e}"))
}

pub(super) fn validate_syncs(
    sections: Vec<SyncSection>,
    remotes: &[RemoteSettings],
    r: &mut Reporter<'_>,
) -> Vec<SyncSettings> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in sections.into_iter().enumerate() {
        let at = |k: &str| format!("syncs[{i}].{k}");
        if s.name.is_empty() || s.name.contains(|c: char| c.is_whitespace() || c == '/') {
            r.at_key(
                &at("name"),
                "a sync name must be non-empty, without spaces or `/`",
            );
        }
        if !names.insert(s.name.clone()) {
            r.at_key(&at("name"), format!("sync `{}` is declared twice", s.name));
        }
        let folder = folder_path(&s.folder).unwrap_or_else(|e| {
            r.at_key(&at("folder"), e);
            StoragePath::root()
        });
        let remote_path = folder_path(&s.remote_path).unwrap_or_else(|e| {
            r.at_key(&at("remote_path"), e);
            StoragePath::root()
        });
        let remote = remotes.iter().find(|x| x.name == s.remote);
        if remote.is_none() {
            let known: Vec<&str> = remotes.iter().map(|x| x.name.as_str()).collect();
            r.at_key(
                &at("remote"),
                format!(
                    "no remote named `{}` (declared: {})",
                    s.remote,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if s.direction == SyncDirection::TwoWay && s.after_copy == AfterCopy::Delete {
            r.at_key(
                &at("after_copy"),
                "`after_copy = \"delete\"` is not allowed with `direction = \"two_way\"`: a two-way sync never deletes",
            );
        }
        if s.delete_empty_folders && s.after_copy != AfterCopy::Delete {
            r.at_key(
                &at("delete_empty_folders"),
                "only applies with `after_copy = \"delete\"`",
            );
        }
        let parallel = s.parallel.unwrap_or(DEFAULT_PARALLEL);
        let cap = remote.map(|x| x.max_connections);
        if parallel == 0 {
            r.at_key(&at("parallel"), "must be at least 1");
        } else if let Some(cap) = cap.filter(|&cap| parallel > cap) {
            if s.parallel.is_some() {
                r.at_key(
                    &at("parallel"),
                    format!(
                        "{parallel} transfers at once is above remote `{}`'s max_connections = {cap}",
                        s.remote
                    ),
                );
            }
        }
        let schedule = validate_schedule(&s, &at, r);
        let filter = validate_filter(&s, &at, r);
        if let Some(t) = &s.trigger_file {
            if t.is_empty() || t.contains('/') || t == "." || t == ".." {
                r.at_key(&at("trigger_file"), "must be a plain file name (no `/`)");
            }
        }
        out.push(SyncSettings {
            name: s.name,
            folder,
            remote: s.remote,
            remote_path,
            direction: s.direction,
            after_copy: s.after_copy,
            schedule,
            filter,
            settle: s.settle.unwrap_or(Duration::from_secs(30)),
            time_limit: s.time_limit.unwrap_or(Duration::from_secs(24 * 3600)),
            // Never above the remote's cap (a sync shares its pool).
            parallel: cap.map_or(parallel, |cap| parallel.min(cap)).max(1),
            delete_empty_folders: s.delete_empty_folders,
            trigger_file: s.trigger_file,
        });
    }
    out
}

/// `every`, or `cron` with `time_zone`, or neither (on demand only).
fn validate_schedule(
    s: &SyncSection,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> Schedule {
    if s.every.is_some() && s.cron.is_some() {
        r.at_key(
            &at("cron"),
            "set either `every` or `cron`, not both: they are two ways of scheduling the same sync",
        );
    }
    if s.every == Some(Duration::ZERO) {
        r.at_key(&at("every"), "must be longer than zero");
    }
    let Some(cron) = &s.cron else {
        if s.time_zone.is_some() {
            r.at_key(
                &at("time_zone"),
                "only applies with `cron` (an `every` interval needs no time zone)",
            );
        }
        return s.every.map_or(Schedule::Manual, Schedule::Every);
    };
    let zone = s.time_zone.as_deref().unwrap_or("UTC");
    // The zone first, so its problem is reported at its own key and the
    // expression is still checked (against UTC) when the zone is unknown.
    let zone = match parse_time_zone(zone) {
        Ok(_) => zone,
        Err(e) => {
            r.at_key(&at("time_zone"), e);
            "UTC"
        }
    };
    match CronSchedule::parse(cron, zone) {
        Ok(c) => Schedule::Cron(c),
        Err(e) => {
            r.at_key(
                &at("cron"),
                format!("`{cron}` is not a usable cron expression: {e}"),
            );
            Schedule::Manual
        }
    }
}

/// `include` and `exclude`, each problem at its own key.
fn validate_filter(
    s: &SyncSection,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> PathFilter {
    let mut ok = true;
    if let Err(e) = PathFilter::new(&s.include, &[]) {
        r.at_key(&at("include"), e);
        ok = false;
    }
    if let Err(e) = PathFilter::new(&[], &s.exclude) {
        r.at_key(&at("exclude"), e);
        ok = false;
    }
    if !ok {
        return PathFilter::default();
    }
    PathFilter::new(&s.include, &s.exclude).unwrap_or_default()
}
