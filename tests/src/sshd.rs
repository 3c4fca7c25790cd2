//! A real OpenSSH `sshd` as the remote SFTP server of the gateway's mounts.
//!
//! Every [`Sshd`] runs its own `/usr/sbin/sshd -D` on a free loopback port
//! with its own temp dir (config, ed25519 host key, authorized_keys, log and
//! the remote folders of the test). It lets the shared system account
//! [`TEST_USER`] (created by `scripts/test.sh`) log in with [`TEST_PASSWORD`]
//! or with any key given to [`Sshd::authorize_key`], and serves SFTP with
//! `internal-sftp`. Dropping it kills the server and every session process.

pub use crate::peers::{ConnectionSampler, SamplerReport};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use backends::dial::SourceAddresses;
use backends::sftp::{HostKeyPolicy, SftpSettings};
use backends::{BackendError, ErrorKind};
use russh::keys::PublicKey;

use crate::direct::pool_settings;
use crate::peers::server_processes;
use crate::{run_with_timeout, toml_str, CmdOutput, GatewayCommand};

/// The system account the tests' sshd lets in (created by `scripts/test.sh`).
pub const TEST_USER: &str = "gwtest";

/// [`TEST_USER`]'s password (set by `scripts/test.sh`).
pub const TEST_PASSWORD: &str = "gwtest-Pass-123";

/// Absolute path of the server binary (sshd re-execs itself: a relative path fails).
pub const SSHD_BIN: &str = "/usr/sbin/sshd";

/// How long to wait for a freshly started sshd to accept TCP connections.
pub const SSHD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// uid and gid of [`TEST_USER`], or an error telling how to create it.
pub fn test_user_ids() -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == TEST_USER {
            let uid = f[2].parse().context("uid in /etc/passwd")?;
            let gid = f[3].parse().context("gid in /etc/passwd")?;
            return Ok((uid, gid));
        }
    }
    bail!(
        "the system user `{TEST_USER}` that the remote-SFTP tests log in as does not exist; \
         run `scripts/test.sh` (as root) once, which creates it with its password \
         (useradd --system --create-home --home-dir /var/lib/{TEST_USER} --shell /bin/bash \
         --user-group {TEST_USER}; chpasswd)"
    )
}

/// `chown uid:gid path` (not following symlinks).
pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))
}

/// Makes `path` and everything under it owned by [`TEST_USER`].
pub fn chown_to_test_user(path: &Path) -> Result<()> {
    let (uid, gid) = test_user_ids()?;
    fn walk(p: &Path, uid: u32, gid: u32) -> Result<()> {
        chown(p, uid, gid)?;
        if fs::symlink_metadata(p)?.is_dir() {
            for e in fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(path, uid, gid)
}

/// Options for [`Sshd::start`].
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// `PasswordAuthentication` (default yes).
    pub password_auth: bool,
    /// `PubkeyAuthentication` (default yes).
    pub pubkey_auth: bool,
    /// `MaxStartups` (default `200:30:300`).
    pub max_startups: String,
    /// `MaxSessions` (default 50).
    pub max_sessions: u32,
    /// `LogLevel` (default VERBOSE: one `Connection from` line per connection).
    pub log_level: String,
    /// Extra config lines appended as they are.
    pub extra_config: Vec<String>,
    /// `UsePAM` (default no).
    pub use_pam: bool,
    /// `KbdInteractiveAuthentication` (default no; with `use_pam`, PAM
    /// asks for the password through it).
    pub kbd_interactive: bool,
    /// An RSA host key instead of ed25519 (for `HostKeyAlgorithms ssh-rsa`).
    pub rsa_host_key: bool,
    /// Every SFTP request the server receives written to
    /// [`Sshd::sftp_request_log`]: the subsystem is then OpenSSH's own
    /// `sftp-server -e -l DEBUG` with its stderr sent to a file
    /// (`internal-sftp` logs only to syslog). Default off.
    pub sftp_request_log: bool,
    /// `internal-sftp -P LIST`: SFTP requests the server refuses (e.g.
    /// `rename,posix-rename` as `sftp-server -Q requests` names them, as managed file-transfer servers
    /// that forbid renames do).
    pub sftp_denied_requests: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            password_auth: true,
            pubkey_auth: true,
            max_startups: "200:30:300".into(),
            max_sessions: 50,
            log_level: "VERBOSE".into(),
            extra_config: vec![],
            use_pam: false,
            kbd_interactive: false,
            rsa_host_key: false,
            sftp_request_log: false,
            sftp_denied_requests: None,
        }
    }
}

/// A running OpenSSH server on 127.0.0.1 (see the module docs).
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    opts: SshdOptions,
    child: Option<Child>,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Sshd {
    /// Starts a server with a new temp dir, a new ed25519 host key and a free port.
    pub fn start(opts: SshdOptions) -> Result<Sshd> {
        test_user_ids()?;
        if !Path::new(SSHD_BIN).is_file() {
            bail!("{SSHD_BIN} not found: install openssh-server (scripts/test.sh does)");
        }
        fs::create_dir_all("/run/sshd").context("mkdir -p /run/sshd")?;
        let dir = tempfile::Builder::new().prefix("gw-e2e-sshd-").tempdir()?;
        // sshd reads authorized_keys as the user: the dir must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        fs::create_dir_all(dir.path().join("remote"))?;
        fs::set_permissions(dir.path().join("remote"), fs::Permissions::from_mode(0o755))?;
        let ak = dir.path().join("authorized_keys");
        fs::write(&ak, "")?;
        fs::set_permissions(&ak, fs::Permissions::from_mode(0o644))?;
        let mut sshd = Sshd {
            dir,
            port: 0,
            opts,
            child: None,
        };
        sshd.new_host_key()?;
        let mut last_err = None;
        for _attempt in 0..10 {
            sshd.port = free_port()?;
            match sshd.spawn() {
                Ok(()) => return Ok(sshd),
                Err(e) => {
                    let text = format!("{e:#}");
                    if text.contains("Address already in use") || text.contains("Cannot bind") {
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("sshd: no free port found")))
    }

    /// [`Sshd::start`] with the default options.
    pub fn start_default() -> Result<Sshd> {
        Self::start(SshdOptions::default())
    }

    /// The temp dir of this server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port it listens on (kept across [`Sshd::stop`] / [`Sshd::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private host key file.
    pub fn host_key_path(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ed25519_key")
    }

    /// The public host key file.
    pub fn host_key_pub_path(&self) -> PathBuf {
        self.dir.path().join("ssh_host_ed25519_key.pub")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// Where [`SshdOptions::sftp_request_log`] writes.
    pub fn sftp_request_log_path(&self) -> PathBuf {
        self.dir.path().join("sftp-requests.log")
    }

    /// The SFTP requests logged so far ([`SshdOptions::sftp_request_log`]):
    /// lines like `request 5: read "/path" (handle 0) off 0 len 261120`.
    pub fn sftp_request_log(&self) -> String {
        fs::read_to_string(self.sftp_request_log_path()).unwrap_or_default()
    }

    /// The log file (`sshd -E`), appended to by every run of this server.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("sshd.stderr")
    }

    fn new_host_key(&self) -> Result<()> {
        let key = self.host_key_path();
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(self.host_key_pub_path());
        let mut cmd = Command::new("ssh-keygen");
        let kind = if self.opts.rsa_host_key {
            "rsa"
        } else {
            "ed25519"
        };
        cmd.args(["-q", "-t", kind, "-N", "", "-C", "e2e-remote-host", "-f"])
            .arg(&key);
        let out = run_with_timeout(cmd, Duration::from_secs(30))?;
        if !out.success() {
            bail!("ssh-keygen for the sshd host key failed:\n{out}");
        }
        Ok(())
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path();
        let o = &self.opts;
        let mut c = String::new();
        c += &format!("Port {}\n", self.port);
        c += "ListenAddress 127.0.0.1\n";
        c += &format!("HostKey {}\n", self.host_key_path().display());
        c += &format!("PidFile {}\n", d.join("sshd.pid").display());
        c += &format!("UsePAM {}\n", yes_no(o.use_pam));
        c += &format!("PasswordAuthentication {}\n", yes_no(o.password_auth));
        c += &format!(
            "KbdInteractiveAuthentication {}\n",
            yes_no(o.kbd_interactive)
        );
        c += &format!("PubkeyAuthentication {}\n", yes_no(o.pubkey_auth));
        c += &format!(
            "AuthorizedKeysFile {}\n",
            d.join("authorized_keys").display()
        );
        c += "StrictModes no\n";
        c += &format!("AllowUsers {TEST_USER}\n");
        c += &format!("MaxStartups {}\n", o.max_startups);
        c += &format!("MaxSessions {}\n", o.max_sessions);
        c += "MaxAuthTries 20\n";
        c += &format!("LogLevel {}\n", o.log_level);
        c += "UseDNS no\n";
        if o.sftp_request_log {
            let log = self.sftp_request_log_path();
            fs::write(&log, "")?;
            chown_to_test_user(&log)?;
            c += "Subsystem sftp /usr/lib/openssh/sftp-server -e -l DEBUG";
        } else {
            c += "Subsystem sftp internal-sftp";
        }
        if let Some(denied) = &o.sftp_denied_requests {
            c += &format!(" -P {denied}");
        }
        if o.sftp_request_log {
            // Run through the user's shell, which appends the log.
            c += &format!(" 2>>{}", self.sftp_request_log_path().display());
        }
        c += "\n";
        for l in &o.extra_config {
            c += l;
            c += "\n";
        }
        fs::write(self.config_path(), c)?;
        Ok(())
    }

    /// Writes the config, checks it with `sshd -t`, starts `sshd -D` and waits
    /// until it listens on the port (checked with `ss`, without connecting).
    fn spawn(&mut self) -> Result<()> {
        self.write_config()?;
        let cfg = self.config_path();
        let mut t = Command::new(SSHD_BIN);
        t.arg("-t").arg("-f").arg(&cfg);
        let out = run_with_timeout(t, Duration::from_secs(20))?;
        if !out.success() {
            bail!(
                "`sshd -t` rejected the config:\n{out}\n--- config ---\n{}",
                fs::read_to_string(&cfg).unwrap_or_default()
            );
        }
        let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        let mut cmd = Command::new(SSHD_BIN);
        cmd.arg("-D")
            .arg("-f")
            .arg(&cfg)
            .arg("-E")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let mut child = cmd.spawn().context("spawning /usr/sbin/sshd")?;
        let deadline = Instant::now() + SSHD_START_TIMEOUT;
        loop {
            if let Some(st) = child.try_wait()? {
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                let new_log = log.get(log_start as usize..).unwrap_or(&log);
                bail!(
                    "sshd exited with {st} before accepting connections on port {}\n--- log ---\n{new_log}\n--- stderr ---\n{}",
                    self.port,
                    fs::read_to_string(self.stderr_path()).unwrap_or_default()
                );
            }
            // Not a TCP connect: sshd would log it as a connection from 127.0.0.1.
            if listening_on_port(self.port)? {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "sshd did not accept TCP on port {} within {SSHD_START_TIMEOUT:?}\n{}",
                    self.port,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server and every session process it started (like a crash:
    /// open connections are cut). The port and host key are kept.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("sshd on port {} is not running", self.port);
        };
        let pid = child.id();
        // Stop the listener first so that no new session starts, then the sessions.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        let mut sessions = BTreeSet::new();
        let mut quiet_rounds = 0;
        for _ in 0..50 {
            let procs = server_processes(pid, &mut sessions);
            for &d in &procs {
                // SAFETY: kill(2) on a process this server started.
                unsafe { libc::kill(d as libc::pid_t, libc::SIGKILL) };
            }
            quiet_rounds = if procs.is_empty() {
                quiet_rounds + 1
            } else {
                0
            };
            if quiet_rounds >= 2 {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        // Wait until nothing listens on the port and no connection is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while listening_on_port(self.port)? || self.established_connections()? > 0 {
            if Instant::now() > deadline {
                let ss = Command::new("ss")
                    .args(["-tnp", "state", "established"])
                    .arg(format!("( sport = :{} )", self.port))
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                bail!(
                    "port {} still listens or has established connections 5 s after killing sshd:\n{ss}",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the server again after [`Sshd::stop`]: same port, same host key.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("sshd on port {} is already running", self.port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may still be held briefly by the old listener.
                Err(e)
                    if Instant::now() < deadline
                        && format!("{e:#}").contains("Address already in use") =>
                {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the server, replaces its ed25519 host key and starts it again on the same port.
    pub fn restart_with_new_host_key(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.new_host_key()?;
        self.start_again()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// The host key's public line (`ssh-ed25519 AAAA... comment`).
    pub fn host_key_line(&self) -> String {
        fs::read_to_string(self.host_key_pub_path())
            .expect("sshd host key .pub")
            .trim()
            .to_string()
    }

    /// The host key's public line without its comment (`ssh-ed25519 AAAA...`).
    pub fn host_key_type_and_blob(&self) -> String {
        let line = self.host_key_line();
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The host key as a known_hosts line: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[127.0.0.1]:{} {}",
            self.port,
            self.host_key_type_and_blob()
        )
    }

    /// The host key's SHA-256 fingerprint as `ssh-keygen -lf` prints it (`SHA256:...`).
    pub fn host_key_fingerprint(&self) -> String {
        fingerprint(&self.host_key_pub_path()).expect("host key fingerprint")
    }

    /// Appends a public key line to this server's authorized_keys file.
    pub fn authorize_key(&self, pub_line: &str) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))?;
        writeln!(f, "{}", pub_line.trim())?;
        Ok(())
    }

    /// The whole log of every run of this server.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.log_path()).unwrap_or_default();
        let err = fs::read_to_string(self.stderr_path()).unwrap_or_default();
        if !err.trim().is_empty() {
            s += "\n--- sshd stderr ---\n";
            s += &err;
        }
        s
    }

    /// The log as lines.
    pub fn log_lines(&self) -> Vec<String> {
        self.log().lines().map(str::to_owned).collect()
    }

    /// Number of `Connection from` lines in the log (one per TCP connection accepted).
    pub fn connection_count(&self) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.contains("Connection from "))
            .count()
    }

    /// Number of `Accepted <method> for` lines (successful authentications).
    pub fn accepted_count(&self) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.contains("Accepted ") && l.contains(" for "))
            .count()
    }

    /// Source addresses of every connection in the log (`Connection from X port P`
    /// and `Accepted ... from X port P`).
    pub fn connection_sources(&self) -> BTreeSet<String> {
        let re = regex::Regex::new(
            r"(?:Connection from|Accepted \S+ for \S+ from) ([0-9a-fA-F.:]+) port \d+",
        )
        .expect("regex");
        self.log_lines()
            .iter()
            .filter_map(|l| re.captures(l).map(|c| c[1].to_string()))
            .collect()
    }

    /// The number of established TCP connections to this server's port right now
    /// (`ss -Htn state established '( sport = :PORT )'`).
    pub fn established_connections(&self) -> Result<usize> {
        established_on_port(self.port)
    }

    /// Starts sampling [`Sshd::established_connections`] every 20 ms.
    pub fn sampler(&self) -> ConnectionSampler {
        ConnectionSampler::start(self.port..=self.port)
    }

    /// A fresh, empty folder `<tempdir>/remote/<name>` owned by [`TEST_USER`]
    /// (mode 755), to serve as a test's remote root; removed with this server.
    pub fn remote_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.dir.path().join("remote").join(name);
        if d.exists() {
            fs::remove_dir_all(&d)?;
        }
        fs::create_dir_all(&d)?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        chown_to_test_user(&d)?;
        Ok(d)
    }

    /// A `[[remotes]]` entry for this server: sftp, 127.0.0.1:port, user
    /// [`TEST_USER`] with [`TEST_PASSWORD`], no root.
    pub fn remote_config(&self, name: &str) -> crate::RemoteConfig {
        crate::RemoteConfig::sftp(name, "127.0.0.1", self.port, TEST_USER).password(TEST_PASSWORD)
    }

    /// Settings for an [`SftpBackend`](backends::sftp::SftpBackend) built
    /// directly (no gateway) on this server: remote `name`, [`TEST_USER`]
    /// with [`TEST_PASSWORD`], folder `root` on the server, the system's
    /// source addresses, 20 s to connect, a pool of at most 2 connections,
    /// and only this server's host key accepted ([`ExactKey`]).
    pub fn backend_settings(&self, name: &str, root: &str) -> SftpSettings {
        let host_key =
            PublicKey::from_openssh(self.host_key_line().trim()).expect("sshd's host key line");
        SftpSettings {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: self.port,
            username: TEST_USER.into(),
            password: Some(TEST_PASSWORD.into()),
            private_key: None,
            root: root.into(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(20),
            io_timeout: Duration::from_secs(30),
            host_keys: std::sync::Arc::new(ExactKey(host_key)),
            pool: pool_settings(2),
            ssh: Default::default(),
            atomic_uploads: true,
        }
    }

    /// The log, config and stderr for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "sshd on 127.0.0.1:{} ({})\n--- sshd log ---\n{}\n----------------",
            self.port,
            self.dir.path().display(),
            self.log()
        )
    }
}

/// A host-key policy for a backend built directly (no gateway) that
/// accepts exactly the key the test's sshd was started with.
#[derive(Debug)]
pub struct ExactKey(pub PublicKey);

impl HostKeyPolicy for ExactKey {
    fn check_enabled(&self) -> backends::Result<()> {
        Ok(())
    }
    fn verify(&self, presented: &PublicKey) -> backends::Result<()> {
        if presented.key_data() == self.0.key_data() {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "connect",
                "",
                "unexpected host key",
            ))
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The `SHA256:...` fingerprint `ssh-keygen -lf FILE` prints for a public (or private) key file.
pub fn fingerprint(key_file: &Path) -> Result<String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-lf").arg(key_file);
    let out = run_with_timeout(cmd, Duration::from_secs(30))?;
    if !out.success() {
        bail!("ssh-keygen -lf failed:\n{out}");
    }
    out.stdout
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no SHA256: fingerprint in ssh-keygen -lf output:\n{out}"))
}

/// The sockets `ss -Ht<flags> ... '( sport = :PORT )'` lists, one per line.
fn ss_sockets(flags: &[&str], port: u16) -> Result<usize> {
    let out = Command::new("ss")
        .args(flags)
        .arg(format!("( sport = :{port} )"))
        .stdin(Stdio::null())
        .output()
        .context("running ss (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ss failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// Established TCP connections whose local port is `port` (`ss -Htn state established`).
pub fn established_on_port(port: u16) -> Result<usize> {
    ss_sockets(&["-Htn", "state", "established"], port)
}

/// True when a TCP socket listens on `port` (`ss -Htln '( sport = :PORT )'`):
/// checks readiness without connecting (sshd would log a connect as a connection).
pub fn listening_on_port(port: u16) -> Result<bool> {
    Ok(ss_sockets(&["-Htln"], port)? > 0)
}

// ---------------------------------------------------------------------------
// Gateway CLI helpers for the remote features
// ---------------------------------------------------------------------------

/// Runs `gateway ARGS...` with a time limit (stdin closed).
pub fn gateway_run(args: &[&str], timeout: Duration) -> Result<CmdOutput> {
    let spec = GatewayCommand {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    run_with_timeout(spec.command()?, timeout)
}

/// `gateway remote test NAME --config CONFIG` (60 s limit).
pub fn remote_test(config: &Path, name: &str) -> Result<CmdOutput> {
    let c = config.display().to_string();
    gateway_run(
        &["remote", "test", name, "--config", &c],
        Duration::from_secs(60),
    )
}

/// `gateway remote list --config CONFIG` (30 s limit).
pub fn remote_list(config: &Path) -> Result<CmdOutput> {
    let c = config.display().to_string();
    gateway_run(&["remote", "list", "--config", &c], Duration::from_secs(30))
}

/// `gateway remote trust NAME --config CONFIG` (60 s limit).
pub fn remote_trust(config: &Path, name: &str) -> Result<CmdOutput> {
    let c = config.display().to_string();
    gateway_run(
        &["remote", "trust", name, "--config", &c],
        Duration::from_secs(60),
    )
}

/// The line of `remote list` output naming remote `name` (first word equal to it,
/// else any word equal to it).
pub fn remote_list_line(out: &CmdOutput, name: &str) -> Option<String> {
    let lines: Vec<&str> = out.stdout.lines().collect();
    lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name))
        .or_else(|| {
            lines.iter().find(|l| {
                l.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
                    .any(|w| w == name)
            })
        })
        .map(|l| l.to_string())
}

/// Generates a key with `ssh-keygen -t TYPE [-b BITS] [-m FORMAT] -N PASSPHRASE -f PATH`;
/// returns the public key line.
pub fn ssh_keygen_key(
    path: &Path,
    key_type: &str,
    bits: Option<u32>,
    format: Option<&str>,
    passphrase: &str,
) -> Result<String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        key_type,
        "-N",
        passphrase,
        "-C",
        "e2e-remote-client",
    ]);
    if let Some(b) = bits {
        cmd.arg("-b").arg(b.to_string());
    }
    if let Some(m) = format {
        cmd.arg("-m").arg(m);
    }
    cmd.arg("-f").arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(60))?;
    if !out.success() {
        bail!("ssh-keygen failed:\n{out}");
    }
    Ok(fs::read_to_string(format!("{}.pub", path.display()))?
        .trim()
        .to_string())
}

/// `toml_str` of a path.
pub fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

// ---------------------------------------------------------------------------
// One gateway user with one folder mounted on one sshd
// ---------------------------------------------------------------------------

/// Name of the remote in [`MountSetup`]'s config.
pub const REMOTE: &str = "partner";

/// Folder of alice's tree mounted on the remote in [`MountSetup`].
pub const MOUNT: &str = "/partner";

/// A test's gateway (user `alice`, key auth, `/partner` mounted on remote
/// `partner`) in front of its own [`Sshd`] whose remote root is `root`.
/// Tweak `cfg` (e.g. `cfg.remotes[0]`, `cfg.dedicated_ips`) before
/// [`crate::mount::MountedGateway::start_gateway`].
pub struct MountSetup {
    /// The gateway half (alice, her key, the config); its fields and
    /// methods are reached through `Deref`. First, so it stops first.
    pub mount: crate::mount::MountedGateway,
    /// The remote server.
    pub sshd: Sshd,
    /// The remote root folder on disk (owned by [`TEST_USER`]).
    pub root: PathBuf,
}

impl MountSetup {
    /// sshd started, config prepared, gateway NOT started.
    pub fn new() -> Result<MountSetup> {
        let sshd = Sshd::start_default()?;
        let root = sshd.remote_dir("root")?;
        let mount =
            crate::mount::MountedGateway::new(sshd.remote_config(REMOTE).root(&root), MOUNT)?;
        Ok(MountSetup { mount, sshd, root })
    }

    /// The gateway's and sshd's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.mount.logs_with(&self.sshd.logs())
    }
}

impl std::ops::Deref for MountSetup {
    type Target = crate::mount::MountedGateway;
    fn deref(&self) -> &Self::Target {
        &self.mount
    }
}

impl std::ops::DerefMut for MountSetup {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.mount
    }
}

/// Runs every (client, batch) with `sftp -b` at the same moment (one thread
/// each, released together); returns the outputs in order.
pub fn sftp_in_parallel(jobs: Vec<(crate::Client, String)>) -> Vec<Result<CmdOutput>> {
    let barrier = std::sync::Barrier::new(jobs.len());
    thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(client, batch)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    client.sftp(&batch)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("sftp thread panicked")))
            })
            .collect()
    })
}

/// Panics listing every failed job (with its full output) unless all succeeded.
#[track_caller]
pub fn assert_all_ok(outs: &[Result<CmdOutput>], what: &str, logs: &str) {
    let failed: Vec<String> = outs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Ok(o) if o.success() => None,
            Ok(o) => Some(format!("client {i}:\n{o}")),
            Err(e) => Some(format!("client {i}: {e:#}")),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} clients failed:\n{}\n{logs}",
        failed.len(),
        outs.len(),
        failed.join("\n")
    );
}
