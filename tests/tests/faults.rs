//! Faults between the gateway and each kind of remote (OpenSSH sshd,
//! vsftpd with its data connections, s3s-fs), injected by a TCP relay
//! (`e2e::relay`): a connection cut during an upload, a download and a
//! listing, a connection that stalls past the timeouts, a slow remote, and
//! a remote that refuses connections and comes back.
//!
//! After each fault: the client got an error in bounded time (not a hang),
//! no partial file is visible under its final name, every pool slot came
//! back (`gateway_remote_connections_in_use` and `_waiters` are 0), a
//! transfer running at the same time through the same remote succeeded,
//! and the same operation works again once the fault is gone. An SFTP
//! upload cut mid-transfer leaves its hidden temporary file only until
//! the next operation through the remote.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::ftpd::{FtpServer, FtpServerOptions};
use e2e::mount::MountedGateway;
use e2e::ops::{logged_http_address, scrape};
use e2e::relay::{relay_ip, Direction, Fault, Relay, RelayOptions};
use e2e::s3d::{S3Server, S3ServerKind};
use e2e::sshd::{chown_to_test_user, sftp_in_parallel, Sshd, MOUNT};
use e2e::*;

const REMOTE: &str = "partner";
/// Files seeded for the listing faults.
const LISTING_FILES: usize = 3000;
/// The remotes' I/O timeout in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sftp,
    Ftp,
    S3,
}

enum Server {
    Sftp(Sshd, PathBuf),
    Ftp(FtpServer),
    S3(S3Server),
}

/// A gateway whose remote `partner` (mounted at `/partner` for alice) is
/// reached through a fault-injecting relay.
struct FaultSetup {
    /// The gateway (first: it stops before the relay and the server).
    mount: MountedGateway,
    relay: Relay,
    server: Server,
    metrics: SocketAddr,
    kind: Kind,
}

impl FaultSetup {
    fn new(kind: Kind, relay_n: u8) -> FaultSetup {
        let (server, upstream, mut remote) = match kind {
            Kind::Sftp => {
                let sshd = Sshd::start_default().unwrap();
                let root = sshd.remote_dir("root").unwrap();
                let addr: SocketAddr = format!("127.0.0.1:{}", sshd.port()).parse().unwrap();
                let r = sshd.remote_config(REMOTE).root(&root);
                (Server::Sftp(sshd, root), addr, r)
            }
            Kind::Ftp => {
                let ftp = FtpServer::start(FtpServerOptions::vsftpd()).unwrap();
                let addr = ftp.addr();
                let r = ftp.remote_config(REMOTE).atomic_uploads(true);
                (Server::Ftp(ftp), addr, r)
            }
            Kind::S3 => {
                let s3 = S3Server::start(S3ServerKind::S3sFs).unwrap();
                let addr = s3.addr();
                let r = s3.remote_config(REMOTE);
                (Server::S3(s3), addr, r)
            }
        };
        let mut opts = RelayOptions::new(&relay_ip(relay_n).to_string(), upstream);
        if kind == Kind::Ftp {
            opts = opts.ftp();
        }
        let relay = Relay::start(opts).unwrap();
        match kind {
            Kind::S3 => remote.endpoint = Some(format!("http://{}", relay.addr())),
            _ => {
                remote.host = relay.addr().ip().to_string();
                remote.port = Some(relay.addr().port());
            }
        }
        remote.connect_timeout = Some("5s".into());
        remote.pool_wait = Some("60s".into());
        remote.io_timeout = Some(format!("{}s", IO_TIMEOUT.as_secs()));
        let mut mount = MountedGateway::new(remote, MOUNT).unwrap();
        mount.cfg.metrics_listen = Some("127.0.0.1:0".into());
        mount.start_gateway().unwrap();
        let metrics =
            logged_http_address(mount.gw(), "metrics on http://").expect("metrics address");
        FaultSetup {
            mount,
            relay,
            server,
            metrics,
            kind,
        }
    }

    fn logs(&self) -> String {
        let server = match &self.server {
            Server::Sftp(s, _) => s.logs(),
            Server::Ftp(f) => f.logs(),
            Server::S3(s) => s.logs(),
        };
        self.mount.logs_with(&server)
    }

    fn client(&self, n: usize) -> Client {
        let mut c = self.mount.client_n(n);
        c.timeout = Duration::from_secs(180);
        c
    }

    /// Names in the remote's root as the server itself sees them.
    fn remote_names(&self) -> Vec<String> {
        let dir = match &self.server {
            Server::Sftp(_, root) => root.clone(),
            Server::Ftp(f) => f.root(),
            Server::S3(s) => return s.object_keys().unwrap(),
        };
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    /// The remote's copy of `name` on disk (s3s-fs keeps objects as files).
    fn remote_file(&self, name: &str) -> PathBuf {
        match &self.server {
            Server::Sftp(_, root) => root.join(name),
            Server::Ftp(f) => f.root().join(name),
            Server::S3(s) => s.bucket_dir().unwrap().join(name),
        }
    }

    /// Puts `count` small files in folder `folder` of the remote, directly
    /// on the server's disk.
    fn seed_listing(&self, folder: &str, count: usize) {
        let dir = self.remote_file(folder);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            let f = dir.join(format!("entry-with-a-longish-name-{i:05}.txt"));
            fs::write(&f, format!("{i}\n")).unwrap();
            if self.kind != Kind::S3 {
                chown_to_test_user(&f).unwrap();
            }
        }
        if self.kind != Kind::S3 {
            chown_to_test_user(&dir).unwrap();
        }
    }

    /// Uploads `src` as `name` through the gateway (no fault armed).
    fn upload(&self, src: &Path, name: &str) {
        let out = self
            .client(90)
            .sftp(&format!("put {} {MOUNT}/{name}\n", p(src)))
            .unwrap();
        assert_ok(&out, &format!("uploading {name} without a fault"));
    }

    /// Every pool slot back and nobody waiting, within 30 s.
    fn assert_slots_return(&self) {
        let r = [("remote", REMOTE)];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = scrape(self.metrics).unwrap();
            let (in_use, waiting) = (
                m.get("gateway_remote_connections_in_use", &r),
                m.get("gateway_remote_waiters", &r),
            );
            if in_use == 0.0 && waiting == 0.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pool slots did not come back: {in_use} in use, {waiting} waiting\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The longest a client may wait for its error: the stall detection
/// ([`IO_TIMEOUT`], which a retry may spend again) plus slack.
fn error_bound() -> Duration {
    IO_TIMEOUT * 3 + Duration::from_secs(10)
}

/// A file the concurrent transfer moves while the fault happens.
fn side_file(s: &FaultSetup) -> PathBuf {
    let f = s.mount.env.path("side.bin");
    write_random_file(&f, 1 << 20).unwrap();
    f
}

fn cut_upload(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    let src = s.mount.env.path("big.bin");
    write_random_file(&src, 8 << 20).unwrap();
    // The concurrent transfer is a download (few bytes towards the server).
    let side = side_file(&s);
    s.upload(&side, "side.bin");
    s.relay.arm(Direction::ToServer, 2 << 20, Fault::Cut);
    let t0 = Instant::now();
    let outs = sftp_in_parallel(vec![
        (s.client(1), format!("put {} {MOUNT}/big.bin\n", p(&src))),
        (
            s.client(2),
            format!(
                "get {MOUNT}/side.bin {}\n",
                p(&s.mount.env.path("side-back.bin"))
            ),
        ),
    ]);
    let took = t0.elapsed();
    assert!(
        s.relay.faults_fired() == 1,
        "the cut never happened\n{}",
        s.logs()
    );
    let upload = outs[0].as_ref().unwrap();
    if upload.success() {
        // The backend may retry on a new connection (the S3 SDK retries a
        // part); then the file must be whole.
        assert_same_file(&src, &s.remote_file("big.bin"));
    } else {
        assert!(
            took < error_bound(),
            "the error took {took:?}\n{}",
            s.logs()
        );
        assert!(
            !s.remote_names().contains(&"big.bin".to_string()),
            "a partial upload is visible under its final name: {:?}\n{}",
            s.remote_names(),
            s.logs()
        );
    }
    assert_ok(outs[1].as_ref().unwrap(), "a download at the same time");
    assert_same_file(&side, &s.mount.env.path("side-back.bin"));
    s.assert_slots_return();
    if kind == Kind::Sftp {
        assert_failed(upload, "an SFTP upload whose connection was cut");
        temporary_file_removed_later(&s);
    }
    // Back to normal: the same upload works.
    s.upload(&src, "big.bin");
    assert_same_file(&src, &s.remote_file("big.bin"));
    s.assert_slots_return();
}

/// After an SFTP upload was cut (its connection broke, so the gateway
/// could not remove the upload's hidden temporary file at once): the next
/// operation through the remote, once the fault is gone, has the file
/// removed from the server's disk, and leaves alone the file written
/// meanwhile under the upload's final name.
fn temporary_file_removed_later(s: &FaultSetup) {
    let written = s.remote_file("big.bin");
    fs::write(&written, "written meanwhile\n").unwrap();
    chown_to_test_user(&written).unwrap();
    let out = s.client(3).sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, "a listing once the fault is gone");
    let temporary_files = || -> Vec<String> {
        s.remote_names()
            .into_iter()
            .filter(|n| n.starts_with(".gw-upload-"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !temporary_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        temporary_files().is_empty(),
        "the cut upload's temporary file is still on the remote: {:?}\n{}",
        temporary_files(),
        s.logs()
    );
    // It was there, and the gateway removed it (not just never wrote it).
    assert!(
        s.logs().contains("removed the partial upload `") && s.logs().contains(".gw-upload-"),
        "the gateway did not say it removed the temporary file\n{}",
        s.logs()
    );
    assert_eq!(
        fs::read_to_string(&written).unwrap(),
        "written meanwhile\n",
        "the file under the final name was touched\n{}",
        s.logs()
    );
    s.assert_slots_return();
}

fn cut_download(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    let src = s.mount.env.path("big.bin");
    write_random_file(&src, 8 << 20).unwrap();
    s.upload(&src, "big.bin");
    let side = side_file(&s);
    s.relay.arm(Direction::ToGateway, 2 << 20, Fault::Cut);
    let back = s.mount.env.path("back.bin");
    let t0 = Instant::now();
    let outs = sftp_in_parallel(vec![
        (s.client(1), format!("get {MOUNT}/big.bin {}\n", p(&back))),
        (s.client(2), format!("put {} {MOUNT}/side.bin\n", p(&side))),
    ]);
    let took = t0.elapsed();
    assert!(
        s.relay.faults_fired() == 1,
        "the cut never happened\n{}",
        s.logs()
    );
    assert_failed(
        outs[0].as_ref().unwrap(),
        "a download whose connection was cut",
    );
    assert!(
        took < error_bound(),
        "the error took {took:?}\n{}",
        s.logs()
    );
    assert_ok(outs[1].as_ref().unwrap(), "an upload at the same time");
    assert_same_file(&side, &s.remote_file("side.bin"));
    s.assert_slots_return();
    let out = s
        .client(3)
        .sftp(&format!("get {MOUNT}/big.bin {}\n", p(&back)))
        .unwrap();
    assert_ok(&out, "the download again");
    assert_same_file(&src, &back);
    s.assert_slots_return();
}

fn cut_listing(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    s.seed_listing("many", LISTING_FILES);
    let side = side_file(&s);
    s.relay.arm(Direction::ToGateway, 32 << 10, Fault::Reset);
    let outs = sftp_in_parallel(vec![
        (s.client(1), format!("ls -1 {MOUNT}/many\n")),
        (s.client(2), format!("put {} {MOUNT}/side.bin\n", p(&side))),
    ]);
    assert!(
        s.relay.faults_fired() == 1,
        "the cut never happened\n{}",
        s.logs()
    );
    let listing = outs[0].as_ref().unwrap();
    // A cut listing must not pass for a complete one: it fails, or (when
    // the backend retried on a new connection) it is whole.
    if listing.success() {
        assert_eq!(
            listed_entries(listing),
            LISTING_FILES,
            "a cut listing passed as complete\n{}",
            s.logs()
        );
    }
    assert_ok(outs[1].as_ref().unwrap(), "an upload at the same time");
    s.assert_slots_return();
    let out = s.client(3).sftp(&format!("ls -1 {MOUNT}/many\n")).unwrap();
    assert_ok(&out, "the listing again");
    assert_eq!(listed_entries(&out), LISTING_FILES, "{}", s.logs());
    s.assert_slots_return();
}

fn listed_entries(out: &CmdOutput) -> usize {
    out.listing()
        .iter()
        .filter(|l| l.contains("entry-with-a-longish-name-"))
        .count()
}

fn stall_download(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    let src = s.mount.env.path("big.bin");
    write_random_file(&src, 8 << 20).unwrap();
    s.upload(&src, "big.bin");
    s.relay.arm(Direction::ToGateway, 1 << 20, Fault::Stall);
    let back = s.mount.env.path("back.bin");
    let t0 = Instant::now();
    let out = s
        .client(1)
        .sftp(&format!("get {MOUNT}/big.bin {}\n", p(&back)))
        .unwrap();
    let took = t0.elapsed();
    assert!(
        s.relay.faults_fired() == 1,
        "the stall never happened\n{}",
        s.logs()
    );
    assert_failed(&out, "a download whose connection stalled");
    assert!(
        took < error_bound(),
        "the client waited {took:?} on a stalled remote\n{}",
        s.logs()
    );
    s.assert_slots_return();
    let out = s
        .client(2)
        .sftp(&format!("get {MOUNT}/big.bin {}\n", p(&back)))
        .unwrap();
    assert_ok(&out, "the download again");
    assert_same_file(&src, &back);
}

/// A remote slowed to 256 KiB/s is slow, not stalled: a 2 MiB download
/// takes longer than the I/O timeout and completes intact.
fn slow_download(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    let src = s.mount.env.path("mid.bin");
    write_random_file(&src, 2 << 20).unwrap();
    s.upload(&src, "mid.bin");
    s.relay.slow(256 << 10);
    let back = s.mount.env.path("back.bin");
    let t0 = Instant::now();
    let out = s
        .client(1)
        .sftp(&format!("get {MOUNT}/mid.bin {}\n", p(&back)))
        .unwrap();
    let took = t0.elapsed();
    assert_ok(&out, "a download from a slow remote");
    assert_same_file(&src, &back);
    assert!(
        took > IO_TIMEOUT,
        "the relay did not slow the download ({took:?})"
    );
    s.relay.slow(0);
    s.assert_slots_return();
}

fn refuse_then_back(kind: Kind, n: u8) {
    let s = FaultSetup::new(kind, n);
    let src = s.mount.env.path("small.bin");
    write_random_file(&src, 100_000).unwrap();
    s.upload(&src, "small.bin");
    s.relay.refuse();
    let t0 = Instant::now();
    let out = s.client(1).sftp(&format!("ls {MOUNT}\n")).unwrap();
    let took = t0.elapsed();
    assert_failed(&out, "a listing while the remote refuses connections");
    assert!(
        took < Duration::from_secs(30),
        "the error took {took:?}\n{}",
        s.logs()
    );
    let m = scrape(s.metrics).unwrap();
    let refused = m.get(
        "gateway_remote_connect_failures_total",
        &[("remote", REMOTE), ("reason", "refused")],
    );
    assert!(refused >= 1.0, "no refused connect counted\n{}", m.text);
    s.assert_slots_return();

    s.relay.accept_again();
    let back = s.mount.env.path("back.bin");
    let out = s
        .client(2)
        .sftp(&format!("ls {MOUNT}\nget {MOUNT}/small.bin {}\n", p(&back)))
        .unwrap();
    assert_ok(&out, "the remote once it is back");
    assert!(out.lists_name("small.bin"), "{out}");
    assert_same_file(&src, &back);
    s.assert_slots_return();
}

macro_rules! fault_tests {
    ($kind:expr, $n:expr, $cut_upload:ident, $cut_download:ident, $cut_listing:ident, $stall:ident, $slow:ident, $refuse:ident) => {
        #[test]
        fn $cut_upload() {
            cut_upload($kind, $n);
        }
        #[test]
        fn $cut_download() {
            cut_download($kind, $n + 1);
        }
        #[test]
        fn $cut_listing() {
            cut_listing($kind, $n + 2);
        }
        #[test]
        fn $stall() {
            stall_download($kind, $n + 3);
        }
        #[test]
        fn $slow() {
            slow_download($kind, $n + 4);
        }
        #[test]
        fn $refuse() {
            refuse_then_back($kind, $n + 5);
        }
    };
}

fault_tests!(
    Kind::Sftp,
    20,
    sftp_cut_during_upload,
    sftp_cut_during_download,
    sftp_cut_during_listing,
    sftp_stall_during_download,
    sftp_slow_remote,
    sftp_refused_then_back
);
fault_tests!(
    Kind::Ftp,
    30,
    ftp_cut_during_upload,
    ftp_cut_during_download,
    ftp_cut_during_listing,
    ftp_stall_during_download,
    ftp_slow_remote,
    ftp_refused_then_back
);
fault_tests!(
    Kind::S3,
    40,
    s3_cut_during_upload,
    s3_cut_during_download,
    s3_cut_during_listing,
    s3_stall_during_download,
    s3_slow_remote,
    s3_refused_then_back
);
