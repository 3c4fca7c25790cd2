//! A throwaway PostgreSQL server for the cluster tests (several gateway
//! nodes sharing one database).
//!
//! Every [`Postgres`] runs Debian's server binary (the newest version under
//! `/usr/lib/postgresql/*/bin`, installed by `scripts/test.sh`) in the
//! foreground on its own temp dir: a fresh cluster made by `initdb`, the
//! server log, and the unix socket. It listens on 127.0.0.1 only, on a free
//! port that it keeps across [`Postgres::stop`] / [`Postgres::start_again`]
//! (for outage tests). It is tuned for speed, not durability (`fsync=off`,
//! `full_page_writes=off`), which is harmless as long as the machine does
//! not crash: a committed transaction's WAL is written to the OS before the
//! commit returns, so it survives [`Postgres::kill`]. (`synchronous_commit`
//! stays on: with it off, a commit acknowledged less than ~200 ms before a
//! SIGKILL is lost, which would make crash tests lie.)
//!
//! Authentication: `trust` on the unix socket (the superuser `postgres`,
//! used by [`Postgres::psql`]), `scram-sha-256` on 127.0.0.1 (the gateway's
//! role [`GATEWAY_ROLE`], password generated per server, see
//! [`Postgres::url`]).
//!
//! PostgreSQL refuses to run as root: when the tests run as root (here and
//! in CI), `initdb` and `postgres` run as the `postgres` system user that
//! the Debian package creates (uid/gid set in the child before exec), the
//! temp dir is owned by it, and every folder above the temp dir must be
//! traversable by others. Dropping the handle stops the server and removes
//! the temp dir.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::peers::process_alive;
use crate::peers::spawn_server;
use crate::run_with_timeout;
use crate::sshd::{free_port, listening_on_port};

/// Where Debian installs the server, one folder per major version.
pub const POSTGRES_LIB_DIR: &str = "/usr/lib/postgresql";

/// The system account the server runs as when the tests run as root
/// (created by Debian's `postgresql-common` package).
pub const POSTGRES_USER: &str = "postgres";

/// The database superuser (`initdb -U`); reachable only on the unix socket.
pub const SUPERUSER: &str = "postgres";

/// The role the gateway logs in as (over TCP, with a password).
pub const GATEWAY_ROLE: &str = "gw";

/// The gateway's database, owned by [`GATEWAY_ROLE`].
pub const GATEWAY_DATABASE: &str = "gateway";

/// How long to wait for a started server to accept connections.
pub const POSTGRES_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fast shutdown may take before the server is killed.
pub const POSTGRES_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit of one `psql` / `initdb` run.
pub const PSQL_TIMEOUT: Duration = Duration::from_secs(60);

/// The `bin` folder of the newest PostgreSQL version installed under
/// [`POSTGRES_LIB_DIR`] (the one whose `bin/postgres` exists), or an error
/// telling how to install it.
pub fn postgres_bin_dir() -> Result<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(rd) = fs::read_dir(POSTGRES_LIB_DIR) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // "15", or "9.6" for the old numbering.
            let Ok(version) = name
                .split('.')
                .map(str::parse::<u32>)
                .collect::<Result<Vec<u32>, _>>()
            else {
                continue;
            };
            let bin = e.path().join("bin");
            if !bin.join("postgres").is_file() {
                continue;
            }
            if best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server found ({POSTGRES_LIB_DIR}/*/bin/postgres): \
             install Debian's `postgresql` package (scripts/test.sh does)"
        )
    })
}

/// uid and gid of the system user `name` (from /etc/passwd).
fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2].parse().context("uid in /etc/passwd")?;
            let gid = f[3].parse().context("gid in /etc/passwd")?;
            return Ok((uid, gid));
        }
    }
    bail!(
        "the system user `{name}` does not exist: it is created by Debian's `postgresql` \
         package (scripts/test.sh installs it); PostgreSQL refuses to run as root"
    )
}

/// `len` random bytes from /dev/urandom as lowercase hex.
fn random_hex(len: usize) -> Result<String> {
    let mut buf = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Fails unless every folder above `dir` lets others search it (the server,
/// running as another user, must reach its data folder and socket).
fn check_traversable(dir: &Path) -> Result<()> {
    for a in dir.ancestors().skip(1) {
        let md = fs::metadata(a).with_context(|| format!("stat {}", a.display()))?;
        if md.mode() & 0o001 == 0 {
            bail!(
                "{} (mode {:o}) is not searchable by others, so the `{POSTGRES_USER}` user \
                 cannot reach the server's temp dir {}; set TMPDIR to a folder whose \
                 parents are (e.g. /tmp)",
                a.display(),
                md.mode() & 0o7777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// Makes `path` and everything under it owned by `uid:gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for e in fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The pids of the live processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." -- comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) == Some(pid)
            && process_alive(p)
        {
            out.push(p);
        }
    }
    out
}

/// A running (or stopped) PostgreSQL server on 127.0.0.1 (see the module docs).
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// uid/gid to run the server as (Some when the tests run as root).
    run_as: Option<(u32, u32)>,
    port: u16,
    password: String,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a temp dir and a fresh cluster in it (`initdb`), starts the
    /// server on a free 127.0.0.1 port, waits until it accepts connections,
    /// and creates the role [`GATEWAY_ROLE`] (with a random password) and
    /// the database [`GATEWAY_DATABASE`] it owns.
    pub fn start() -> Result<Postgres> {
        let bin = postgres_bin_dir()?;
        // SAFETY: geteuid(2) has no preconditions.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(user_ids(POSTGRES_USER)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("gw-e2e-pg-").tempdir()?;
        // The server checks that its data folder is 0700 or 0750; the socket
        // folder is the temp dir itself.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = run_as {
            check_traversable(dir.path())?;
            chown_tree(dir.path(), uid, gid)?;
        }
        let mut pg = Postgres {
            dir,
            bin,
            run_as,
            port: 0,
            password: random_hex(16)?,
            child: None,
        };
        pg.initdb()?;
        let mut last_err = None;
        for _attempt in 0..10 {
            pg.port = free_port()?;
            match pg.spawn() {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) if format!("{e:#}").contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e.context("PostgreSQL: no free port found in 10 attempts"));
        }
        pg.psql_db(
            "postgres",
            &format!(
                "CREATE ROLE {GATEWAY_ROLE} LOGIN PASSWORD '{}'",
                pg.password
            ),
        )
        .context("creating the gateway's role")?;
        pg.psql_db(
            "postgres",
            &format!("CREATE DATABASE {GATEWAY_DATABASE} OWNER {GATEWAY_ROLE}"),
        )
        .context("creating the gateway's database")?;
        Ok(pg)
    }

    /// The temp dir (data folder, log, unix socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster's data folder (kept across stop and start).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder holding the unix socket (`.s.PGSQL.PORT`): the temp dir.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (its stdout and stderr, appended by every run).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The TCP port on 127.0.0.1 (kept across stop and start).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of [`GATEWAY_ROLE`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The gateway's connection URL:
    /// `postgres://gw:PASSWORD@127.0.0.1:PORT/gateway` (TCP, password auth).
    pub fn url(&self) -> String {
        format!(
            "postgres://{GATEWAY_ROLE}:{}@127.0.0.1:{}/{GATEWAY_DATABASE}",
            self.password, self.port
        )
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// `program` from the server's bin folder, run as the server's user,
    /// in the temp dir (the user may not reach the test's working folder),
    /// with the C locale (the machine may lack the caller's).
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("LANG", "C");
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups (setgroups(0)) before setuid.
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd
    }

    /// `initdb` of a fresh cluster in [`Postgres::data_dir`].
    fn initdb(&self) -> Result<()> {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        let out = run_with_timeout(cmd, PSQL_TIMEOUT)?;
        if !out.success() {
            bail!("initdb failed:\n{out}");
        }
        Ok(())
    }

    /// Starts `postgres` in the foreground on [`Postgres::port`] and waits
    /// until it accepts connections (`pg_isready`).
    fn spawn(&mut self) -> Result<()> {
        let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D").arg(self.data_dir());
        cmd.args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.socket_dir());
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=200",
            "logging_collector=off",
            "log_line_prefix=%m [%p] %q%u@%d ",
        ] {
            cmd.args(["-c", setting]);
        }
        let child = spawn_server(
            &mut cmd,
            &self.log_path(),
            self.port,
            POSTGRES_START_TIMEOUT,
            "postgres",
        )?;
        // It listens before it accepts: wait for `pg_isready` (exit 0).
        self.child = Some(child);
        let deadline = Instant::now() + POSTGRES_START_TIMEOUT;
        loop {
            if !self.is_running() {
                let status = self.child.take().and_then(|mut c| c.wait().ok());
                bail!(
                    "postgres exited ({status:?}) before accepting connections on port {}\n--- log ---\n{}",
                    self.port,
                    self.log_since(log_start)
                );
            }
            let mut ready = Command::new(self.bin.join("pg_isready"));
            ready
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-d", "postgres", "-U", SUPERUSER, "-t", "2"]);
            let out = run_with_timeout(ready, Duration::from_secs(10))?;
            if out.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.kill();
                bail!(
                    "postgres did not accept connections on 127.0.0.1:{} within {POSTGRES_START_TIMEOUT:?}\n\
                     last pg_isready:\n{out}\n--- log ---\n{}",
                    self.port,
                    self.log_since(log_start)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the postmaster and waits up to `timeout` for it to
    /// exit; if it does not (or `signal` is SIGKILL), freezes it and kills
    /// it and its children (backends and helpers: each of them is its own
    /// process group, so killing the postmaster's group is not enough), and
    /// waits until they are gone and nothing listens on the port.
    fn stop_with(&mut self, signal: libc::c_int, timeout: Duration) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("PostgreSQL on port {} is not running", self.port);
        };
        let pid = child.id();
        let mut timed_out = false;
        if signal != libc::SIGKILL {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        timed_out = true;
                        break;
                    }
                }
            }
        }
        let mut orphans = vec![];
        if signal == libc::SIGKILL || timed_out {
            // SAFETY: kill(2) on our own child: no new children from now on.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
            orphans = children_of(pid);
            for &c in &orphans {
                // SAFETY: kill(2) on a process the postmaster started.
                unsafe { libc::kill(c as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while orphans.iter().any(|&c| process_alive(c)) || listening_on_port(self.port)? {
            if Instant::now() > deadline {
                bail!(
                    "port {} still listens or server processes are left ({:?}) 10 s after \
                     PostgreSQL was stopped",
                    self.port,
                    orphans
                        .iter()
                        .filter(|&&c| process_alive(c))
                        .collect::<Vec<_>>()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        if timed_out {
            bail!(
                "PostgreSQL did not shut down within {timeout:?} (killed)\n{}",
                self.logs()
            );
        }
        Ok(())
    }

    /// Fast shutdown (SIGINT, like `pg_ctl stop -m fast`): open sessions are
    /// cut, the data folder is kept. Returns once nothing listens on the port.
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with(libc::SIGINT, POSTGRES_STOP_TIMEOUT)
    }

    /// Kills the server and its backends at once (SIGKILL, like a crash);
    /// the next start runs crash recovery. The data folder is kept.
    pub fn kill(&mut self) -> Result<()> {
        self.stop_with(libc::SIGKILL, Duration::from_secs(10))
    }

    /// Starts the server again after [`Postgres::stop`] or
    /// [`Postgres::kill`]: same port, same data, same password.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("PostgreSQL on port {} is already running", self.port);
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

    /// [`Postgres::stop`] (if running) then [`Postgres::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.start_again()
    }

    /// Turns TLS on with the PEM certificate `cert` and key `key` (copied
    /// into the data folder, owned by the server's user, the key 0600),
    /// applied by a configuration reload; another call swaps them.
    pub fn serve_tls(&self, cert: &Path, key: &Path) -> Result<()> {
        let data = self.data_dir();
        let (c, k) = (data.join("tls-server.pem"), data.join("tls-server.key"));
        fs::copy(cert, &c).context("copying the server certificate")?;
        fs::copy(key, &k).context("copying the server key")?;
        fs::set_permissions(&k, fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = self.run_as {
            chown_tree(&c, uid, gid)?;
            chown_tree(&k, uid, gid)?;
        }
        self.psql_db("postgres", "ALTER SYSTEM SET ssl = on")?;
        self.psql_db(
            "postgres",
            "ALTER SYSTEM SET ssl_cert_file = 'tls-server.pem'",
        )?;
        self.psql_db(
            "postgres",
            "ALTER SYSTEM SET ssl_key_file = 'tls-server.key'",
        )?;
        self.psql_db("postgres", "SELECT pg_reload_conf()")?;
        // The reload is asynchronous: wait until the server says TLS is on.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql_db("postgres", "SHOW ssl")? != "on" {
            if Instant::now() > deadline {
                bail!("PostgreSQL did not turn TLS on\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Runs `psql -XAt -v ON_ERROR_STOP=1 -c SQL` as the superuser over the
    /// unix socket in [`GATEWAY_DATABASE`]; returns its standard output
    /// (one row a line, columns separated by `|`), trailing newline removed.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db(GATEWAY_DATABASE, sql)
    }

    /// [`Postgres::psql`] in `database`.
    pub fn psql_db(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10");
        let out = run_with_timeout(cmd, PSQL_TIMEOUT)?;
        if !out.success() {
            bail!("psql on port {} failed:\n{out}", self.port);
        }
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }

    fn log_since(&self, start: u64) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        log.get(start as usize..).unwrap_or(&log).to_string()
    }

    /// The whole server log (every run).
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The log with a header, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "PostgreSQL on 127.0.0.1:{} ({})\n--- postgres log ---\n{}\n--------------------",
            self.port,
            self.dir.path().display(),
            self.log()
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("stopping PostgreSQL: {e:#}");
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
