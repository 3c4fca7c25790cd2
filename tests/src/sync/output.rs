//! Parsing what `gateway sync run`, `--dry-run` and `sync history`
//! print, and comparing the actions done with those expected.

use std::collections::BTreeSet;
use std::fmt;

use crate::{strip_ansi, CmdOutput};

/// One action a run did (or a dry run would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Act {
    /// `copied push P` / `would copy push P`.
    CopyPush,
    /// `copied pull P` / `would copy pull P`.
    CopyPull,
    /// `deleted gateway P` / `would delete gateway P`.
    DeleteGateway,
    /// `deleted remote P` / `would delete remote P`.
    DeleteRemote,
    /// `held P (why)` / `would hold P (why)`.
    Hold,
    /// `skipped P (why)` (real runs only).
    Skip,
    /// `failed P: error` (real runs only).
    Fail,
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Act::CopyPush => "copy push",
            Act::CopyPull => "copy pull",
            Act::DeleteGateway => "delete gateway",
            Act::DeleteRemote => "delete remote",
            Act::Hold => "hold",
            Act::Skip => "skip",
            Act::Fail => "fail",
        })
    }
}

impl Act {
    /// Every action a real run prints a line for.
    const ALL: [Act; 7] = [
        Act::CopyPush,
        Act::CopyPull,
        Act::DeleteGateway,
        Act::DeleteRemote,
        Act::Hold,
        Act::Skip,
        Act::Fail,
    ];

    /// The actions a dry run lists (`would` + the [`Display`](fmt::Display) form).
    const PLANNED: [Act; 5] = [
        Act::CopyPush,
        Act::CopyPull,
        Act::DeleteGateway,
        Act::DeleteRemote,
        Act::Hold,
    ];

    /// How a real run's line starts (`copied push`, `held`, ...).
    fn done(self) -> &'static str {
        match self {
            Act::CopyPush => "copied push",
            Act::CopyPull => "copied pull",
            Act::DeleteGateway => "deleted gateway",
            Act::DeleteRemote => "deleted remote",
            Act::Hold => "held",
            Act::Skip => "skipped",
            Act::Fail => "failed",
        }
    }

    /// The path in what follows the action in its line: `P`, `P (why)`
    /// (hold, skip) or `P: error` (fail).
    fn path_in(self, rest: &str) -> String {
        match self {
            Act::Hold | Act::Skip => strip_why(rest),
            Act::Fail => rest
                .split_once(": ")
                .map(|(p, _)| p)
                .unwrap_or(rest)
                .to_string(),
            _ => rest.to_string(),
        }
    }
}

/// A set of (action, relative path).
pub type Actions = BTreeSet<(Act, String)>;

/// `(act, path)` for each path.
pub fn acts<'a>(act: Act, paths: impl IntoIterator<Item = &'a String>) -> Actions {
    paths.into_iter().map(|p| (act, p.clone())).collect()
}

/// Every output line (stdout then stderr), ANSI escapes removed, trailing
/// whitespace trimmed.
fn out_lines(out: &CmdOutput) -> Vec<String> {
    strip_ansi(&format!("{}\n{}", out.stdout, out.stderr))
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// `P (why)` -> `P`.
fn strip_why(rest: &str) -> String {
    if rest.ends_with(')') {
        if let Some(i) = rest.rfind(" (") {
            return rest[..i].to_string();
        }
    }
    rest.to_string()
}

/// Parses one action line of a real run (`copied push P`, ...).
pub fn parse_run_line(line: &str) -> Option<(Act, String)> {
    Act::ALL.into_iter().find_map(|act| {
        let rest = line.strip_prefix(act.done())?.strip_prefix(' ')?;
        Some((act, act.path_in(rest)))
    })
}

/// The actions a real run printed.
pub fn run_actions(out: &CmdOutput) -> Actions {
    run_action_lines(out).into_iter().collect()
}

/// How many action lines (copied / deleted) a real run printed, duplicates counted.
pub fn run_action_lines(out: &CmdOutput) -> Vec<(Act, String)> {
    out_lines(out)
        .iter()
        .filter_map(|l| parse_run_line(l))
        .collect()
}

/// The actions a dry run printed (`would copy push P`, ...).
pub fn dry_actions(out: &CmdOutput) -> Actions {
    out_lines(out)
        .iter()
        .filter_map(|l| {
            let planned = l.strip_prefix("would ")?;
            Act::PLANNED.into_iter().find_map(|act| {
                let rest = planned.strip_prefix(&format!("{act} "))?;
                Some((act, act.path_in(rest)))
            })
        })
        .collect()
}

/// The summary line of a real run (or a run's line in the history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// `succeeded`, `failed` or `stopped at the time limit` (in the
    /// history also `interrupted`).
    pub outcome: String,
    /// Files copied.
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Files skipped.
    pub skipped: u64,
    /// Files deleted.
    pub deleted: u64,
    /// Files failed.
    pub failed: u64,
}

impl RunSummary {
    /// From capture group `at` (the outcome) and the five after it
    /// (copied, bytes, skipped, deleted, failed); None if a count is not a number.
    fn from_captures(c: &regex::Captures, at: usize) -> Option<RunSummary> {
        let [copied, bytes, skipped, deleted, failed] = numbers(c, at + 1)?;
        Some(RunSummary {
            outcome: c[at].to_string(),
            copied,
            bytes,
            skipped,
            deleted,
            failed,
        })
    }
}

/// Parses `sync NAME <outcome>: N copied (B bytes), S skipped, D deleted, E failed in <duration>`.
pub fn run_summary(out: &CmdOutput, name: &str) -> Option<RunSummary> {
    let re = format!(
        r"^sync {} (succeeded|failed|stopped at the time limit): (\d+) copied \((\d+) bytes\), (\d+) skipped, (\d+) deleted, (\d+) failed in \S.*$",
        regex::escape(name)
    );
    parsed_lines(&out_lines(out), &re, |c| RunSummary::from_captures(c, 1)).next()
}

/// The summary line of a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrySummary {
    /// Files to copy.
    pub to_copy: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files to delete.
    pub to_delete: u64,
    /// Files held.
    pub held: u64,
}

/// Parses `dry run of NAME: N to copy (B bytes), D to delete, H held`.
pub fn dry_summary(out: &CmdOutput, name: &str) -> Option<DrySummary> {
    let re = format!(
        r"^dry run of {}: (\d+) to copy \((\d+) bytes\), (\d+) to delete, (\d+) held$",
        regex::escape(name)
    );
    parsed_lines(&out_lines(out), &re, |c| {
        let [to_copy, bytes, to_delete, held] = numbers(c, 1)?;
        Some(DrySummary {
            to_copy,
            bytes,
            to_delete,
            held,
        })
    })
    .next()
}

/// One line of `gateway sync history NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRun {
    /// Run id.
    pub id: String,
    /// Start (RFC 3339).
    pub start: String,
    /// Duration as printed.
    pub duration: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// Its outcome (`succeeded`, `failed`, `interrupted`, `stopped at the
    /// time limit`) and counts.
    pub summary: RunSummary,
}

/// Parses the run lines of `gateway sync history` (the indented
/// `  error ...` lines are skipped).
pub fn parse_history(out: &CmdOutput) -> Vec<HistoryRun> {
    let runs: Vec<String> = strip_ansi(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .map(|l| l.trim_end().to_string())
        .collect();
    parsed_lines(
        &runs,
        r"^(\S+) (\S+) (.+?) (manual|schedule) (succeeded|failed|interrupted|stopped at the time limit) (\d+) copied (\d+) bytes (\d+) skipped (\d+) deleted (\d+) failed$",
        |c| {
            Some(HistoryRun {
                id: c[1].to_string(),
                start: c[2].to_string(),
                duration: c[3].to_string(),
                trigger: c[4].to_string(),
                summary: RunSummary::from_captures(c, 5)?,
            })
        },
    )
    .collect()
}

/// Capture groups `first..first + N` as numbers (None if one is not a u64).
fn numbers<const N: usize>(c: &regex::Captures, first: usize) -> Option<[u64; N]> {
    let mut out = [0; N];
    for (i, n) in out.iter_mut().enumerate() {
        *n = c[first + i].parse().ok()?;
    }
    Some(out)
}

/// `build` applied to the captures of each of `lines` that regex `re`
/// matches (lines it does not match, or `build` refuses, left out).
fn parsed_lines<'a, T>(
    lines: &'a [String],
    re: &str,
    build: impl Fn(&regex::Captures) -> Option<T> + 'a,
) -> impl Iterator<Item = T> + 'a {
    let re = regex::Regex::new(re).unwrap_or_else(|e| panic!("regex {re:?}: {e}"));
    lines
        .iter()
        .filter_map(move |l| re.captures(l).and_then(|c| build(&c)))
}

/// Renders a set of actions one per line, for failure messages.
pub fn show(actions: &Actions) -> String {
    if actions.is_empty() {
        return "  (none)".into();
    }
    actions
        .iter()
        .map(|(a, p)| format!("  {a} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Panics unless a run did exactly the `expected` actions, with `what`,
/// both directions of the difference and the run's output `out`.
#[track_caller]
pub fn assert_actions(done: &Actions, expected: &Actions, what: &str, out: &CmdOutput) {
    assert!(
        done == expected,
        "{what}:\n{}\n{out}",
        show_diff(expected, done)
    );
}

/// Both directions of a set difference, for failure messages.
pub fn show_diff(expected: &Actions, actual: &Actions) -> String {
    let missing: Actions = expected.difference(actual).cloned().collect();
    let extra: Actions = actual.difference(expected).cloned().collect();
    format!(
        "expected but not done:\n{}\ndone but not expected:\n{}",
        show(&missing),
        show(&extra)
    )
}
