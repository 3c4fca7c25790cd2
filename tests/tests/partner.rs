//! Partner sites: gateway A reaches gateway B's S3 endpoint as an ordinary
//! S3 remote, with an access key B's admin issued for one user, and mounts
//! and syncs it. Both are the real `gateway` binary; A's users drive it
//! with OpenSSH's `sftp`, and B's side is checked on its disk.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::mount::MountedGateway;
use e2e::s3_endpoint::{create_key, endpoint_addr, s3_key_command, S3Key};
use e2e::sync::gateway_sync;
use e2e::*;
use sha2::{Digest, Sha256};

/// B's user for site A, and where its tree lives in B's storage.
const PARTNER_USER: &str = "site-a";
const PARTNER_HOME: &str = "exchange/site-a";
/// A's mount of B.
const MOUNT: &str = "/partner";

/// Gateway B (with its S3 endpoint and a key for [`PARTNER_USER`]) and
/// gateway A (alice, with [`MOUNT`] on B and two syncs). A is first so
/// it stops before B.
struct Sites {
    a: MountedGateway,
    b: Gateway,
    b_env: TestEnv,
    b_config: PathBuf,
    key: S3Key,
}

impl Sites {
    fn start() -> Result<Sites> {
        let b_env = TestEnv::new().context("B's test env")?;
        let mut b_cfg = b_env.config();
        b_cfg.s3_listen = Some("127.0.0.1:0".into());
        b_cfg.metrics_listen = Some("127.0.0.1:0".into());
        let key_b = client_key(&b_env.path("site-b-key"))?;
        // Site A's user has no SFTP credentials: only its S3 key reaches it.
        b_cfg.users = vec![
            UserConfig::new(PARTNER_USER).home(PARTNER_HOME),
            UserConfig::new("site-b")
                .key(&key_b)
                .home("exchange/site-b"),
        ];
        // What B holds: site A's folder, and things A must never see.
        let b_data = &b_env.data;
        write(
            &b_data.join(PARTNER_HOME).join("welcome.txt"),
            b"hello from B\n",
        )?;
        fs::create_dir_all(b_data.join(PARTNER_HOME).join("outbox"))?;
        write(&b_data.join("exchange/site-b/secret.txt"), b"site B only\n")?;
        write(&b_data.join("internal/payroll.csv"), b"B's own\n")?;
        let b_config = b_env.path("b.toml");
        b_cfg.write(&b_config)?;
        let b = Gateway::start(&GatewayCommand::serve_config(&b_config)).context("starting B")?;
        let addr = endpoint_addr(&b)?;
        let key = create_key(&b_config, PARTNER_USER)?;

        // A: an S3 remote with B's endpoint, bucket `default`, any region.
        let mut remote = RemoteConfig::s3(
            "b",
            &format!("http://{addr}"),
            "default",
            &key.id,
            &key.secret,
        )
        .region("eu-central-1")
        .io_timeout("60s");
        remote.connect_timeout = Some("10s".into());
        let mut a = MountedGateway::new(remote, MOUNT)?;
        a.cfg.syncs = vec![
            SyncConfig::new("to-b", "alice/outbox", "b", "inbox", "push").settle("0s"),
            SyncConfig::new("from-b", "alice/from-b", "b", "outbox", "pull").settle("0s"),
        ];
        fs::create_dir_all(a.env.data.join("alice/outbox"))?;
        fs::create_dir_all(a.env.data.join("alice/from-b"))?;
        a.start_gateway().context("starting A")?;
        Ok(Sites {
            a,
            b,
            b_env,
            b_config,
            key,
        })
    }

    /// Where B keeps a path of site A's tree.
    fn on_b(&self, rel: &str) -> PathBuf {
        self.b_env.data.join(PARTNER_HOME).join(rel)
    }

    fn logs(&self) -> String {
        format!(
            "{}\n--- gateway B ---\n{}",
            self.a.logs_with(""),
            self.b.stderr.text()
        )
    }

    fn sftp(&self, batch: &str) -> CmdOutput {
        self.a
            .client()
            .sftp(batch)
            .unwrap_or_else(|e| panic!("running sftp: {e:#}\n{}", self.logs()))
    }

    /// Multipart uploads B still holds (none once every upload ended).
    fn uploads_on_b(&self) -> usize {
        fs::read_dir(self.b_env.state.join("s3-uploads"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Files under `root` (relative paths), sorted.
fn files_under(root: &Path) -> Vec<String> {
    e2e::sync::walk_files(root).unwrap_or_default()
}

#[test]
fn through_a_mount_site_a_works_in_its_folder_on_b_and_sees_nothing_else() {
    let s = Sites::start().expect("starting both gateways");
    let local = s.a.env.path("note.txt");
    fs::write(&local, b"a note from A\n").unwrap();

    let out = s.sftp(&format!(
        "ls -1 {MOUNT}\nput {} {MOUNT}/note.txt\nmkdir {MOUNT}/reports\nput {} {MOUNT}/reports/q4.txt\nls -1 {MOUNT}/reports\n",
        local.display(),
        local.display()
    ));
    assert_ok(&out, &format!("sftp through A\n{}", s.logs()));
    // Only site A's folder on B: no site-b, no internal, no exchange.
    let text = out.text();
    assert!(text.contains("welcome.txt"), "{text}\n{}", s.logs());
    for hidden in ["secret.txt", "payroll", "site-b", "internal", "exchange"] {
        assert!(!text.contains(hidden), "A saw {hidden} on B:\n{text}");
    }
    assert_eq!(fs::read(s.on_b("note.txt")).unwrap(), b"a note from A\n");
    assert_eq!(
        fs::read(s.on_b("reports/q4.txt")).unwrap(),
        b"a note from A\n"
    );

    // Download, rename, delete, folders.
    let back = s.a.env.path("welcome.back");
    let out = s.sftp(&format!(
        "get {MOUNT}/welcome.txt {}\nrename {MOUNT}/note.txt {MOUNT}/renamed.txt\nrm {MOUNT}/reports/q4.txt\nrmdir {MOUNT}/reports\n",
        back.display()
    ));
    assert_ok(&out, &format!("sftp through A\n{}", s.logs()));
    assert_eq!(fs::read(&back).unwrap(), b"hello from B\n");
    assert!(!s.on_b("note.txt").exists(), "the rename left the old name");
    assert_eq!(fs::read(s.on_b("renamed.txt")).unwrap(), b"a note from A\n");
    assert!(
        !s.on_b("reports").exists(),
        "rmdir did not remove the folder on B"
    );

    // Escapes stay inside: `..` is resolved in A's tree, never B's.
    let out = s.sftp(&format!("ls -1 {MOUNT}/../../exchange\n"));
    assert!(!out.text().contains("secret.txt"), "{}", out.text());

    // Nothing else on B changed; no temporary or staged upload left.
    assert_eq!(
        fs::read(s.b_env.data.join("exchange/site-b/secret.txt")).unwrap(),
        b"site B only\n"
    );
    assert_eq!(
        files_under(&s.on_b("")),
        ["renamed.txt", "welcome.txt"],
        "site A's folder on B"
    );
    assert_eq!(s.uploads_on_b(), 0, "multipart uploads left on B");

    // B's operators see the endpoint's traffic.
    let metrics = e2e::ops::logged_http_address(&s.b, "metrics on ").expect("B's metrics address");
    let scrape = e2e::ops::scrape(metrics).unwrap();
    for (method, at_least) in [("GET", 3.0), ("PUT", 2.0), ("DELETE", 2.0)] {
        let n = scrape
            .value(
                "gateway_s3_requests_total",
                &[("method", method), ("status", "2xx")],
            )
            .unwrap_or(0.0);
        assert!(
            n >= at_least,
            "gateway_s3_requests_total {method} 2xx = {n}"
        );
    }
}

#[test]
fn a_gigabyte_crosses_from_a_to_b_and_back_byte_identical() {
    const SIZE: u64 = 1 << 30;
    let s = Sites::start().expect("starting both gateways");
    let src = s.a.env.path("big.bin");
    {
        // Random-looking bytes (a seeded generator): no run of equal blocks.
        use std::io::Write;
        let mut f = std::io::BufWriter::new(fs::File::create(&src).unwrap());
        let mut rng = e2e::sync::Rng::new(20261203);
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            f.write_all(&rng.bytes(n)).unwrap();
            left -= n as u64;
        }
        f.flush().unwrap();
    }
    let want = sha256_file(&src);
    let back = s.a.env.path("big.back");

    let started = Instant::now();
    let out = s.sftp(&format!("put {} {MOUNT}/big.bin\n", src.display()));
    assert_ok(&out, &format!("1 GiB upload through A to B\n{}", s.logs()));
    let up = started.elapsed();
    assert_eq!(fs::metadata(s.on_b("big.bin")).unwrap().len(), SIZE);
    assert_eq!(sha256_file(&s.on_b("big.bin")), want, "B's copy differs");
    fs::remove_file(&src).unwrap();

    let started = Instant::now();
    let out = s.sftp(&format!("get {MOUNT}/big.bin {}\n", back.display()));
    assert_ok(
        &out,
        &format!("1 GiB download from B through A\n{}", s.logs()),
    );
    let down = started.elapsed();
    assert_eq!(sha256_file(&back), want, "the download differs");
    assert_eq!(s.uploads_on_b(), 0, "multipart uploads left on B");
    eprintln!(
        "1 GiB through A to B: up {:.1} s ({:.0} MiB/s), down {:.1} s ({:.0} MiB/s)",
        up.as_secs_f64(),
        1024.0 / up.as_secs_f64(),
        down.as_secs_f64(),
        1024.0 / down.as_secs_f64()
    );
}

#[test]
fn push_and_pull_syncs_run_between_the_sites() {
    let s = Sites::start().expect("starting both gateways");
    let outbox = s.a.env.data.join("alice/outbox");
    write(
        &outbox.join("invoice-1.pdf"),
        &e2e::sync::pattern(0, 300_000),
    )
    .unwrap();
    write(&outbox.join("2026/12/statement.csv"), b"a,b\n1,2\n").unwrap();
    write(&outbox.join("big.dat"), &e2e::sync::pattern(7, 20 << 20)).unwrap();
    // B's side of the pull.
    write(&s.on_b("outbox/reply.txt"), b"thanks\n").unwrap();
    write(&s.on_b("outbox/data/rates.json"), b"{\"eur\":1}\n").unwrap();

    let out = gateway_sync(&s.a.config_path, &["run", "to-b"], Duration::from_secs(300)).unwrap();
    assert_ok(&out, &format!("push sync A to B\n{}", s.logs()));
    for rel in ["invoice-1.pdf", "2026/12/statement.csv", "big.dat"] {
        assert_eq!(
            fs::read(s.on_b(&format!("inbox/{rel}"))).unwrap_or_default(),
            fs::read(outbox.join(rel)).unwrap(),
            "inbox/{rel} on B\n{out}"
        );
    }

    let out = gateway_sync(
        &s.a.config_path,
        &["run", "from-b"],
        Duration::from_secs(300),
    )
    .unwrap();
    assert_ok(&out, &format!("pull sync B to A\n{}", s.logs()));
    let inbox = s.a.env.data.join("alice/from-b");
    assert_eq!(fs::read(inbox.join("reply.txt")).unwrap(), b"thanks\n");
    assert_eq!(
        fs::read(inbox.join("data/rates.json")).unwrap(),
        b"{\"eur\":1}\n"
    );

    // A second run finds nothing to do either way.
    for name in ["to-b", "from-b"] {
        let out = gateway_sync(&s.a.config_path, &["run", name], Duration::from_secs(120)).unwrap();
        assert_ok(&out, &format!("second run of {name}\n{}", s.logs()));
        let summary = e2e::sync::run_summary(&out, name)
            .unwrap_or_else(|| panic!("no summary for {name}:\n{out}"));
        assert_eq!(
            summary.copied, 0,
            "second run of {name} copied again:\n{out}"
        );
    }
    assert_eq!(s.uploads_on_b(), 0, "multipart uploads left on B");
}

#[test]
fn a_revoked_key_fails_a_at_its_next_operation_with_a_clear_error() {
    let s = Sites::start().expect("starting both gateways");
    let out = s.sftp(&format!("ls -1 {MOUNT}\n"));
    assert_ok(&out, &format!("ls before the revocation\n{}", s.logs()));

    let listed = s3_key_command(&s.b_config, &["list"]).unwrap();
    assert_ok(&listed, "s3-key list");
    assert!(listed.stdout.contains(&s.key.id) && listed.stdout.contains(PARTNER_USER));
    assert!(
        !listed.stdout.contains(&s.key.secret),
        "list shows the secret"
    );
    let revoked = s3_key_command(&s.b_config, &["revoke", &s.key.id]).unwrap();
    assert_ok(&revoked, "s3-key revoke");

    let out = s.sftp(&format!("ls -1 {MOUNT}\n"));
    assert!(
        !out.success(),
        "A still lists B after the revocation:\n{out}"
    );
    // A's admin sees why.
    let test = s.a.remote_test().unwrap();
    assert!(
        !test.success(),
        "remote test passed after the revocation:\n{test}"
    );
    assert!(
        test.text().contains("InvalidAccessKeyId"),
        "`gateway remote test b` does not say the key is refused:\n{test}"
    );
    let log = s.a.gateway_log();
    assert!(
        log.contains("InvalidAccessKeyId"),
        "A's log does not say why the operation failed:\n{log}"
    );
}
