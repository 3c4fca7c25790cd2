//! One test's private [`TestEnv`] and the OpenSSH [`Client`] (`sftp`,
//! `scp`) that drives a gateway, with assertions on its output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::*;

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
