//! The inbound SFTP loop's flow control end to end: a scripted
//! client over a real SSH connection (tests/flow/flow_client.py, raw SFTP
//! on paramiko) that sends 10,000 reads at once and stops reading, one
//! that vanishes with 500 requests in flight, one that never reads again;
//! on the gateway's own storage and through an sshd mount. Each checks
//! that nothing hangs, that the gateway's memory stays bounded, and that
//! sessions and pooled remote connections are given back.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::ops::{logged_http_address, scrape};
use e2e::sshd::*;
use e2e::*;

/// The file every test reads: 64 MiB whose every 4-byte word is its offset.
const SIZE: usize = 64 << 20;
/// How far the gateway's peak resident memory may grow while one client
/// holds 10,000 reads in flight (the session's budget is 4 MiB of waiting
/// requests plus 16 MiB of work and replies; the rest is russh's buffers,
/// the allocator and, through a mount, the remote connection's reads).
const PEAK_GROWTH_LIMIT: u64 = 96 << 20;

fn write_offsets_file(path: &Path) {
    let data: Vec<u8> = (0..SIZE / 4)
        .flat_map(|i| (i as u32 * 4).to_be_bytes())
        .collect();
    fs::write(path, data).unwrap();
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flow/flow_client.py")
}

/// Runs the scripted client; returns its JSON line and exit success.
fn flow_client(s: &MountSetup, mode: &str, path: &str, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .arg(mode)
        .arg("127.0.0.1")
        .arg(s.gw().port().to_string())
        .arg("alice")
        .arg(&s.key)
        .arg(path)
        .arg("--size")
        .arg(SIZE.to_string())
        .args(extra);
    let out = run_with_timeout(cmd, Duration::from_secs(180)).unwrap();
    (out.success(), out.text())
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

/// A gateway with alice's home holding `big.bin` and her `/partner` mount
/// on sshd holding another; metrics on, `idle_timeout` as given.
fn setup(idle_timeout: &str) -> (MountSetup, std::net::SocketAddr) {
    let mut s = MountSetup::new().unwrap();
    s.cfg.metrics_listen = Some("127.0.0.1:0".into());
    s.cfg
        .server_extra
        .push(format!("idle_timeout = {}", toml_str(idle_timeout)));
    s.remote().max_connections = Some(3);
    write_offsets_file(&s.env.data.join("alice/big.bin"));
    let remote_file = s.root.join("big.bin");
    write_offsets_file(&remote_file);
    chown_to_test_user(&remote_file).unwrap();
    s.start_gateway().unwrap();
    let metrics = logged_http_address(s.gw(), "metrics on http://")
        .unwrap_or_else(|| panic!("no metrics address logged\n{}", s.logs()));
    (s, metrics)
}

/// Waits up to `secs` for no session and no remote connection in use;
/// returns how long it took.
fn all_given_back(s: &MountSetup, metrics: std::net::SocketAddr, secs: u64) -> Duration {
    let started = Instant::now();
    let r = [("remote", REMOTE)];
    loop {
        let m = scrape(metrics).unwrap();
        let sessions = m.get("gateway_sessions", &[]);
        let in_use = m.get("gateway_remote_connections_in_use", &r);
        if sessions == 0.0 && in_use == 0.0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "after {secs} s: {sessions} sessions, {in_use} remote connections in use\n{}",
            s.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ten_thousand_reads_held_unread_then_resumed() {
    let (s, metrics) = setup("10m");
    let pid = s.gw().pid().unwrap();
    for path in ["/big.bin", "/partner/big.bin"] {
        let before = peak_rss(pid);
        let (ok, out) = flow_client(
            &s,
            "hold",
            path,
            &["--reads", "10000", "--len", "32768", "--pause", "5"],
        );
        let after = peak_rss(pid);
        println!(
            "{path}: {out}; gateway peak RSS {} MiB -> {} MiB",
            before >> 20,
            after >> 20
        );
        assert!(ok, "{path}: {out}\n{}", s.logs());
        assert!(
            out.contains("\"bad\": []"),
            "{path}: replies were wrong: {out}"
        );
        assert!(
            after.saturating_sub(before) <= PEAK_GROWTH_LIMIT,
            "{path}: peak RSS grew by {} MiB (limit {} MiB)",
            (after - before) >> 20,
            PEAK_GROWTH_LIMIT >> 20
        );
        all_given_back(&s, metrics, 10);
    }
}

#[test]
fn a_client_that_vanishes_with_500_requests_in_flight_frees_everything() {
    let (s, metrics) = setup("10m");
    for path in ["/big.bin", "/partner/big.bin"] {
        let (ok, out) = flow_client(&s, "leave", path, &["--reads", "500", "--len", "65536"]);
        assert!(ok, "{path}: {out}\n{}", s.logs());
        let took = all_given_back(&s, metrics, 10);
        println!(
            "{path}: session and remote connections given back {took:?} after the client vanished"
        );
    }
    // The gateway still serves the same remote afterwards.
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, "ls through the mount after the vanished clients");
    assert!(out.lists_name("big.bin"), "{out}");
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_idle_timeout() {
    let (s, metrics) = setup("3s");
    for path in ["/big.bin", "/partner/big.bin"] {
        // 2,000 reads of 32 KiB: 64 MiB of replies against paramiko's
        // 2 MiB window, which it never adjusts since it never reads.
        let (ok, out) = flow_client(
            &s,
            "stall",
            path,
            &["--reads", "2000", "--len", "32768", "--limit", "30"],
        );
        println!("{path}: {out}");
        assert!(ok, "{path}: {out}\n{}", s.logs());
        assert!(
            out.contains("\"server_ended\": true"),
            "{path}: the gateway kept a stalled session for 30 s: {out}\n{}",
            s.logs()
        );
        all_given_back(&s, metrics, 10);
    }
    assert!(
        s.gateway_log()
            .contains("made no progress for idle_timeout"),
        "{}",
        s.logs()
    );
}

/// Kills the process group of `child` with SIGKILL.
fn kill_group(child: &std::process::Child) {
    let st = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(st.success(), "kill -KILL -{}", child.id());
}

/// Waits until a transfer through the mount holds a remote connection.
fn transfer_running(s: &MountSetup, metrics: std::net::SocketAddr) {
    let started = Instant::now();
    let r = [("remote", REMOTE)];
    while scrape(metrics)
        .map(|m| m.get("gateway_remote_bytes_read_total", &r) < (4 << 20) as f64)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the download never started\n{}",
            s.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Real clients killed with SIGKILL in the middle of a download through
/// the mount, OpenSSH's `sftp -R 1024` and paramiko's `get`: the session
/// and its remote connection are given back within 10 s.
#[test]
fn killed_clients_free_their_session_and_remote_connection_within_10_s() {
    let (s, metrics) = setup("10m");
    let back = s.env.path("back.bin");
    // OpenSSH, 1,024 reads in flight, slowed to 40 Mbit/s so the kill
    // lands mid-transfer.
    let mut client = s.client();
    client
        .extra
        .extend(["-R", "1024", "-l", "40000"].map(String::from));
    let mut cmd = client.sftp_stdin_command();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut sftp = cmd.spawn().unwrap();
    use std::io::Write as _;
    writeln!(
        sftp.stdin.as_mut().unwrap(),
        "get {MOUNT}/big.bin {}",
        p(&back)
    )
    .unwrap();
    transfer_running(&s, metrics);
    kill_group(&sftp);
    let _ = sftp.wait();
    let took = all_given_back(&s, metrics, 10);
    println!("OpenSSH sftp -R 1024 killed mid-download: everything given back after {took:?}");

    // paramiko's get with its default prefetch; the script reads slowly.
    let script = format!(
        r#"
import paramiko, time
t = paramiko.Transport(("127.0.0.1", {port}))
t.connect(username="alice", pkey=paramiko.PKey.from_path({key:?}))
c = paramiko.SFTPClient.from_transport(t)
c.get("{MOUNT}/big.bin", {back:?}, callback=lambda done, total: time.sleep(0.01))
"#,
        port = s.gw().port(),
        key = s.key.display().to_string(),
        back = back.display().to_string(),
    );
    let before = scrape(metrics)
        .unwrap()
        .get("gateway_remote_bytes_read_total", &[("remote", REMOTE)]);
    let mut python = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while scrape(metrics)
        .unwrap()
        .get("gateway_remote_bytes_read_total", &[("remote", REMOTE)])
        < before + (4 << 20) as f64
    {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", s.logs());
        thread::sleep(Duration::from_millis(50));
    }
    kill_group(&python);
    let _ = python.wait();
    let took = all_given_back(&s, metrics, 10);
    println!("paramiko get killed mid-download: everything given back after {took:?}");
}
