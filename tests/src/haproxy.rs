//! HAProxy in front of several gateway nodes, for the cluster tests.
//!
//! Every [`Haproxy`] runs Debian's `/usr/sbin/haproxy` (installed by
//! `scripts/test.sh`) in the foreground (`-db`) on a config generated in
//! its own temp dir: TCP mode, one frontend on a free 127.0.0.1 port,
//! `balance roundrobin` over the given backends (servers `node0`,
//! `node1`, ... in the given order, backend [`BACKEND`]), optionally
//! sending the PROXY protocol to them (see [`ProxyProtocol`] for what a
//! backend then sees, health checks included).
//!
//! Health checks are plain TCP connects every 250 ms (`fall 2`, `rise 1`):
//! a backend that refuses connections is out within about half a second
//! (a stopped, SIGSTOPped process still completes the TCP handshake in the
//! kernel and stays in), and back at its next check after it listens again.
//! `option redispatch` with `retries 2`: a connection that a dead backend
//! refuses before the checks noticed is retried on another one. Client and
//! server timeouts are 10 minutes, so long transfers are not cut.
//!
//! The admin socket of HAProxy's runtime API is in the temp dir
//! ([`Haproxy::runtime`], [`Haproxy::server_states`]). Dropping the handle
//! kills HAProxy (every proxied connection is cut).

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::peers::spawn_server;
use crate::run_with_timeout;
use crate::sshd::{free_port, listening_on_port};

/// Absolute path of Debian's HAProxy.
pub const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// The name of the backend section (for runtime API commands such as
/// `disable server gateways/node0`).
pub const BACKEND: &str = "gateways";

/// How long to wait for a started HAProxy to listen.
pub const HAPROXY_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Health-check interval of every backend server.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The first 12 bytes of every PROXY protocol v2 header.
pub const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether HAProxy announces the client's address to the backends.
///
/// Health checks also carry the header (HAProxy's default when the server
/// line sends the PROXY protocol); each check is a TCP connect that HAProxy
/// resets (RST) as soon as it is established and the header is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Nothing: the backend sees the client's bytes, from HAProxy's address.
    /// A health check is a connect followed by a reset, no bytes.
    None,
    /// `send-proxy`: every connection starts with the text line
    /// `PROXY TCP4 <client ip> <frontend ip> <client port> <frontend port>\r\n`.
    /// A health check sends a full line too, with the check connection's own
    /// addresses (`PROXY TCP4 127.0.0.1 127.0.0.1 <its port> <backend port>`,
    /// not `PROXY UNKNOWN`), then resets: indistinguishable from a client
    /// that leaves at once.
    V1,
    /// `send-proxy-v2`: every connection starts with the binary header:
    /// [`PROXY_V2_SIGNATURE`], `0x21` (version 2, PROXY), `0x11` (TCP over
    /// IPv4), a 2-byte big-endian length (12), then client ip, frontend ip,
    /// client port, frontend port. A health check sends exactly the 16
    /// bytes of a LOCAL header (`0x20`, family `0x00`, length 0: "no
    /// address, the proxy itself"), then resets: a backend should accept a
    /// LOCAL header and treat the connection as coming from HAProxy.
    V2,
}

impl ProxyProtocol {
    /// The `server` line keyword (empty for [`ProxyProtocol::None`]).
    fn keyword(self) -> &'static str {
        match self {
            ProxyProtocol::None => "",
            ProxyProtocol::V1 => " send-proxy",
            ProxyProtocol::V2 => " send-proxy-v2",
        }
    }
}

/// One backend server as HAProxy's runtime API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Its name in the config (`node0`, `node1`, ...).
    pub name: String,
    /// The `status` column of `show stat`: `UP`, `DOWN`, `UP 1/2` (going
    /// down), `DOWN 1/2`... (going up), `MAINT`, `no check`.
    pub status: String,
}

impl ServerState {
    /// True when HAProxy sends new connections to it (`UP`, also while a
    /// failed check counts towards `fall`).
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.status)
    }
}

/// A running HAProxy on 127.0.0.1 (see the module docs).
pub struct Haproxy {
    dir: tempfile::TempDir,
    port: u16,
    backends: Vec<SocketAddr>,
    proxy: ProxyProtocol,
    child: Option<Child>,
}

impl Haproxy {
    /// Writes the config for `backends` (at least one) in a new temp dir,
    /// checks it (`haproxy -c`), starts HAProxy on a free 127.0.0.1 port
    /// and waits until it listens. The backends need not be up yet.
    pub fn start(backends: &[SocketAddr], proxy: ProxyProtocol) -> Result<Haproxy> {
        if backends.is_empty() {
            bail!("HAProxy needs at least one backend");
        }
        if !Path::new(HAPROXY_BIN).is_file() {
            bail!("{HAPROXY_BIN} not found: install haproxy (scripts/test.sh does)");
        }
        let dir = tempfile::Builder::new()
            .prefix("gw-e2e-haproxy-")
            .tempdir()?;
        let mut hx = Haproxy {
            dir,
            port: 0,
            backends: backends.to_vec(),
            proxy,
            child: None,
        };
        let mut last_err = None;
        for _attempt in 0..10 {
            hx.port = free_port()?;
            match hx.spawn() {
                Ok(()) => return Ok(hx),
                Err(e) if format!("{e:#}").contains("Address already in use") => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context("HAProxy: no free port found in 10 attempts"))
    }

    /// The frontend's address (127.0.0.1:port): where clients connect.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The frontend's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The backends, in the order of their server names (`node0` first).
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// What HAProxy sends the backends first.
    pub fn proxy_protocol(&self) -> ProxyProtocol {
        self.proxy
    }

    /// The server name of backend `index` (`node<index>`).
    pub fn server_name(index: usize) -> String {
        format!("node{index}")
    }

    /// The temp dir (config, log, admin socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// HAProxy's output: its warnings and alerts (server up and down
    /// included) and one `option tcplog` line per finished connection.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.log")
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The config text for the current port.
    fn config(&self) -> String {
        let mut c = String::new();
        c += "global\n";
        c += "    nbthread 1\n";
        c += "    maxconn 4096\n";
        c += "    log stderr format raw local0 info\n";
        c += &format!(
            "    stats socket {} mode 600 level admin\n",
            self.socket_path().display()
        );
        c += "\ndefaults\n";
        c += "    mode tcp\n";
        c += "    log global\n";
        c += "    option tcplog\n";
        c += "    option redispatch\n";
        c += "    retries 2\n";
        c += "    timeout connect 2s\n";
        c += "    timeout client 10m\n";
        c += "    timeout server 10m\n";
        c += "    timeout check 1s\n";
        c += "\nfrontend sftp\n";
        c += &format!("    bind 127.0.0.1:{}\n", self.port);
        c += &format!("    default_backend {BACKEND}\n");
        c += &format!("\nbackend {BACKEND}\n");
        c += "    balance roundrobin\n";
        let ms = CHECK_INTERVAL.as_millis();
        c += &format!(
            "    default-server inter {ms}ms fastinter {ms}ms downinter {ms}ms fall 2 rise 1\n"
        );
        for (i, b) in self.backends.iter().enumerate() {
            c += &format!(
                "    server {} {b} check{}\n",
                Self::server_name(i),
                self.proxy.keyword()
            );
        }
        c
    }

    /// Writes and checks the config, starts `haproxy -db` and waits until
    /// it listens on the frontend port and its admin socket exists.
    fn spawn(&mut self) -> Result<()> {
        let cfg = self.config_path();
        fs::write(&cfg, self.config()).with_context(|| format!("writing {}", cfg.display()))?;
        let mut check = Command::new(HAPROXY_BIN);
        check.arg("-c").arg("-f").arg(&cfg);
        let out = run_with_timeout(check, Duration::from_secs(20))?;
        if !out.success() {
            bail!(
                "`haproxy -c` rejected the config:\n{out}\n--- config ---\n{}",
                self.config()
            );
        }
        let mut cmd = Command::new(HAPROXY_BIN);
        cmd.arg("-db").arg("-f").arg(&cfg);
        let child = spawn_server(
            &mut cmd,
            &self.log_path(),
            self.port,
            HAPROXY_START_TIMEOUT,
            "haproxy",
        )?;
        self.child = Some(child);
        let deadline = Instant::now() + HAPROXY_START_TIMEOUT;
        while !self.socket_path().exists() {
            if Instant::now() > deadline {
                bail!(
                    "HAProxy listens but made no admin socket within {HAPROXY_START_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends `command` to HAProxy's runtime API (the admin socket) and
    /// returns its answer, e.g. `disable server gateways/node0`,
    /// `enable server gateways/node0`, `show stat`.
    pub fn runtime(&self, command: &str) -> Result<String> {
        let path = self.socket_path();
        let mut s = UnixStream::connect(&path)
            .with_context(|| format!("connecting to HAProxy's {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(format!("{command}\n").as_bytes())
            .with_context(|| format!("sending `{command}` to HAProxy"))?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .with_context(|| format!("reading HAProxy's answer to `{command}`"))?;
        Ok(answer)
    }

    /// Columns `wanted` of every backend server's row of `show stat`, in
    /// config order (the `BACKEND` summary row left out), and the answer
    /// itself for error messages.
    fn server_rows(&self, wanted: &[&str]) -> Result<(Vec<Vec<String>>, String)> {
        let csv = self.runtime("show stat")?;
        let mut lines = csv.lines();
        let header = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .ok_or_else(|| anyhow!("`show stat` answered without a header:\n{csv}"))?;
        let cols: Vec<&str> = header.split(',').collect();
        let col = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or_else(|| anyhow!("no `{name}` column in `show stat`:\n{csv}"))
        };
        let (px, sv) = (col("pxname")?, col("svname")?);
        let wanted = wanted.iter().map(|w| col(w)).collect::<Result<Vec<_>>>()?;
        let mut rows = vec![];
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.get(px) != Some(&BACKEND) || f.get(sv).is_none_or(|n| *n == "BACKEND") {
                continue;
            }
            let Some(values) = wanted
                .iter()
                .map(|&i| f.get(i).map(|v| v.to_string()))
                .collect()
            else {
                continue;
            };
            rows.push(values);
        }
        Ok((rows, csv))
    }

    /// The state of every backend server (`show stat`), in config order.
    pub fn server_states(&self) -> Result<Vec<ServerState>> {
        let (rows, csv) = self.server_rows(&["svname", "status"])?;
        if rows.len() != self.backends.len() {
            bail!(
                "`show stat` lists {} servers in {BACKEND}, expected {}:\n{csv}",
                rows.len(),
                self.backends.len()
            );
        }
        Ok(rows
            .into_iter()
            .map(|r| ServerState {
                name: r[0].clone(),
                status: r[1].clone(),
            })
            .collect())
    }

    /// Connections each backend server has been given so far (`show
    /// stat`'s `stot`), in config order: which nodes a test's requests
    /// reached.
    pub fn sessions_per_server(&self) -> Result<Vec<u64>> {
        let (rows, csv) = self.server_rows(&["stot"])?;
        rows.iter()
            .map(|r| {
                r[0].parse()
                    .map_err(|_| anyhow!("no session count in `show stat`:\n{csv}"))
            })
            .collect()
    }

    /// Waits until HAProxy considers backend `index` up (`up`) or down
    /// (`!up`); returns how long that took, or an error with every
    /// server's state and the log after `timeout`.
    pub fn wait_server(&self, index: usize, up: bool, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let states = self.server_states()?;
            let state = states
                .get(index)
                .ok_or_else(|| anyhow!("no backend server {index}: {states:?}"))?;
            if state.is_up() == up {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "backend {} ({}) not {} within {timeout:?}: {}\n{}",
                    state.name,
                    self.backends[index],
                    if up { "up" } else { "down" },
                    states
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every backend is up (see [`Haproxy::wait_server`]).
    pub fn wait_all_up(&self, timeout: Duration) -> Result<()> {
        for i in 0..self.backends.len() {
            self.wait_server(i, true, timeout)?;
        }
        Ok(())
    }

    /// True while the HAProxy process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Kills HAProxy (SIGKILL: every proxied connection is cut) and waits
    /// until nothing listens on the frontend port.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("HAProxy on port {} is not running", self.port);
        };
        // spawn_server starts HAProxy in its own process group.
        crate::peers::kill_group(&child);
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while listening_on_port(self.port)? {
            if Instant::now() > deadline {
                bail!(
                    "port {} still listens 5 s after HAProxy was killed",
                    self.port
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// HAProxy's whole output.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The config and the log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "HAProxy on {} ({})\n--- config ---\n{}--- haproxy log ---\n{}\n-------------------",
            self.addr(),
            self.dir.path().display(),
            self.config(),
            self.log()
        )
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("stopping HAProxy: {e:#}");
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
