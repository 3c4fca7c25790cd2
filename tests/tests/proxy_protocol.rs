//! The PROXY protocol from a trusted load balancer
//! (`server.proxy_protocol_from`): the gateway sees, logs, allow-lists and
//! throttles the client the header names, not the load balancer.
//!
//! The load balancer is a small relay in the test (not HAProxy): it accepts
//! on 127.0.0.1, connects to the gateway from another loopback address
//! (127.0.0.7, the trusted one, unless said otherwise), writes the header
//! it was given and then pipes bytes both ways. OpenSSH's `sftp` logs in
//! through it.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::*;
use tokio::io::AsyncWriteExt;

const PW: &str = "proxied-right-pw";
/// The load balancer's address (in `proxy_protocol_from`).
const BALANCER: &str = "127.0.0.7";
/// The client the headers claim.
const CLIENT: &str = "198.51.100.23:40000";
const WAIT: Duration = Duration::from_secs(30);

/// A TCP relay playing the load balancer: every connection to [`addr`]
/// is relayed to the gateway from `from`, after `header`.
struct Balancer {
    addr: SocketAddr,
    // Dropping the runtime stops the relay and closes its connections.
    _runtime: tokio::runtime::Runtime,
}

impl Balancer {
    fn start(gateway: SocketAddr, from: &str, header: Vec<u8>) -> Balancer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let from: IpAddr = from.parse().unwrap();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let header = header.clone();
                tokio::spawn(async move {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(from, 0))?;
                    let mut upstream = socket.connect(gateway).await?;
                    upstream.write_all(&header).await?;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    std::io::Result::Ok(())
                });
            }
        });
        Balancer {
            addr,
            _runtime: runtime,
        }
    }

    fn client(&self, env: &TestEnv, user: &str, pw: &str) -> Client {
        Client::new(
            self.addr.port(),
            user,
            Auth::Password(pw.into()),
            &env.known_hosts,
        )
    }
}

/// A PROXY v2 header: `PROXY` command, TCP over IPv4.
fn v2(client: &str, gateway: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (client.ip(), gateway.ip()) else {
        panic!("IPv4 only here");
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    // 12 address bytes and a 7-byte TLV (PP2_TYPE_UNIQUE_ID), skipped.
    h.extend_from_slice(&19u16.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&gateway.port().to_be_bytes());
    h.extend_from_slice(&[0x05, 0x00, 0x04, 1, 2, 3, 4]);
    h
}

/// A PROXY v2 `LOCAL` header (a load balancer's health check).
fn v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

/// A PROXY v1 line.
fn v1(client: &str, gateway: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        gateway.ip(),
        client.port(),
        gateway.port()
    )
    .into_bytes()
}

/// A gateway trusting [`BALANCER`], with `alice` (any address) and `bob`
/// (only from 127.0.0.9), both with the password [`PW`].
fn gateway(env: &TestEnv, tweak: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let hash = hash_password(PW).unwrap();
    for user in ["alice", "bob"] {
        std::fs::create_dir_all(env.data.join(user)).unwrap();
    }
    std::fs::write(env.data.join("alice/hello.txt"), b"hello\n").unwrap();
    let mut cfg = env.config();
    cfg.server_extra
        .push(format!("proxy_protocol_from = [\"{BALANCER}/32\"]"));
    cfg.users = vec![
        UserConfig::new("alice").password_hash(&hash).home("alice"),
        UserConfig::new("bob")
            .password_hash(&hash)
            .home("bob")
            .allowed_networks(&["127.0.0.9/32"]),
    ];
    tweak(&mut cfg);
    env.start(&cfg).unwrap()
}

/// The gateway's audit lines for `op` (`login`, `connect`, ...).
fn audit_lines(gw: &Gateway, op: &str) -> Vec<String> {
    let op = format!("op=\"{op}\"");
    gw.stderr
        .lines()
        .into_iter()
        .filter(|l| l.contains("audit") && l.contains(&op))
        .collect()
}

/// Waits for an audit line for `op` from `addr` that contains `what`.
#[track_caller]
fn expect_audit(gw: &Gateway, op: &str, addr: &str, what: &str) -> String {
    let op = format!("op=\"{op}\"");
    let addr = format!("addr={addr} ");
    gw.stderr
        .wait_for(WAIT, |l| {
            l.contains("audit") && l.contains(&op) && l.contains(&addr) && l.contains(what)
        })
        .unwrap_or_else(|| panic!("no audit line with {op}, {addr}and {what:?}\n{}", gw.logs()))
}

#[test]
fn v2_header_names_the_client() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |_| {});
    let lb = Balancer::start(gw.addr, BALANCER, v2(CLIENT, gw.addr));

    let out = lb.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "login and ls through the load balancer (v2)");
    assert!(out.lists_name("hello.txt"), "{out}\n{}", gw.logs());
    expect_audit(&gw, "login", "198.51.100.23", "result=\"ok\"");
    expect_audit(&gw, "session-end", "198.51.100.23", "");
    // The load balancer's own address is in no audit line.
    let lines: Vec<String> = gw
        .stderr
        .lines()
        .into_iter()
        .filter(|l| l.contains("audit") && l.contains(BALANCER))
        .collect();
    assert!(lines.is_empty(), "{lines:#?}\n{}", gw.logs());
}

#[test]
fn v1_header_names_the_client() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |_| {});
    let lb = Balancer::start(gw.addr, BALANCER, v1("198.51.100.24:40001", gw.addr));

    let out = lb.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "login and ls through the load balancer (v1)");
    assert!(out.lists_name("hello.txt"), "{out}");
    expect_audit(&gw, "login", "198.51.100.24", "result=\"ok\"");
}

#[test]
fn v2_local_is_the_load_balancer_itself() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |_| {});
    let lb = Balancer::start(gw.addr, BALANCER, v2_local());

    let out = lb.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "login after a LOCAL header");
    expect_audit(&gw, "login", BALANCER, "result=\"ok\"");
}

#[test]
fn allow_lists_see_the_client() {
    let env = TestEnv::new().unwrap();
    // The gateway-wide list leaves out the load balancer and 198.51.100.23.
    let gw = gateway(&env, |cfg| {
        cfg.server_extra.push(
            "allowed_networks = [\"127.0.0.1/32\", \"127.0.0.9/32\", \"198.51.100.24/32\"]".into(),
        )
    });
    let from_9 = Balancer::start(gw.addr, BALANCER, v2("127.0.0.9:40000", gw.addr));
    let from_24 = Balancer::start(gw.addr, BALANCER, v2("198.51.100.24:40000", gw.addr));
    let from_23 = Balancer::start(gw.addr, BALANCER, v2(CLIENT, gw.addr));

    // bob may log in from 127.0.0.9 only: the claimed address counts.
    let out = from_9.client(&env, "bob", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "bob claimed from 127.0.0.9 (in his allowed_networks)");
    let out = from_24.client(&env, "bob", PW).sftp("ls /\n").unwrap();
    assert_failed(
        &out,
        "bob claimed from 198.51.100.24 (not in his allowed_networks)",
    );
    expect_audit(&gw, "login", "198.51.100.24", "bob");
    let out = from_24.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "alice claimed from 198.51.100.24");

    // [server] allowed_networks: refused at connect, by the claimed address.
    let out = from_23.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_failed(
        &out,
        "alice claimed from 198.51.100.23 (not in server.allowed_networks)",
    );
    expect_audit(&gw, "connect", "198.51.100.23", "address not allowed");

    // A direct connection from 127.0.0.1 is served as before.
    let out = env
        .client(&gw, "alice", Auth::Password(PW.into()))
        .sftp("ls /\n")
        .unwrap();
    assert_ok(&out, "alice directly from 127.0.0.1");
    expect_audit(&gw, "login", "127.0.0.1", "result=\"ok\"");
}

#[test]
fn the_throttle_bans_the_client_not_the_load_balancer() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |cfg| {
        cfg.login = Some((2, "60s".into(), "60s".into()))
    });
    let from_23 = Balancer::start(gw.addr, BALANCER, v2(CLIENT, gw.addr));
    let from_99 = Balancer::start(gw.addr, BALANCER, v2("198.51.100.99:40000", gw.addr));

    for i in 1..=2 {
        let out = from_23
            .client(&env, "alice", &format!("wrong-{i}"))
            .sftp("ls /\n")
            .unwrap();
        assert_failed(&out, &format!("wrong password {i} from 198.51.100.23"));
    }
    gw.stderr
        .wait_for(WAIT, |l| {
            l.contains("address banned") && l.contains("198.51.100.23")
        })
        .unwrap_or_else(|| panic!("no ban of 198.51.100.23\n{}", gw.logs()));
    let out = from_23.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_failed(&out, "right password from the banned 198.51.100.23");

    // Another client behind the same load balancer is not banned.
    let out = from_99.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "right password from 198.51.100.99 during the ban");
    expect_audit(&gw, "login", "198.51.100.99", "result=\"ok\"");
}

#[test]
fn untrusted_addresses_are_served_directly_and_their_headers_ignored() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |_| {});

    // A direct connection: no header expected, none read.
    let out = env
        .client(&gw, "alice", Auth::Password(PW.into()))
        .sftp("ls /\n")
        .unwrap();
    assert_ok(&out, "alice directly from 127.0.0.1");
    expect_audit(&gw, "login", "127.0.0.1", "result=\"ok\"");

    // A header from 127.0.0.8 (not trusted) is not honoured: it is the
    // start of the SSH stream, so the handshake fails.
    let spoofer = Balancer::start(gw.addr, "127.0.0.8", v2(CLIENT, gw.addr));
    let out = spoofer.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_failed(&out, "a PROXY header from an untrusted address");
    std::thread::sleep(Duration::from_millis(500));
    let claimed: Vec<String> = gw
        .stderr
        .lines()
        .into_iter()
        .filter(|l| l.contains("198.51.100.23"))
        .collect();
    assert!(claimed.is_empty(), "{claimed:#?}");
    assert!(audit_lines(&gw, "login")
        .iter()
        .all(|l| !l.contains("127.0.0.8")));
}

#[test]
fn the_load_balancer_without_a_header_is_closed() {
    let env = TestEnv::new().unwrap();
    let gw = gateway(&env, |cfg| {
        cfg.login_extra.push("grace_time = \"3s\"".into())
    });

    // From the trusted address, the SSH client speaks first: refused at
    // its first byte.
    let plain = Balancer::start(gw.addr, BALANCER, Vec::new());
    let out = plain.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_failed(&out, "no header from the load balancer");
    gw.stderr
        .wait_for(WAIT, |l| {
            l.contains("closed a connection from the load balancer 127.0.0.7:")
                && l.contains("not a PROXY protocol header")
        })
        .unwrap_or_else(|| panic!("no log line for the missing header\n{}", gw.logs()));
    expect_audit(&gw, "connect", BALANCER, "not a PROXY protocol header");
    assert!(
        audit_lines(&gw, "login").is_empty(),
        "{:#?}",
        audit_lines(&gw, "login")
    );

    // A connection that sends nothing is closed after the wait
    // (login.grace_time, 3 s here).
    let mut silent = TcpStream::connect(plain.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).expect("the gateway did not close it");
    let waited = started.elapsed();
    assert_eq!(n, 0, "the gateway sent {:?}", &buf[..n]);
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    gw.stderr
        .wait_for(WAIT, |l| {
            l.contains("closed a connection from the load balancer 127.0.0.7:")
                && l.contains("no PROXY protocol header within 3s")
        })
        .unwrap_or_else(|| panic!("no log line for the timeout\n{}", gw.logs()));

    // The load balancer is not banned for it: a proxied client still
    // gets in.
    let lb = Balancer::start(gw.addr, BALANCER, v2(CLIENT, gw.addr));
    let out = lb.client(&env, "alice", PW).sftp("ls /\n").unwrap();
    assert_ok(&out, "a proxied login after the refusals");
}
