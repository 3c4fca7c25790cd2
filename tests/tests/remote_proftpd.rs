//! ProFTPD 1.3.8 (Debian 12, mod_tls with its defaults: TLS session reuse
//! required on data connections) as an FTP remote, in four modes: plain,
//! explicit TLS capped at 1.2, explicit TLS 1.2 + 1.3, implicit TLS. For
//! each: the backend conformance suite on a pool of one connection, then a
//! mount end to end through the real `gateway` binary with OpenSSH's
//! `sftp`: 12 uploads in a row over one pooled control connection
//! (`max_connections = 1`), downloads, sha256 compared on the server's disk.
//!
//! Over TLS 1.3 ProFTPD renews a session ticket only on data connections it
//! writes to, so uploads use up the two tickets of the control handshake;
//! before this was handled, every third upload on a control connection was
//! refused (`425`, mod_tls: "client did not reuse TLS session"). The tests
//! check mod_tls' log: every data connection resumed, none refused.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use backends::conformance;
use backends::ftp::{CertificateCheck, FtpBackend, FtpSettings, FtpTls};
use backends::Backend;
use e2e::direct::{pool_settings, put, runtime, storage_path, upload_leftovers};
use e2e::ftpd::{FtpServer, FtpServerOptions, FtpServerTls};
use e2e::mount::MountedGateway;
use e2e::*;

/// Uploads in a row over one control connection.
const UPLOADS: usize = 12;

/// The four modes.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Plain,
    ExplicitTls12,
    ExplicitTls13,
    Implicit,
}

impl Mode {
    fn options(self) -> FtpServerOptions {
        let o = FtpServerOptions::proftpd();
        match self {
            Mode::Plain => o,
            Mode::ExplicitTls12 => o
                .tls(FtpServerTls::Explicit { required: true })
                .max_tls12(true),
            Mode::ExplicitTls13 => o.tls(FtpServerTls::Explicit { required: true }),
            Mode::Implicit => o.tls(FtpServerTls::Implicit),
        }
    }

    fn client_tls(self) -> FtpTls {
        match self {
            Mode::Plain => FtpTls::Never,
            Mode::ExplicitTls12 | Mode::ExplicitTls13 => FtpTls::Require,
            Mode::Implicit => FtpTls::RequireImplicit,
        }
    }

    fn tls_version(self) -> Option<&'static str> {
        match self {
            Mode::Plain => None,
            Mode::ExplicitTls12 => Some("TLSv1.2"),
            Mode::ExplicitTls13 | Mode::Implicit => Some("TLSv1.3"),
        }
    }
}

/// mod_tls' log shows the mode's protocol, data connections that resumed
/// the control session, and none refused for not doing so.
fn assert_sessions_reused(server: &FtpServer, mode: Mode) {
    let Some(version) = mode.tls_version() else {
        return;
    };
    let log = fs::read_to_string(server.tls_log_path()).unwrap_or_default();
    assert!(
        !log.contains("did not reuse"),
        "{mode:?}: ProFTPD refused a data connection that did not resume the session\n{}",
        server.logs()
    );
    assert!(
        log.contains(&format!("{version} data connection accepted"))
            && log.contains("resumed session"),
        "{mode:?}: mod_tls' log shows no resumed {version} data connection\n{}",
        server.logs()
    );
}

// ---------------------------------------------------------------------------
// The backend conformance suite
// ---------------------------------------------------------------------------

fn conformance_in(mode: Mode) {
    let started = Instant::now();
    let server = FtpServer::start(mode.options()).expect("starting ProFTPD");
    let settings = FtpSettings {
        tls: mode.client_tls(),
        certificate: CertificateCheck::RequireMatch {
            ca_file: Some(server.ca_file()),
        },
        // The suite holds an upload open while it lists: two connections.
        pool: pool_settings(2),
        ..server.backend_settings("proftpd")
    };
    let single = FtpSettings {
        pool: pool_settings(1),
        ..settings.clone()
    };
    let rt = runtime();
    let suite = server.control_sampler();
    rt.block_on(async {
        let backend = FtpBackend::new(settings).unwrap();
        conformance::run_all(&backend).await;
        let stats = backend.pool_stats();
        assert_eq!(stats.open, stats.idle, "{stats:?}");
    });
    let suite = suite.finish().unwrap();
    assert!(
        suite.max <= 2,
        "{mode:?}: more control connections at once than the pool allows: {suite:?}"
    );
    // The suite's pool closes its connections in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.control_connections().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Uploads in a row on a pool of one connection.
    let row = server.control_sampler();
    rt.block_on(async {
        let backend = FtpBackend::new(single).unwrap();
        backend.mkdir(&storage_path("row")).await.unwrap();
        for i in 0..UPLOADS {
            let data = pattern(100_000 + i, i as u8);
            put(&backend, &format!("row/f{i}.bin"), &data).await;
            assert_eq!(
                fs::read(server.root().join(format!("row/f{i}.bin"))).unwrap(),
                data,
                "{mode:?}: upload {i}"
            );
        }
        let probe = backend.probe().await.unwrap();
        assert_eq!(
            probe.tls.is_some(),
            mode.tls_version().is_some(),
            "{probe:?}"
        );
    });
    drop(rt);
    let row = row.finish().unwrap();
    // One control connection carries every upload, in every mode: over
    // TLS 1.3 too, where ProFTPD sends no new ticket on an upload's data
    // connection and the control connection's ticket is offered again.
    assert!(
        row.max <= 1,
        "{mode:?}: more than one control connection at once: {row:?}"
    );
    assert_eq!(
        row.seen.len(),
        1,
        "{mode:?}: {UPLOADS} uploads took more than one control connection: {row:?}"
    );
    assert_sessions_reused(&server, mode);
    let leftovers = upload_leftovers(&server.root());
    assert!(leftovers.is_empty(), "{mode:?}: {leftovers:?}");
    eprintln!(
        "{mode:?}: conformance + {UPLOADS} uploads in {:?}",
        started.elapsed()
    );
}

/// `len` bytes depending on `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    e2e::direct::pattern(len, seed)
}

#[test]
fn proftpd_conformance_plain() {
    conformance_in(Mode::Plain);
}

#[test]
fn proftpd_conformance_explicit_tls12() {
    conformance_in(Mode::ExplicitTls12);
}

#[test]
fn proftpd_conformance_explicit_tls13() {
    conformance_in(Mode::ExplicitTls13);
}

#[test]
fn proftpd_conformance_implicit_tls() {
    conformance_in(Mode::Implicit);
}

// ---------------------------------------------------------------------------
// Through the gateway: 12 uploads in a row on one pooled control connection
// ---------------------------------------------------------------------------

const REMOTE: &str = "partner";
const MOUNT: &str = "/partner";

fn sha256_file(path: &Path) -> String {
    sha256_hex(&fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

fn mount_in(mode: Mode) {
    let started = Instant::now();
    let server = FtpServer::start(mode.options()).expect("starting ProFTPD");
    let mut m = MountedGateway::new(server.remote_config(REMOTE), MOUNT).expect("set-up");
    m.remote().max_connections = Some(1);
    m.remote().idle_timeout = Some("5m".into());
    m.start_gateway().expect("gateway start");
    let logs = |m: &MountedGateway| m.logs_with(&server.logs());

    let sources: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let path = m.env.path(&format!("up-{i}.bin"));
            write_random_file(&path, 200_000 + 4096 * i).expect("source file");
            path
        })
        .collect();
    let control = server.control_sampler();
    let c = m.client();
    let mut batch = String::new();
    for (i, src) in sources.iter().enumerate() {
        batch += &format!("put {} {MOUNT}/f{i}.bin\n", p(src));
    }
    let out = c.sftp(&batch).expect("running sftp");
    assert!(
        out.success(),
        "{mode:?}: {UPLOADS} uploads\n{out}\n{}",
        logs(&m)
    );
    for (i, src) in sources.iter().enumerate() {
        assert_eq!(
            sha256_file(&server.root().join(format!("f{i}.bin"))),
            sha256_file(src),
            "{mode:?}: upload {i} differs on the server's disk\n{}",
            logs(&m)
        );
    }
    let mut batch = String::new();
    for i in 0..UPLOADS {
        batch += &format!(
            "get {MOUNT}/f{i}.bin {}\n",
            p(&m.env.path(&format!("down-{i}.bin")))
        );
    }
    let out = c.sftp(&batch).expect("running sftp");
    assert!(out.success(), "{mode:?}: downloads\n{out}\n{}", logs(&m));
    for (i, src) in sources.iter().enumerate() {
        assert_eq!(
            sha256_file(&m.env.path(&format!("down-{i}.bin"))),
            sha256_file(src),
            "{mode:?}: download {i} differs"
        );
    }
    let control = control.finish().unwrap();
    assert!(
        control.max <= 1,
        "{mode:?}: more than one control connection at once: {control:?}"
    );
    assert_eq!(
        control.seen.len(),
        1,
        "{mode:?}: the puts and gets took more than one control connection: {control:?}"
    );
    let source: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        control.peers.is_empty() || control.peers == BTreeSet::from([source]),
        "{control:?}"
    );
    assert_sessions_reused(&server, mode);

    // A transfer the server refuses is logged with its reply at WARN.
    let locked = server.root().join("locked");
    fs::create_dir(&locked).unwrap();
    let out = c
        .sftp(&format!("put {} {MOUNT}/locked/x.bin\n", p(&sources[0])))
        .expect("running sftp");
    assert!(
        !out.success(),
        "{mode:?}: upload into a root-owned folder passed\n{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !m.gateway_log().contains("FTP transfer failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = m.gateway_log();
    let line = log
        .lines()
        .find(|l| l.contains("FTP transfer failed"))
        .unwrap_or_else(|| panic!("{mode:?}: no WARN with the server's reply\n{}", logs(&m)));
    assert!(
        line.contains("WARN") && line.contains("550") && line.contains("STOR"),
        "{mode:?}: {line}"
    );
    drop(m);
    eprintln!(
        "{mode:?}: mount, {UPLOADS} puts and gets in {:?}",
        started.elapsed()
    );
}

#[test]
fn proftpd_mount_plain_12_uploads_one_connection() {
    mount_in(Mode::Plain);
}

#[test]
fn proftpd_mount_explicit_tls12_12_uploads_one_connection() {
    mount_in(Mode::ExplicitTls12);
}

#[test]
fn proftpd_mount_explicit_tls13_12_uploads_one_connection() {
    mount_in(Mode::ExplicitTls13);
}

#[test]
fn proftpd_mount_implicit_tls_12_uploads_one_connection() {
    mount_in(Mode::Implicit);
}
