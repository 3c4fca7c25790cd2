//! Syncs (issue 7) end to end: a folder of the gateway's storage and a path
//! on a real remote (OpenSSH sshd, vsftpd / pure-ftpd, s3s-fs), driven by
//! the real `gateway sync ...` commands and `gateway serve`.
//!
//! [`SyncRig`] holds one test's gateway config and state, its remote server
//! and the remote's folder on disk (sshd's and the FTP server's root, or
//! s3s-fs's bucket folder, where object `KEY` is the file `KEY`), so every
//! side of a sync is checked file by file, content included, without going
//! through the gateway. The output lines of `sync run` and `sync run
//! --dry-run` are parsed into [`Actions`] so a dry run can be compared with
//! the real run that follows; [`SyncRig::checked_run`] does both.
//!
//! Shared scenarios (push, pull, two-way for each remote kind) live in
//! [`scenarios`]; the test files call them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::ftpd::{FtpServer, FtpServerOptions, FtpServerTls};
use crate::s3d::{S3Server, S3ServerKind};
use crate::sshd::{chown_to_test_user, gateway_run, Sshd, TEST_PASSWORD, TEST_USER};
use crate::{
    for_each_line, strip_ansi, CmdOutput, Gateway, GatewayCommand, GatewayConfig, RemoteConfig,
    SyncConfig, TestEnv,
};

/// The sync's name in the shared scenarios.
pub const SYNC: &str = "nightly";

/// The gateway-side folder of the shared scenarios (storage path).
pub const FOLDER: &str = "/outbound";

/// The remote's name in every [`SyncRig`] config.
pub const REMOTE: &str = "partner";

/// The path under the remote's root of the shared scenarios.
pub const REMOTE_PATH: &str = "drop";

/// Time limit of one `gateway sync ...` command.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Prefix of the hidden temporary files uploads are written to.
pub const TEMP_PREFIX: &str = ".gw-upload-";

// ---------------------------------------------------------------------------
// Files and times
// ---------------------------------------------------------------------------

/// Relative path (with `/`) -> content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// `now - secs` seconds.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Sets the access and modification times of `path` (not following a
/// symlink), like `touch -h -d`.
pub fn set_mtime(path: &Path, when: SystemTime) -> Result<()> {
    let d = when
        .duration_since(UNIX_EPOCH)
        .context("time before 1970")?;
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    let times = [ts, ts];
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        bail!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The modification time of `path`.
pub fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

/// Writes `data` to `base/rel` (parents created) with modification time `when`.
pub fn write_at(base: &Path, rel: &str, data: &[u8], when: SystemTime) -> Result<PathBuf> {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("mkdir -p {}", parent.display()))?;
    }
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    set_mtime(&path, when)?;
    Ok(path)
}

/// Writes every file of `files` under `base` with modification time `when`.
pub fn write_files(base: &Path, files: &Files, when: SystemTime) -> Result<()> {
    for (rel, data) in files {
        write_at(base, rel, data, when)?;
    }
    Ok(())
}

/// A small, fast, seedable generator (xorshift64*), for random sizes, kill
/// points and contents that a failure message can reproduce (print the seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Seeded from `$SYNC_SEED` if set, else from the clock; returns the seed too.
    pub fn from_env_or_time() -> (Rng, u64) {
        let seed = std::env::var("SYNC_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ u64::from(std::process::id()) << 32
            });
        (Rng::new(seed), seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// `len` random bytes from /dev/urandom.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("reading /dev/urandom");
    v
}

/// The bytes at offsets `offset..offset+len` of an endless deterministic
/// stream (splitmix64 of each 8-byte block's index): any prefix of a file
/// written from it can be checked without keeping a copy.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    let end = offset + len as u64;
    while pos < end {
        let block = pos / 8;
        let mut z = block.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let bytes = z.to_le_bytes();
        let from = (pos % 8) as usize;
        let take = (8 - from).min((end - pos) as usize);
        out.extend_from_slice(&bytes[from..from + take]);
        pos += take as u64;
    }
    out
}

/// The files of the push and pull scenarios: nested folders, empty files,
/// names with spaces and non-ASCII characters, a few sizes.
pub fn sample_files() -> Files {
    let mut f = Files::new();
    f.insert("top.txt".into(), random_bytes(1000));
    f.insert("empty.txt".into(), vec![]);
    f.insert("with space.txt".into(), random_bytes(777));
    f.insert("naïve café.txt".into(), random_bytes(4321));
    f.insert("nested/a.bin".into(), random_bytes(300_000));
    f.insert("nested/deeper/b.txt".into(), random_bytes(12));
    f.insert("nested/deeper/empty inside".into(), vec![]);
    f.insert(
        "nested/deeper/still deeper/c.csv".into(),
        random_bytes(65_537),
    );
    f.insert("日本語/ファイル 1.txt".into(), random_bytes(2048));
    f.insert("Ordner mit Ümlaut/ßpecial ✓.dat".into(), random_bytes(99));
    f
}

/// Every file under `root` (relative path with `/` -> content), hidden
/// temporary uploads ([`TEMP_PREFIX`]) left out. A missing root is empty.
pub fn read_tree(root: &Path) -> Result<Files> {
    let mut out = Files::new();
    for rel in walk_files(root)? {
        if is_temp(&rel) {
            continue;
        }
        let p = root.join(&rel);
        out.insert(
            rel,
            fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        );
    }
    Ok(out)
}

/// True when the last component of `rel` is a hidden temporary upload.
pub fn is_temp(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

/// Relative paths of every file (not folder) under `root`, sorted.
pub fn walk_files(root: &Path) -> Result<Vec<String>> {
    Ok(walk(root)?.0.into_iter().collect())
}

/// Relative paths of every folder under `root` (not `root` itself).
pub fn walk_folders(root: &Path) -> Result<BTreeSet<String>> {
    Ok(walk(root)?.1)
}

/// Relative paths of every file and of every folder under `root` (not
/// `root` itself); both empty when `root` does not exist.
fn walk(root: &Path) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut files, mut folders) = (BTreeSet::new(), BTreeSet::new());
    if !root.exists() {
        return Ok((files, folders));
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
            if e.file_type()?.is_dir() {
                folders.insert(rel);
                stack.push(p);
            } else {
                files.insert(rel);
            }
        }
    }
    Ok((files, folders))
}

/// The hidden temporary uploads under `root`.
pub fn temp_leftovers(root: &Path) -> Vec<String> {
    walk_files(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| is_temp(r))
        .collect()
}

/// Differences between what `root` holds and `expected`, one line each
/// (empty when equal).
pub fn tree_diff(root: &Path, expected: &Files) -> Vec<String> {
    let actual = match read_tree(root) {
        Ok(a) => a,
        Err(e) => return vec![format!("cannot read {}: {e:#}", root.display())],
    };
    let mut diffs = vec![];
    for (rel, want) in expected {
        match actual.get(rel) {
            None => diffs.push(format!("missing: {rel:?} ({} bytes expected)", want.len())),
            Some(got) if got != want => {
                let first = got
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                diffs.push(format!(
                    "wrong content: {rel:?}: {} bytes, expected {}, first difference at byte {first}",
                    got.len(),
                    want.len()
                ))
            }
            Some(_) => {}
        }
    }
    for (rel, got) in &actual {
        if !expected.contains_key(rel) {
            diffs.push(format!("unexpected file: {rel:?} ({} bytes)", got.len()));
        }
    }
    diffs
}

/// Panics with every difference unless `root` holds exactly `expected`
/// (temporary uploads aside).
#[track_caller]
pub fn assert_tree(root: &Path, expected: &Files, what: &str, context: &str) {
    let diffs = tree_diff(root, expected);
    assert!(
        diffs.is_empty(),
        "{what}: {} does not hold the expected files:\n  {}\n{context}",
        root.display(),
        diffs.join("\n  ")
    );
}

/// `files` with `more` added (or replaced).
pub fn with(files: &Files, more: &[(&str, &[u8])]) -> Files {
    let mut f = files.clone();
    for (k, v) in more {
        f.insert(k.to_string(), v.to_vec());
    }
    f
}

// ---------------------------------------------------------------------------
// Parsing what `sync run` prints
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

/// `gateway sync ARGS... --config CONFIG`.
pub fn gateway_sync(config: &Path, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
    let c = config.display().to_string();
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    all.extend(["--config", c.as_str()]);
    gateway_run(&all, timeout)
}

/// `gateway config check --config CONFIG`.
pub fn config_check(config: &Path) -> Result<CmdOutput> {
    let c = config.display().to_string();
    gateway_run(
        &["config", "check", "--config", &c],
        Duration::from_secs(30),
    )
}

/// A `gateway sync run NAME` started in the background (own process group,
/// stdout and stderr collected line by line), to be killed at a chosen
/// moment. Dropping it kills it.
pub struct SyncProcess {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

impl SyncProcess {
    /// Starts `gateway sync run NAME --config CONFIG`.
    pub fn spawn(config: &Path, name: &str) -> Result<SyncProcess> {
        let spec = GatewayCommand {
            args: vec![
                "sync".into(),
                "run".into(),
                name.into(),
                "--config".into(),
                config.display().to_string(),
            ],
            ..Default::default()
        };
        let mut cmd = spec.command()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().context("spawning gateway sync run")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = vec![];
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for r in [
            Box::new(out) as Box<dyn Read + Send>,
            Box::new(err) as Box<dyn Read + Send>,
        ] {
            let lines = lines.clone();
            readers.push(thread::spawn(move || {
                for_each_line(r, |l| lines.lock().unwrap().push(l))
            }));
        }
        Ok(SyncProcess {
            child: Some(child),
            lines,
            readers,
            started: Instant::now(),
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many `copied` / `deleted` lines it printed so far.
    pub fn done_actions(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| matches!(parse_run_line(l), Some((a, _)) if a != Act::Hold))
            .count()
    }

    /// Its exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until it printed at least `n` action lines, exited, or `timeout` passed.
    pub fn wait_for_actions(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.done_actions() < n && self.try_status().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILL to the process; returns its status (None if it had exited before).
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let st = child.wait().ok();
        self.join_readers();
        st
    }

    /// Waits for the exit (killing it after `timeout`); returns the status
    /// and everything it printed.
    pub fn wait(&mut self, timeout: Duration) -> Result<(ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                self.join_readers();
                return Ok((st, self.lines().join("\n")));
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "gateway sync run did not finish within {timeout:?}:\n{}",
                    self.lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn join_readers(&mut self) {
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for SyncProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One test's gateway config and remote server
// ---------------------------------------------------------------------------

/// Which kind of remote a [`SyncRig`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// OpenSSH sshd (SFTP), password login.
    Sftp,
    /// vsftpd, plain FTP (no MLSD, no MFMT: LIST times to the minute).
    Vsftpd,
    /// pure-ftpd, plain FTP (MLSD, MFMT).
    PureFtpd,
    /// s3s-fs (objects are plain files on disk).
    S3,
    /// AsyncSSH's SFTP server (files owned by root, like the test).
    AsyncSsh,
    /// ProFTPD's `mod_sftp` (SFTP), password login.
    ProftpdSftp,
    /// `rclone serve s3` from a current rclone (objects are plain files).
    RcloneS3,
}

/// One side of a sync, for scenarios that are the same seen from either
/// side (a push and a pull are mirror images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The gateway's storage folder.
    Gateway,
    /// The path on the remote.
    Remote,
}

impl Side {
    /// How failure messages name it.
    pub fn label(self) -> &'static str {
        match self {
            Side::Gateway => "gateway folder",
            Side::Remote => "remote",
        }
    }
}

/// The remote server of a [`SyncRig`].
pub enum RemoteServer {
    /// sshd.
    Sftp(Sshd),
    /// vsftpd, pure-ftpd or ProFTPD (FTP or mod_sftp).
    Ftp(FtpServer),
    /// s3s-fs or `rclone serve s3`.
    S3(S3Server),
    /// AsyncSSH's SFTP server.
    AsyncSsh(crate::asyncssh_sftpd::AsyncSshServer),
}

impl RemoteServer {
    /// The server's logs, for failure messages.
    pub fn logs(&self) -> String {
        match self {
            RemoteServer::Sftp(s) => s.logs(),
            RemoteServer::Ftp(f) => f.logs(),
            RemoteServer::S3(s) => s.logs(),
            RemoteServer::AsyncSsh(s) => s.logs(),
        }
    }
}

/// One test's syncs: a gateway config and state (no users), a remote server
/// on loopback named [`REMOTE`], and its root folder on disk. Add syncs
/// with [`SyncRig::add_sync`]; seed both sides on disk; run `gateway sync
/// ...` or `gateway serve`. Dropping it stops the gateway, then the server.
pub struct SyncRig {
    /// `gateway serve` when started (first, so it stops first).
    pub serve: Option<Gateway>,
    /// The gateway's storage (`env.data`) and state.
    pub env: TestEnv,
    /// The config (written before every command).
    pub cfg: GatewayConfig,
    /// Where the config is written.
    pub config_path: PathBuf,
    /// The remote server.
    pub server: RemoteServer,
    /// The remote's root on disk (the sshd or FTP root, s3s-fs's bucket folder).
    pub remote_root: PathBuf,
    /// Which kind of remote.
    pub kind: RemoteKind,
}

impl SyncRig {
    /// Starts the remote server and prepares the config (remote [`REMOTE`], no syncs yet).
    pub fn new(kind: RemoteKind) -> Result<SyncRig> {
        let env = TestEnv::new().context("test env")?;
        let (server, remote, remote_root) = match kind {
            RemoteKind::Sftp => {
                let sshd = Sshd::start_default().context("starting sshd")?;
                let root = sshd.remote_dir("root")?;
                let mut r = sshd.remote_config(REMOTE).root(&root);
                r.connect_timeout = Some("10s".into());
                (RemoteServer::Sftp(sshd), r, root)
            }
            RemoteKind::Vsftpd | RemoteKind::PureFtpd => {
                let opts = if kind == RemoteKind::Vsftpd {
                    FtpServerOptions::vsftpd()
                } else {
                    FtpServerOptions::pure_ftpd()
                };
                let ftp = FtpServer::start(opts.tls(FtpServerTls::None))
                    .context("starting the FTP server")?;
                let r = ftp.remote_config(REMOTE);
                let root = ftp.root();
                (RemoteServer::Ftp(ftp), r, root)
            }
            RemoteKind::S3 | RemoteKind::RcloneS3 => {
                let server_kind = if kind == RemoteKind::S3 {
                    S3ServerKind::S3sFs
                } else {
                    S3ServerKind::RcloneServe
                };
                let s3 = S3Server::start(server_kind).context("starting the S3 server")?;
                let mut r = s3.remote_config(REMOTE);
                if kind == RemoteKind::RcloneS3 {
                    // rclone stores a `dir/` marker as a file `dir`.
                    r = r.folder_markers(false);
                }
                let root = s3
                    .bucket_dir()
                    .context("the S3 server keeps no files on disk")?;
                (RemoteServer::S3(s3), r, root)
            }
            RemoteKind::AsyncSsh => {
                let server = crate::asyncssh_sftpd::AsyncSshServer::start()
                    .context("starting the AsyncSSH server")?;
                let mut r = server.remote_config(REMOTE);
                r.connect_timeout = Some("10s".into());
                let root = server.root();
                (RemoteServer::AsyncSsh(server), r, root)
            }
            RemoteKind::ProftpdSftp => {
                let (server, _key) = FtpServer::start_mod_sftp()?;
                let mut r =
                    crate::RemoteConfig::sftp(REMOTE, "127.0.0.1", server.port(), TEST_USER)
                        .password(TEST_PASSWORD);
                r.connect_timeout = Some("10s".into());
                let root = server.root();
                (RemoteServer::Ftp(server), r, root)
            }
        };
        let mut cfg = env.config();
        cfg.remotes = vec![remote];
        let config_path = env.path("config.toml");
        Ok(SyncRig {
            serve: None,
            env,
            cfg,
            config_path,
            server,
            remote_root,
            kind,
        })
    }

    /// A sync named `name` of [`FOLDER`] with [`REMOTE_PATH`] of [`REMOTE`],
    /// `settle = "0s"`; creates both folders.
    pub fn sync_config(&self, name: &str, direction: &str) -> SyncConfig {
        self.folder_pair(FOLDER, REMOTE_PATH);
        SyncConfig::new(name, FOLDER, REMOTE, REMOTE_PATH, direction).settle("0s")
    }

    /// Creates storage folder `folder` and the remote folder `remote_path`
    /// (owned by the login user for sshd and FTP).
    pub fn folder_pair(&self, folder: &str, remote_path: &str) {
        fs::create_dir_all(self.local_of(folder)).expect("mkdir gateway folder");
        let r = self.remote_of(remote_path);
        fs::create_dir_all(&r).expect("mkdir remote folder");
        self.fix_remote_owner();
    }

    /// Adds a `[[syncs]]` entry.
    pub fn add_sync(&mut self, s: SyncConfig) {
        self.cfg.syncs.push(s);
    }

    /// The `[[remotes]]` entry.
    pub fn remote(&mut self) -> &mut RemoteConfig {
        &mut self.cfg.remotes[0]
    }

    /// [`FOLDER`] on disk.
    pub fn local(&self) -> PathBuf {
        self.local_of(FOLDER)
    }

    /// [`REMOTE_PATH`] on the remote's disk.
    pub fn remote_dir(&self) -> PathBuf {
        self.remote_of(REMOTE_PATH)
    }

    /// Storage folder `folder` on disk.
    pub fn local_of(&self, folder: &str) -> PathBuf {
        self.env.data.join(folder.trim_matches('/'))
    }

    /// Remote path `remote_path` on the remote's disk.
    pub fn remote_of(&self, remote_path: &str) -> PathBuf {
        let p = remote_path.trim_matches('/');
        if p.is_empty() {
            self.remote_root.clone()
        } else {
            self.remote_root.join(p)
        }
    }

    /// Makes everything under the remote root owned by the login user (sshd,
    /// FTP: files written by the test as root are read-only to the server).
    pub fn fix_remote_owner(&self) {
        if matches!(
            self.kind,
            RemoteKind::Sftp | RemoteKind::Vsftpd | RemoteKind::PureFtpd | RemoteKind::ProftpdSftp
        ) {
            chown_to_test_user(&self.remote_root).expect("chown remote files");
        }
    }

    /// s3s-fs only (no-op otherwise): removes the empty directories its
    /// deletes leave on disk, so the bucket looks like S3 after every key
    /// under a prefix is deleted: the prefix is gone (s3s-fs would answer
    /// HEAD on such a directory with 500, a quirk S3 does not have).
    pub fn s3_forget_empty_folders(&self) {
        if !matches!(self.kind, RemoteKind::S3 | RemoteKind::RcloneS3) {
            return;
        }
        let mut dirs: Vec<String> = walk_folders(&self.remote_root)
            .unwrap()
            .into_iter()
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for d in dirs {
            let _ = fs::remove_dir(self.remote_root.join(d));
        }
    }

    /// Writes `files` into the remote folder with time `when` (and fixes owners).
    pub fn seed_remote(&self, files: &Files, when: SystemTime) {
        write_files(&self.remote_dir(), files, when).expect("seeding the remote");
        self.fix_remote_owner();
    }

    /// Writes `files` into the gateway folder with time `when`.
    pub fn seed_local(&self, files: &Files, when: SystemTime) {
        write_files(&self.local(), files, when).expect("seeding the gateway folder");
    }

    /// The sync's folder on `side`: [`SyncRig::local`] or [`SyncRig::remote_dir`].
    pub fn dir(&self, side: Side) -> PathBuf {
        match side {
            Side::Gateway => self.local(),
            Side::Remote => self.remote_dir(),
        }
    }

    /// Writes `files` into the sync's folder on `side` with time `when`:
    /// [`SyncRig::seed_local`] or [`SyncRig::seed_remote`].
    pub fn seed(&self, side: Side, files: &Files, when: SystemTime) {
        match side {
            Side::Gateway => self.seed_local(files, when),
            Side::Remote => self.seed_remote(files, when),
        }
    }

    /// Writes the config file.
    pub fn write_config(&self) {
        self.cfg
            .write(&self.config_path)
            .expect("writing the config");
    }

    /// `gateway sync ARGS... --config F` on the current config (written first).
    pub fn cli(&self, args: &[&str]) -> CmdOutput {
        self.write_config();
        gateway_sync(&self.config_path, args, RUN_TIMEOUT)
            .unwrap_or_else(|e| panic!("gateway sync {args:?}: {e:#}\n{}", self.logs()))
    }

    /// `gateway sync run NAME`.
    pub fn run(&self, name: &str) -> CmdOutput {
        self.cli(&["run", name])
    }

    /// `gateway sync run NAME --dry-run`.
    pub fn dry_run(&self, name: &str) -> CmdOutput {
        self.cli(&["run", name, "--dry-run"])
    }

    /// `gateway sync history NAME --limit 1000`.
    pub fn history(&self, name: &str) -> CmdOutput {
        self.cli(&["history", name, "--limit", "1000"])
    }

    /// A dry run, then the real run, of sync `name` (both must exit 0).
    /// Checks that the dry run changed nothing on either side, that it
    /// listed exactly the actions the real run then printed (holds
    /// included), and that both summaries agree with their lines. Returns
    /// the real run's actions and its output.
    pub fn checked_run(&self, name: &str) -> (Actions, CmdOutput) {
        let sync = self
            .cfg
            .syncs
            .iter()
            .find(|s| s.name == name)
            .expect("sync in the config")
            .clone();
        let local = self.local_of(&sync.folder);
        let remote = self.remote_of(&sync.remote_path);
        let before = (read_tree(&local).unwrap(), read_tree(&remote).unwrap());

        let dry = self.dry_run(name);
        assert!(
            dry.success(),
            "`gateway sync run {name} --dry-run` failed\n{dry}\n{}",
            self.logs()
        );
        let after = (read_tree(&local).unwrap(), read_tree(&remote).unwrap());
        assert!(
            before == after,
            "the dry run of {name} changed files: gateway side {}, remote side {}\n{dry}",
            if before.0 == after.0 {
                "unchanged"
            } else {
                "CHANGED"
            },
            if before.1 == after.1 {
                "unchanged"
            } else {
                "CHANGED"
            },
        );
        let planned = dry_actions(&dry);
        let ds = dry_summary(&dry, name).unwrap_or_else(|| {
            panic!("no `dry run of {name}: N to copy (B bytes), D to delete, H held` line\n{dry}")
        });
        let count = |set: &Actions, f: &dyn Fn(Act) -> bool| -> u64 {
            set.iter().filter(|(a, _)| f(*a)).count() as u64
        };
        let is_copy = |a: Act| matches!(a, Act::CopyPush | Act::CopyPull);
        let is_delete = |a: Act| matches!(a, Act::DeleteGateway | Act::DeleteRemote);
        assert_eq!(
            (ds.to_copy, ds.to_delete, ds.held),
            (
                count(&planned, &is_copy),
                count(&planned, &is_delete),
                count(&planned, &|a| a == Act::Hold)
            ),
            "the dry run's summary (to copy, to delete, held) disagrees with its lines\n{dry}"
        );

        let real = self.run(name);
        assert!(
            real.success(),
            "`gateway sync run {name}` failed\n{real}\n{}",
            self.logs()
        );
        let done = run_actions(&real);
        let lines = run_action_lines(&real);
        assert_eq!(
            lines.len(),
            done.len(),
            "the run printed some action twice\n{real}"
        );
        assert!(
            planned == done,
            "the dry run of {name} did not list exactly what the real run then did:\n{}\n--- dry run ---\n{dry}\n--- real run ---\n{real}",
            show_diff(&planned, &done)
        );
        let rs = run_summary(&real, name).unwrap_or_else(|| {
            panic!(
                "no `sync {name} <outcome>: N copied (B bytes), S skipped, D deleted, E failed in <duration>` line\n{real}"
            )
        });
        assert_eq!(
            rs,
            RunSummary {
                outcome: "succeeded".into(),
                copied: count(&done, &is_copy),
                bytes: ds.bytes,
                // The summary has no count of its own for held files:
                // they are among the skipped.
                skipped: count(&done, &|a| matches!(a, Act::Hold | Act::Skip)),
                deleted: count(&done, &is_delete),
                failed: 0,
            },
            "the run's summary disagrees with its lines or with the dry run's byte count ({} bytes)\n{real}",
            ds.bytes
        );
        (done, real)
    }

    /// Writes the config and starts `gateway serve` on it.
    pub fn start_serve(&mut self) -> &Gateway {
        self.write_config();
        let gw = Gateway::start(&GatewayCommand::serve_config(&self.config_path))
            .unwrap_or_else(|e| panic!("starting gateway serve: {e:#}\n{}", self.logs()));
        self.serve.insert(gw)
    }

    /// The remote server's logs and `gateway serve`'s output, for failure messages.
    pub fn logs(&self) -> String {
        Gateway::logs_with(self.serve.as_ref(), &self.server.logs())
    }
}

// ---------------------------------------------------------------------------
// Scenarios shared by the SFTP, FTP and S3 tests
// ---------------------------------------------------------------------------

/// Push, pull and two-way scenarios, each on its own [`SyncRig`].
pub mod scenarios {
    use super::*;

    /// What tells a push from a pull in [`one_way`]: which side the files
    /// start on, what copying and deleting them is called, and how
    /// failure messages name what is left behind.
    struct OneWay {
        /// The sync's `direction`, also its name in failure messages.
        direction: &'static str,
        /// Where the files are at first.
        source: Side,
        /// Where they are copied to.
        destination: Side,
        /// Copying a file from the source to the destination.
        copy: Act,
        /// Deleting a copied file at the source (`after_copy = "delete"`).
        delete: Act,
        /// A file only the destination has: it must stay.
        destination_only: &'static str,
        /// The hidden temporary files at the destination, as failure
        /// messages name them.
        temporaries: &'static str,
        /// With delete, also `delete_empty_folders = true`, and no folder
        /// is left at the source.
        delete_empty_folders: bool,
    }

    const PUSH: OneWay = OneWay {
        direction: "push",
        source: Side::Gateway,
        destination: Side::Remote,
        copy: Act::CopyPush,
        delete: Act::DeleteGateway,
        destination_only: "remote only.txt",
        temporaries: "temporary uploads left at the remote",
        delete_empty_folders: true,
    };

    const PULL: OneWay = OneWay {
        direction: "pull",
        source: Side::Remote,
        destination: Side::Gateway,
        copy: Act::CopyPull,
        delete: Act::DeleteRemote,
        destination_only: "gateway only.txt",
        temporaries: "temporary downloads left in the gateway folder",
        delete_empty_folders: false,
    };

    /// Push: every file of [`sample_files`] arrives at the remote with its
    /// content; a stale copy there (other size) is replaced; a remote-only
    /// file stays. With `delete`, the sources are deleted (and, with
    /// `delete_empty_folders`, their folders); with keep they stay. A
    /// second run does nothing.
    pub fn push(kind: RemoteKind, delete: bool) {
        one_way(kind, &PUSH, delete);
    }

    /// Pull: the mirror image of [`push`] (no `delete_empty_folders`).
    pub fn pull(kind: RemoteKind, delete: bool) {
        one_way(kind, &PULL, delete);
    }

    /// [`push`] or [`pull`], as `way` says.
    fn one_way(kind: RemoteKind, way: &OneWay, delete: bool) {
        let mut rig = SyncRig::new(kind).expect("set-up");
        let after_copy = if delete { "delete" } else { "keep" };
        let mut sync = rig.sync_config(SYNC, way.direction).after_copy(after_copy);
        if delete && way.delete_empty_folders {
            sync = sync.delete_empty_folders(true);
        }
        rig.add_sync(sync);
        let files = sample_files();
        rig.seed(way.source, &files, ago(3600 + 17));
        let stale: Files = [
            ("nested/a.bin".to_string(), b"stale".to_vec()),
            (way.destination_only.to_string(), b"stays".to_vec()),
        ]
        .into();
        rig.seed(way.destination, &stale, ago(7200));
        let (source, destination) = (rig.dir(way.source), rig.dir(way.destination));
        let (from, to) = (way.source.label(), way.destination.label());
        let name = way.direction;

        let (done, out) = rig.checked_run(SYNC);
        let mut expected = acts(way.copy, files.keys());
        if delete {
            expected.extend(acts(way.delete, files.keys()));
        }
        assert_actions(
            &done,
            &expected,
            &format!("{name} ({after_copy}) did not do what was expected"),
            &out,
        );
        let destination_expected = with(&files, &[(way.destination_only, b"stays")]);
        assert_tree(
            &destination,
            &destination_expected,
            &format!("{to} after {name}"),
            &rig.logs(),
        );
        let source_expected = if delete { Files::new() } else { files };
        assert_tree(
            &source,
            &source_expected,
            &format!("{from} after {name} with {after_copy}"),
            &rig.logs(),
        );
        if delete && way.delete_empty_folders {
            let left = walk_folders(&source).unwrap();
            assert!(
                left.is_empty(),
                "delete_empty_folders = true, but folders emptied by the deletes remain in the {from}: {left:?}\n{out}"
            );
        }
        let leftovers = temp_leftovers(&destination);
        assert!(
            leftovers.is_empty(),
            "{} after a clean run: {leftovers:?}",
            way.temporaries
        );
        if delete && way.source == Side::Remote {
            // What S3 looks like once every key under a prefix is deleted.
            rig.s3_forget_empty_folders();
        }

        second_run_does_nothing(&rig, name, &[(way.destination, &destination_expected)]);
    }

    /// Two-way: each side's own files (nested, empty, non-ASCII) go to the
    /// other side; of two files with different sizes the newer wins (one
    /// newer on each side); a name with the same size on both sides is left
    /// alone although the contents differ. Nothing is deleted. A second run
    /// does nothing.
    pub fn two_way(kind: RemoteKind) {
        let mut rig = SyncRig::new(kind).expect("set-up");
        rig.add_sync(rig.sync_config(SYNC, "two_way"));
        let old = ago(2 * 3600 + 13);
        let new = ago(600 + 7);
        let here_only: Files = [
            ("here only.txt".to_string(), random_bytes(500)),
            ("nested/hère only ü.bin".to_string(), random_bytes(20_000)),
            ("empty here.txt".to_string(), vec![]),
        ]
        .into();
        let there_only: Files = [
            ("there only.txt".to_string(), random_bytes(600)),
            (
                "nested/deep/thère only é.bin".to_string(),
                random_bytes(30_000),
            ),
            ("empty there.txt".to_string(), vec![]),
        ]
        .into();
        let (newer_here_g, newer_here_r) = (random_bytes(3000), random_bytes(1000));
        let (newer_there_g, newer_there_r) = (random_bytes(1500), random_bytes(4500));
        let (same_g, same_r) = (vec![b'g'; 100], vec![b'r'; 100]);
        let both = random_bytes(2500);

        rig.seed_local(&here_only, old);
        rig.seed_remote(&there_only, old);
        let l = rig.local();
        let r = rig.remote_dir();
        // (name, gateway side's content and time, remote side's content and time)
        for (name, (g, g_time), (r_data, r_time)) in [
            ("newer here.txt", (&newer_here_g, new), (&newer_here_r, old)),
            (
                "sub dir/newer there.txt",
                (&newer_there_g, old),
                (&newer_there_r, new),
            ),
            ("same size.txt", (&same_g, new), (&same_r, old)),
            ("nested/identical.txt", (&both, old), (&both, old)),
        ] {
            write_at(&l, name, g, g_time).unwrap();
            write_at(&r, name, r_data, r_time).unwrap();
        }
        rig.fix_remote_owner();

        let (done, out) = rig.checked_run(SYNC);
        let mut expected = acts(Act::CopyPush, here_only.keys());
        expected.insert((Act::CopyPush, "newer here.txt".into()));
        expected.extend(acts(Act::CopyPull, there_only.keys()));
        expected.insert((Act::CopyPull, "sub dir/newer there.txt".into()));
        assert_actions(
            &done,
            &expected,
            "two-way did not do what was expected",
            &out,
        );
        let mut common = here_only.clone();
        common.extend(there_only.clone());
        common.insert("newer here.txt".into(), newer_here_g.clone());
        common.insert("sub dir/newer there.txt".into(), newer_there_r.clone());
        common.insert("nested/identical.txt".into(), both.clone());
        let mut local_expected = common.clone();
        local_expected.insert("same size.txt".into(), same_g.clone());
        let mut remote_expected = common;
        remote_expected.insert("same size.txt".into(), same_r.clone());
        assert_tree(
            &l,
            &local_expected,
            "gateway folder after two-way",
            &rig.logs(),
        );
        assert_tree(&r, &remote_expected, "remote after two-way", &rig.logs());

        second_run_does_nothing(
            &rig,
            "two-way run",
            &[
                (Side::Gateway, &local_expected),
                (Side::Remote, &remote_expected),
            ],
        );
    }

    /// Runs sync [`SYNC`] again ([`SyncRig::checked_run`]) and checks that
    /// it did nothing and that the folder on each `side` still holds
    /// exactly its `files`; `run` names the run in failure messages.
    fn second_run_does_nothing(rig: &SyncRig, run: &str, trees: &[(Side, &Files)]) {
        let (again, out) = rig.checked_run(SYNC);
        assert!(
            again.is_empty(),
            "a second {run} did something although nothing changed:\n{}\n{out}",
            show(&again)
        );
        for (side, files) in trees {
            assert_tree(
                &rig.dir(*side),
                files,
                &format!("{} after the second {run}", side.label()),
                &rig.logs(),
            );
        }
    }
}
