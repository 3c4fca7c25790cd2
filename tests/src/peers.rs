//! Test peers: where to find the binaries the test command puts under
//! `<target>/peers/` instead of installing them (pure-ftpd, which conflicts
//! with vsftpd; s3s-fs, built from crates.io), starting a server until it
//! listens, and watching the connections servers see (`ss`).

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::sshd::listening_on_port;

/// Starts `cmd` as a server in its own process group (so stopping it takes
/// its session processes too), its output appended to `output`, and waits
/// until 127.0.0.1:`port` listens (checked with `ss`, without connecting).
/// If it exits first, the error holds what it printed; if it does not
/// listen within `timeout`, its group is killed. `what` names it in errors.
pub fn spawn_server(
    cmd: &mut Command,
    output: &Path,
    port: u16,
    timeout: Duration,
    what: &str,
) -> Result<Child> {
    let out_start = fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)
        .with_context(|| format!("opening {}", output.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("spawning {what}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            let all = fs::read_to_string(output).unwrap_or_default();
            bail!(
                "{what} exited with {st} before listening on 127.0.0.1:{port}\n--- output ---\n{}",
                all.get(out_start as usize..).unwrap_or(&all),
            );
        }
        if listening_on_port(port)? {
            return Ok(child);
        }
        if Instant::now() > deadline {
            // SAFETY: killpg only sends a signal to the group the child leads.
            unsafe {
                libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = child.wait();
            bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The cargo target dirs to look in for `peers/...`.
fn target_dirs() -> Vec<PathBuf> {
    let mut out = vec![];
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(d));
    }
    // <target>/<profile>/deps/<test exe>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(t) = exe.ancestors().nth(3) {
            out.push(t.to_path_buf());
        }
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    out
}

/// A peer's binary: the path in `env_var` if set (it must exist), else
/// `<target>/<under_target>` in the first target dir that has it. `how`
/// says how scripts/test.sh provides it, for the error.
pub fn peer_binary(env_var: &str, under_target: &str, how: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "{env_var}={} does not exist: run scripts/test.sh, which {how}",
                p.display()
            );
        }
        return Ok(p);
    }
    let candidates: Vec<PathBuf> = target_dirs()
        .into_iter()
        .map(|t| t.join(under_target))
        .collect();
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    bail!(
        "not found: {env_var} is unset and none of {candidates:?} exists. \
         Run scripts/test.sh once: it {how}"
    )
}

/// One established TCP connection as `ss` shows it from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpConn {
    /// The server's end (127.0.0.1 and the control or a passive port).
    pub local: SocketAddr,
    /// The client's end (its source address and port).
    pub peer: SocketAddr,
}

/// Established TCP connections whose local (server-side) port is in `ports`
/// (`ss -Htn state established '( sport >= :A and sport <= :B )'`).
pub fn established_in_range(ports: RangeInclusive<u16>) -> Result<Vec<TcpConn>> {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!(
            "( sport >= :{} and sport <= :{} )",
            ports.start(),
            ports.end()
        ))
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
    let text = String::from_utf8_lossy(&out.stdout);
    let mut conns = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // Recv-Q Send-Q Local:Port Peer:Port
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(l), Some(p)) = (f.get(2), f.get(3)) else {
            bail!("unexpected ss line: {line:?}");
        };
        let parse = |s: &str| -> Result<SocketAddr> {
            let a: SocketAddr = s
                .parse()
                .with_context(|| format!("address {s:?} in ss line {line:?}"))?;
            // Show IPv4-mapped IPv6 peers as plain IPv4.
            Ok(match a {
                SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
                    None => a,
                },
                v4 => v4,
            })
        };
        conns.push(TcpConn {
            local: parse(l)?,
            peer: parse(p)?,
        });
    }
    conns.sort();
    Ok(conns)
}

/// What a [`ConnectionSampler`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SamplerReport {
    /// The most established connections seen at once.
    pub max: usize,
    /// How many samples were taken.
    pub samples: usize,
    /// Every peer (client source) IP seen.
    pub peers: BTreeSet<IpAddr>,
}

/// Samples the established connections to a port range every 20 ms on a
/// thread (`ss`); [`ConnectionSampler::finish`] stops it and reports the
/// maximum seen at once and every peer address seen.
pub struct ConnectionSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    peers: Arc<Mutex<BTreeSet<IpAddr>>>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl ConnectionSampler {
    /// Starts sampling the server-side ports `ports` (the first sample is
    /// taken before this returns).
    pub fn start(ports: RangeInclusive<u16>) -> ConnectionSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(BTreeSet::new()));
        let (s, m, n, pe) = (stop.clone(), max.clone(), samples.clone(), peers.clone());
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || -> Result<()> {
            let mut first = Some(first_tx);
            loop {
                let conns = established_in_range(ports.clone());
                let conns = match conns {
                    Ok(c) => c,
                    Err(e) => {
                        first.take();
                        return Err(e);
                    }
                };
                m.fetch_max(conns.len(), Ordering::SeqCst);
                if let Ok(mut set) = pe.lock() {
                    set.extend(conns.iter().map(|c| c.peer.ip()));
                }
                n.fetch_add(1, Ordering::SeqCst);
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
                if s.load(Ordering::SeqCst) {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let _ = first_rx.recv_timeout(Duration::from_secs(5));
        ConnectionSampler {
            stop,
            max,
            samples,
            peers,
            handle: Some(handle),
        }
    }

    /// The maximum so far.
    pub fn max_so_far(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// The peer IPs seen so far.
    pub fn peers_so_far(&self) -> BTreeSet<IpAddr> {
        self.peers.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Takes one last sample, stops, and reports.
    pub fn finish(mut self) -> Result<SamplerReport> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow!("connection sampler thread panicked"))??;
        }
        Ok(SamplerReport {
            max: self.max.load(Ordering::SeqCst),
            samples: self.samples.load(Ordering::SeqCst),
            peers: self.peers_so_far(),
        })
    }
}

impl Drop for ConnectionSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A set of IP addresses from literals (`["127.0.0.2", "127.0.0.3"]`), to
/// compare with the peers a sampler saw.
pub fn ip_set(items: &[&str]) -> BTreeSet<IpAddr> {
    items
        .iter()
        .map(|s| s.parse().expect("test IP literal"))
        .collect()
}
