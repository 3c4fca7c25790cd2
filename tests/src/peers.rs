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
            kill_group(&child);
            let _ = child.wait();
            bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A block of consecutive ports no other test process holds: an `flock`
/// on `$TMPDIR/gw-e2e-<what>-ports/<base>.lock`, held while this lives, and
/// every port of the block free on 127.0.0.1 when claimed. Parallel tests
/// (nextest runs each in its own process) thus never pick the same ports.
#[derive(Debug)]
pub struct PortClaim {
    /// The first port of the block.
    pub base: u16,
    _lock: fs::File,
}

impl PortClaim {
    /// Claims `len` consecutive ports in `range` (which should lie below
    /// the kernel's ephemeral range, so no outgoing connection takes one),
    /// starting the search at a random block.
    pub fn claim(what: &str, range: std::ops::Range<u16>, len: u16) -> Result<PortClaim> {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("gw-e2e-{what}-ports"));
        fs::create_dir_all(&dir).with_context(|| format!("mkdir -p {}", dir.display()))?;
        let blocks = (range.end - range.start) / len;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
        let first = (seed % u32::from(blocks)) as u16;
        for i in 0..blocks {
            let base = range.start + ((first + i) % blocks) * len;
            let path = dir.join(format!("{base}.lock"));
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: flock(2) on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                continue;
            }
            let all_free = (base..base + len)
                .all(|p| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, p)).is_ok());
            if all_free {
                return Ok(PortClaim { base, _lock: file });
            }
        }
        bail!(
            "no free block of {len} ports in 127.0.0.1:{}..{} (locks in {})",
            range.start,
            range.end,
            dir.display()
        )
    }
}

/// Kills (SIGKILL) the process group `child` leads: a server started by
/// [`spawn_server`] and the session processes it forked.
pub fn kill_group(child: &Child) {
    // SAFETY: killpg only sends a signal to the group the child leads.
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
}

/// Every process as (pid, parent pid, session id), from /proc, zombies
/// left out.
pub fn process_table() -> Vec<(u32, u32, u32)> {
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
        // "pid (comm) state ppid pgrp session ..." -- comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue;
        }
        if let (Some(ppid), Some(sid)) = (
            f.get(1).and_then(|s| s.parse().ok()),
            f.get(3).and_then(|s| s.parse().ok()),
        ) {
            out.push((p, ppid, sid));
        }
    }
    out
}

/// `pid`'s descendants plus every process in the sessions they (or `pid`)
/// created (per-session processes may setsid(); orphans stay in the session).
pub fn server_processes(pid: u32, sessions: &mut BTreeSet<u32>) -> Vec<u32> {
    let table = process_table();
    let mut out: Vec<u32> = vec![];
    let mut frontier = vec![pid];
    for &(c, _, sid) in &table {
        if c == pid && sid == pid {
            sessions.insert(sid);
        }
    }
    while let Some(q) = frontier.pop() {
        for &(c, pp, sid) in &table {
            if pp == q && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
                if sid == c {
                    sessions.insert(sid);
                }
            }
        }
    }
    for &(c, _, sid) in &table {
        if sessions.contains(&sid) && c != pid && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// True while process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .map(|i| !stat[i + 1..].trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
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
/// (from `ss -Htan`).
///
/// A port number in a server's range can also be the ephemeral port of an
/// unrelated *client* socket: another test binds 127.0.0.2:0 (a dedicated
/// source address) and the kernel may hand it the number of a port that
/// only 127.0.0.1 listens on, or a passive port that is free between two
/// transfers. Such a socket's peer is a listening socket of some server,
/// which a server-side socket's peer (a client's ephemeral port) never is,
/// so sockets whose peer listens are left out; and the servers here listen
/// on 127.0.0.1 (or ::1) only, so sockets with another local address are.
pub fn established_in_range(ports: RangeInclusive<u16>) -> Result<Vec<TcpConn>> {
    let out = Command::new("ss")
        .args(["-Htan"])
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
    let mut listeners = BTreeSet::new();
    let mut established = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // State Recv-Q Send-Q Local:Port Peer:Port
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(state), Some(l), Some(p)) = (f.first(), f.get(3), f.get(4)) else {
            bail!("unexpected ss line: {line:?}");
        };
        match *state {
            "LISTEN" => {
                listeners.insert(parse_ss_addr(l, line)?);
            }
            "ESTAB" => established.push(TcpConn {
                local: parse_ss_addr(l, line)?,
                peer: parse_ss_addr(p, line)?,
            }),
            _ => {}
        }
    }
    let listens = |a: &SocketAddr| {
        listeners
            .iter()
            .any(|l| l.port() == a.port() && (l.ip() == a.ip() || l.ip().is_unspecified()))
    };
    let mut conns: Vec<TcpConn> = established
        .into_iter()
        .filter(|c| {
            ports.contains(&c.local.port())
                && SERVER_IPS.contains(&c.local.ip())
                && !listens(&c.peer)
        })
        .collect();
    conns.sort();
    Ok(conns)
}

/// The addresses the servers tests start listen on.
const SERVER_IPS: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

/// An address as `ss` prints it (`127.0.0.1:22`, `[::1]:22`, `*:22`),
/// IPv4-mapped IPv6 shown as plain IPv4 and `*` as 0.0.0.0.
fn parse_ss_addr(s: &str, line: &str) -> Result<SocketAddr> {
    let mut s = s
        .strip_prefix("*:")
        .map_or_else(|| s.to_string(), |port| format!("0.0.0.0:{port}"));
    // `127.0.0.1%lo:22`: an address bound to a device.
    if let (Some(pct), Some(colon)) = (s.find('%'), s.rfind(':')) {
        if pct < colon {
            s.replace_range(pct..colon, "");
        }
    }
    let a: SocketAddr = s
        .parse()
        .with_context(|| format!("address {s:?} in ss line {line:?}"))?;
    Ok(match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    })
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
    /// The connections of the first sample that saw `max` (to tell, when
    /// a count is wrong, which sockets made it).
    pub at_max: Vec<TcpConn>,
    /// Every distinct connection seen (one that lived less than a sample's
    /// 20 ms may be missed).
    pub seen: BTreeSet<TcpConn>,
}

/// Samples the established connections to a port range every 20 ms on a
/// thread (`ss`); [`ConnectionSampler::finish`] stops it and reports the
/// maximum seen at once and every peer address seen.
pub struct ConnectionSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    peers: Arc<Mutex<BTreeSet<IpAddr>>>,
    at_max: Arc<Mutex<Vec<TcpConn>>>,
    seen: Arc<Mutex<BTreeSet<TcpConn>>>,
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
        let at_max = Arc::new(Mutex::new(Vec::new()));
        let (s, m, n, pe) = (stop.clone(), max.clone(), samples.clone(), peers.clone());
        let most = at_max.clone();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let all = seen.clone();
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
                if m.fetch_max(conns.len(), Ordering::SeqCst) < conns.len() {
                    if let Ok(mut seen) = most.lock() {
                        *seen = conns.clone();
                    }
                }
                if let Ok(mut set) = all.lock() {
                    set.extend(conns.iter().copied());
                }
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
            at_max,
            seen,
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
            at_max: self.at_max.lock().map(|v| v.clone()).unwrap_or_default(),
            seen: self.seen.lock().map(|v| v.clone()).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_addresses_parse() {
        let line = "test";
        assert_eq!(
            parse_ss_addr("127.0.0.1:22", line).unwrap(),
            "127.0.0.1:22".parse().unwrap()
        );
        assert_eq!(
            parse_ss_addr("[::ffff:127.0.0.2]:80", line).unwrap(),
            "127.0.0.2:80".parse().unwrap()
        );
        assert_eq!(
            parse_ss_addr("*:21", line).unwrap(),
            "0.0.0.0:21".parse().unwrap()
        );
        assert_eq!(
            parse_ss_addr("127.0.0.1%lo:53", line).unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert!(parse_ss_addr("nonsense", line).is_err());
    }

    /// A client socket given a listening port's number on another loopback
    /// address (the kernel allows it) is not counted as a connection to
    /// that server; the server's own accepted connection is.
    #[test]
    fn client_sockets_sharing_a_server_port_are_not_counted() {
        use std::net::{TcpListener, TcpStream};
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        // A client bound to 127.0.0.2:<port>, connected to another server.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _socket = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::from(([127, 0, 0, 2], port)))
                .unwrap();
            socket.connect(other.local_addr().unwrap()).await.unwrap()
        });
        let _accepted_elsewhere = other.accept().unwrap();
        assert_eq!(established_in_range(port..=port).unwrap(), vec![]);
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = server.accept().unwrap();
        let conns = established_in_range(port..=port).unwrap();
        assert_eq!(conns.len(), 1, "{conns:?}");
        assert_eq!(conns[0].local.port(), port);
    }
}
