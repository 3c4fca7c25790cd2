//! ssh-audit (3.9, PyPI), the usual audit of SSH servers, against the
//! gateway: with the default config it finds no failure, no CVE, and its
//! connection-rate (DHEat, CVE-2002-20001) test passes; with the rate
//! limit off that test does flag the gateway (so the check can fail); and
//! the `[server]` algorithm lists drop what it warns about
//! (`diffie-hellman-group14-sha256`, the encrypt-and-MAC `hmac-sha2-*`)
//! while OpenSSH's sftp still logs in.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::*;
use serde_json::Value;

/// Whether ssh-audit can run (`scripts/test.sh` installs it).
fn ssh_audit_available() -> bool {
    let ok = Command::new("ssh-audit")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("ssh-audit is not installed (scripts/test.sh installs it with pip)");
        }
        eprintln!("SKIPPED: ssh-audit is not installed (`python3 -m pip install ssh-audit`)");
    }
    ok
}

/// A gateway with one user (alice, by key) and `server_extra` /
/// `login_extra` lines.
struct Audited {
    env: TestEnv,
    gw: Gateway,
    key: std::path::PathBuf,
}

fn start(server_extra: &[&str], login_extra: &[&str]) -> Audited {
    let env = TestEnv::new().unwrap();
    let key = env.path("alice-key");
    let mut cfg = env.config();
    cfg.users = vec![UserConfig::new("alice").key(&client_key(&key).unwrap())];
    fs::create_dir_all(env.data.join("alice")).unwrap();
    cfg.server_extra = server_extra.iter().map(|s| s.to_string()).collect();
    cfg.login_extra = login_extra.iter().map(|s| s.to_string()).collect();
    let gw = env.start(&cfg).unwrap();
    Audited { env, gw, key }
}

/// ssh-audit's JSON report of the gateway.
fn audit(a: &Audited) -> Value {
    let mut cmd = Command::new("ssh-audit");
    cmd.args(["-j", "-p", &a.gw.addr.port().to_string(), "127.0.0.1"]);
    let out = run_with_timeout(cmd, Duration::from_secs(120)).expect("ssh-audit runs");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ssh-audit gave no JSON ({e})\n{out}\n{}", a.gw.logs()))
}

/// `(section, algorithm, level, note)` of every warning and failure.
fn findings(report: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for alg in report[section].as_array().into_iter().flatten() {
            for level in ["fail", "warn"] {
                for note in alg["notes"][level].as_array().into_iter().flatten() {
                    out.push((
                        section.to_string(),
                        alg["algorithm"].as_str().unwrap_or("").to_string(),
                        level.to_string(),
                        note.as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    out
}

fn notes(report: &Value) -> String {
    report["additional_notes"].to_string()
}

#[test]
fn ssh_audit_finds_no_failure_and_the_rate_test_passes_by_default() {
    if !ssh_audit_available() {
        return;
    }
    let a = start(&[], &[]);
    let report = audit(&a);
    let found = findings(&report);
    let failures: Vec<_> = found.iter().filter(|f| f.2 == "fail").collect();
    assert!(failures.is_empty(), "ssh-audit failures: {failures:#?}");
    assert_eq!(report["cves"], Value::Array(vec![]), "{}", report["cves"]);
    assert!(
        !notes(&report).contains("DHEat"),
        "the connection-rate test flagged the default config: {}",
        notes(&report)
    );
    // What it warns about by default (the README says how to drop them).
    assert!(
        found.iter().any(|f| f.1 == "diffie-hellman-group14-sha256"),
        "{found:#?}"
    );

    // The same audit with the rate limit off does flag DHEat: the check
    // above can fail.
    let open = start(&[], &["connections_per_second_per_address = 0"]);
    let report = audit(&open);
    assert!(
        notes(&report).contains("DHEat"),
        "ssh-audit did not flag an unthrottled gateway: {}",
        notes(&report)
    );
}

#[test]
fn algorithm_lists_drop_what_ssh_audit_warns_about() {
    if !ssh_audit_available() {
        return;
    }
    let a = start(
        &[
            r#"kex_algorithms = ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"]"#,
            r#"ciphers = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr"]"#,
            r#"macs = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]"#,
        ],
        &[],
    );
    // OpenSSH's sftp logs in and works with them (first: ssh-audit's rate
    // test then uses up this address's burst of connections).
    let c = a.env.client(&a.gw, "alice", Auth::Key(a.key.clone()));
    let out = c.sftp("mkdir d\nls\n").unwrap();
    assert_ok(
        &out,
        &format!("sftp with the restricted algorithms\n{}", a.gw.logs()),
    );

    let report = audit(&a);
    let found = findings(&report);
    assert!(found.iter().all(|f| f.2 != "fail"), "{found:#?}");
    for gone in [
        "diffie-hellman-group14-sha256",
        "hmac-sha2-256",
        "hmac-sha2-512",
    ] {
        assert!(
            found.iter().all(|f| f.1 != gone),
            "{gone} is still offered: {found:#?}"
        );
    }
    assert!(
        found.iter().all(|f| !f.3.contains("encrypt-and-MAC")),
        "{found:#?}"
    );
    let kex: Vec<&str> = report["kex"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    assert!(
        kex.contains(&"kex-strict-s-v00@openssh.com"),
        "strict kex kept: {kex:?}"
    );
    // The only warnings left are the post-quantum ones on curve25519, which
    // clients before OpenSSH 9.9 need. (Host keys are left out: the tests
    // pregenerate a 2048-bit RSA host key for speed, where the gateway
    // makes a 4096-bit one.)
    assert!(
        found
            .iter()
            .filter(|f| f.0 != "key")
            .all(|f| f.3.contains("post-quantum")),
        "{found:#?}"
    );
}
