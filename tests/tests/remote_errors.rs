//! What a person sees when a mounted remote cannot be used: the remote is
//! unreachable, disabled after a host key change,
//! refuses the gateway's login, or has no free connection. Each is tried
//! with OpenSSH's `sftp` (which shows only a status code's own text, so
//! the gateway also writes the reason to the channel's stderr), paramiko
//! and Debian's rclone (which show the status message).

use std::fs;
use std::process::Command;
use std::thread;
use std::time::Duration;

use e2e::sshd::*;
use e2e::*;

/// What every client must show for the case, in the gateway's words.
struct Case {
    /// The sentence (or its start) the gateway's reason begins with.
    reason: &'static str,
    /// The code text OpenSSH's `sftp` prints for a failed upload.
    openssh_code: &'static str,
}

/// Runs `put` and `ls` with OpenSSH's sftp, a paramiko stat and upload,
/// and an rclone listing against the mount, and checks each shows the
/// reason.
fn every_client_shows(s: &MountSetup, case: &Case) {
    let local = s.env.path("up.txt");
    fs::write(&local, b"hello").unwrap();

    // OpenSSH: the status code's text on the failed command, the reason on
    // the channel's stderr (which ssh passes through to the terminal).
    let out = s
        .client()
        .sftp(&format!("put {} {MOUNT}/up.txt\n", p(&local)))
        .unwrap();
    assert_failed(&out, "put through an unusable remote");
    let text = out.text();
    println!("OpenSSH sftp put:\n{text}");
    assert!(
        text.contains(case.openssh_code),
        "OpenSSH sftp does not show `{}`:\n{text}\n{}",
        case.openssh_code,
        s.logs()
    );
    assert!(
        text.contains(&format!("gateway: {}", case.reason)),
        "OpenSSH sftp does not show the reason `{}`:\n{text}\n{}",
        case.reason,
        s.logs()
    );
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls of an unusable remote");
    assert!(
        out.text().contains(case.reason),
        "OpenSSH sftp's ls does not show the reason:\n{out}"
    );

    // paramiko: the exception carries the status message.
    let script = format!(
        r#"
import paramiko, sys
t = paramiko.Transport(("127.0.0.1", {port}))
t.connect(username="alice", pkey=paramiko.PKey.from_path({key:?}))
c = paramiko.SFTPClient.from_transport(t)
for what, call in (("stat", lambda: c.stat("{MOUNT}/x")), ("put", lambda: c.put({local:?}, "{MOUNT}/up.txt"))):
    try:
        call()
        print(what, "succeeded")
    except Exception as e:
        print(what, type(e).__name__, e)
"#,
        port = s.gw().port(),
        key = s.key.display().to_string(),
        local = local.display().to_string(),
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    let out = run_with_timeout(cmd, Duration::from_secs(120)).unwrap();
    let text = out.text();
    println!("paramiko:\n{text}");
    for what in ["stat", "put"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("paramiko printed no `{what}` line:\n{out}"));
        assert!(
            line.contains(case.reason),
            "paramiko's {what} error does not carry the reason `{}`: {line}\n{}",
            case.reason,
            s.logs()
        );
    }

    // rclone (Debian's 1.60, its sftp backend): the error it prints.
    let mut cmd = Command::new(e2e::clients::RCLONE_DEBIAN);
    cmd.env("RCLONE_CONFIG", "/dev/null")
        .arg("lsf")
        .arg("--retries")
        .arg("1")
        .arg("--low-level-retries")
        .arg("1")
        .arg(format!(
            ":sftp,host=127.0.0.1,port={},user=alice,key_file={},known_hosts_file=,shell_type=none:{MOUNT}",
            s.gw().port(),
            s.key.display()
        ));
    let out = run_with_timeout(cmd, Duration::from_secs(120)).unwrap();
    assert_failed(&out, "rclone lsf of an unusable remote");
    println!("rclone 1.60 lsf:\n{}", out.text());
    assert!(
        out.text().contains(case.reason),
        "rclone does not show the reason `{}`:\n{out}\n{}",
        case.reason,
        s.logs()
    );
}

fn started(connect_timeout: &str) -> MountSetup {
    let mut s = MountSetup::new().unwrap();
    s.remote().connect_timeout = Some(connect_timeout.into());
    s
}

#[test]
fn an_unreachable_remote_is_named_as_unreachable() {
    let mut s = started("5s");
    s.start_gateway().unwrap();
    s.sshd.stop().unwrap();
    every_client_shows(
        &s,
        &Case {
            reason: "remote `partner` is unreachable: it refused the connection; try again later",
            openssh_code: "No connection",
        },
    );
}

#[test]
fn a_disabled_remote_says_an_admin_must_trust_its_new_key() {
    let mut s = started("10s");
    s.start_gateway().unwrap();
    // Pin the key on first use, then change it.
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, "ls before the key change");
    s.sshd.restart_with_new_host_key().unwrap();
    every_client_shows(
        &s,
        &Case {
            reason: "remote `partner` is disabled: its host key changed; an admin must check the new key and run `gateway remote trust partner`",
            openssh_code: "No connection",
        },
    );
}

#[test]
fn a_refused_login_says_the_credentials_need_an_admin() {
    let mut s = started("10s");
    s.remote().password = Some("not-the-password".into());
    s.start_gateway().unwrap();
    every_client_shows(
        &s,
        &Case {
            reason: "remote `partner` refused the gateway's login; an admin must check the remote's credentials",
            openssh_code: "No connection",
        },
    );
}

#[test]
fn a_remote_whose_connections_are_all_busy_says_so() {
    let mut s = started("10s");
    s.remote().max_connections = Some(1);
    s.remote().pool_wait = Some("1s".into());
    let big = s.root.join("slow.bin");
    write_random_file(&big, 8 << 20).unwrap();
    chown_to_test_user(&big).unwrap();
    s.start_gateway().unwrap();
    // One slow download holds the only connection (8 MiB at 2 Mbit/s:
    // about 30 s, far longer than the checks below).
    let mut slow = s.client_n(1);
    slow.extra.extend(["-l".to_string(), "2000".to_string()]);
    let back = s.env.path("slow-back.bin");
    let batch = format!("get {MOUNT}/slow.bin {}\n", p(&back));
    let holder = thread::spawn(move || slow.sftp(&batch));
    thread::sleep(Duration::from_secs(3));
    every_client_shows(
        &s,
        &Case {
            reason: "remote `partner` is busy: all its connections are in use; try again later",
            openssh_code: "No connection",
        },
    );
    // Stop the slow download: the test has what it needs.
    s.mount.gw.take();
    let _ = holder.join();
}
