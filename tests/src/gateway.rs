//! The gateway process: the binary, its command line, and a running
//! [`Gateway`] stopped when its handle is dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::*;

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
