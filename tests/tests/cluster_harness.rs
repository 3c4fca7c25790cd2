//! Self-test of the cluster tests' harnesses (tests/src/postgres.rs and
//! tests/src/haproxy.rs), without the gateway: psql against the throwaway
//! PostgreSQL, and HAProxy in front of tiny TCP servers that answer their
//! own name and record what HAProxy sent them first.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::ftpd::process_alive;
use e2e::haproxy::{Haproxy, ProxyProtocol, PROXY_V2_SIGNATURE};
use e2e::postgres::{postgres_bin_dir, Postgres};
use e2e::sshd::listening_on_port;
use e2e::{run_with_timeout, CmdOutput};

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// `psql URL -XAt -c SQL` (a real client on the gateway's URL, over TCP
/// with the password).
fn psql_url(url: &str, sql: &str) -> Result<CmdOutput> {
    let mut cmd = Command::new(postgres_bin_dir()?.join("psql"));
    cmd.arg(url)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5");
    run_with_timeout(cmd, Duration::from_secs(30))
}

/// [`psql_url`]'s output, or an error with the client's and server's output.
fn query(pg: &Postgres, sql: &str) -> Result<String> {
    let out = psql_url(&pg.url(), sql)?;
    if !out.success() {
        bail!("psql {sql:?} failed:\n{out}\n{}", pg.logs());
    }
    Ok(out.stdout.trim_end().to_string())
}

/// Live processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.get(1).and_then(|s| s.parse::<u32>().ok()) == Some(ppid) && process_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Pids of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) && process_alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn postgres_url_works_and_data_survives_stop_and_start() -> Result<()> {
    let t0 = Instant::now();
    let mut pg = Postgres::start()?;
    eprintln!("PostgreSQL started in {:?}", t0.elapsed());
    assert!(
        pg.url()
            .starts_with(&format!("postgres://gw:{}@127.0.0.1:", pg.password())),
        "{}",
        pg.url()
    );

    assert_eq!(
        query(&pg, "SELECT current_user, current_database()")?,
        "gw|gateway"
    );
    query(&pg, "CREATE TABLE nodes (name text PRIMARY KEY)")?;
    query(&pg, "INSERT INTO nodes VALUES ('node0'), ('node1')")?;
    assert_eq!(pg.psql("SELECT count(*) FROM nodes")?, "2");
    assert_eq!(pg.psql("SHOW fsync")?, "off");
    assert_eq!(pg.psql("SHOW max_connections")?, "200");
    assert_eq!(pg.psql("SHOW listen_addresses")?, "127.0.0.1");

    // TCP takes the password: a wrong one is refused.
    let wrong = pg.url().replace(pg.password(), "wrong-password");
    let out = psql_url(&wrong, "SELECT 1")?;
    assert!(
        !out.success() && out.stderr.contains("password authentication failed"),
        "a wrong password must be refused:\n{out}"
    );

    // Outage: connections fail while it is stopped.
    let port = pg.port();
    let t = Instant::now();
    pg.stop()?;
    eprintln!("fast shutdown took {:?}", t.elapsed());
    assert!(!pg.is_running());
    assert!(!listening_on_port(port)?);
    let out = psql_url(&pg.url(), "SELECT 1")?;
    assert!(!out.success(), "psql must fail while stopped:\n{out}");
    assert!(
        out.stderr.contains("Connection refused"),
        "expected `Connection refused`:\n{out}"
    );

    // Back on the same port, with the data.
    let t = Instant::now();
    pg.start_again()?;
    eprintln!("start again took {:?}", t.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(
        query(&pg, "SELECT string_agg(name, ',' ORDER BY name) FROM nodes")?,
        "node0,node1"
    );

    // A crash (SIGKILL) and crash recovery keep committed rows too.
    query(&pg, "INSERT INTO nodes VALUES ('node2')")?;
    pg.kill()?;
    let t = Instant::now();
    pg.start_again()?;
    eprintln!("start after kill (crash recovery) took {:?}", t.elapsed());
    assert_eq!(query(&pg, "SELECT count(*) FROM nodes")?, "3");

    pg.restart()?;
    assert_eq!(query(&pg, "SELECT count(*) FROM nodes")?, "3");
    Ok(())
}

#[test]
fn postgres_drop_stops_server_and_removes_dir() -> Result<()> {
    let pg = Postgres::start()?;
    let dir = pg.dir().to_path_buf();
    let pid = pg.pid().context("no pid while running")?;
    let port = pg.port();
    // A session held open: fast shutdown must end it too.
    let mut held = Command::new(postgres_bin_dir()?.join("psql"));
    held.arg(pg.url())
        .args(["-X", "-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut held = held.spawn().context("spawning psql")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")? != "1" {
        assert!(Instant::now() < deadline, "the held session never showed up");
        thread::sleep(Duration::from_millis(50));
    }
    let needle = dir.display().to_string();
    assert!(!processes_mentioning(&needle).is_empty());
    // The postmaster's children: backends (the held session's) and helpers.
    let children = children_of(pid);
    assert!(children.len() > 3, "postgres processes: {children:?}");
    let t = Instant::now();
    drop(pg);
    eprintln!("drop took {:?}", t.elapsed());
    let status = held.wait()?;
    assert!(!status.success(), "the held session must be cut: {status}");
    assert!(!process_alive(pid), "postmaster {pid} still alive");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!listening_on_port(port)?);
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let left: Vec<u32> = children.into_iter().filter(|&c| process_alive(c)).collect();
    assert!(left.is_empty(), "postgres processes left behind: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------

/// One connection a [`NameServer`] accepted: peer address, PROXY header.
type Seen = (SocketAddr, Vec<u8>);

/// A tiny TCP server: reads the PROXY header it expects (if any), records
/// it, answers its name and closes. Stops listening when dropped.
struct NameServer {
    name: &'static str,
    addr: SocketAddr,
    /// (peer address, header bytes) of every connection so far.
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Reads a PROXY header of the given version from `s` (empty for none).
fn read_header(s: &mut TcpStream, proxy: ProxyProtocol) -> std::io::Result<Vec<u8>> {
    let mut h = vec![];
    match proxy {
        ProxyProtocol::None => {}
        ProxyProtocol::V1 => {
            let mut b = [0u8; 1];
            while !h.ends_with(b"\r\n") && h.len() < 108 {
                s.read_exact(&mut b)?;
                h.push(b[0]);
            }
        }
        ProxyProtocol::V2 => {
            h.resize(16, 0);
            s.read_exact(&mut h)?;
            let len = u16::from_be_bytes([h[14], h[15]]) as usize;
            let mut rest = vec![0u8; len];
            s.read_exact(&mut rest)?;
            h.extend(rest);
        }
    }
    Ok(h)
}

impl NameServer {
    /// Listens on `port` of 127.0.0.1 (0: any free port).
    fn start(name: &'static str, proxy: ProxyProtocol, port: u16) -> Result<NameServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let (mut s, peer) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let seen = seen2.clone();
                thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                    // Health checks reset the connection: errors are normal.
                    let header = read_header(&mut s, proxy)
                        .unwrap_or_else(|e| format!("<read error: {e}>").into_bytes());
                    if let Ok(mut v) = seen.lock() {
                        v.push((peer, header));
                    }
                    let _ = s.write_all(format!("{name}\n").as_bytes());
                });
            }
        });
        Ok(NameServer {
            name,
            addr,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr`, reads the answer to the end; returns it (trimmed)
/// and the client's own address.
fn ask(addr: SocketAddr) -> Result<(String, SocketAddr)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let local = s.local_addr()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .with_context(|| format!("reading from {addr}"))?;
    Ok((answer.trim().to_string(), local))
}

fn ask_names(hx: &Haproxy, n: usize) -> Result<Vec<String>> {
    (0..n)
        .map(|_| ask(hx.addr()).map(|(name, _)| name))
        .collect()
}

const UP_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn haproxy_round_robin_over_two_backends() -> Result<()> {
    let a = NameServer::start("a", ProxyProtocol::None, 0)?;
    let b = NameServer::start("b", ProxyProtocol::None, 0)?;
    let t = Instant::now();
    let hx = Haproxy::start(&[a.addr, b.addr], ProxyProtocol::None)?;
    hx.wait_all_up(UP_TIMEOUT)?;
    eprintln!("HAProxy started, both backends up, in {:?}", t.elapsed());
    assert_ne!(hx.port(), a.addr.port());
    let names = ask_names(&hx, 6)?;
    for pair in names.windows(2) {
        assert_ne!(
            pair[0],
            pair[1],
            "not round-robin: {names:?}\n{}",
            hx.logs()
        );
    }
    for n in [a.name, b.name] {
        assert_eq!(
            names.iter().filter(|x| *x == n).count(),
            3,
            "{names:?}\n{}",
            hx.logs()
        );
    }
    // Without the PROXY protocol a backend gets no header.
    assert!(
        a.seen()
            .iter()
            .chain(b.seen().iter())
            .all(|(_, h)| h.is_empty()),
        "{:?} {:?}",
        a.seen(),
        b.seen()
    );
    Ok(())
}

#[test]
fn haproxy_send_proxy_v2_announces_the_client() -> Result<()> {
    let a = NameServer::start("a", ProxyProtocol::V2, 0)?;
    let hx = Haproxy::start(&[a.addr], ProxyProtocol::V2)?;
    hx.wait_all_up(UP_TIMEOUT)?;
    let (name, client) = ask(hx.addr())?;
    assert_eq!(name, "a");
    let seen = a.seen();
    for (_, h) in &seen {
        assert!(
            h.starts_with(PROXY_V2_SIGNATURE),
            "every connection must start with the v2 signature: {h:?}"
        );
    }
    let mut expected = PROXY_V2_SIGNATURE.to_vec();
    expected.extend([0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
    expected.extend(client.port().to_be_bytes());
    expected.extend(hx.port().to_be_bytes());
    assert!(
        seen.iter().any(|(_, h)| *h == expected),
        "no PROXY header naming the client {client}: {seen:?}\n{}",
        hx.logs()
    );
    // Health checks: a LOCAL header without addresses.
    let mut local = PROXY_V2_SIGNATURE.to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.seen().iter().any(|(_, h)| *h == local) {
        assert!(
            Instant::now() < deadline,
            "no LOCAL header from a health check: {:?}",
            a.seen()
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn haproxy_send_proxy_v1_announces_the_client() -> Result<()> {
    let a = NameServer::start("a", ProxyProtocol::V1, 0)?;
    let hx = Haproxy::start(&[a.addr], ProxyProtocol::V1)?;
    hx.wait_all_up(UP_TIMEOUT)?;
    let (name, client) = ask(hx.addr())?;
    assert_eq!(name, "a");
    let expected = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
        client.port(),
        hx.port()
    );
    let seen = a.seen();
    assert!(
        seen.iter().any(|(_, h)| *h == expected.as_bytes()),
        "no {expected:?} in {:?}\n{}",
        seen.iter()
            .map(|(_, h)| String::from_utf8_lossy(h).into_owned())
            .collect::<Vec<_>>(),
        hx.logs()
    );
    Ok(())
}

#[test]
fn haproxy_takes_a_dead_backend_out_and_back() -> Result<()> {
    let a = NameServer::start("a", ProxyProtocol::None, 0)?;
    let b = NameServer::start("b", ProxyProtocol::None, 0)?;
    let b_port = b.addr.port();
    let mut hx = Haproxy::start(&[a.addr, b.addr], ProxyProtocol::None)?;
    hx.wait_all_up(UP_TIMEOUT)?;

    drop(b);
    // Before the checks notice, a refused connection is redispatched.
    let t = Instant::now();
    let names = ask_names(&hx, 4)?;
    eprintln!(
        "4 connections right after b died: {names:?} in {:?}",
        t.elapsed()
    );
    assert!(names.iter().all(|n| n == "a"), "{names:?}\n{}", hx.logs());
    let down = hx.wait_server(1, false, Duration::from_secs(2))?;
    eprintln!("b marked down after {:?}", t.elapsed());
    assert!(down < Duration::from_secs(2));
    assert_eq!(ask_names(&hx, 4)?, vec!["a"; 4]);

    let b = NameServer::start("b", ProxyProtocol::None, b_port)?;
    let up = hx.wait_server(1, true, Duration::from_secs(2))?;
    eprintln!("b back up after {up:?}");
    let names = ask_names(&hx, 4)?;
    assert!(
        names.iter().any(|n| n == b.name),
        "{names:?}\n{}",
        hx.logs()
    );

    // The runtime API can drain a node.
    hx.runtime("disable server gateways/node0")?;
    assert_eq!(ask_names(&hx, 3)?, vec!["b"; 3]);
    hx.runtime("enable server gateways/node0")?;

    let port = hx.port();
    assert!(hx.is_running());
    hx.stop()?;
    assert!(!listening_on_port(port)?);
    assert!(!hx.is_running());
    Ok(())
}

#[test]
fn haproxy_drop_kills_it() -> Result<()> {
    let a = NameServer::start("a", ProxyProtocol::None, 0)?;
    let hx = Haproxy::start(&[a.addr], ProxyProtocol::None)?;
    let dir = hx.dir().display().to_string();
    let port = hx.port();
    assert!(!processes_mentioning(&dir).is_empty());
    drop(hx);
    assert!(!listening_on_port(port)?);
    let left = processes_mentioning(&dir);
    assert!(left.is_empty(), "haproxy processes left: {left:?}");
    Ok(())
}
