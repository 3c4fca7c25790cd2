//! Folders mounted on remote FTP and FTPS servers, end to end: OpenSSH's
//! `sftp` → the real `gateway` binary → a real vsftpd or pure-ftpd
//! (`e2e::ftpd`), each test with its own server, ports, folders and gateway.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::ftpd::{CertChoice, FtpServer, FtpServerOptions, FtpServerTls};
use e2e::mount::MountedGateway;
use e2e::peers::ip_set;
use e2e::sshd::{assert_all_ok, remote_list, remote_list_line, sftp_in_parallel};
use e2e::*;

/// Name of the remote in [`FtpMount`]'s config.
const REMOTE: &str = "partner";

/// Folder of alice's tree mounted on the remote's root.
const MOUNT: &str = "/partner";

/// A test's gateway (user `alice`, key auth, [`MOUNT`] on remote
/// [`REMOTE`]) in front of its own FTP server. Tweak `cfg` (e.g.
/// [`MountedGateway::remote`], `cfg.dedicated_ips`) before [`MountedGateway::start_gateway`].
/// Dropping it stops the gateway, then the server (both print their logs
/// if the test is panicking).
struct FtpMount {
    /// The gateway half (first, so it stops before the server).
    mount: MountedGateway,
    ftp: FtpServer,
}

impl std::ops::Deref for FtpMount {
    type Target = MountedGateway;
    fn deref(&self) -> &MountedGateway {
        &self.mount
    }
}

impl std::ops::DerefMut for FtpMount {
    fn deref_mut(&mut self) -> &mut MountedGateway {
        &mut self.mount
    }
}

impl FtpMount {
    /// The FTP server started, the config prepared, the gateway NOT started.
    fn new(opts: FtpServerOptions) -> Result<FtpMount> {
        let ftp = FtpServer::start(opts).context("starting the FTP server")?;
        let mount = MountedGateway::new(ftp.remote_config(REMOTE), MOUNT)?;
        Ok(FtpMount { mount, ftp })
    }

    /// The gateway's and the server's logs, for failure messages.
    fn logs(&self) -> String {
        self.mount.logs_with(&self.ftp.logs())
    }

    /// Files under the server's root whose name marks a temporary upload.
    fn upload_leftovers(&self) -> Vec<PathBuf> {
        tree_snapshot(&self.ftp.root())
            .unwrap_or_default()
            .into_keys()
            .filter(|p| p.to_string_lossy().contains(".gw-upload-"))
            .collect()
    }
}

/// Runs `sftp -b` and fails (with the gateway's and server's logs) if the
/// client could not even be run.
fn sftp(s: &FtpMount, c: &Client, batch: &str) -> CmdOutput {
    c.sftp(batch)
        .unwrap_or_else(|e| panic!("running sftp: {e:#}\n{}", s.logs()))
}

/// `sftp` shows a name as it is, or (outside a UTF-8 locale) with every
/// non-ASCII byte as a `\ooo` octal escape: both renderings.
fn shown(name: &str) -> [String; 2] {
    let escaped = name
        .bytes()
        .map(|b| {
            if b.is_ascii() {
                (b as char).to_string()
            } else {
                format!("\\{b:03o}")
            }
        })
        .collect();
    [name.to_string(), escaped]
}

/// The `ls -l` row (non-echo stdout line) ending with `name`.
fn ls_row(out: &CmdOutput, name: &str) -> Option<String> {
    let forms = shown(name);
    out.listing()
        .into_iter()
        .find(|l| forms.iter().any(|f| l.ends_with(&format!(" {f}"))))
}

/// Quotes a path for an sftp batch line.
fn q(path: &str) -> String {
    assert!(!path.contains('"'), "{path}");
    format!("\"{path}\"")
}

// ---------------------------------------------------------------------------
// 1. Large transfers over explicit and implicit FTPS
// ---------------------------------------------------------------------------

/// 256 MiB up through the mount and back down, byte-identical on the
/// server's disk and locally; the server required TLS on every connection.
fn big_file_both_ways(opts: FtpServerOptions) {
    let mut s = FtpMount::new(opts).expect("set-up");
    s.start_gateway().expect("gateway start");
    let src = s.env.path("big.bin");
    write_random_file(&src, 256 << 20).expect("writing the 256 MiB source");
    let back = s.env.path("big-back.bin");
    let mut c = s.client();
    c.timeout = Duration::from_secs(300);

    let out = sftp(&s, &c, &format!("put {} {MOUNT}/big.bin\n", p(&src)));
    assert!(
        out.success(),
        "put 256 MiB through the FTPS mount failed\n{out}\n{}",
        s.logs()
    );
    eprintln!("put 256 MiB: {:?}", out.elapsed);
    assert!(
        !s.env.data.join("alice/partner/big.bin").exists(),
        "the upload landed in the gateway's own storage, not on the remote\n{out}"
    );
    assert_same_large_file(&src, &s.ftp.root().join("big.bin"));

    let out = sftp(&s, &c, &format!("get {MOUNT}/big.bin {}\n", p(&back)));
    assert!(
        out.success(),
        "get 256 MiB through the FTPS mount failed\n{out}\n{}",
        s.logs()
    );
    eprintln!("get 256 MiB: {:?}", out.elapsed);
    assert_same_large_file(&src, &back);
    assert!(
        s.upload_leftovers().is_empty(),
        "temporary upload files left on the server: {:?}",
        s.upload_leftovers()
    );
    let log = s.ftp.log();
    assert!(
        log.contains("OK UPLOAD") && log.contains("OK DOWNLOAD"),
        "vsftpd's log shows no completed upload and download\n{}",
        s.logs()
    );
    // Over TLS 1.3 (vsftpd 3.0.3 fails many large curl uploads there with
    // `426 Failure reading network stream`), data connections resuming the
    // control connection's session.
    assert!(
        log.contains("SSL version: TLSv1.3") && log.contains("reused"),
        "vsftpd's log does not show TLS 1.3 with session reuse\n{}",
        s.logs()
    );
    let _ = fs::remove_file(&back);
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(s.ftp.root().join("big.bin"));
}

/// `tls = "require"` against vsftpd with explicit TLS required on control
/// and data connections and `require_ssl_reuse=YES`, trusting the test CA.
#[test]
fn ftp_explicit_tls_passes_256_mib_both_ways() {
    big_file_both_ways(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .require_ssl_reuse(true),
    );
}

/// `tls = "require_implicit"` against vsftpd with implicit TLS.
#[test]
fn ftp_implicit_tls_passes_256_mib_both_ways() {
    big_file_both_ways(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Implicit)
            .require_ssl_reuse(true),
    );
}

// ---------------------------------------------------------------------------
// 2. Every ordinary operation
// ---------------------------------------------------------------------------

/// mkdir, put, ls -l (names with spaces and non-ASCII letters, sizes and
/// modification times), rename, get, rm and rmdir through the mount; the
/// server's disk shows each batch's effect right after it.
fn ordinary_operations(opts: FtpServerOptions) {
    let mut s = FtpMount::new(opts).expect("set-up");
    // A file the partner left, with a known modification time.
    let old = s
        .ftp
        .write_file("old report.txt", b"from the partner\n")
        .expect("writing a file on the server's disk");
    let mut touch = Command::new("touch");
    touch
        .args(["-m", "-d", "2021-03-04 12:00:00 UTC"])
        .arg(&old);
    let out = run_with_timeout(touch, Duration::from_secs(10)).expect("touch");
    assert_ok(&out, "touch -m -d 2021-03-04");
    s.start_gateway().expect("gateway start");
    let c = s.client();
    let root = s.ftp.root();
    let src = s.env.path("a.bin");
    write_random_file(&src, 300_000).expect("source file");
    let small = s.env.path("small.txt");
    fs::write(&small, b"plain and small\n").expect("source file");

    let dir = "dir with  spaces";
    let uni = "ünï cødé 文件.bin";
    let out = sftp(
        &s,
        &c,
        &format!(
            "mkdir {}\nmkdir {}\nput {} {}\nput {} {MOUNT}/plain.txt\nls -l {}\nls -l {MOUNT}\n",
            q(&format!("{MOUNT}/{dir}")),
            q(&format!("{MOUNT}/{dir}/sub dir")),
            p(&src),
            q(&format!("{MOUNT}/{dir}/{uni}")),
            p(&small),
            q(&format!("{MOUNT}/{dir}")),
        ),
    );
    assert!(
        out.success(),
        "mkdir + put + ls -l through the mount\n{out}\n{}",
        s.logs()
    );
    assert!(
        root.join(dir).is_dir() && root.join(dir).join("sub dir").is_dir(),
        "the folders are not on the server's disk\n{out}\n{}",
        s.logs()
    );
    assert_same_file(&src, &root.join(dir).join(uni));
    assert_same_file(&small, &root.join("plain.txt"));
    assert!(
        !s.env.data.join("alice/partner/plain.txt").exists(),
        "the upload landed in the gateway's own storage\n{out}"
    );
    let row = ls_row(&out, uni)
        .unwrap_or_else(|| panic!("`ls -l` does not list {uni:?}\n{out}\n{}", s.logs()));
    assert!(
        row.split_whitespace().any(|w| w == "300000"),
        "`ls -l` does not show the size 300000 of {uni:?}: {row:?}\n{out}"
    );
    assert!(
        row.starts_with('-'),
        "`ls -l` does not show {uni:?} as a file: {row:?}\n{out}"
    );
    let row = ls_row(&out, "sub dir")
        .unwrap_or_else(|| panic!("`ls -l` does not list `sub dir`\n{out}\n{}", s.logs()));
    assert!(
        row.starts_with('d'),
        "`ls -l` does not show `sub dir` as a folder: {row:?}\n{out}"
    );
    let row = ls_row(&out, "old report.txt").unwrap_or_else(|| {
        panic!(
            "`ls -l` does not list `old report.txt`\n{out}\n{}",
            s.logs()
        )
    });
    assert!(
        regex::Regex::new(r"\bMar 0?4 2021\b")
            .expect("regex")
            .is_match(&row),
        "`ls -l` does not show the modification time 2021-03-04 of `old report.txt`: {row:?}\n{out}"
    );
    assert!(
        row.split_whitespace().any(|w| w == "17"),
        "`ls -l` does not show the size 17 of `old report.txt`: {row:?}\n{out}"
    );
    let row = ls_row(&out, "plain.txt")
        .unwrap_or_else(|| panic!("`ls -l` does not list plain.txt\n{out}\n{}", s.logs()));
    assert!(
        row.split_whitespace().any(|w| w == "16"),
        "`ls -l` does not show the size 16 of plain.txt: {row:?}\n{out}"
    );
    assert!(
        !row.contains("1970") && !row.contains("2021"),
        "`ls -l` shows a wrong modification time for the file just uploaded: {row:?}\n{out}"
    );

    let renamed = " Ωmega renamed.bin";
    let back = s.env.path("a-back.bin");
    let old_back = s.env.path("old-back.txt");
    let out = sftp(
        &s,
        &c,
        &format!(
            "rename {} {}\nrename {} {MOUNT}/moved\nget {} {}\nget {} {}\nls -l {}\n",
            q(&format!("{MOUNT}/{dir}/{uni}")),
            q(&format!("{MOUNT}/{dir}/{renamed}")),
            q(&format!("{MOUNT}/{dir}/sub dir")),
            q(&format!("{MOUNT}/{dir}/{renamed}")),
            p(&back),
            q(&format!("{MOUNT}/old report.txt")),
            p(&old_back),
            q(&format!("{MOUNT}/{dir}")),
        ),
    );
    assert!(
        out.success(),
        "rename + get through the mount\n{out}\n{}",
        s.logs()
    );
    assert!(
        !root.join(dir).join(uni).exists(),
        "{uni:?} is still on the server's disk after the rename\n{out}"
    );
    assert_same_file(&src, &root.join(dir).join(renamed));
    assert!(
        root.join("moved").is_dir() && !root.join(dir).join("sub dir").exists(),
        "the folder rename is not on the server's disk\n{out}"
    );
    assert_same_file(&src, &back);
    assert_eq!(
        fs::read(&old_back).expect("reading the downloaded old report"),
        b"from the partner\n",
        "get of a file made on the server's disk\n{out}"
    );
    assert!(
        ls_row(&out, renamed).is_some() && ls_row(&out, uni).is_none(),
        "`ls -l` after the rename does not show exactly the new name\n{out}"
    );

    let out = sftp(
        &s,
        &c,
        &format!(
            "rm {}\nrm {MOUNT}/plain.txt\nrmdir {MOUNT}/moved\nrmdir {}\nls -l {MOUNT}\n",
            q(&format!("{MOUNT}/{dir}/{renamed}")),
            q(&format!("{MOUNT}/{dir}")),
        ),
    );
    assert!(
        out.success(),
        "rm + rmdir through the mount\n{out}\n{}",
        s.logs()
    );
    let left: Vec<PathBuf> = tree_snapshot(&root)
        .expect("listing the server's root")
        .into_keys()
        .collect();
    assert_eq!(
        left,
        [PathBuf::from("old report.txt")],
        "the server's disk after rm and rmdir\n{out}\n{}",
        s.logs()
    );
    assert!(
        ls_row(&out, "old report.txt").is_some()
            && ls_row(&out, "plain.txt").is_none()
            && !out.lists_name("moved"),
        "`ls -l` after rm and rmdir\n{out}"
    );

    // A folder that is not empty is refused, and stays.
    s.ftp
        .write_file("full/x", b"x")
        .expect("writing a file on the server's disk");
    let out = sftp(&s, &c, &format!("rmdir {MOUNT}/full\n"));
    assert_failed(&out, "rmdir of a folder that is not empty");
    assert!(root.join("full/x").is_file(), "{out}");
}

/// pure-ftpd (lists with MLSD) with explicit TLS.
#[test]
fn ftp_ordinary_operations_pure_ftpd_tls() {
    ordinary_operations(
        FtpServerOptions::pure_ftpd().tls(FtpServerTls::Explicit { required: true }),
    );
}

/// vsftpd (lists with LIST only) in plain FTP.
#[test]
fn ftp_ordinary_operations_vsftpd_plain() {
    ordinary_operations(FtpServerOptions::vsftpd());
}

// ---------------------------------------------------------------------------
// 3. Certificate checks
// ---------------------------------------------------------------------------

/// The server presents `cert` (bad for 127.0.0.1 or from an unknown CA):
/// with the default `certificate = "require_match"` (the test CA trusted)
/// `remote test` fails naming `reason` and a put through the mount fails
/// without logging in or writing anything; with `allow_any` both work and
/// the gateway warns.
fn bad_certificate(cert: CertChoice, reason: &str) {
    let mut s = FtpMount::new(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .cert(cert),
    )
    .expect("set-up");
    assert_eq!(s.remote().certificate, None, "the default must be tested");
    s.start_gateway().expect("gateway start");
    let src = s.env.path("x.txt");
    fs::write(&src, b"must not arrive\n").expect("source file");

    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, &format!("remote test against a {cert:?} certificate"));
    let err = strip_ansi(&out.stderr);
    assert!(
        err.contains("remote `partner`: FAILED") && err.contains(reason),
        "remote test should say FAILED and {reason:?}\n{out}"
    );
    assert!(
        err.trim().lines().count() <= 3,
        "remote test should give one clear reason\n{out}"
    );

    let mut c = s.client();
    c.timeout = Duration::from_secs(60);
    let out = sftp(&s, &c, &format!("put {} {MOUNT}/x.txt\n", p(&src)));
    assert_failed(
        &out,
        &format!("put through a mount with a {cert:?} certificate"),
    );
    assert!(
        !s.ftp.root().join("x.txt").exists(),
        "the file arrived despite the bad certificate\n{out}"
    );
    let log = s.ftp.log();
    assert!(
        log.contains("CONNECT: Client") && !log.contains("OK LOGIN"),
        "the server should have seen connections but no login\n{}",
        s.logs()
    );
    let gw_log = s.gateway_log();
    assert!(
        gw_log.contains(reason),
        "the gateway's log does not say {reason:?}\n{}",
        s.logs()
    );

    s.remote().certificate = Some("allow_any".into());
    s.restart_gateway().expect("gateway restart");
    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, &format!("remote test with allow_any\n{}", s.logs()));
    assert!(out.stdout.contains("tls: TLS 1."), "{out}");
    let out = remote_list(&s.config_path).expect("running remote list");
    let line = remote_list_line(&out, REMOTE).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("allow_any") && line.contains("INSECURE"),
        "remote list does not flag allow_any as insecure: {line:?}\n{out}"
    );
    let c = s.client();
    let out = sftp(&s, &c, &format!("put {} {MOUNT}/x.txt\n", p(&src)));
    assert!(
        out.success(),
        "put with certificate = allow_any\n{out}\n{}",
        s.logs()
    );
    assert_same_file(&src, &s.ftp.root().join("x.txt"));
    let gw_log = s.gateway_log();
    assert!(
        gw_log.contains("WARN") && gw_log.contains("allow_any"),
        "the gateway does not warn that certificate checks are off\n{}",
        s.logs()
    );
}

#[test]
fn ftp_certificate_for_another_host_is_refused_unless_allow_any() {
    bad_certificate(
        CertChoice::WrongHost,
        "certificate is not valid for 127.0.0.1",
    );
}

#[test]
fn ftp_certificate_from_unknown_ca_is_refused_unless_allow_any() {
    bad_certificate(CertChoice::UnknownCa, "unknown issuer");
}

// ---------------------------------------------------------------------------
// 4. Dedicated source addresses
// ---------------------------------------------------------------------------

/// With `dedicated_ips = ["127.0.0.2", "127.0.0.3"]`, every control and
/// data connection the server sees during parallel uploads and downloads
/// comes from one of them, and both are used.
#[test]
fn ftp_dedicated_ips_are_the_only_sources_of_control_and_data_connections() {
    let mut s =
        FtpMount::new(FtpServerOptions::vsftpd().tls(FtpServerTls::Explicit { required: true }))
            .expect("set-up");
    s.cfg.dedicated_ips = Some(vec!["127.0.0.2".into(), "127.0.0.3".into()]);
    s.start_gateway().expect("gateway start");
    let n = 4;
    let srcs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let src = s.env.path(&format!("dip-{i}.bin"));
            write_random_file(&src, 16 << 20).expect("source file");
            src
        })
        .collect();
    let jobs = (0..n)
        .map(|i| {
            (
                s.client_n(i),
                format!(
                    "put {} {MOUNT}/dip-{i}.bin\nget {MOUNT}/dip-{i}.bin {}\nls -l {MOUNT}\n",
                    p(&srcs[i]),
                    p(&s.env.path(&format!("dip-back-{i}.bin")))
                ),
            )
        })
        .collect();
    let control = s.ftp.control_sampler();
    let data = s.ftp.data_sampler();
    let outs = sftp_in_parallel(jobs);
    let control = control.finish().expect("control sampler");
    let data = data.finish().expect("data sampler");
    assert_all_ok(&outs, "parallel transfers from dedicated IPs", &s.logs());
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.ftp.root().join(format!("dip-{i}.bin")));
        assert_same_file(src, &s.env.path(&format!("dip-back-{i}.bin")));
    }
    let allowed = ip_set(&["127.0.0.2", "127.0.0.3"]);
    eprintln!("control: {control:?}\ndata: {data:?}");
    assert!(
        !control.peers.is_empty() && control.peers.is_subset(&allowed),
        "control connections came from {:?} (allowed {allowed:?})\n{}",
        control.peers,
        s.logs()
    );
    assert!(
        !data.peers.is_empty() && data.peers.is_subset(&allowed),
        "data connections came from {:?} (allowed {allowed:?})\n{}",
        data.peers,
        s.logs()
    );
    let logged = s.ftp.log_client_ips();
    assert_eq!(
        logged,
        allowed,
        "vsftpd logged control connections from {logged:?}: not exactly both dedicated IPs \
         ({} connections)\n{}",
        s.ftp.log_connect_count(),
        s.logs()
    );
    // vsftpd (pasv_promiscuous=NO) refuses a data connection from another
    // address than its control connection's: none was refused.
    assert!(!s.ftp.log().contains("Bad IP connecting"), "{}", s.logs());

    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, "remote test with dedicated IPs");
    let re = regex::Regex::new(r"source address: 127\.0\.0\.[23]\b").expect("regex");
    assert!(
        re.is_match(&out.stdout),
        "remote test does not name a dedicated IP as the source address\n{out}"
    );
}

/// The only dedicated IP is not on this machine: the operation fails, the
/// server sees no connection at all, and the log and `remote test` name
/// the bind failure and the address.
#[test]
fn ftp_unbindable_dedicated_ip_fails_without_connecting() {
    let mut s =
        FtpMount::new(FtpServerOptions::vsftpd().tls(FtpServerTls::Explicit { required: true }))
            .expect("set-up");
    s.cfg.dedicated_ips = Some(vec!["192.0.2.10".into()]);
    s.start_gateway().expect("gateway start");
    let src = s.env.path("x.txt");
    fs::write(&src, b"x\n").expect("source file");
    let control = s.ftp.control_sampler();
    let mut c = s.client();
    c.timeout = Duration::from_secs(60);
    let out = sftp(
        &s,
        &c,
        &format!("put {} {MOUNT}/x.txt\nls {MOUNT}\n", p(&src)),
    );
    assert_failed(
        &out,
        "put through a mount whose only source address cannot be bound",
    );
    assert!(!s.ftp.root().join("x.txt").exists(), "{out}");
    let log = s.gateway_log();
    assert!(
        log.contains("cannot bind source address") && log.contains("192.0.2.10"),
        "the gateway's log does not say `cannot bind source address` with 192.0.2.10\n{out}\n{}",
        s.logs()
    );

    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, "remote test with an unbindable dedicated IP");
    let err = strip_ansi(&out.stderr);
    assert!(
        err.contains("FAILED")
            && err.contains("cannot bind source address")
            && err.contains("192.0.2.10"),
        "remote test's stderr should say `cannot bind source address` and 192.0.2.10\n{out}"
    );
    let control = control.finish().expect("sampler");
    assert_eq!(
        (control.max, s.ftp.log_connect_count()),
        (0, 0),
        "the server saw a connection although no source address could be bound\n{}",
        s.logs()
    );
}

// ---------------------------------------------------------------------------
// 5. The pool cap
// ---------------------------------------------------------------------------

const POOL_CAP: usize = 5;
const POOL_CLIENTS: usize = 40;

/// 40 clients, each uploading and downloading its own 1 MiB file, through a
/// remote with `max_connections = 5`: the server never sees more than 5
/// control connections, and every file is intact.
/// vsftpd's own limits are set far above (max_clients=200, max_per_ip=0).
#[test]
fn ftp_pool_of_5_serves_40_clients() {
    let mut s = FtpMount::new(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .max_clients(200)
            .extra("max_per_ip=0"),
    )
    .expect("set-up");
    {
        let r = s.remote();
        r.max_connections = Some(POOL_CAP as u32);
        r.pool_wait = Some("90s".into());
    }
    // 40 clients from one address at once: more than the gateway's
    // default 32 that may connect or wait to log in together from one
    // address (this test is about the remote's pool).
    s.cfg.login_extra.extend([
        "max_unauthenticated_per_address = 0".to_string(),
        "connection_burst_per_address = 64".to_string(),
    ]);
    s.start_gateway().expect("gateway start");
    let srcs: Vec<PathBuf> = (0..POOL_CLIENTS)
        .map(|i| {
            let src = s.env.path(&format!("c-{i}.bin"));
            write_random_file(&src, 1 << 20).expect("source file");
            src
        })
        .collect();
    let jobs = (0..POOL_CLIENTS)
        .map(|i| {
            let mut c = s.client_n(i);
            c.timeout = Duration::from_secs(150);
            (
                c,
                format!(
                    "put {} {MOUNT}/c-{i}.bin\nget {MOUNT}/c-{i}.bin {}\n",
                    p(&srcs[i]),
                    p(&s.env.path(&format!("back-{i}.bin")))
                ),
            )
        })
        .collect();
    let control = s.ftp.control_sampler();
    let data = s.ftp.data_sampler();
    let t0 = Instant::now();
    let outs = sftp_in_parallel(jobs);
    let took = t0.elapsed();
    let control = control.finish().expect("control sampler");
    let data = data.finish().expect("data sampler");
    assert_all_ok(&outs, "40 clients through a pool of 5", &s.logs());
    eprintln!(
        "40 clients in {took:?}; control {control:?}; data {data:?}; {} control connections in all",
        s.ftp.log_connect_count()
    );
    assert!(
        control.max <= POOL_CAP && control.max >= 1,
        "the server saw {} control connections at once (cap {POOL_CAP}; {} samples over {took:?})\n{}",
        control.max,
        control.samples,
        s.logs()
    );
    // Not asserted: `ss` walks the socket table while it changes, so one
    // listing can show a data connection that just closed next to the one
    // replacing it (seen once as 6 with 5 control connections).
    assert!(data.max >= 1, "no data connection seen: {data:?}");
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.ftp.root().join(format!("c-{i}.bin")));
        assert_same_file(src, &s.env.path(&format!("back-{i}.bin")));
    }
}

// ---------------------------------------------------------------------------
// 6. The server goes away during an upload
// ---------------------------------------------------------------------------

/// Name of the second remote (same server, `atomic_uploads = true`).
const ATOMIC_REMOTE: &str = "partner-atomic";

/// Folder of alice's tree mounted on [`ATOMIC_REMOTE`] (its `inbox` folder).
const ATOMIC_MOUNT: &str = "/atomic";

/// Two 64 MiB uploads (throttled by the client to ~5 MB/s), one straight to
/// its name (`atomic_uploads = false`, the default) and one through a
/// temporary name (`true`), when the FTP server is killed: both clients
/// get an error within the configured timeouts, not a hang. Once the
/// server is back, the first new connection of each remote removes what
/// the broken uploads left (the gateway could not while the server was
/// down), and new transfers through the same gateway work.
#[test]
fn ftp_server_killed_mid_upload_leaves_no_partial_file_and_pool_recovers() {
    let mut s =
        FtpMount::new(FtpServerOptions::vsftpd().tls(FtpServerTls::Explicit { required: true }))
            .expect("set-up");
    s.ftp.create_dir("inbox").expect("mkdir inbox");
    {
        let r = s.remote();
        r.connect_timeout = Some("5s".into());
        r.io_timeout = Some("5s".into());
        r.pool_wait = Some("10s".into());
    }
    let mut atomic = s.cfg.remotes[0].clone().atomic_uploads(true);
    atomic.name = ATOMIC_REMOTE.into();
    s.cfg.remotes.push(atomic);
    s.cfg.users[0] = s.cfg.users[0]
        .clone()
        .mount(ATOMIC_MOUNT, ATOMIC_REMOTE, "inbox");
    s.start_gateway().expect("gateway start");
    let root = s.ftp.root();
    let inbox = root.join("inbox");
    let big = s.env.path("big.bin");
    write_random_file(&big, 64 << 20).expect("source file");

    let clients: Vec<Client> = (0..2)
        .map(|i| {
            let mut c = s.client_n(i);
            // sftp -l: at most 40000 Kbit/s (~5 MB/s), so the upload is
            // still running when the server is killed.
            c.extra.extend(["-l".to_string(), "40000".to_string()]);
            c.timeout = Duration::from_secs(90);
            c
        })
        .collect();
    let batches = [
        format!("put {} {MOUNT}/big.bin\n", p(&big)),
        format!("put {} {ATOMIC_MOUNT}/big.bin\n", p(&big)),
    ];
    let size = |path: &Path| fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let temp_files = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().contains(".gw-upload-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (outs, stopped_at, partial) = thread::scope(|sc| {
        let handles: Vec<_> = clients
            .iter()
            .zip(&batches)
            .map(|(c, b)| sc.spawn(move || c.sftp(b)))
            .collect();
        // Both uploads visibly under way on the server's disk.
        let deadline = Instant::now() + Duration::from_secs(30);
        let under_way = loop {
            let direct = size(&root.join("big.bin")) >= 1 << 20;
            let temp = temp_files(&inbox).iter().any(|t| size(t) >= 1 << 20);
            if (direct && temp) || Instant::now() > deadline {
                break direct && temp;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let partial = (size(&root.join("big.bin")), temp_files(&inbox));
        if under_way {
            s.ftp.stop().expect("killing the FTP server");
        }
        let stopped_at = Instant::now();
        let outs: Vec<_> = handles
            .into_iter()
            .map(|h| (h.join().expect("client thread panicked"), Instant::now()))
            .collect();
        assert!(
            under_way,
            "the uploads did not get under way within 30 s: {partial:?}\n{}",
            s.logs()
        );
        (outs, stopped_at, partial)
    });
    eprintln!("killed the server with {partial:?} written");
    for (i, (out, ended)) in outs.iter().enumerate() {
        let after = ended.saturating_duration_since(stopped_at);
        let out = out.as_ref().unwrap_or_else(|e| {
            panic!(
                "client {i} still hung {after:?} after the server was killed: {e:#}\n{}",
                s.logs()
            )
        });
        assert_failed(out, &format!("upload {i} while the server was killed"));
        // io_timeout and connect_timeout are 5 s.
        assert!(
            after <= Duration::from_secs(20),
            "client {i} ended {after:?} after the server was killed\n{out}\n{}",
            s.logs()
        );
        eprintln!("client {i} failed {after:?} after the kill");
    }
    let after_kill = (size(&root.join("big.bin")), temp_files(&inbox));
    eprintln!("on the server's disk while it is down: {after_kill:?}");

    // While the server is down, operations fail quickly.
    let c = s.client();
    let out = sftp(&s, &c, &format!("ls {MOUNT}\n"));
    assert_failed(&out, "ls through the mount while the server is down");
    assert!(
        out.elapsed < Duration::from_secs(20),
        "ls while the server is down took {:?}\n{out}",
        out.elapsed
    );

    s.ftp.start_again().expect("starting the FTP server again");
    let control = s.ftp.control_sampler();
    let small = s.env.path("after.bin");
    write_random_file(&small, 1 << 20).expect("source file");
    let back = s.env.path("after-back.bin");
    let back_atomic = s.env.path("after-back-atomic.bin");
    let out = sftp(
        &s,
        &c,
        &format!(
            "put {small} {MOUNT}/after.bin\nget {MOUNT}/after.bin {back}\n\
             put {small} {ATOMIC_MOUNT}/after.bin\nget {ATOMIC_MOUNT}/after.bin {back_atomic}\n\
             ls -l {MOUNT}\nls -l {ATOMIC_MOUNT}\n",
            small = p(&small),
            back = p(&back),
            back_atomic = p(&back_atomic),
        ),
    );
    let control = control.finish().expect("sampler");
    assert!(
        out.success(),
        "transfers after the server came back\n{out}\n{}",
        s.logs()
    );
    assert!(control.max >= 1, "{control:?}");
    assert_same_file(&small, &root.join("after.bin"));
    assert_same_file(&small, &inbox.join("after.bin"));
    assert_same_file(&small, &back);
    assert_same_file(&small, &back_atomic);
    assert!(
        !root.join("big.bin").exists(),
        "the partial upload ({} bytes) is still on the server under its final name\n{out}\n{}",
        size(&root.join("big.bin")),
        s.logs()
    );
    assert!(
        !inbox.join("big.bin").exists() && temp_files(&inbox).is_empty(),
        "the atomic upload left {:?} (or a big.bin)\n{out}\n{}",
        temp_files(&inbox),
        s.logs()
    );
    assert!(
        !out.lists_name("big.bin"),
        "`ls` still shows the partial upload\n{out}"
    );
    let log = s.gateway_log();
    assert!(
        log.contains("it will be removed through the next connection")
            && log.contains("removed the partial upload `/big.bin`"),
        "the gateway's log does not tell about the partial upload and its removal\n{}",
        s.logs()
    );
}

// ---------------------------------------------------------------------------
// 7. `gateway remote test` and `remote list`
// ---------------------------------------------------------------------------

/// `remote test` of an FTPS remote prints the source address, the TLS
/// version and cipher suite and the server's certificate; of a plain one,
/// `none (plain FTP)`; `remote list` shows the TLS mode.
#[test]
fn ftp_remote_test_prints_tls_and_certificate() {
    let s =
        FtpMount::new(FtpServerOptions::vsftpd().tls(FtpServerTls::Explicit { required: true }))
            .expect("set-up");
    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, &format!("remote test\n{}", s.ftp.logs()));
    let text = &out.stdout;
    for needle in [
        "remote `partner`: ok (ftp)",
        "source address: 127.0.0.1",
        "tls: TLS 1.3, TLS13_",
        "certificate: subject CN=127.0.0.1; issuer CN=gw-e2e test CA; expires ",
        "features: ",
        "round trip: ",
    ] {
        assert!(
            text.contains(needle),
            "remote test does not print {needle:?}\n{out}"
        );
    }
    let out = remote_list(&s.config_path).expect("running remote list");
    assert_ok(&out, "remote list");
    let line = remote_list_line(&out, REMOTE).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("ftp") && line.contains("tls require") && !line.contains("INSECURE"),
        "remote list line: {line:?}\n{out}"
    );

    // The same server capped at TLS 1.2.
    let s = FtpMount::new(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .max_tls12(true),
    )
    .expect("set-up");
    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, &format!("remote test (TLS 1.2)\n{}", s.ftp.logs()));
    assert!(out.stdout.contains("tls: TLS 1.2, TLS_"), "{out}");

    // Plain FTP.
    let mut s = FtpMount::new(FtpServerOptions::vsftpd()).expect("set-up");
    let out = s.remote_test().expect("running remote test");
    assert_ok(&out, &format!("remote test (plain)\n{}", s.ftp.logs()));
    assert!(
        out.stdout.contains("tls: none (plain FTP)") && !out.stdout.contains("certificate:"),
        "{out}"
    );
    // `require` against a server without TLS, and a wrong password, fail
    // with one clear reason.
    s.remote().tls = Some("require".into());
    s.remote().ca_file = Some(s.ftp.ca_file());
    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, "remote test: tls = require against plain FTP");
    assert!(
        strip_ansi(&out.stderr).contains("does not offer TLS"),
        "{out}"
    );
    s.remote().tls = Some("never".into());
    s.remote().password = Some("wrong-pass".into());
    let out = s.remote_test().expect("running remote test");
    assert_failed(&out, "remote test with a wrong password");
    assert!(
        strip_ansi(&out.stderr).contains("authentication failed"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// A client that vanishes during an upload
// ---------------------------------------------------------------------------

/// An sftp client killed during an upload (throttled, killed after 2 s):
/// the gateway ends the FTPS upload and removes the partial file; the
/// same pooled connection (`max_connections = 1`) then serves listings,
/// downloads and uploads (vsftpd with `require_ssl_reuse=YES` over TLS 1.3
/// refuses a data connection that does not resume a valid session).
#[test]
fn ftp_client_vanishing_mid_upload_leaves_nothing_and_the_connection_stays_usable() {
    let mut s = FtpMount::new(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .require_ssl_reuse(true),
    )
    .expect("set-up");
    s.remote().max_connections = Some(1);
    s.remote().idle_timeout = Some("5m".into());
    s.start_gateway().expect("gateway start");
    let root = s.ftp.root();
    let big = s.env.path("big.bin");
    write_random_file(&big, 64 << 20).expect("source file");
    let small = s.env.path("small.bin");
    write_random_file(&small, 200_000).expect("source file");

    for round in 0..3 {
        let mut c = s.client_n(round);
        c.extra.extend(["-l".to_string(), "40000".to_string()]);
        c.timeout = Duration::from_secs(2);
        let killed = c.sftp(&format!("put {} {MOUNT}/big.bin\n", p(&big)));
        assert!(
            killed.is_err(),
            "the throttled 64 MiB upload finished within 2 s: {killed:?}"
        );
        let c = s.client();
        let back = s.env.path(&format!("back-{round}.bin"));
        let out = sftp(
            &s,
            &c,
            &format!(
                "ls -l {MOUNT}\nput {small} {MOUNT}/small-{round}.bin\n\
                 get {MOUNT}/small-{round}.bin {back}\nls -l {MOUNT}\n",
                small = p(&small),
                back = p(&back)
            ),
        );
        assert!(
            out.success(),
            "round {round}: transfers after a client vanished mid-upload\n{out}\n{}",
            s.logs()
        );
        assert_same_file(&small, &back);
        assert_same_file(&small, &root.join(format!("small-{round}.bin")));
        // The abandoned upload held the only connection until it was
        // discarded: the first listing comes after that.
        assert!(
            !out.lists_name("big.bin"),
            "round {round}: the abandoned upload is listed\n{out}\n{}",
            s.logs()
        );
    }
    // The last abandoned upload is cleaned up in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while root.join("big.bin").exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !root.join("big.bin").exists(),
        "the abandoned upload is still on the server\n{}",
        s.logs()
    );
    assert!(
        !s.ftp.log().contains("session reuse required"),
        "{}",
        s.logs()
    );
}
