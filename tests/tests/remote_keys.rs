//! Private keys the gateway logs in to remotes with: its own `gateway keygen`,
//! and keys in PuTTY ppk v2/v3, ssh.com SSH2 and PEM formats.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::sshd::*;
use e2e::*;

const PASSPHRASE: &str = "e2e key pass-phrase";

fn run(cmd: Command, what: &str) -> CmdOutput {
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert_ok(&out, what);
    out
}

/// `ssh-keygen -y -f KEY`: the public key (type and blob) of a private OpenSSH/PEM key.
fn public_of(key: &Path, passphrase: &str) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-y", "-P", passphrase, "-f"]).arg(key);
    let out = run(cmd, "ssh-keygen -y");
    out.stdout
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `gateway keygen`: an RSA-4096 OpenSSH key (0600) and its .pub; authorized at
/// the remote it replaces the password.
#[test]
fn remote_keygen_key_logs_in_without_password() {
    let mut s = MountSetup::new().unwrap();
    let key = s.env.path("gw_id");
    let out = gateway_run(
        &["keygen", "--out", &p(&key), "--comment", "e2e-keygen"],
        Duration::from_secs(120),
    )
    .unwrap();
    assert_ok(&out, "gateway keygen");
    let pub_path = PathBuf::from(format!("{}.pub", key.display()));
    let pub_line = fs::read_to_string(&pub_path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", pub_path.display()))
        .trim()
        .to_string();
    assert!(pub_line.starts_with("ssh-rsa AAAA"), "{pub_line:?}");
    assert!(
        pub_line.ends_with("e2e-keygen"),
        "comment missing: {pub_line:?}"
    );
    assert!(
        out.stdout.contains(&pub_line),
        "stdout does not show the public key line {pub_line:?}\n{out}"
    );
    let fp = fingerprint(&pub_path).unwrap();
    assert!(
        out.stdout.contains(&fp),
        "stdout does not show the fingerprint {fp}\n{out}"
    );
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    let text = fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "not an OpenSSH private key: {:?}",
        &text[..text.len().min(60)]
    );
    let mut lf = Command::new("ssh-keygen");
    lf.arg("-lf").arg(&pub_path);
    let lf = run(lf, "ssh-keygen -lf");
    assert!(lf.stdout.starts_with("4096 "), "not RSA-4096: {lf}");
    assert_eq!(
        public_of(&key, ""),
        pub_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        "the .pub does not belong to the private key"
    );

    s.sshd.authorize_key(&pub_line).unwrap();
    *s.remote() = s.remote().clone().no_password().key(&key, None);
    s.start_gateway().unwrap();
    let src = s.env.path("k.bin");
    write_random_file(&src, 500_000).unwrap();
    let back = s.env.path("k-back.bin");
    let out = s
        .client()
        .sftp(&format!(
            "put {} {MOUNT}/k.bin\nget {MOUNT}/k.bin {}\n",
            p(&src),
            p(&back)
        ))
        .unwrap();
    assert_ok(&out, &format!("put/get with the keygen key\n{}", s.logs()));
    assert_same_file(&src, &s.root.join("k.bin"));
    assert_same_file(&src, &back);
    assert!(
        s.sshd.log().contains("Accepted publickey for gwtest"),
        "sshd did not log a public-key login\n{}",
        s.sshd.logs()
    );
}

/// One converted key: its remote name, file and passphrase.
struct KeyCase {
    name: String,
    file: PathBuf,
    passphrase: Option<String>,
}

fn puttygen(src: &Path, out: &Path, args: &[&str], pass_file: Option<&Path>) {
    let mut cmd = Command::new("puttygen");
    cmd.arg(src).args(args).arg("-o").arg(out);
    if let Some(pf) = pass_file {
        cmd.arg("--new-passphrase").arg(pf);
    }
    run(cmd, &format!("puttygen {}", out.display()));
}

/// ppk v2 and v3 (RSA and ed25519), ssh.com SSH2 and PEM (RSA, ECDSA), each
/// with and without passphrase: `gateway remote test` logs in with each.
#[test]
fn remote_converted_keys_log_in() {
    let mut s = MountSetup::new().unwrap();
    let dir = s.env.path("keys");
    fs::create_dir_all(&dir).unwrap();
    let pass_file = dir.join("pass.txt");
    fs::write(&pass_file, PASSPHRASE).unwrap();

    let rsa = dir.join("rsa");
    let ed = dir.join("ed");
    for (k, t, b) in [(&rsa, "rsa", Some(2048)), (&ed, "ed25519", None)] {
        let line = ssh_keygen_key(k, t, b, None, "").unwrap();
        s.sshd.authorize_key(&line).unwrap();
    }
    let mut cases: Vec<KeyCase> = vec![];
    for (base, bname) in [(&rsa, "rsa"), (&ed, "ed25519")] {
        for version in [2, 3] {
            for with_pass in [false, true] {
                let suffix = if with_pass { "-pass" } else { "" };
                let file = dir.join(format!("{bname}-v{version}{suffix}.ppk"));
                let v = format!("version={version}");
                puttygen(
                    base,
                    &file,
                    &["-O", "private", "--ppk-param", &v],
                    with_pass.then_some(pass_file.as_path()),
                );
                cases.push(KeyCase {
                    name: format!("ppk{version}-{bname}{suffix}"),
                    file,
                    passphrase: with_pass.then(|| PASSPHRASE.to_string()),
                });
            }
        }
    }
    // ssh.com SSH2 export supports RSA (not ed25519) in puttygen.
    for with_pass in [false, true] {
        let suffix = if with_pass { "-pass" } else { "" };
        let file = dir.join(format!("rsa{suffix}.ssh2"));
        puttygen(
            &rsa,
            &file,
            &["-O", "private-sshcom"],
            with_pass.then_some(pass_file.as_path()),
        );
        let head = fs::read_to_string(&file).unwrap();
        assert!(head.starts_with("---- BEGIN SSH2"), "{head}");
        cases.push(KeyCase {
            name: format!("sshcom-rsa{suffix}"),
            file,
            passphrase: with_pass.then(|| PASSPHRASE.to_string()),
        });
    }
    // PEM (traditional "BEGIN RSA/EC PRIVATE KEY") from ssh-keygen -m PEM.
    for (t, b) in [("rsa", Some(2048)), ("ecdsa", None)] {
        for with_pass in [false, true] {
            let suffix = if with_pass { "-pass" } else { "" };
            let file = dir.join(format!("{t}{suffix}.pem"));
            let pp = if with_pass { PASSPHRASE } else { "" };
            let line = ssh_keygen_key(&file, t, b, Some("PEM"), pp).unwrap();
            s.sshd.authorize_key(&line).unwrap();
            let head = fs::read_to_string(&file).unwrap();
            assert!(
                head.starts_with("-----BEGIN RSA PRIVATE KEY-----")
                    || head.starts_with("-----BEGIN EC PRIVATE KEY-----"),
                "not a PEM key: {}",
                &head[..head.len().min(60)]
            );
            cases.push(KeyCase {
                name: format!("pem-{t}{suffix}"),
                file,
                passphrase: with_pass.then(|| PASSPHRASE.to_string()),
            });
        }
    }

    let template = s.cfg.remotes[0].clone().no_password();
    s.cfg.remotes = cases
        .iter()
        .map(|c| {
            let mut r = template.clone().key(&c.file, c.passphrase.as_deref());
            r.name = c.name.clone();
            r
        })
        .collect();
    s.cfg.users[0].mounts.clear();
    s.write_config().unwrap();

    let mut failures = vec![];
    for c in &cases {
        let out = remote_test(&s.config_path, &c.name).unwrap();
        if !out.success() {
            failures.push(format!(
                "[{}] {} (passphrase: {})\n{out}",
                c.name,
                c.file.display(),
                c.passphrase.is_some()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} key formats failed to log in:\n{}\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n"),
        s.sshd.logs()
    );
    let pubkey_logins = s
        .sshd
        .log_lines()
        .iter()
        .filter(|l| l.contains("Accepted publickey for gwtest"))
        .count();
    assert!(
        pubkey_logins >= cases.len(),
        "{pubkey_logins} public-key logins at sshd for {} key files",
        cases.len()
    );
}

/// A corrupt or missing key file, or a wrong passphrase: `config check` or
/// `remote test` fails, naming the key file.
#[test]
fn remote_bad_key_files_are_named() {
    let mut s = MountSetup::new().unwrap();
    let corrupt = s.env.path("corrupt_key");
    fs::write(
        &corrupt,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA!!not-base64!!\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let garbage = s.env.path("garbage_key");
    fs::write(&garbage, b"this is not a key at all\n").unwrap();
    let missing = s.env.path("missing_key");
    let wrong_pass = s.env.path("wrong_pass_key");
    let line = ssh_keygen_key(&wrong_pass, "ed25519", None, None, "right-pass").unwrap();
    s.sshd.authorize_key(&line).unwrap();

    let mut failures = vec![];
    for (file, pass) in [
        (&corrupt, None),
        (&garbage, None),
        (&missing, None),
        (&wrong_pass, Some("wrong-pass")),
    ] {
        *s.remote() = s.remote().clone().no_password().key(file, pass);
        s.write_config().unwrap();
        let cfg = p(&s.config_path);
        let check = gateway_run(
            &["config", "check", "--config", &cfg],
            Duration::from_secs(30),
        )
        .unwrap();
        let named = |o: &CmdOutput| strip_ansi(&o.stderr).contains(&file.display().to_string());
        if !check.success() {
            if !named(&check) {
                failures.push(format!(
                    "`config check` failed without naming {}\n{check}",
                    file.display()
                ));
            }
            continue;
        }
        let out = s.remote_test().unwrap();
        if out.success() {
            failures.push(format!(
                "`config check` and `remote test` both succeeded with {}\n{check}\n{out}",
                file.display()
            ));
        } else if !named(&out) {
            failures.push(format!(
                "`remote test` failed without naming {}\n{out}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
