//! Self-test of the FTP server harness (tests/src/ftpd.rs), without the
//! gateway: curl's FTP client against the harness's vsftpd and pure-ftpd.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::ftpd::{
    process_alive, CertChoice, FtpServer, FtpServerKind, FtpServerOptions, FtpServerTls,
    PURE_FTPD_RUN_DIR,
};
use e2e::sshd::{listening_on_port, test_user_ids};
use e2e::{assert_same_file, run_with_timeout, write_random_file, CmdOutput};

const CURL_TIMEOUT: Duration = Duration::from_secs(60);

/// `curl -sS --ftp-pasv -u USER:PASS --max-time 50 ARGS...` against `server`.
fn curl_cmd(server: &FtpServer, args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--ftp-pasv", "--max-time", "50", "-u"])
        .arg(format!("{}:{}", server.user(), server.password()))
        .args(args);
    cmd
}

fn curl(server: &FtpServer, args: &[&str]) -> Result<CmdOutput> {
    run_with_timeout(curl_cmd(server, args), CURL_TIMEOUT)
}

/// curl's exit code (None when killed by a signal).
fn code(out: &CmdOutput) -> Option<i32> {
    out.status.code()
}

#[track_caller]
fn assert_curl_ok(out: &CmdOutput, what: &str, server: &FtpServer) {
    assert!(out.success(), "{what} failed:\n{out}\n{}", server.logs());
}

/// Uploads a random file to `dir/name` (creating `dir`), lists `dir/`,
/// downloads it back, and checks the bytes on the server's disk and locally.
/// `tls` are curl's TLS arguments. Returns the listing.
fn round_trip(server: &FtpServer, tls: &[&str], name: &str) -> Result<String> {
    let scratch = tempfile::tempdir()?;
    let src = scratch.path().join("src.bin");
    write_random_file(&src, 300_000)?;
    let src_s = src.display().to_string();
    let url = server.url(&format!("dir/{name}"));

    let mut args = tls.to_vec();
    args.extend(["--ftp-create-dirs", "-T", &src_s, &url]);
    let out = curl(server, &args)?;
    assert_curl_ok(&out, "upload", server);
    let on_disk = server.root().join("dir").join(name);
    assert_same_file(&src, &on_disk);
    let (uid, _) = test_user_ids()?;
    let md = fs::metadata(&on_disk)?;
    assert_eq!(
        md.uid(),
        uid,
        "uploaded file not owned by the test user\n{}",
        server.logs()
    );
    assert_eq!(
        md.mode() & 0o777,
        0o644,
        "umask 022 expected\n{}",
        server.logs()
    );

    let list_url = server.url("dir/");
    let mut args = tls.to_vec();
    args.push(&list_url);
    let out = curl(server, &args)?;
    assert_curl_ok(&out, "list", server);
    let listing = out.stdout.clone();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name) && l.contains("300000")),
        "listing of dir/ does not show {name} with its size:\n{out}\n{}",
        server.logs()
    );

    let back = scratch.path().join("back.bin");
    let back_s = back.display().to_string();
    let mut args = tls.to_vec();
    args.extend(["-o", &back_s, &url]);
    let out = curl(server, &args)?;
    assert_curl_ok(&out, "download", server);
    assert_same_file(&src, &back);
    Ok(listing)
}

/// Lines the server sent (`< ...` of `curl -v`) for `curl -v -Q CMD url`.
fn server_replies(server: &FtpServer, tls: &[&str], quote: &str) -> Result<Vec<String>> {
    let url = server.url("");
    let mut args = tls.to_vec();
    args.extend(["-v", "-Q", quote, &url]);
    let out = curl(server, &args)?;
    assert_curl_ok(&out, quote, server);
    Ok(out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("< "))
        .map(str::to_owned)
        .collect())
}

/// Spawns a curl in the background (output to files in the server's dir).
fn spawn_curl(server: &FtpServer, args: &[&str], tag: &str) -> Result<Child> {
    let mut cmd = curl_cmd(server, args);
    let log = fs::File::create(server.dir().join(format!("curl-{tag}.log")))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawning curl")
}

/// Waits up to `timeout` for `child`; kills it on timeout.
fn wait_child(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("curl still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 20 ms for up to `timeout`.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal IP")
}

// ---------------------------------------------------------------------------
// vsftpd
// ---------------------------------------------------------------------------

#[test]
fn vsftpd_plain_upload_list_download() -> Result<()> {
    let server = FtpServer::start(FtpServerOptions::vsftpd())?;
    assert_eq!(
        server.log_connect_count(),
        0,
        "the start-up check must not connect\n{}",
        server.logs()
    );
    assert!(server.passive_ports().contains(&(server.port() + 1)));
    let listing = round_trip(&server, &[], "a.bin")?;
    // vsftpd's LIST: ls -l style with numeric ids inside the chroot.
    assert!(
        listing.lines().any(|l| l.starts_with("-rw-r--r--")),
        "{listing}"
    );
    let log = server.log();
    assert!(
        log.contains("OK UPLOAD: Client \"127.0.0.1\", \"/dir/a.bin\", 300000 bytes"),
        "vsftpd log lacks the upload line:\n{}",
        server.logs()
    );
    assert!(log.contains("OK DOWNLOAD: Client \"127.0.0.1\", \"/dir/a.bin\""));
    assert_eq!(
        server.log_client_ips().into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.1")]
    );
    assert_eq!(server.log_connect_count(), 3, "{}", server.logs());

    // No TLS on this server: curl --ssl-reqd must fail.
    let out = curl(&server, &["--ssl-reqd", &server.url("")])?;
    assert!(
        !out.success(),
        "--ssl-reqd against plain vsftpd succeeded:\n{out}"
    );

    // A file the test puts on the server's disk can be overwritten and deleted over FTP.
    let seed = server.write_file("pre/sub/seed.txt", b"seed")?;
    assert_eq!(seed, server.root().join("pre/sub/seed.txt"));
    let (uid, _) = test_user_ids()?;
    assert_eq!(fs::metadata(server.root().join("pre"))?.uid(), uid);
    let newer = server.dir().join("newer.txt");
    fs::write(&newer, b"newer content")?;
    let newer_s = newer.display().to_string();
    let out = curl(&server, &["-T", &newer_s, &server.url("pre/sub/seed.txt")])?;
    assert_curl_ok(&out, "overwrite of a file written by write_file", &server);
    assert_eq!(fs::read(&seed)?, b"newer content");
    let out = curl(&server, &["-Q", "DELE pre/sub/seed.txt", &server.url("")])?;
    assert_curl_ok(&out, "DELE", &server);
    assert!(!seed.exists(), "DELE did not remove the file");

    // No MLSD/MLST in vsftpd 3.0.3's FEAT.
    let feat = server_replies(&server, &[], "FEAT")?;
    assert!(feat.iter().any(|l| l.trim() == "EPSV"), "{feat:?}");
    assert!(!feat.iter().any(|l| l.contains("MLST")), "{feat:?}");
    Ok(())
}

/// With the server capped at TLS 1.2 (see `vsftpd_tls13_listing_download_and_small_upload`).
#[test]
fn vsftpd_explicit_tls_required_verifies_and_requires_session_reuse() -> Result<()> {
    let server = FtpServer::start(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .max_tls12(true),
    )?;
    let ca = server.ca_file().display().to_string();
    let tls = ["--ssl-reqd", "--cacert", ca.as_str()];
    round_trip(&server, &tls, "secret.bin")?;

    // TLS 1.2 (max_tls12), with a verified certificate.
    let url = server.url("");
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, "-v", &url])?;
    assert_curl_ok(&out, "list -v", &server);
    assert!(
        out.stderr.contains("SSL connection using TLSv1.2"),
        "expected TLS 1.2:\n{out}"
    );
    assert!(
        !out.stderr.contains("SSL connection using TLSv1.3"),
        "{out}"
    );
    assert!(
        out.stderr.contains("SSL certificate verify ok"),
        "certificate not verified:\n{out}"
    );

    // Without TLS, the login is refused (530).
    let out = curl(&server, &[&url])?;
    assert!(!out.success(), "plain login accepted:\n{out}");
    assert_eq!(code(&out), Some(67), "expected curl's login-denied:\n{out}");

    // Without session reuse on the data connection: 522.
    let out = curl(
        &server,
        &["--ssl-reqd", "--no-sessionid", "--cacert", &ca, &url],
    )?;
    assert!(
        !out.success(),
        "data connection without reuse accepted:\n{out}"
    );
    assert!(out.stderr.contains("522"), "expected 522:\n{out}");
    Ok(())
}

/// vsftpd 3.0.3 negotiates TLS 1.3 by default. Listings, downloads and
/// small uploads work with curl; uploads of a few hundred KB fail about half
/// the time (`426 Failure reading network stream.` after exactly 114688
/// bytes), which is why the other TLS round trips here cap it at TLS 1.2.
#[test]
fn vsftpd_tls13_listing_download_and_small_upload() -> Result<()> {
    let server = FtpServer::start(
        FtpServerOptions::vsftpd().tls(FtpServerTls::Explicit { required: true }),
    )?;
    let ca = server.ca_file().display().to_string();
    let scratch = tempfile::tempdir()?;
    let small = scratch.path().join("small.bin");
    write_random_file(&small, 1000)?;
    let small_s = small.display().to_string();
    for i in 0..3 {
        let out = curl(
            &server,
            &[
                "--ssl-reqd",
                "--cacert",
                &ca,
                "-T",
                &small_s,
                &server.url(&format!("s{i}.bin")),
            ],
        )?;
        assert_curl_ok(&out, "small upload over TLS 1.3", &server);
        assert_same_file(&small, &server.root().join(format!("s{i}.bin")));
    }
    write_random_file(&server.root().join("big.bin"), 1_000_000)?;
    let back = scratch.path().join("back.bin");
    let back_s = back.display().to_string();
    let out = curl(
        &server,
        &[
            "--ssl-reqd",
            "--cacert",
            &ca,
            "-v",
            "-o",
            &back_s,
            &server.url("big.bin"),
        ],
    )?;
    assert_curl_ok(&out, "download over TLS 1.3", &server);
    assert_same_file(&server.root().join("big.bin"), &back);
    assert!(
        out.stderr.contains("SSL connection using TLSv1.3"),
        "expected TLS 1.3:\n{out}"
    );
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &server.url("")])?;
    assert_curl_ok(&out, "list over TLS 1.3", &server);
    assert!(out.stdout.contains("big.bin"), "{out}");
    Ok(())
}

#[test]
fn vsftpd_explicit_tls_optional_without_reuse_requirement() -> Result<()> {
    let server = FtpServer::start(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: false })
            .require_ssl_reuse(false),
    )?;
    let ca = server.ca_file().display().to_string();
    let url = server.url("");
    // Plain sessions are still accepted.
    round_trip(&server, &[], "plain.bin")?;
    // TLS without session reuse is accepted.
    let out = curl(
        &server,
        &["--ssl-reqd", "--no-sessionid", "--cacert", &ca, &url],
    )?;
    assert_curl_ok(&out, "TLS list without session reuse", &server);
    assert!(out.stdout.contains("dir"), "{out}");
    let feat = server_replies(&server, &[], "FEAT")?;
    assert!(feat.iter().any(|l| l.trim() == "AUTH TLS"), "{feat:?}");
    Ok(())
}

#[test]
fn vsftpd_implicit_tls() -> Result<()> {
    let server = FtpServer::start(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Implicit)
            .max_tls12(true),
    )?;
    assert!(server.url("x").starts_with("ftps://127.0.0.1:"));
    let ca = server.ca_file().display().to_string();
    round_trip(&server, &["--cacert", &ca], "implicit.bin")?;
    // Plain FTP to the implicit port gets no 220 greeting.
    let plain = format!("ftp://127.0.0.1:{}/", server.port());
    let out = curl(&server, &["--max-time", "2", &plain])?;
    assert!(
        !out.success(),
        "plain FTP to the implicit-TLS port worked:\n{out}"
    );
    Ok(())
}

#[test]
fn vsftpd_bad_certificates_are_refused_by_curl() -> Result<()> {
    let mut server = FtpServer::start(
        FtpServerOptions::vsftpd()
            .tls(FtpServerTls::Explicit { required: true })
            .cert(CertChoice::WrongHost),
    )?;
    let ca = server.ca_file().display().to_string();
    let url = server.url("");
    let port = server.port();
    // Same CA, wrong name: refused (60 = peer certificate cannot be authenticated).
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_eq!(code(&out), Some(60), "wrong-host cert not refused:\n{out}");
    // ...while the server itself works (without verification).
    let out = curl(&server, &["--ssl-reqd", "-k", &url])?;
    assert_curl_ok(&out, "insecure list with the wrong-host cert", &server);

    server.restart_with_cert(CertChoice::UnknownCa)?;
    assert_eq!(server.port(), port);
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_eq!(code(&out), Some(60), "unknown-CA cert not refused:\n{out}");
    // The unknown-CA cert is valid for 127.0.0.1 when trusted directly.
    let own = server.cert_file().display().to_string();
    let out = curl(&server, &["--ssl-reqd", "--cacert", &own, &url])?;
    assert_curl_ok(&out, "list trusting the self-signed cert itself", &server);

    server.restart_with_cert(CertChoice::Good)?;
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_curl_ok(&out, "list with the good cert", &server);
    Ok(())
}

#[test]
fn vsftpd_source_address_127_0_0_2_is_seen() -> Result<()> {
    let server = FtpServer::start(FtpServerOptions::vsftpd())?;
    source_address_is_seen(&server)?;
    assert!(
        server.log().contains("CONNECT: Client \"127.0.0.2\""),
        "{}",
        server.logs()
    );
    Ok(())
}

/// A slow upload with `--interface 127.0.0.2`: the samplers and the live
/// connection lists show peer 127.0.0.2 on the control port and the passive
/// range, and the log names it.
fn source_address_is_seen(server: &FtpServer) -> Result<()> {
    let src = server.dir().join("slow.bin");
    write_random_file(&src, 400_000)?;
    let src_s = src.display().to_string();
    let url = server.url("slow.bin");
    let control = server.control_sampler();
    let data = server.data_sampler();
    let mut child = spawn_curl(
        server,
        &[
            "--interface",
            "127.0.0.2",
            "--limit-rate",
            "400K",
            "-T",
            &src_s,
            &url,
        ],
        "slow",
    )?;
    let mut live = vec![];
    let seen = wait_until(Duration::from_secs(20), || {
        live = server.data_connections()?;
        Ok(!live.is_empty())
    })?;
    let ctl = server.control_connections()?;
    let st = wait_child(&mut child, CURL_TIMEOUT)?;
    let control = control.finish()?;
    let data = data.finish()?;
    assert!(
        st.success(),
        "curl --interface 127.0.0.2 failed ({st}): {}\n{}",
        fs::read_to_string(server.dir().join("curl-slow.log")).unwrap_or_default(),
        server.logs()
    );
    assert!(seen, "no data connection seen during the upload");
    assert!(
        live.iter()
            .all(|c| c.peer.ip() == ip("127.0.0.2")
                && server.passive_ports().contains(&c.local.port())),
        "{live:?}"
    );
    assert_eq!(ctl.len(), 1, "{ctl:?}");
    assert_eq!(ctl[0].peer.ip(), ip("127.0.0.2"));
    assert_eq!(ctl[0].local, server.addr());
    assert_eq!(control.max, 1, "{control:?}");
    assert!(control.samples > 3, "{control:?}");
    assert_eq!(
        control.peers.into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.2")]
    );
    assert_eq!(
        data.peers.into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.2")]
    );
    assert_eq!(
        server.log_client_ips().into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.2")],
        "{}",
        server.logs()
    );
    assert_same_file(&src, &server.root().join("slow.bin"));
    Ok(())
}

#[test]
fn vsftpd_sampler_counts_simultaneous_control_connections() -> Result<()> {
    let server = FtpServer::start(FtpServerOptions::vsftpd())?;
    server.write_file("big.bin", &[7u8; 300_000])?;
    let url = server.url("big.bin");
    let sampler = server.control_sampler();
    let mut children = vec![];
    for i in 0..3 {
        children.push(spawn_curl(
            &server,
            &["--limit-rate", "300K", "-o", "/dev/null", &url],
            &format!("dl{i}"),
        )?);
    }
    for c in &mut children {
        let st = wait_child(c, CURL_TIMEOUT)?;
        assert!(st.success(), "download failed: {st}\n{}", server.logs());
    }
    let report = sampler.finish()?;
    assert_eq!(report.max, 3, "{report:?}\n{}", server.logs());
    assert_eq!(server.control_connections()?, vec![]);
    Ok(())
}

#[test]
fn vsftpd_stopped_mid_upload_then_back_on_the_same_port() -> Result<()> {
    let mut server = FtpServer::start(FtpServerOptions::vsftpd())?;
    let port = server.port();
    let src = server.dir().join("big.bin");
    write_random_file(&src, 2_000_000)?;
    let src_s = src.display().to_string();
    let url = server.url("big.bin");
    let mut child = spawn_curl(
        &server,
        &["--limit-rate", "200K", "-T", &src_s, &url],
        "cut",
    )?;
    let part = server.root().join("big.bin");
    let started = wait_until(Duration::from_secs(20), || {
        Ok(fs::metadata(&part).map(|m| m.len() > 0).unwrap_or(false))
    })?;
    assert!(started, "upload never started\n{}", server.logs());
    let pids = server.pids();
    assert!(
        pids.len() >= 3,
        "expected the listener and session processes, got {pids:?}"
    );
    server.stop()?;
    assert!(!server.is_running());
    let st = wait_child(&mut child, Duration::from_secs(20))?;
    assert!(!st.success(), "upload survived the server's stop");
    let left: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
    assert!(left.is_empty(), "processes left after stop: {left:?}");
    assert!(!listening_on_port(port)?);
    let partial = fs::metadata(&part)?.len();
    assert!(partial < 2_000_000, "upload was not cut: {partial} bytes");
    let out = curl(&server, &["--max-time", "5", &server.url("")])?;
    assert_eq!(code(&out), Some(7), "expected connection refused:\n{out}");

    server.start_again()?;
    assert_eq!(server.port(), port);
    let out = curl(&server, &["-T", &src_s, &url])?;
    assert_curl_ok(&out, "upload after start_again", &server);
    assert_same_file(&src, &part);

    // Drop kills everything, sessions included.
    let pids = server.pids();
    drop(server);
    assert!(!listening_on_port(port)?);
    let left: Vec<u32> = pids.into_iter().filter(|&p| process_alive(p)).collect();
    assert!(left.is_empty(), "processes left after drop: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// pure-ftpd
// ---------------------------------------------------------------------------

#[test]
fn pure_ftpd_plain_upload_list_download_and_mlsd() -> Result<()> {
    let server = FtpServer::start(FtpServerOptions::pure_ftpd())?;
    assert_eq!(server.kind(), FtpServerKind::PureFtpd);
    let listing = round_trip(&server, &[], "p.bin")?;
    assert!(
        listing.lines().any(|l| l.starts_with("-rw-r--r--")),
        "{listing}"
    );
    // MLSD (RFC 3659) with facts; vsftpd has none.
    let out = curl(&server, &["-X", "MLSD", &server.url("dir/")])?;
    assert_curl_ok(&out, "MLSD", &server);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("type=file;size=300000;") && l.ends_with("; p.bin")),
        "MLSD output:\n{out}"
    );
    let feat = server_replies(&server, &[], "FEAT")?;
    assert!(feat.iter().any(|l| l.trim() == "MLSD"), "{feat:?}");
    // pure-ftpd advertises AUTH TLS even without -Y, then answers it with
    // `500 This security scheme is not implemented` (curl: 64).
    let out = curl(&server, &["--ssl-reqd", &server.url("")])?;
    assert_eq!(
        code(&out),
        Some(64),
        "--ssl-reqd against plain pure-ftpd:\n{out}"
    );
    assert!(
        server.log().contains("\"PUT /dir/p.bin\"") || server.log().contains("p.bin\" 200 300000"),
        "{}",
        server.logs()
    );
    assert_eq!(
        server.log_client_ips().into_iter().collect::<Vec<_>>(),
        vec![ip("127.0.0.1")],
        "{}",
        server.logs()
    );
    Ok(())
}

#[test]
fn pure_ftpd_tls_required() -> Result<()> {
    let server = FtpServer::start(
        FtpServerOptions::pure_ftpd().tls(FtpServerTls::Explicit { required: true }),
    )?;
    let ca = server.ca_file().display().to_string();
    round_trip(&server, &["--ssl-reqd", "--cacert", &ca], "s.bin")?;
    let url = server.url("");
    let out = curl(&server, &["--max-time", "10", &url])?;
    assert!(!out.success(), "plain session accepted:\n{out}");
    // pure-ftpd does not demand TLS session reuse on data connections.
    let out = curl(
        &server,
        &["--ssl-reqd", "--no-sessionid", "--cacert", &ca, &url],
    )?;
    assert_curl_ok(&out, "TLS list without session reuse", &server);
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, "-v", &url])?;
    assert!(
        out.stderr.contains("SSL certificate verify ok"),
        "certificate not verified:\n{out}"
    );
    Ok(())
}

#[test]
fn pure_ftpd_tls_optional_and_bad_certificates() -> Result<()> {
    let mut server = FtpServer::start(
        FtpServerOptions::pure_ftpd()
            .tls(FtpServerTls::Explicit { required: false })
            .cert(CertChoice::WrongHost),
    )?;
    let ca = server.ca_file().display().to_string();
    let url = server.url("");
    let out = curl(&server, &[&url])?;
    assert_curl_ok(&out, "plain list on optional TLS", &server);
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_eq!(code(&out), Some(60), "wrong-host cert not refused:\n{out}");
    server.restart_with_cert(CertChoice::UnknownCa)?;
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_eq!(code(&out), Some(60), "unknown-CA cert not refused:\n{out}");
    server.restart_with_cert(CertChoice::Good)?;
    let out = curl(&server, &["--ssl-reqd", "--cacert", &ca, &url])?;
    assert_curl_ok(&out, "TLS list with the good cert", &server);
    Ok(())
}

#[test]
fn pure_ftpd_source_address_127_0_0_2_is_seen() -> Result<()> {
    let server = FtpServer::start(FtpServerOptions::pure_ftpd())?;
    source_address_is_seen(&server)
}

#[test]
fn pure_ftpd_stop_and_start_again() -> Result<()> {
    let mut server = FtpServer::start(FtpServerOptions::pure_ftpd().max_clients(4))?;
    let port = server.port();
    let src = server.dir().join("big.bin");
    write_random_file(&src, 2_000_000)?;
    let src_s = src.display().to_string();
    let url = server.url("big.bin");
    let mut child = spawn_curl(
        &server,
        &["--limit-rate", "200K", "-T", &src_s, &url],
        "cut",
    )?;
    let started = wait_until(Duration::from_secs(20), || {
        Ok(!server.data_connections()?.is_empty())
    })?;
    assert!(started, "upload never started\n{}", server.logs());
    let pids = server.pids();
    assert!(pids.len() >= 2, "{pids:?}");
    let status_file =
        |p: &u32| std::path::PathBuf::from(format!("{PURE_FTPD_RUN_DIR}/client-{p:08}"));
    assert!(
        pids.iter().any(|p| status_file(p).exists()),
        "no pure-ftpd session status file for {pids:?}"
    );
    server.stop()?;
    let st = wait_child(&mut child, Duration::from_secs(20))?;
    assert!(!st.success(), "upload survived the server's stop");
    let left: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
    assert!(left.is_empty(), "processes left after stop: {left:?}");
    let stale: Vec<_> = pids
        .iter()
        .map(status_file)
        .filter(|f| f.exists())
        .collect();
    assert!(stale.is_empty(), "stale status files: {stale:?}");
    server.start_again()?;
    assert_eq!(server.port(), port);
    let out = curl(&server, &["-T", &src_s, &url])?;
    assert_curl_ok(&out, "upload after start_again", &server);
    assert_same_file(&src, &server.root().join("big.bin"));
    Ok(())
}

#[test]
fn pure_ftpd_has_no_implicit_tls() {
    let err = match FtpServer::start(FtpServerOptions::pure_ftpd().tls(FtpServerTls::Implicit)) {
        Ok(_) => panic!("pure-ftpd started with implicit TLS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("implicit"), "{err}");
}

#[test]
fn parallel_instances_get_distinct_ports() -> Result<()> {
    let a = FtpServer::start(FtpServerOptions::vsftpd())?;
    let b = FtpServer::start(FtpServerOptions::pure_ftpd())?;
    let (ra, rb) = (a.passive_ports(), b.passive_ports());
    for (x, y) in [(&a, &rb), (&b, &ra)] {
        assert!(!y.contains(&x.port()));
    }
    assert!(
        ra.end() < rb.start() || rb.end() < ra.start(),
        "{ra:?} {rb:?}"
    );
    assert_ne!(a.root(), b.root());
    for s in [&a, &b] {
        let out = curl(s, &[&s.url("")])?;
        assert_curl_ok(&out, "list", s);
    }
    Ok(())
}
