//! What a sync run copies: from the listings of the gateway's side and the
//! remote's side, the files that go which way and the files held back.
//!
//! The rules: push and pull copy a file when the destination
//! lacks it, its size differs, or the source is newer; they never delete at
//! the destination. Two-way copies each side's new files to the other, and
//! when a name exists on both sides with different sizes the newer one
//! wins; it never deletes, and a name with the same size on both sides is
//! left alone. A file modified within the settle time is held back until a
//! later run (it may still be being written).
//!
//! Times are compared in whole seconds: FTP's MDTM, S3 metadata and many
//! SFTP servers keep no more, and a copy whose time was set from a
//! nanosecond source must not look older than it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which way a sync copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the gateway's folder to the remote.
    Push,
    /// From the remote to the gateway's folder.
    Pull,
    /// Both ways; nothing is deleted.
    TwoWay,
}

/// One side of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The folder in the gateway's storage.
    Gateway,
    /// The path on the remote.
    Remote,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Gateway => Side::Remote,
            Side::Remote => Side::Gateway,
        }
    }
}

/// What a listing says about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when the side keeps one.
    pub modified: Option<SystemTime>,
}

/// The files of one side, by path relative to the sync's folder
/// (`reports/2026/a.csv`).
pub type Listing = BTreeMap<String, FileState>;

/// Why a file is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason {
    /// The destination has no file of that name.
    Missing,
    /// The sizes differ (two-way: and this side is the newer).
    SizeDiffers,
    /// Same size, but the source is newer.
    Newer,
}

/// Why a file that differs is not copied in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// Modified within the settle time: it may still be being written.
    Settling,
    /// Two-way: sizes differ and neither side is newer (equal or unknown
    /// times), so there is no winner to copy.
    NoNewerSide,
}

/// One decision of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Copy `path` from `from` to the other side.
    Copy {
        /// The file's relative path.
        path: String,
        /// Where it is copied from.
        from: Side,
        /// Why.
        reason: CopyReason,
        /// Its size at planning time (a changed size during the copy
        /// means it is still being written: the copy is abandoned).
        size: u64,
    },
    /// `path` differs but is held back until a later run.
    Hold {
        /// The file's relative path.
        path: String,
        /// Why.
        reason: HoldReason,
    },
}

/// What the plan needs besides the listings.
#[derive(Debug, Clone, Copy)]
pub struct PlanSettings {
    /// Which way to copy.
    pub direction: Direction,
    /// Files modified more recently than this before `now` are held back.
    pub settle: Duration,
    /// The time the listings were taken.
    pub now: SystemTime,
}

/// The steps of one run, in path order (copies and holds mixed); files
/// that are already the same on both sides produce no step.
pub fn plan(gateway: &Listing, remote: &Listing, settings: &PlanSettings) -> Vec<Step> {
    let names: BTreeSet<&String> = gateway.keys().chain(remote.keys()).collect();
    let mut steps = Vec::new();
    for name in names {
        let here = gateway.get(name);
        let there = remote.get(name);
        let decision = match settings.direction {
            Direction::Push => one_way(Side::Gateway, here, there),
            Direction::Pull => one_way(Side::Remote, there, here),
            Direction::TwoWay => two_way(here, there),
        };
        let Some(decision) = decision else { continue };
        let step = match decision {
            Ok((from, reason)) => {
                let source = match from {
                    Side::Gateway => here,
                    Side::Remote => there,
                };
                let Some(source) = source else { continue };
                if settling(source, settings) {
                    Step::Hold {
                        path: name.clone(),
                        reason: HoldReason::Settling,
                    }
                } else {
                    Step::Copy {
                        path: name.clone(),
                        from,
                        reason,
                        size: source.size,
                    }
                }
            }
            Err(reason) => Step::Hold {
                path: name.clone(),
                reason,
            },
        };
        steps.push(step);
    }
    steps
}

type Decision = Option<Result<(Side, CopyReason), HoldReason>>;

/// Push or pull: `source` is copied over `destination` when it differs.
fn one_way(from: Side, source: Option<&FileState>, destination: Option<&FileState>) -> Decision {
    let source = source?;
    let reason = match destination {
        None => CopyReason::Missing,
        Some(d) if d.size != source.size => CopyReason::SizeDiffers,
        Some(d) if seconds(source.modified) > seconds(d.modified) => CopyReason::Newer,
        Some(_) => return None,
    };
    Some(Ok((from, reason)))
}

/// Two-way: new files go to the other side; of two files with different
/// sizes, the newer wins.
fn two_way(gateway: Option<&FileState>, remote: Option<&FileState>) -> Decision {
    match (gateway, remote) {
        (Some(_), None) => Some(Ok((Side::Gateway, CopyReason::Missing))),
        (None, Some(_)) => Some(Ok((Side::Remote, CopyReason::Missing))),
        (Some(g), Some(r)) if g.size != r.size => {
            // Only two known times can say which side is newer.
            match (seconds(g.modified), seconds(r.modified)) {
                (Some(gt), Some(rt)) if gt > rt => {
                    Some(Ok((Side::Gateway, CopyReason::SizeDiffers)))
                }
                (Some(gt), Some(rt)) if gt < rt => {
                    Some(Ok((Side::Remote, CopyReason::SizeDiffers)))
                }
                _ => Some(Err(HoldReason::NoNewerSide)),
            }
        }
        _ => None,
    }
}

/// Whole seconds since the epoch (`None` sorts before every time).
fn seconds(t: Option<SystemTime>) -> Option<u64> {
    t.map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

fn settling(file: &FileState, settings: &PlanSettings) -> bool {
    match file.modified {
        Some(m) => settings
            .now
            .duration_since(m)
            .map_or(true, |age| age < settings.settle),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn listing(files: &[(&str, u64, u64)]) -> Listing {
        files
            .iter()
            .map(|&(p, size, t)| {
                (
                    p.to_string(),
                    FileState {
                        size,
                        modified: at(t),
                    },
                )
            })
            .collect()
    }

    fn settings(direction: Direction) -> PlanSettings {
        PlanSettings {
            direction,
            settle: Duration::from_secs(60),
            now: UNIX_EPOCH + Duration::from_secs(NOW),
        }
    }

    fn copy(path: &str, from: Side, reason: CopyReason, size: u64) -> Step {
        Step::Copy {
            path: path.to_string(),
            from,
            reason,
            size,
        }
    }

    #[test]
    fn push_copies_missing_resized_and_newer_files_and_never_deletes() {
        let old = NOW - 3600;
        let gateway = listing(&[
            ("new.txt", 5, old),
            ("resized.txt", 7, old),
            ("newer.txt", 3, old + 10),
            ("same.txt", 4, old),
            ("older-here.txt", 4, old - 10),
        ]);
        let remote = listing(&[
            ("resized.txt", 6, old + 100),
            ("newer.txt", 3, old),
            ("same.txt", 4, old),
            ("older-here.txt", 4, old),
            ("only-remote.txt", 9, old),
        ]);
        let steps = plan(&gateway, &remote, &settings(Direction::Push));
        assert_eq!(
            steps,
            vec![
                copy("new.txt", Side::Gateway, CopyReason::Missing, 5),
                copy("newer.txt", Side::Gateway, CopyReason::Newer, 3),
                copy("resized.txt", Side::Gateway, CopyReason::SizeDiffers, 7),
            ]
        );
    }

    #[test]
    fn pull_is_push_mirrored() {
        let old = NOW - 3600;
        let gateway = listing(&[("a", 1, old), ("b", 2, old)]);
        let remote = listing(&[("b", 3, old), ("c", 4, old)]);
        let steps = plan(&gateway, &remote, &settings(Direction::Pull));
        assert_eq!(
            steps,
            vec![
                copy("b", Side::Remote, CopyReason::SizeDiffers, 3),
                copy("c", Side::Remote, CopyReason::Missing, 4),
            ]
        );
    }

    #[test]
    fn two_way_copies_new_files_both_ways_and_the_newer_of_two_sizes() {
        let old = NOW - 3600;
        let gateway = listing(&[
            ("only-here", 1, old),
            ("newer-here", 10, old + 50),
            ("newer-there", 10, old),
            ("same-size", 5, old + 99),
            ("tie", 1, old),
        ]);
        let remote = listing(&[
            ("only-there", 2, old),
            ("newer-here", 11, old),
            ("newer-there", 12, old + 50),
            ("same-size", 5, old),
            ("tie", 2, old),
        ]);
        let steps = plan(&gateway, &remote, &settings(Direction::TwoWay));
        assert_eq!(
            steps,
            vec![
                copy("newer-here", Side::Gateway, CopyReason::SizeDiffers, 10),
                copy("newer-there", Side::Remote, CopyReason::SizeDiffers, 12),
                copy("only-here", Side::Gateway, CopyReason::Missing, 1),
                copy("only-there", Side::Remote, CopyReason::Missing, 2),
                Step::Hold {
                    path: "tie".into(),
                    reason: HoldReason::NoNewerSide
                },
            ]
        );
    }

    #[test]
    fn recently_modified_sources_are_held_back() {
        let gateway = listing(&[("fresh", 1, NOW - 10), ("settled", 1, NOW - 61)]);
        let steps = plan(&gateway, &Listing::new(), &settings(Direction::Push));
        assert_eq!(
            steps,
            vec![
                Step::Hold {
                    path: "fresh".into(),
                    reason: HoldReason::Settling
                },
                copy("settled", Side::Gateway, CopyReason::Missing, 1),
            ]
        );
        // A time in the future (clock skew) counts as fresh.
        let future = listing(&[("skewed", 1, NOW + 30)]);
        assert!(matches!(
            plan(&future, &Listing::new(), &settings(Direction::Push))[0],
            Step::Hold { .. }
        ));
    }

    #[test]
    fn times_are_compared_in_whole_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis((NOW - 3600) * 1000 + 700);
        let gateway: Listing = [(
            "f".to_string(),
            FileState {
                size: 1,
                modified: Some(t),
            },
        )]
        .into();
        // The remote kept only the second the copy's time was set to.
        let remote = listing(&[("f", 1, NOW - 3600)]);
        assert!(plan(&gateway, &remote, &settings(Direction::Push)).is_empty());
    }

    #[test]
    fn two_way_never_picks_a_side_without_both_times() {
        let gateway = listing(&[("f", 1, NOW - 3600)]);
        let remote: Listing = [(
            "f".to_string(),
            FileState {
                size: 2,
                modified: None,
            },
        )]
        .into();
        assert_eq!(
            plan(&gateway, &remote, &settings(Direction::TwoWay)),
            vec![Step::Hold {
                path: "f".into(),
                reason: HoldReason::NoNewerSide
            }]
        );
    }

    #[test]
    fn unknown_times_copy_only_on_size_or_absence() {
        let gateway: Listing = [(
            "f".to_string(),
            FileState {
                size: 1,
                modified: None,
            },
        )]
        .into();
        let remote = listing(&[("f", 1, NOW - 3600)]);
        assert!(plan(&gateway, &remote, &settings(Direction::Push)).is_empty());
        assert_eq!(
            plan(&gateway, &Listing::new(), &settings(Direction::Push)),
            vec![copy("f", Side::Gateway, CopyReason::Missing, 1)]
        );
    }
}
