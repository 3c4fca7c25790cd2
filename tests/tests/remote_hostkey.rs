//! The remote's host key: pinned at first connect, a changed key disables the
//! remote (across restarts) until `gateway remote trust`; configured keys.

use std::fs;
use std::path::PathBuf;

use e2e::sshd::*;
use e2e::*;

/// The `remote list` line of [`REMOTE`], or a panic showing the output.
fn list_line(s: &MountSetup) -> String {
    let out = s.remote_list().unwrap();
    assert_ok(&out, "gateway remote list");
    remote_list_line(&out, REMOTE)
        .unwrap_or_else(|| panic!("`remote list` has no line for {REMOTE}\n{out}"))
}

fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

fn is_disabled(line: &str) -> bool {
    words(line).iter().any(|w| w == "disabled")
}

fn is_enabled(line: &str) -> bool {
    let w = words(line);
    w.iter().any(|w| w == "enabled") && !w.iter().any(|w| w == "disabled")
}

/// A pinned key that changes: the connection is dropped before authentication,
/// the remote is disabled (also after a gateway restart) until `remote trust`.
#[test]
fn remote_host_key_change_disables_the_remote_until_trusted() {
    let mut s = MountSetup::new().unwrap();
    s.start_gateway().unwrap();
    let c = s.client();
    let out = c.sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, &format!("first ls through the mount\n{}", s.logs()));
    let fp1 = s.sshd.host_key_fingerprint();
    let line = list_line(&s);
    assert!(
        line.contains(&fp1),
        "`remote list` does not show the pinned fingerprint {fp1}: {line:?}"
    );
    assert!(
        is_enabled(&line),
        "remote not enabled after pinning: {line:?}"
    );

    // New host key on the same port.
    s.sshd.restart_with_new_host_key().unwrap();
    let fp2 = s.sshd.host_key_fingerprint();
    assert_ne!(fp1, fp2);
    let accepted_before = s.sshd.accepted_count();
    let src = s.env.path("x.txt");
    fs::write(&src, b"x\n").unwrap();
    let out = c.sftp(&format!("put {} {MOUNT}/x.txt\n", p(&src))).unwrap();
    assert_failed(
        &out,
        "put through the mount after the remote's host key changed",
    );
    assert!(
        !s.root.join("x.txt").exists(),
        "the upload reached the remote\n{out}"
    );
    assert_eq!(
        s.sshd.accepted_count(),
        accepted_before,
        "the gateway authenticated to a server with a changed host key\n{}",
        s.logs()
    );
    let log = s.gateway_log();
    assert!(
        log.to_lowercase().contains("mismatch") && log.contains(&fp1) && log.contains(&fp2),
        "the gateway's log should mention `mismatch`, the pinned {fp1} and the presented {fp2}\n{}",
        s.logs()
    );
    let line = list_line(&s);
    assert!(
        is_disabled(&line),
        "`remote list` does not say disabled: {line:?}"
    );

    // Still disabled after a gateway restart, and still failing.
    s.restart_gateway().unwrap();
    let c = s.client();
    let out = c.sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(
        &out,
        "ls through the mount after a gateway restart (remote disabled)",
    );
    let line = list_line(&s);
    assert!(
        is_disabled(&line),
        "`remote list` no longer says disabled after a gateway restart: {line:?}"
    );
    assert_eq!(s.sshd.accepted_count(), accepted_before, "{}", s.logs());

    // Trust the new key: works again, on the running gateway.
    let out = s.remote_trust().unwrap();
    assert_ok(&out, "gateway remote trust");
    assert!(
        out.stdout.contains(&fp2),
        "`remote trust` does not print the new fingerprint {fp2}\n{out}"
    );
    let line = list_line(&s);
    assert!(
        is_enabled(&line) && line.contains(&fp2),
        "after trust `remote list` should say enabled with {fp2}: {line:?}"
    );
    let out = c
        .sftp(&format!("put {} {MOUNT}/x.txt\nls {MOUNT}\n", p(&src)))
        .unwrap();
    assert_ok(&out, &format!("put after `remote trust`\n{}", s.logs()));
    assert_same_file(&src, &s.root.join("x.txt"));
}

/// A configured `host_key` that is not the server's: no connection gets past
/// the key exchange, from the very first connect.
#[test]
fn remote_configured_host_key_mismatch_fails_from_first_connect() {
    let mut s = MountSetup::new().unwrap();
    let other = s.env.path("other_host_key");
    let other_line = client_key(&other).unwrap();
    let other_fp = fingerprint(&PathBuf::from(format!("{}.pub", other.display()))).unwrap();
    s.remote().host_key = Some(other_line);
    s.start_gateway().unwrap();
    let out = s.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(
        &out,
        "ls through a mount whose configured host key does not match",
    );
    assert_eq!(s.sshd.accepted_count(), 0, "{}", s.logs());
    let log = s.gateway_log();
    assert!(
        log.to_lowercase().contains("mismatch")
            && log.contains(&other_fp)
            && log.contains(&s.sshd.host_key_fingerprint()),
        "the log should say mismatch with the configured {other_fp} and the presented {}\n{}",
        s.sshd.host_key_fingerprint(),
        s.logs()
    );
    let out = s.remote_test().unwrap();
    assert_failed(&out, "remote test with a wrong configured host key");
    assert!(
        strip_ansi(&out.stderr).contains("host key mismatch"),
        "remote test should say `host key mismatch`\n{out}"
    );
}

/// A configured `host_key` that matches works, both as a key line and as a
/// known_hosts line.
#[test]
fn remote_configured_host_key_matches_in_both_forms() {
    let mut s = MountSetup::new().unwrap();
    let mut extra = s.cfg.remotes[0].clone();
    extra.name = "partner-kh".into();
    extra.host_key = Some(s.sshd.known_hosts_line());
    s.remote().host_key = Some(s.sshd.host_key_line());
    s.cfg.remotes.push(extra);
    s.cfg.users[0] = s.cfg.users[0]
        .clone()
        .mount("/partner-kh", "partner-kh", "");
    s.start_gateway().unwrap();
    let out = s
        .client()
        .sftp(&format!("ls {MOUNT}\nls /partner-kh\n"))
        .unwrap();
    assert_ok(
        &out,
        &format!("ls through mounts with configured host keys\n{}", s.logs()),
    );
    for name in [REMOTE, "partner-kh"] {
        let out = remote_test(&s.config_path, name).unwrap();
        assert_ok(
            &out,
            &format!("remote test {name} with a matching configured host key"),
        );
    }
}

/// `allow_mismatched_host_key = true`: a wrong configured key connects, with a warning.
#[test]
fn remote_allow_mismatched_host_key_connects_with_a_warning() {
    let mut s = MountSetup::new().unwrap();
    let other = s.env.path("other_host_key");
    let other_line = client_key(&other).unwrap();
    s.remote().host_key = Some(other_line);
    s.remote().allow_mismatched_host_key = Some(true);
    s.start_gateway().unwrap();
    let src = s.env.path("y.txt");
    fs::write(&src, b"y\n").unwrap();
    let out = s
        .client()
        .sftp(&format!("put {} {MOUNT}/y.txt\n", p(&src)))
        .unwrap();
    assert_ok(
        &out,
        &format!("put with allow_mismatched_host_key = true\n{}", s.logs()),
    );
    assert_same_file(&src, &s.root.join("y.txt"));
    let warned = s
        .gateway_log()
        .lines()
        .any(|l| l.to_uppercase().contains("WARN") && l.to_lowercase().contains("mismatch"));
    assert!(
        warned,
        "no WARN line mentioning the host key mismatch in the gateway's log\n{}",
        s.logs()
    );
}
