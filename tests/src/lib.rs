//! End-to-end test harness: starts the real `gateway` binary and drives it
//! with the real OpenSSH clients (`sftp`, `scp`, `ssh-keygen`, `sshpass`).
//!
//! Every test owns a [`TestEnv`] (its own temp dir, storage, state and
//! known_hosts) and its own [`Gateway`] listening on port 0; the gateway is
//! stopped when its handle is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod asyncssh_sftpd;
pub mod clients;
pub mod cluster;
pub mod direct;
pub mod ftpd;
pub mod haproxy;
pub mod mount;
pub mod ops;
pub mod peers;
pub mod postgres;
pub mod relay;
pub mod s3_endpoint;
pub mod s3d;
pub mod sshd;
pub mod sync;

/// How long to wait for the gateway's `listening on` line (RSA-4096 host-key
/// generation at first start can take a while in a debug build).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time limit for one client run (sftp, scp).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// Path of the `gateway` binary: `$GATEWAY_BIN`, else `<target>/debug/gateway`
/// derived from the running test executable (`<target>/debug/deps/xxx`).
pub fn gateway_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GATEWAY_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "GATEWAY_BIN={} does not exist or is not a file",
                p.display()
            );
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let deps = exe.parent().context("test executable has no parent dir")?;
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().context("deps dir has no parent")?
    } else {
        deps
    };
    let bin = profile_dir.join("gateway");
    if !bin.is_file() {
        bail!(
            "gateway binary not found at {} (derived from test executable {}); \
             build it first with `cargo build -p gateway` or set GATEWAY_BIN",
            bin.display(),
            exe.display()
        );
    }
    Ok(bin)
}

/// Removes ANSI colour escapes (`ESC [ ... m`) from log text.
pub fn strip_ansi(s: &str) -> String {
    let re = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("ansi regex");
    re.replace_all(s, "").into_owned()
}

// ---------------------------------------------------------------------------
// Running commands with a time limit
// ---------------------------------------------------------------------------

/// The result of one finished client command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// A human-readable rendering of the command line (password not shown).
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// Wall-clock time the command took.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout followed by stderr (ANSI escapes removed).
    pub fn text(&self) -> String {
        strip_ansi(&format!("{}\n{}", self.stdout, self.stderr))
    }

    /// stdout lines that are not sftp's echo of batch commands (`sftp> ...`).
    pub fn listing(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with("sftp>"))
            .map(str::to_owned)
            .collect()
    }

    /// True when some non-echo stdout line has a whitespace-separated word whose
    /// last path component is `name` (sftp prints `ls /dir` entries as `/dir/name`).
    pub fn lists_name(&self, name: &str) -> bool {
        self.listing().iter().any(|l| {
            l.split_whitespace().any(|w| {
                let w = w.trim_end_matches('/');
                w == name || w.rsplit('/').next() == Some(name)
            })
        })
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\nelapsed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed, capturing stdout/stderr; kills it (and its
/// process group) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<CmdOutput> {
    use std::os::unix::process::CommandExt;
    let command = format!("{cmd:?}");
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {command}"))?;
    let out = read_all_in_thread(child.stdout.take().expect("piped stdout"));
    let err = read_all_in_thread(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > timeout {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            thread::sleep(Duration::from_millis(500));
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            let stdout = join_reader(out);
            let stderr = join_reader(err);
            bail!(
                "command timed out after {timeout:?}: {command}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        thread::sleep(Duration::from_millis(25));
    };
    Ok(CmdOutput {
        command,
        status,
        stdout: join_reader(out),
        stderr: join_reader(err),
        elapsed: start.elapsed(),
    })
}

fn read_all_in_thread<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// The reader's text; gives up after a few seconds (a grandchild such as ssh
/// under sshpass may keep the pipe open after its parent exited).
fn join_reader(rx: mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| "<output not closed within 5 s after exit>".into())
}

// ---------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------

/// Lines read from one output stream of the gateway, shared with the reader thread.
#[derive(Default)]
pub struct LineLog {
    state: Mutex<(Vec<String>, bool)>,
    cv: Condvar,
}

impl LineLog {
    fn push(&self, line: String) {
        self.state.lock().unwrap().0.push(line);
        self.cv.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }

    /// All lines read so far (ANSI escapes removed).
    pub fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().0.clone()
    }

    /// All lines read so far joined with newlines.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// True once the stream reached end of file.
    pub fn closed(&self) -> bool {
        self.state.lock().unwrap().1
    }

    /// Waits up to `timeout` for a line matching `pred`; returns it, or None on
    /// timeout / end of stream.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut g = self.state.lock().unwrap();
        loop {
            if let Some(l) = g.0.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                return None;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits up to `timeout` for end of stream; true if it was reached.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.state.lock().unwrap();
        while !g.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        true
    }
}

/// Hands each line of `r` to `on_line` (line ending and ANSI escapes
/// removed, invalid UTF-8 replaced) until end of stream or a read error.
/// Blocks: run it on a reader thread.
pub fn for_each_line(r: impl Read, mut on_line: impl FnMut(String)) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                on_line(strip_ansi(line.trim_end_matches(['\n', '\r'])));
            }
        }
    }
}

pub(crate) fn spawn_line_reader<R: Read + Send + 'static>(r: R, log: Arc<LineLog>) {
    thread::spawn(move || {
        for_each_line(r, |line| log.push(line));
        log.close();
    });
}

/// How to start a gateway process.
#[derive(Debug, Clone, Default)]
pub struct GatewayCommand {
    /// Arguments after the binary name (e.g. `serve --config F`).
    pub args: Vec<String>,
    /// Working directory (default: inherited).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub envs: Vec<(String, String)>,
}

impl GatewayCommand {
    /// `gateway serve --config PATH`.
    pub fn serve_config(config: &Path) -> Self {
        Self {
            args: vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
            ..Default::default()
        }
    }

    /// Builds the `Command` (any `GATEWAY*` variable of the test's own environment removed).
    pub fn command(&self) -> Result<Command> {
        let mut cmd = Command::new(gateway_bin()?);
        cmd.args(&self.args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GATEWAY") {
                cmd.env_remove(k);
            }
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        Ok(cmd)
    }
}

/// A running gateway. Dropping it stops the process (SIGTERM, up to 5 s, SIGKILL).
pub struct Gateway {
    child: Option<Child>,
    /// The address it reported in its `listening on` line.
    pub addr: SocketAddr,
    /// Its standard output, line by line.
    pub stdout: Arc<LineLog>,
    /// Its standard error (logs), line by line.
    pub stderr: Arc<LineLog>,
    label: String,
}

/// Extracts the socket address following `listening on ` in a log line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let re = regex::Regex::new(r"listening on \W*(\[[0-9a-fA-F:.]+\]:\d+|[0-9.]+:\d+)").ok()?;
    re.captures(line)?.get(1)?.as_str().parse().ok()
}

impl Gateway {
    /// Starts the gateway and waits (up to [`LISTEN_TIMEOUT`]) for its `listening on` line.
    pub fn start(spec: &GatewayCommand) -> Result<Gateway> {
        let mut cmd = spec.command()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let label = format!("{cmd:?}");
        let mut child = cmd.spawn().with_context(|| format!("spawning {label}"))?;
        let stdout = Arc::new(LineLog::default());
        let stderr = Arc::new(LineLog::default());
        spawn_line_reader(child.stdout.take().expect("piped"), stdout.clone());
        spawn_line_reader(child.stderr.take().expect("piped"), stderr.clone());
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        let addr = loop {
            if let Some(line) = stderr.wait_for(Duration::from_millis(200), |l| {
                l.contains("listening on ") && parse_listening_line(l).is_some()
            }) {
                break parse_listening_line(&line).expect("checked above");
            }
            if let Some(st) = child.try_wait()? {
                stderr.wait_closed(Duration::from_secs(2));
                stdout.wait_closed(Duration::from_secs(2));
                bail!(
                    "gateway exited with {st} before listening: {label}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "gateway did not print `listening on <addr>` within {LISTEN_TIMEOUT:?}: {label}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
        };
        Ok(Gateway {
            child: Some(child),
            addr,
            stdout,
            stderr,
            label,
        })
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Both output streams, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "gateway {}\n--- gateway stdout ---\n{}\n--- gateway stderr ---\n{}\n---------------------",
            self.label,
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// The logs of `gw` (or a note that it is not running) followed by
    /// `server_logs`: the failure context of a test that runs the gateway
    /// in front of its own remote server.
    pub fn logs_with(gw: Option<&Gateway>, server_logs: &str) -> String {
        format!(
            "{}\n{server_logs}",
            gw.map(Gateway::logs)
                .unwrap_or_else(|| "(gateway not running)".into()),
        )
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns its status
    /// (SIGKILL and an error if it did not exit in time). Waits briefly for the
    /// output readers to drain afterwards.
    pub fn stop_within(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("gateway already stopped"))?;
        if let Some(st) = child.try_wait()? {
            bail!(
                "gateway had already exited with {st} before SIGTERM\n{}",
                self.logs()
            );
        }
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "gateway did not exit within {timeout:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.stdout.wait_closed(Duration::from_secs(3));
        self.stderr.wait_closed(Duration::from_secs(3));
        Ok(status)
    }

    /// [`Gateway::stop_within`] with 15 s (the test configs use a 10 s shutdown grace).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.stop_within(Duration::from_secs(15))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(5);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
                if child.try_wait().ok().flatten().is_none() {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------

/// Quotes a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", v.join(", "))
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Argon2 PHC hash (see [`hash_password`]).
    pub password_hash: Option<String>,
    /// OpenSSH public key lines.
    pub authorized_keys: Vec<String>,
    /// Path of an authorized_keys file.
    pub authorized_keys_file: Option<PathBuf>,
    /// Home folder under storage (default: the name).
    pub home: Option<String>,
    /// Source networks (CIDRs) the user may log in from.
    pub allowed_networks: Option<Vec<String>>,
    /// Folder -> permission words; empty = key absent (all permissions).
    pub permissions: Vec<(String, Vec<String>)>,
    /// `[[users.mounts]]`: folders of the tree served by a remote.
    pub mounts: Vec<MountConfig>,
}

impl UserConfig {
    /// A user with just a name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the password hash.
    pub fn password_hash(mut self, hash: &str) -> Self {
        self.password_hash = Some(hash.into());
        self
    }

    /// Adds an authorized public key line.
    pub fn key(mut self, pubkey_line: &str) -> Self {
        self.authorized_keys.push(pubkey_line.trim().into());
        self
    }

    /// Sets the home folder.
    pub fn home(mut self, home: &str) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Sets allowed source networks.
    pub fn allowed_networks(mut self, nets: &[&str]) -> Self {
        self.allowed_networks = Some(nets.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds one permission rule.
    pub fn perm(mut self, folder: &str, words: &[&str]) -> Self {
        self.permissions
            .push((folder.into(), words.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// Mounts folder `path` of the user's tree on `remote_path` (under the
    /// remote's root; "" = the root) of remote `remote`.
    pub fn mount(mut self, path: &str, remote: &str, remote_path: &str) -> Self {
        self.mounts.push(MountConfig {
            path: path.into(),
            remote: remote.into(),
            remote_path: remote_path.into(),
        });
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[users]]\n");
        s += &format!("name = {}\n", toml_str(&self.name));
        if let Some(h) = &self.password_hash {
            s += &format!("password_hash = {}\n", toml_str(h));
        }
        if !self.authorized_keys.is_empty() {
            s += &format!("authorized_keys = {}\n", toml_list(&self.authorized_keys));
        }
        if let Some(f) = &self.authorized_keys_file {
            s += &format!(
                "authorized_keys_file = {}\n",
                toml_str(&f.display().to_string())
            );
        }
        if let Some(h) = &self.home {
            s += &format!("home = {}\n", toml_str(h));
        }
        if let Some(n) = &self.allowed_networks {
            s += &format!("allowed_networks = {}\n", toml_list(n));
        }
        if !self.permissions.is_empty() {
            s += "[users.permissions]\n";
            for (folder, words) in &self.permissions {
                s += &format!("{} = {}\n", toml_str(folder), toml_list(words));
            }
        }
        for m in &self.mounts {
            s += "[[users.mounts]]\n";
            s += &format!("path = {}\n", toml_str(&m.path));
            s += &format!("remote = {}\n", toml_str(&m.remote));
            s += &format!("remote_path = {}\n", toml_str(&m.remote_path));
        }
        s
    }
}

/// One `[[users.mounts]]` entry.
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// Folder in the user's tree (`/partner`).
    pub path: String,
    /// Name of a `[[remotes]]` entry.
    pub remote: String,
    /// Path under the remote's root ("" = the root).
    pub remote_path: String,
}

/// One `[[remotes]]` entry; `None` fields are left out (gateway defaults).
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// Name the mounts refer to.
    pub name: String,
    /// `sftp`, `ftp` or `s3`.
    pub kind: String,
    /// Host name or address.
    pub host: String,
    /// Port (default 22 for SFTP, 21 for FTP, 990 for implicit FTPS).
    pub port: Option<u16>,
    /// Login name.
    pub username: String,
    /// Password.
    pub password: Option<String>,
    /// Private key file (OpenSSH, PEM, PuTTY ppk, ssh.com SSH2).
    pub private_key_file: Option<PathBuf>,
    /// Passphrase of the private key.
    pub private_key_passphrase: Option<String>,
    /// Pinned host key (`ssh-ed25519 AAAA...` or a known_hosts line).
    pub host_key: Option<String>,
    /// Connect even if the host key does not match (with a warning).
    pub allow_mismatched_host_key: Option<bool>,
    /// Pool cap (default 25).
    pub max_connections: Option<u32>,
    /// Connect from `[server] dedicated_ips` (default true).
    pub use_dedicated_ips: Option<bool>,
    /// Remote root folder.
    pub root: Option<String>,
    /// e.g. "10s".
    pub connect_timeout: Option<String>,
    /// How long work waits for a free pooled connection, e.g. "30s".
    pub pool_wait: Option<String>,
    /// Idle pooled connections are closed after this, e.g. "60s".
    pub idle_timeout: Option<String>,
    /// FTP: `never`, `if_available`, `require` (gateway default) or `require_implicit`.
    pub tls: Option<String>,
    /// FTP, S3: `require_match` (gateway default) or `allow_any`.
    pub certificate: Option<String>,
    /// FTP, S3: PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// FTP: upload to a temporary name and rename on close (gateway default false).
    pub atomic_uploads: Option<bool>,
    /// FTP, S3: how long a command, request or transfer may stall, e.g. "10s".
    pub io_timeout: Option<String>,
    /// S3: the endpoint URL (`http://127.0.0.1:PORT`).
    pub endpoint: Option<String>,
    /// S3: the bucket.
    pub bucket: Option<String>,
    /// S3: the signing region (gateway default `us-east-1`).
    pub region: Option<String>,
    /// S3: access key id.
    pub access_key_id: Option<String>,
    /// S3: secret access key.
    pub secret_access_key: Option<String>,
    /// S3: path-style URLs (gateway default true).
    pub path_style: Option<bool>,
    /// S3: rename folders key by key (gateway default false).
    pub recursive_folder_rename: Option<bool>,
    /// S3 `folder_markers`.
    pub folder_markers: Option<bool>,
    /// Extra raw `key = value` lines (values already TOML-encoded).
    pub extra: Vec<(String, String)>,
}

impl RemoteConfig {
    /// An `sftp` remote at `host:port` logging in as `username` (no credentials yet).
    pub fn sftp(name: &str, host: &str, port: u16, username: &str) -> Self {
        Self {
            name: name.into(),
            kind: "sftp".into(),
            host: host.into(),
            port: Some(port),
            username: username.into(),
            ..Default::default()
        }
    }

    /// An `ftp` remote at `host:port` logging in as `username` (no password
    /// yet; TLS and certificate settings left to the gateway's defaults:
    /// `tls = "require"`, `certificate = "require_match"`).
    pub fn ftp(name: &str, host: &str, port: u16, username: &str) -> Self {
        Self {
            name: name.into(),
            kind: "ftp".into(),
            host: host.into(),
            port: Some(port),
            username: username.into(),
            ..Default::default()
        }
    }

    /// An `s3` remote: `bucket` on the server at `endpoint` (an
    /// `http://` or `https://` URL) with these credentials; region,
    /// path style and the rest left to the gateway's defaults. Its TOML
    /// has no `host`, `port`, `username`, `password` or `max_connections`
    /// (the gateway refuses them for S3 remotes).
    pub fn s3(
        name: &str,
        endpoint: &str,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        Self {
            name: name.into(),
            kind: "s3".into(),
            endpoint: Some(endpoint.into()),
            bucket: Some(bucket.into()),
            access_key_id: Some(access_key_id.into()),
            secret_access_key: Some(secret_access_key.into()),
            ..Default::default()
        }
    }

    /// S3: sets `region`.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.into());
        self
    }

    /// S3: sets `path_style`.
    pub fn path_style(mut self, yes: bool) -> Self {
        self.path_style = Some(yes);
        self
    }

    /// S3: sets `folder_markers`.
    pub fn folder_markers(mut self, yes: bool) -> Self {
        self.folder_markers = Some(yes);
        self
    }

    /// S3: sets `recursive_folder_rename`.
    pub fn recursive_folder_rename(mut self, yes: bool) -> Self {
        self.recursive_folder_rename = Some(yes);
        self
    }

    /// FTP: sets `tls` (`never`, `if_available`, `require`, `require_implicit`).
    pub fn tls(mut self, mode: &str) -> Self {
        self.tls = Some(mode.into());
        self
    }

    /// FTP, S3: sets `certificate` (`require_match` or `allow_any`).
    pub fn certificate(mut self, check: &str) -> Self {
        self.certificate = Some(check.into());
        self
    }

    /// FTP, S3: sets `ca_file`.
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// FTP: sets `atomic_uploads`.
    pub fn atomic_uploads(mut self, yes: bool) -> Self {
        self.atomic_uploads = Some(yes);
        self
    }

    /// FTP, S3: sets `io_timeout` (e.g. "10s").
    pub fn io_timeout(mut self, timeout: &str) -> Self {
        self.io_timeout = Some(timeout.into());
        self
    }

    /// Sets the password.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.into());
        self
    }

    /// Removes the password.
    pub fn no_password(mut self) -> Self {
        self.password = None;
        self
    }

    /// Sets the private key file (and optionally its passphrase).
    pub fn key(mut self, file: &Path, passphrase: Option<&str>) -> Self {
        self.private_key_file = Some(file.into());
        self.private_key_passphrase = passphrase.map(str::to_owned);
        self
    }

    /// Sets the remote root folder.
    pub fn root(mut self, root: &Path) -> Self {
        self.root = Some(root.display().to_string());
        self
    }

    /// Pins a host key.
    pub fn host_key(mut self, key: &str) -> Self {
        self.host_key = Some(key.into());
        self
    }

    /// Sets `max_connections`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[remotes]]\n");
        s += &format!("name = {}\n", toml_str(&self.name));
        s += &format!("kind = {}\n", toml_str(&self.kind));
        let opt = |s: &mut String, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                *s += &format!("{k} = {}\n", toml_str(v));
            }
        };
        // The gateway refuses keys of another protocol: an S3 remote has
        // no host, port, login or connection limit.
        let s3 = self.kind == "s3";
        if !s3 {
            s += &format!("host = {}\n", toml_str(&self.host));
            if let Some(p) = self.port {
                s += &format!("port = {p}\n");
            }
            s += &format!("username = {}\n", toml_str(&self.username));
            opt(&mut s, "password", &self.password);
        }
        opt(
            &mut s,
            "private_key_file",
            &self
                .private_key_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        opt(
            &mut s,
            "private_key_passphrase",
            &self.private_key_passphrase,
        );
        opt(&mut s, "host_key", &self.host_key);
        if let Some(b) = self.allow_mismatched_host_key {
            s += &format!("allow_mismatched_host_key = {b}\n");
        }
        if let (Some(n), false) = (self.max_connections, s3) {
            s += &format!("max_connections = {n}\n");
        }
        if let Some(b) = self.use_dedicated_ips {
            s += &format!("use_dedicated_ips = {b}\n");
        }
        opt(&mut s, "root", &self.root);
        opt(&mut s, "connect_timeout", &self.connect_timeout);
        opt(&mut s, "pool_wait", &self.pool_wait);
        opt(&mut s, "idle_timeout", &self.idle_timeout);
        opt(&mut s, "tls", &self.tls);
        opt(&mut s, "certificate", &self.certificate);
        opt(
            &mut s,
            "ca_file",
            &self.ca_file.as_ref().map(|p| p.display().to_string()),
        );
        if let Some(b) = self.atomic_uploads {
            s += &format!("atomic_uploads = {b}\n");
        }
        opt(&mut s, "io_timeout", &self.io_timeout);
        opt(&mut s, "endpoint", &self.endpoint);
        opt(&mut s, "bucket", &self.bucket);
        opt(&mut s, "region", &self.region);
        opt(&mut s, "access_key_id", &self.access_key_id);
        opt(&mut s, "secret_access_key", &self.secret_access_key);
        if let Some(b) = self.path_style {
            s += &format!("path_style = {b}\n");
        }
        if let Some(b) = self.folder_markers {
            s += &format!("folder_markers = {b}\n");
        }
        if let Some(b) = self.recursive_folder_rename {
            s += &format!("recursive_folder_rename = {b}\n");
        }
        for (k, v) in &self.extra {
            s += &format!("{k} = {v}\n");
        }
        s
    }
}

/// One `[[syncs]]` entry; `None` fields and empty lists are left out
/// (gateway defaults).
#[derive(Debug, Clone, Default)]
pub struct SyncConfig {
    /// Name used by `gateway sync run NAME` and the history.
    pub name: String,
    /// Folder of the gateway's storage (`/outbound`).
    pub folder: String,
    /// A `[[remotes]]` name.
    pub remote: String,
    /// Path under the remote's root ("" = the root).
    pub remote_path: String,
    /// `push`, `pull` or `two_way`.
    pub direction: String,
    /// `keep` or `delete`.
    pub after_copy: Option<String>,
    /// e.g. "0s" (gateway default "30s").
    pub settle: Option<String>,
    /// e.g. "10m" (gateway default "24h").
    pub time_limit: Option<String>,
    /// Files copied at once (gateway default 4).
    pub parallel: Option<u32>,
    /// Remove folders left empty by deletes.
    pub delete_empty_folders: Option<bool>,
    /// A plain file name written at the destination when a run finishes.
    pub trigger_file: Option<String>,
    /// Interval schedule, e.g. "2s".
    pub every: Option<String>,
    /// Cron schedule (5 fields).
    pub cron: Option<String>,
    /// Time zone of `cron`.
    pub time_zone: Option<String>,
    /// Globs a synced file must match one of.
    pub include: Vec<String>,
    /// Globs a synced file must match none of.
    pub exclude: Vec<String>,
    /// Extra raw `key = value` lines (values already TOML-encoded).
    pub extra: Vec<(String, String)>,
}

impl SyncConfig {
    /// A sync of storage folder `folder` with `remote_path` of `remote`,
    /// `direction` = `push`, `pull` or `two_way`; everything else the
    /// gateway's defaults.
    pub fn new(name: &str, folder: &str, remote: &str, remote_path: &str, direction: &str) -> Self {
        Self {
            name: name.into(),
            folder: folder.into(),
            remote: remote.into(),
            remote_path: remote_path.into(),
            direction: direction.into(),
            ..Default::default()
        }
    }

    /// Sets `after_copy` (`keep` or `delete`).
    pub fn after_copy(mut self, what: &str) -> Self {
        self.after_copy = Some(what.into());
        self
    }

    /// Sets `settle` (e.g. "0s").
    pub fn settle(mut self, d: &str) -> Self {
        self.settle = Some(d.into());
        self
    }

    /// Sets `time_limit`.
    pub fn time_limit(mut self, d: &str) -> Self {
        self.time_limit = Some(d.into());
        self
    }

    /// Sets `parallel`.
    pub fn parallel(mut self, n: u32) -> Self {
        self.parallel = Some(n);
        self
    }

    /// Sets `delete_empty_folders`.
    pub fn delete_empty_folders(mut self, yes: bool) -> Self {
        self.delete_empty_folders = Some(yes);
        self
    }

    /// Sets `trigger_file`.
    pub fn trigger_file(mut self, name: &str) -> Self {
        self.trigger_file = Some(name.into());
        self
    }

    /// Sets `every` (e.g. "2s").
    pub fn every(mut self, d: &str) -> Self {
        self.every = Some(d.into());
        self
    }

    /// Sets `cron` and, optionally, `time_zone`.
    pub fn cron(mut self, spec: &str, time_zone: Option<&str>) -> Self {
        self.cron = Some(spec.into());
        self.time_zone = time_zone.map(str::to_owned);
        self
    }

    /// Adds an `include` glob.
    pub fn include(mut self, glob: &str) -> Self {
        self.include.push(glob.into());
        self
    }

    /// Adds an `exclude` glob.
    pub fn exclude(mut self, glob: &str) -> Self {
        self.exclude.push(glob.into());
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[syncs]]\n");
        let opt = |s: &mut String, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                *s += &format!("{k} = {}\n", toml_str(v));
            }
        };
        s += &format!("name = {}\n", toml_str(&self.name));
        s += &format!("folder = {}\n", toml_str(&self.folder));
        s += &format!("remote = {}\n", toml_str(&self.remote));
        s += &format!("remote_path = {}\n", toml_str(&self.remote_path));
        s += &format!("direction = {}\n", toml_str(&self.direction));
        opt(&mut s, "after_copy", &self.after_copy);
        opt(&mut s, "settle", &self.settle);
        opt(&mut s, "time_limit", &self.time_limit);
        if let Some(n) = self.parallel {
            s += &format!("parallel = {n}\n");
        }
        if let Some(b) = self.delete_empty_folders {
            s += &format!("delete_empty_folders = {b}\n");
        }
        opt(&mut s, "trigger_file", &self.trigger_file);
        opt(&mut s, "every", &self.every);
        opt(&mut s, "cron", &self.cron);
        opt(&mut s, "time_zone", &self.time_zone);
        if !self.include.is_empty() {
            s += &format!("include = {}\n", toml_list(&self.include));
        }
        if !self.exclude.is_empty() {
            s += &format!("exclude = {}\n", toml_list(&self.exclude));
        }
        for (k, v) in &self.extra {
            s += &format!("{k} = {v}\n");
        }
        s
    }
}

/// A whole gateway config file.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `[server] listen` entries.
    pub listen: Vec<String>,
    /// `[server] storage`.
    pub storage: PathBuf,
    /// `[server] state`.
    pub state: PathBuf,
    /// `[server] log_format`.
    pub log_format: String,
    /// `[server] shutdown_grace`.
    pub shutdown_grace: String,
    /// Optional `[login]` section: (max_failures, failure_window, ban_duration).
    pub login: Option<(u32, String, String)>,
    /// Users.
    pub users: Vec<UserConfig>,
    /// `[server] dedicated_ips` (left out when `None`).
    pub dedicated_ips: Option<Vec<String>>,
    /// `[[remotes]]` entries.
    pub remotes: Vec<RemoteConfig>,
    /// `[[syncs]]` entries.
    pub syncs: Vec<SyncConfig>,
    /// The `[admin]` section (left out when `None`).
    pub admin: Option<AdminConfig>,
    /// `[metrics] listen` (left out when `None`).
    pub metrics_listen: Option<String>,
    /// `[s3] listen` (the S3 endpoint, plain HTTP on loopback), when set.
    pub s3_listen: Option<String>,
    /// Extra `key = value` lines of `[server]` (session limits, idle_timeout).
    pub server_extra: Vec<String>,
    /// Extra `key = value` lines of `[login]` (grace_time, max_unauthenticated).
    pub login_extra: Vec<String>,
}

/// One `[[admin.keys]]` entry.
#[derive(Debug, Clone)]
pub struct AdminKeyConfig {
    /// `name`.
    pub name: String,
    /// `hash`: `sha256:<64 hex>`.
    pub hash: String,
    /// `expires` (RFC 3339), if any.
    pub expires: Option<String>,
}

impl AdminKeyConfig {
    /// An entry for the key `key` (its SHA-256 computed here).
    pub fn for_key(name: &str, key: &str, expires: Option<&str>) -> Self {
        Self {
            name: name.into(),
            hash: format!("sha256:{}", sha256_hex(key.as_bytes())),
            expires: expires.map(str::to_string),
        }
    }
}

/// The `[admin]` section: the admin API's address and keys.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// `listen`, e.g. `127.0.0.1:0`.
    pub listen: String,
    /// `[[admin.keys]]`.
    pub keys: Vec<AdminKeyConfig>,
}

impl AdminConfig {
    /// The TOML text of the section.
    pub fn to_toml(&self) -> String {
        let mut s = format!("[admin]\nlisten = {}\n", toml_str(&self.listen));
        for k in &self.keys {
            s += &format!(
                "\n[[admin.keys]]\nname = {}\nhash = {}\n",
                toml_str(&k.name),
                toml_str(&k.hash)
            );
            if let Some(e) = &k.expires {
                s += &format!("expires = {}\n", toml_str(e));
            }
        }
        s
    }
}

/// SHA-256 of `data` in lower-case hex, by `sha256sum` (coreutils).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning sha256sum");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(hex.len(), 64, "sha256sum printed {text:?}");
    hex
}

impl GatewayConfig {
    /// A config listening on 127.0.0.1:0 with the given storage and state dirs.
    pub fn new(storage: &Path, state: &Path) -> Self {
        Self {
            listen: vec!["127.0.0.1:0".into()],
            storage: storage.into(),
            state: state.into(),
            log_format: "text".into(),
            shutdown_grace: "10s".into(),
            login: None,
            users: vec![],
            dedicated_ips: None,
            remotes: vec![],
            syncs: vec![],
            admin: None,
            metrics_listen: None,
            s3_listen: None,
            server_extra: vec![],
            login_extra: vec![],
        }
    }

    /// Turns the admin API on at `listen` with `keys`.
    pub fn admin(mut self, listen: &str, keys: Vec<AdminKeyConfig>) -> Self {
        self.admin = Some(AdminConfig {
            listen: listen.into(),
            keys,
        });
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[server]\n");
        s += &format!("listen = {}\n", toml_list(&self.listen));
        s += &format!(
            "storage = {}\n",
            toml_str(&self.storage.display().to_string())
        );
        s += &format!("state = {}\n", toml_str(&self.state.display().to_string()));
        s += &format!("log_format = {}\n", toml_str(&self.log_format));
        s += &format!("shutdown_grace = {}\n", toml_str(&self.shutdown_grace));
        if let Some(ips) = &self.dedicated_ips {
            s += &format!("dedicated_ips = {}\n", toml_list(ips));
        }
        for line in &self.server_extra {
            s += line;
            s += "\n";
        }
        if let Some((max, window, ban)) = &self.login {
            s += &format!(
                "\n[login]\nmax_failures = {max}\nfailure_window = {}\nban_duration = {}\n",
                toml_str(window),
                toml_str(ban)
            );
        } else if !self.login_extra.is_empty() {
            s += "\n[login]\n";
        }
        for line in &self.login_extra {
            s += line;
            s += "\n";
        }
        if let Some(listen) = &self.metrics_listen {
            s += &format!("\n[metrics]\nlisten = {}\n", toml_str(listen));
        }
        if let Some(listen) = &self.s3_listen {
            s += &format!("\n[s3]\nlisten = {}\n", toml_str(listen));
        }
        if let Some(admin) = &self.admin {
            s += "\n";
            s += &admin.to_toml();
        }
        for r in &self.remotes {
            s += "\n";
            s += &r.to_toml();
        }
        for u in &self.users {
            s += "\n";
            s += &u.to_toml();
        }
        for y in &self.syncs {
            s += "\n";
            s += &y.to_toml();
        }
        s
    }

    /// Writes the TOML to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        fs::write(path, self.to_toml()).with_context(|| format!("writing {}", path.display()))
    }
}

// ---------------------------------------------------------------------------
// Keys, passwords, files
// ---------------------------------------------------------------------------

/// Runs `gateway user hash-password` with `password` on stdin; returns the hash.
pub fn hash_password(password: &str) -> Result<String> {
    let mut cmd = GatewayCommand {
        args: vec!["user".into(), "hash-password".into()],
        ..Default::default()
    }
    .command()?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawning gateway user hash-password")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "gateway user hash-password failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let hash = String::from_utf8(out.stdout)?.trim().to_string();
    if hash.is_empty() {
        bail!("gateway user hash-password printed nothing");
    }
    Ok(hash)
}

fn ssh_keygen(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(args);
    let out = run_with_timeout(cmd, Duration::from_secs(60))?;
    if !out.success() {
        bail!("ssh-keygen failed:\n{out}");
    }
    Ok(())
}

/// Pre-creates the gateway's host keys under `<state>/host_keys/` (saves the
/// RSA-4096 generation time in tests that do not test first start).
pub fn pregenerate_host_keys(state: &Path) -> Result<()> {
    let dir = state.join("host_keys");
    fs::create_dir_all(&dir)?;
    let ed = dir.join("ssh_host_ed25519_key");
    let rsa = dir.join("ssh_host_rsa_key");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "e2e-host",
        "-f",
        ed.to_str().unwrap(),
    ])?;
    ssh_keygen(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-N",
        "",
        "-C",
        "e2e-host",
        "-f",
        rsa.to_str().unwrap(),
    ])?;
    Ok(())
}

/// Generates an ed25519 client key at `path`; returns its public key line.
pub fn client_key(path: &Path) -> Result<String> {
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "e2e-client",
        "-f",
        path.to_str().unwrap(),
    ])?;
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    Ok(fs::read_to_string(&pub_path)?.trim().to_string())
}

/// Writes `len` random bytes (from /dev/urandom) to `path`.
pub fn write_random_file(path: &Path, len: usize) -> Result<()> {
    let mut src = fs::File::open("/dev/urandom")?;
    let mut dst = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        src.read_exact(&mut buf[..n])?;
        dst.write_all(&buf[..n])?;
        left -= n;
    }
    dst.sync_all()?;
    Ok(())
}

/// Panics with a clear message unless both files exist and hold the same bytes.
#[track_caller]
pub fn assert_same_file(expected: &Path, actual: &Path) {
    let a = fs::read(expected)
        .unwrap_or_else(|e| panic!("cannot read expected file {}: {e}", expected.display()));
    let b = fs::read(actual).unwrap_or_else(|e| {
        panic!(
            "cannot read file {} (expected a copy of {}): {e}",
            actual.display(),
            expected.display()
        )
    });
    if a != b {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{} differs from {}: sizes {} vs {}, first difference at byte {first}",
            actual.display(),
            expected.display(),
            b.len(),
            a.len()
        );
    }
}

/// Like [`assert_same_file`] but compares 1 MiB at a time (for files of
/// hundreds of MiB).
#[track_caller]
pub fn assert_same_large_file(expected: &Path, actual: &Path) {
    let open =
        |p: &Path| fs::File::open(p).unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()));
    let (la, lb) = (
        fs::metadata(expected).map(|m| m.len()).unwrap_or(0),
        fs::metadata(actual)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot stat {} (expected a copy of {}): {e}",
                    actual.display(),
                    expected.display()
                )
            })
            .len(),
    );
    assert_eq!(
        lb,
        la,
        "{} has {lb} bytes, expected {la} like {}",
        actual.display(),
        expected.display()
    );
    let (mut a, mut b) = (open(expected), open(actual));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = a.read(&mut ba).expect("read expected");
        if n == 0 {
            break;
        }
        b.read_exact(&mut bb[..n]).expect("read actual");
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!(
                "{} differs from {}: first difference at byte {}",
                actual.display(),
                expected.display(),
                offset + i as u64
            );
        }
        offset += n as u64;
    }
}

/// Every path under `root` (relative) with its size (`None` for folders):
/// used to prove that nothing on disk changed.
pub fn tree_snapshot(root: &Path) -> Result<BTreeMap<PathBuf, Option<u64>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<u64>>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let md = fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.to_path_buf();
            if md.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out)?;
            } else {
                out.insert(rel, Some(md.len()));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Test environment and clients
// ---------------------------------------------------------------------------

static BATCH_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's private directory: `data/` (storage), `state/`, `known_hosts`, scratch files.
pub struct TestEnv {
    /// The temp dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// Gateway storage root.
    pub data: PathBuf,
    /// Gateway state dir.
    pub state: PathBuf,
    /// Client known_hosts file.
    pub known_hosts: PathBuf,
}

impl TestEnv {
    /// Creates the directories (without host keys).
    pub fn bare() -> Result<TestEnv> {
        let dir = tempfile::Builder::new().prefix("gw-e2e-").tempdir()?;
        let data = dir.path().join("data");
        let state = dir.path().join("state");
        let known_hosts = dir.path().join("known_hosts");
        Ok(TestEnv {
            dir,
            data,
            state,
            known_hosts,
        })
    }

    /// Creates the directories and pre-generates host keys in `state/`.
    pub fn new() -> Result<TestEnv> {
        let env = Self::bare()?;
        fs::create_dir_all(&env.data)?;
        pregenerate_host_keys(&env.state)?;
        Ok(env)
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A config pointing at this env's storage and state.
    pub fn config(&self) -> GatewayConfig {
        GatewayConfig::new(&self.data, &self.state)
    }

    /// Writes `config` to `<dir>/config.toml` and starts `gateway serve --config` on it.
    pub fn start(&self, config: &GatewayConfig) -> Result<Gateway> {
        let path = self.path("config.toml");
        config.write(&path)?;
        Gateway::start(&GatewayCommand::serve_config(&path))
    }

    /// A client for `user` on `gw`'s port using this env's known_hosts.
    pub fn client(&self, gw: &Gateway, user: &str, auth: Auth) -> Client {
        Client::new(gw.port(), user, auth, &self.known_hosts)
    }
}

/// How a client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Password through sshpass (public-key auth disabled).
    Password(String),
    /// Private key file (password auth disabled).
    Key(PathBuf),
}

/// An OpenSSH client invocation template (`sftp` or `scp`).
#[derive(Debug, Clone)]
pub struct Client {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Authentication.
    pub auth: Auth,
    /// known_hosts file.
    pub known_hosts: PathBuf,
    /// `StrictHostKeyChecking=yes` instead of `accept-new`.
    pub strict: bool,
    /// Extra `-o` options / flags placed before the destination.
    pub extra: Vec<String>,
    /// Time limit per run.
    pub timeout: Duration,
}

impl Client {
    /// A client for `user@127.0.0.1:port`.
    pub fn new(port: u16, user: &str, auth: Auth, known_hosts: &Path) -> Client {
        Client {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            auth,
            known_hosts: known_hosts.into(),
            strict: false,
            extra: vec![],
            timeout: CLIENT_TIMEOUT,
        }
    }

    /// Adds `-o OPTION`.
    pub fn option(mut self, opt: &str) -> Client {
        self.extra.push("-o".into());
        self.extra.push(opt.into());
        self
    }

    /// Connects from `addr` (`-o BindAddress=`).
    pub fn bind(self, addr: &str) -> Client {
        self.option(&format!("BindAddress={addr}"))
    }

    fn base_command(&self, program: &str) -> (Command, String) {
        let (mut cmd, shown) = match &self.auth {
            Auth::Password(pw) => {
                let mut c = Command::new("sshpass");
                c.env("SSHPASS", pw).arg("-e").arg(program);
                (c, format!("sshpass -e {program}"))
            }
            Auth::Key(_) => (Command::new(program), program.to_string()),
        };
        cmd.args(["-F", "/dev/null"]);
        if let Auth::Password(_) = &self.auth {
            // Must come before -b: `sftp -b` forces BatchMode=yes otherwise.
            cmd.args(["-o", "BatchMode=no"]);
        }
        (cmd, shown)
    }

    fn common_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-P".into(), self.port.to_string()];
        let o = |a: &mut Vec<String>, s: String| {
            a.push("-o".into());
            a.push(s);
        };
        o(
            &mut a,
            format!(
                "StrictHostKeyChecking={}",
                if self.strict { "yes" } else { "accept-new" }
            ),
        );
        o(
            &mut a,
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
        );
        o(&mut a, "GlobalKnownHostsFile=/dev/null".into());
        o(&mut a, "ConnectTimeout=30".into());
        match &self.auth {
            Auth::Password(_) => {
                o(&mut a, "PubkeyAuthentication=no".into());
                o(&mut a, "PreferredAuthentications=password".into());
                o(&mut a, "NumberOfPasswordPrompts=1".into());
            }
            Auth::Key(k) => {
                a.push("-i".into());
                a.push(k.display().to_string());
                o(&mut a, "IdentitiesOnly=yes".into());
                o(&mut a, "PasswordAuthentication=no".into());
                o(&mut a, "KbdInteractiveAuthentication=no".into());
                o(&mut a, "BatchMode=yes".into());
            }
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// Runs `sftp -b <batch>` with `batch` as the batch file's text.
    pub fn sftp(&self, batch: &str) -> Result<CmdOutput> {
        let n = BATCH_COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = self.known_hosts.parent().unwrap_or(Path::new("/tmp"));
        let batch_path = dir.join(format!("batch-{}-{n}.txt", std::process::id()));
        fs::write(&batch_path, batch)?;
        let (mut cmd, shown) = self.base_command("sftp");
        cmd.arg("-b").arg(&batch_path);
        let args = self.common_args();
        cmd.args(&args).arg(self.destination());
        let mut out = run_with_timeout(cmd, self.timeout)?;
        out.command = format!(
            "{shown} -b {} {} {}\n--- batch ---\n{}",
            batch_path.display(),
            args.join(" "),
            self.destination(),
            batch.trim_end()
        );
        Ok(out)
    }

    /// `sftp` with this client's options and destination and `-b -`: the
    /// batch comes from standard input (see [`ops::HeldSession`]).
    pub fn sftp_stdin_command(&self) -> Command {
        let (mut cmd, _) = self.base_command("sftp");
        cmd.args(["-b", "-"]);
        cmd.args(self.common_args()).arg(self.destination());
        cmd
    }

    /// Runs `scp <common options> FROM TO`; use [`Client::remote`] to name remote paths.
    pub fn scp(&self, from: &str, to: &str) -> Result<CmdOutput> {
        let (mut cmd, shown) = self.base_command("scp");
        let args = self.common_args();
        cmd.args(&args).arg(from).arg(to);
        let mut out = run_with_timeout(cmd, self.timeout)?;
        out.command = format!("{shown} {} {from} {to}", args.join(" "));
        Ok(out)
    }

    /// `user@host:path` for scp.
    pub fn remote(&self, path: &str) -> String {
        format!("{}:{}", self.destination(), path)
    }
}

/// Panics with the command's full output unless it exited 0.
#[track_caller]
pub fn assert_ok(out: &CmdOutput, what: &str) {
    assert!(out.success(), "{what}: expected success\n{out}");
}

/// Panics with the command's full output unless it exited non-zero.
#[track_caller]
pub fn assert_failed(out: &CmdOutput, what: &str) {
    assert!(
        !out.success(),
        "{what}: expected a failure (non-zero exit)\n{out}"
    );
}

/// Panics unless `out`'s combined text contains `needle`.
#[track_caller]
pub fn assert_output_contains(out: &CmdOutput, needle: &str, what: &str) {
    assert!(
        out.text().contains(needle),
        "{what}: expected {needle:?} in the client's output\n{out}"
    );
}

/// Shorthand for a path's display string (for building batch files).
pub fn p(path: &Path) -> String {
    let s = path.display().to_string();
    assert!(
        !s.contains(char::is_whitespace) && !s.contains('"'),
        "test path must not contain spaces or quotes: {s}"
    );
    s
}
