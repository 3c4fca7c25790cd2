//! What the operations tests need: the addresses the gateway logs for its
//! HTTP endpoints, plain HTTP requests, Prometheus text parsed into
//! samples, and SFTP sessions held open for as long as a test wants.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::{spawn_line_reader, Client, Gateway, LineLog};

/// Polls `check` every 50 ms for up to `secs` seconds; panics saying
/// `what` was awaited, with `logs()`, when it never holds.
#[track_caller]
pub fn eventually(
    secs: u64,
    what: &str,
    logs: impl Fn() -> String,
    mut check: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address in the first log line holding `marker` followed by
/// `http://ADDR/` (e.g. `metrics on http://`), waiting up to 30 s.
pub fn logged_http_address(gw: &Gateway, marker: &str) -> Option<SocketAddr> {
    let line = gw
        .stderr
        .wait_for(Duration::from_secs(30), |l| l.contains(marker))?;
    let rest = line.split(marker).nth(1)?;
    let rest = rest.trim_start_matches("http://");
    rest.split('/').next()?.parse().ok()
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

/// `METHOD path` on `addr` over HTTP/1.1 (`Connection: close`), with
/// extra header lines; the whole answer within 30 s.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> Result<HttpReply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for h in headers {
        req += h;
        req += "\r\n";
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(HttpReply { status, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out += &rest[..n];
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One sample line: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A `/metrics` scrape: every sample line, parsed.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// (name, labels, value) per sample line.
    pub samples: Vec<Sample>,
    /// The text as served.
    pub text: String,
}

impl Scrape {
    /// Parses Prometheus text format.
    pub fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(x) => x,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Scrape {
            samples,
            text: text.to_string(),
        }
    }

    /// The sum of every sample of `name` whose labels include `labels`
    /// (`None` when there is none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for (n, ls, v) in &self.samples {
            if n == name
                && labels
                    .iter()
                    .all(|(k, want)| ls.iter().any(|(lk, lv)| lk == k && lv == want))
            {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Like [`Scrape::value`], 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(e);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}

/// GETs `/metrics` from `addr`.
pub fn scrape(addr: SocketAddr) -> Result<Scrape> {
    let r = http(addr, "GET", "/metrics", &[])?;
    if r.status != 200 {
        bail!("/metrics answered {}: {}", r.status, r.body);
    }
    Ok(Scrape::parse(&r.body))
}

/// An `sftp` session kept open: commands go in on its standard input
/// whenever the test likes. Dropping it kills the client.
pub struct HeldSession {
    child: Child,
    /// The client's standard output, line by line.
    pub stdout: Arc<LineLog>,
    /// The client's standard error, line by line.
    pub stderr: Arc<LineLog>,
}

impl HeldSession {
    /// Starts `sftp` as `client` (without waiting for the login).
    pub fn start(client: &Client) -> Result<HeldSession> {
        let mut cmd = client.sftp_stdin_command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning sftp")?;
        let stdout = Arc::new(LineLog::default());
        let stderr = Arc::new(LineLog::default());
        spawn_line_reader(child.stdout.take().context("sftp stdout")?, stdout.clone());
        spawn_line_reader(child.stderr.take().context("sftp stderr")?, stderr.clone());
        Ok(HeldSession {
            child,
            stdout,
            stderr,
        })
    }

    /// Starts `sftp` and waits until it has logged in and answered `pwd`.
    pub fn open(client: &Client) -> Result<HeldSession> {
        let mut s = Self::start(client)?;
        s.send("pwd")?;
        if s.stdout
            .wait_for(Duration::from_secs(30), |l| {
                l.contains("Remote working directory")
            })
            .is_none()
        {
            bail!(
                "sftp did not log in and answer pwd within 30 s\n--- stdout ---\n{}\n--- stderr ---\n{}",
                s.stdout.text(),
                s.stderr.text()
            );
        }
        Ok(s)
    }

    /// Sends one batch command.
    pub fn send(&mut self, command: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("sftp stdin closed")?;
        stdin.write_all(format!("{command}\n").as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits up to `timeout` for the client to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.stderr.wait_closed(Duration::from_secs(2));
                self.stdout.wait_closed(Duration::from_secs(2));
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the client is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- sftp stdout ---\n{}\n--- sftp stderr ---\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_labels() {
        let s = Scrape::parse(
            "# HELP x y\n# TYPE a counter\na{remote=\"r\",kind=\"q\\\"x\"} 3\na{remote=\"s\"} 4\nb 1.5\n",
        );
        assert_eq!(s.value("a", &[]), Some(7.0));
        assert_eq!(s.value("a", &[("remote", "r")]), Some(3.0));
        assert_eq!(s.value("a", &[("kind", "q\"x")]), Some(3.0));
        assert_eq!(s.value("b", &[]), Some(1.5));
        assert_eq!(s.value("c", &[]), None);
    }
}
