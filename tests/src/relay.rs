//! A TCP relay between the gateway and a real remote server that injects
//! faults: it cuts (FIN and RST) or stalls the first connection that
//! carries a chosen number of bytes in one direction, slows every
//! connection down, or refuses connections until told to accept again.
//!
//! With [`RelayOptions::ftp`] it also relays FTP passive data connections:
//! it reads the server's `227`/`229` replies on control connections and
//! listens on the same port on its own address before passing the reply
//! on, so the data connections (which the gateway opens to the control
//! connection's peer address) go through the relay and meet the same
//! faults.
//!
//! Blocking threads, one per direction of each connection: simple, and the
//! tests' connection counts are small.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the gateway to the server (uploads, requests).
    ToServer,
    /// From the server to the gateway (downloads, listings, replies).
    ToGateway,
}

/// What happens to the connection that crosses an armed threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both sockets are closed in order (FIN): the peers see the end of
    /// the stream, as if the other side had closed it.
    Cut,
    /// Both sockets are reset (RST): the peers see ECONNRESET, as when a
    /// firewall or a crashed host drops the connection.
    Reset,
    /// The connection stops forwarding in both directions (nothing is
    /// read, so TCP back-pressure builds) until the relay is dropped.
    Stall,
}

/// How the relay is set up.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The address it listens on (port 0: any free port).
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
    /// Relay FTP passive data connections too.
    pub ftp: bool,
}

impl RelayOptions {
    /// Listens on `ip`, any port, in front of `upstream`.
    pub fn new(ip: &str, upstream: SocketAddr) -> Self {
        RelayOptions {
            listen: SocketAddr::new(ip.parse().expect("an IP address"), 0),
            upstream,
            ftp: false,
        }
    }

    /// Also relays FTP passive data connections.
    pub fn ftp(mut self) -> Self {
        self.ftp = true;
        self
    }
}

struct Armed {
    direction: Direction,
    after: u64,
    fault: Fault,
    generation: u64,
}

/// One relayed connection.
struct Conn {
    gateway: TcpStream,
    server: TcpStream,
    /// Bytes carried (to server, to gateway) since `generation`.
    carried: Mutex<(u64, [u64; 2])>,
    stalled: AtomicBool,
    closed: AtomicBool,
}

impl Conn {
    /// Closes both sockets with FIN.
    fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.gateway, &self.server] {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Resets both sockets (RST, no FIN).
    fn kill(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.gateway, &self.server] {
            reset(s);
        }
    }
}

struct Shared {
    opts: RelayOptions,
    conns: Mutex<Vec<Arc<Conn>>>,
    armed: Mutex<Option<Armed>>,
    generation: AtomicU64,
    rate: AtomicU64,
    refusing: AtomicBool,
    stopping: AtomicBool,
    accepted: AtomicUsize,
    faults: AtomicUsize,
    data_listeners: AtomicUsize,
}

/// A running relay; dropping it stops it and closes every connection.
pub struct Relay {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// How long blocking reads wait before looking at the relay's state again.
const POLL: Duration = Duration::from_millis(50);

impl Relay {
    /// Starts relaying.
    pub fn start(mut opts: RelayOptions) -> Result<Relay> {
        let listener = TcpListener::bind(opts.listen)
            .with_context(|| format!("relay: binding {}", opts.listen))?;
        let addr = listener.local_addr()?;
        opts.listen = addr;
        let shared = Arc::new(Shared {
            opts,
            conns: Mutex::new(Vec::new()),
            armed: Mutex::new(None),
            generation: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            data_listeners: AtomicUsize::new(0),
        });
        let s = shared.clone();
        thread::spawn(move || accept_loop(s, listener));
        Ok(Relay { shared, addr })
    }

    /// Where the gateway should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms `fault` for the first connection that carries more than
    /// `after` bytes in `direction` from now on (counted per connection,
    /// connections that already exist included). It fires once.
    pub fn arm(&self, direction: Direction, after: u64, fault: Fault) {
        let generation = self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.shared.armed) = Some(Armed {
            direction,
            after,
            fault,
            generation,
        });
    }

    /// How many armed faults have fired.
    pub fn faults_fired(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for an armed fault to fire.
    pub fn wait_fired(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.faults_fired() < count {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Limits every connection, each direction, to `bytes_per_second`
    /// (0: no limit).
    pub fn slow(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Refuses connections from now on (the listening socket is closed, so
    /// connecting fails with ECONNREFUSED) and resets every open one.
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.reset_all();
        // The accept loop closes the listener within one poll.
        thread::sleep(POLL * 3);
    }

    /// Listens again on the same address after [`Relay::refuse`].
    pub fn accept_again(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_err()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resets every open connection.
    pub fn reset_all(&self) {
        for c in lock(&self.shared.conns).drain(..) {
            c.kill();
        }
    }

    /// Connections accepted so far (FTP data connections included).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns)
            .iter()
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .count()
    }

    /// FTP passive data connections relayed so far.
    pub fn data_connections(&self) -> usize {
        self.shared.data_listeners.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.reset_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Resets a connected TCP socket now: `connect(AF_UNSPEC)` disconnects it
/// and Linux answers with RST (closing would wait for the other
/// descriptors of the socket that the relay's threads hold).
fn reset(s: &TcpStream) {
    set_linger_zero(s);
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC and its size.
    unsafe {
        let mut addr: libc::sockaddr = std::mem::zeroed();
        addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(
            s.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if shared.refusing.load(Ordering::SeqCst) {
            listener = None;
            thread::sleep(POLL);
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(shared.opts.listen) {
                Ok(l) => listener.insert(l),
                Err(_) => {
                    thread::sleep(POLL);
                    continue;
                }
            },
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((gateway, _)) => {
                let _ = gateway.set_nonblocking(false);
                start_conn(&shared, gateway, shared.opts.upstream, shared.opts.ftp);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Relays one accepted connection to `upstream` (a control connection
/// when `ftp_control`).
fn start_conn(shared: &Arc<Shared>, gateway: TcpStream, upstream: SocketAddr, ftp_control: bool) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let server = match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            set_linger_zero(&gateway);
            return;
        }
    };
    for s in [&gateway, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
    }
    let conn = Arc::new(Conn {
        gateway,
        server,
        carried: Mutex::new((shared.generation.load(Ordering::SeqCst), [0, 0])),
        stalled: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    });
    lock(&shared.conns).push(conn.clone());
    for direction in [Direction::ToServer, Direction::ToGateway] {
        let (shared, conn) = (shared.clone(), conn.clone());
        let rewrite = ftp_control && direction == Direction::ToGateway;
        thread::spawn(move || pump(shared, conn, direction, rewrite));
    }
}

/// Copies one direction of `conn`, applying the relay's faults.
fn pump(shared: Arc<Shared>, conn: Arc<Conn>, direction: Direction, ftp_replies: bool) {
    let (mut from, mut to) = match direction {
        Direction::ToServer => (&conn.gateway, &conn.server),
        Direction::ToGateway => (&conn.server, &conn.gateway),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    loop {
        if conn.closed.load(Ordering::SeqCst) || shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if conn.stalled.load(Ordering::SeqCst) {
            thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                conn.kill();
                return;
            }
        };
        let (pass, fault) = check_armed(&shared, &conn, direction, n as u64);
        if ftp_replies {
            line.extend_from_slice(&buf[..pass]);
            while let Some(end) = line.iter().position(|b| *b == b'\n') {
                let reply: Vec<u8> = line.drain(..=end).collect();
                if let Some(port) = passive_port(&String::from_utf8_lossy(&reply)) {
                    relay_data_connection(&shared, port);
                }
            }
        }
        if write_paced(&shared, &mut to, &buf[..pass]).is_err() {
            conn.kill();
            return;
        }
        match fault {
            Some(Fault::Cut) => {
                conn.close();
                return;
            }
            Some(Fault::Reset) => {
                conn.kill();
                return;
            }
            Some(Fault::Stall) => conn.stalled.store(true, Ordering::SeqCst),
            None => {}
        }
    }
}

/// Counts `n` bytes in `direction` and says how many to pass on and
/// whether the armed fault fires on this connection now.
fn check_armed(
    shared: &Shared,
    conn: &Conn,
    direction: Direction,
    n: u64,
) -> (usize, Option<Fault>) {
    let generation = shared.generation.load(Ordering::SeqCst);
    let mut carried = lock(&conn.carried);
    if carried.0 != generation {
        *carried = (generation, [0, 0]);
    }
    let i = direction as usize;
    let before = carried.1[i];
    carried.1[i] += n;
    let mut armed = lock(&shared.armed);
    if let Some(a) = armed.as_ref() {
        if a.generation == generation && a.direction == direction && before + n > a.after {
            let pass = a.after.saturating_sub(before).min(n) as usize;
            let fault = a.fault;
            *armed = None;
            shared.faults.fetch_add(1, Ordering::SeqCst);
            return (pass, Some(fault));
        }
    }
    (n as usize, None)
}

/// Writes `data`, at most the relay's rate per second when one is set.
fn write_paced(shared: &Shared, to: &mut &TcpStream, data: &[u8]) -> std::io::Result<()> {
    let rate = shared.rate.load(Ordering::SeqCst);
    if rate == 0 {
        return to.write_all(data);
    }
    let chunk = ((rate / 20).max(1)) as usize;
    for piece in data.chunks(chunk) {
        to.write_all(piece)?;
        thread::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64));
    }
    Ok(())
}

/// The data port of a `227` (PASV) or `229` (EPSV) reply line.
pub fn passive_port(reply: &str) -> Option<u16> {
    let reply = reply.trim();
    if let Some(rest) = reply.strip_prefix("229") {
        let inner = rest.split('(').nth(1)?.split(')').next()?;
        let delim = inner.chars().next()?;
        return inner.split(delim).nth(3)?.parse().ok();
    }
    if let Some(rest) = reply.strip_prefix("227") {
        let inner = rest.split('(').nth(1)?.split(')').next()?;
        let parts: Vec<u16> = inner
            .split(',')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        if parts.len() == 6 {
            return Some(parts[4] * 256 + parts[5]);
        }
    }
    None
}

/// Listens on the relay's address at `port` for one data connection and
/// relays it to the server's address at the same port.
fn relay_data_connection(shared: &Arc<Shared>, port: u16) {
    let listen = SocketAddr::new(shared.opts.listen.ip(), port);
    let upstream = SocketAddr::new(shared.opts.upstream.ip(), port);
    let Ok(listener) = TcpListener::bind(listen) else {
        return;
    };
    shared.data_listeners.fetch_add(1, Ordering::SeqCst);
    let shared = shared.clone();
    thread::spawn(move || {
        let _ = listener.set_nonblocking(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !shared.stopping.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((gateway, _)) => {
                    let _ = gateway.set_nonblocking(false);
                    if shared.refusing.load(Ordering::SeqCst) {
                        set_linger_zero(&gateway);
                        return;
                    }
                    start_conn(&shared, gateway, upstream, false);
                    return;
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

/// A loopback address of its own for a relay (127.0.0.N), so that FTP
/// data ports relayed on it cannot clash with the server's.
pub fn relay_ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies_name_their_port() {
        assert_eq!(
            passive_port("229 Entering Extended Passive Mode (|||20034|)\r\n"),
            Some(20034)
        );
        assert_eq!(
            passive_port("227 Entering Passive Mode (127,0,0,1,78,66).\r\n"),
            Some(78 * 256 + 66)
        );
        assert_eq!(passive_port("226 Transfer complete.\r\n"), None);
    }

    #[test]
    fn cuts_the_connection_that_crosses_the_threshold() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = server.local_addr().unwrap();
        thread::spawn(move || {
            for s in server.incoming() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let relay = Relay::start(RelayOptions::new("127.0.0.1", upstream)).unwrap();
        let mut a = TcpStream::connect(relay.addr()).unwrap();
        let mut b = TcpStream::connect(relay.addr()).unwrap();
        relay.arm(Direction::ToServer, 1000, Fault::Cut);
        b.write_all(&[1u8; 100]).unwrap();
        let mut echo = [0u8; 100];
        b.read_exact(&mut echo).unwrap();
        a.write_all(&[2u8; 2000]).unwrap();
        assert!(relay.wait_fired(1, Duration::from_secs(5)));
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = a.read_to_end(&mut got);
        assert!(
            got.len() <= 1000,
            "more than the threshold passed: {}",
            got.len()
        );
        // The other connection still works.
        b.write_all(&[3u8; 10]).unwrap();
        let mut echo = [0u8; 10];
        b.read_exact(&mut echo).unwrap();
        assert_eq!(echo, [3u8; 10]);
    }
}
