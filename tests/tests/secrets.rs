//! Remote secrets from files and environment variables, end to end: the
//! real `gateway` in front of the tests' own sshd (and s3s-fs) logs in with
//! a password from `password_file` or `password_env`, a key and passphrase
//! from `private_key_env` and `private_key_passphrase_env`, an S3 secret
//! key from `secret_access_key_file`; a transfer through the mount works,
//! and not one of the secrets shows in the gateway's debug log, in
//! `gateway remote list` / `remote test` or in the admin API. A secret
//! file other users can read is warned about; a missing one is a config
//! error naming file, line and key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::mount::MountedGateway;
use e2e::s3d::{S3Server, S3ServerKind};
use e2e::sshd::*;
use e2e::*;

/// The variable `password_env` names.
const PASSWORD_VAR: &str = "GW_E2E_PARTNER_PASSWORD";
/// The admin API key of the test that uses the API.
const API_KEY: &str = "gwk_e2e_secrets_0123456789abcdef01234567";
/// The passphrase of the key made for the key test: unusual, to grep for.
const PASSPHRASE: &str = "Zq7-e2e-Passphrase-Wv3x";

/// Writes `content` to `path` (creating its folder) with `mode`.
fn write_secret(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes the config and starts `gateway serve` on it with `RUST_LOG=debug`
/// and `envs`.
fn start_with_env(m: &mut MountedGateway, envs: &[(&str, &str)]) {
    m.write_config().unwrap();
    let mut cmd = GatewayCommand::serve_config(&m.config_path);
    cmd.envs = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("RUST_LOG".to_string(), "debug".to_string())])
        .collect();
    let gw = Gateway::start(&cmd).unwrap();
    m.gw = Some(gw);
}

/// `gateway ARGS --config CONFIG` with `envs` (60 s limit).
fn gateway_with_env(args: &[&str], config: &Path, envs: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = GatewayCommand {
        args: args.iter().map(|s| s.to_string()).collect(),
        envs: envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    cmd.args.push("--config".into());
    cmd.args.push(config.display().to_string());
    run_with_timeout(cmd.command().unwrap(), Duration::from_secs(60)).unwrap()
}

/// Panics if `text` shows any of `secrets`.
#[track_caller]
fn assert_hidden(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

/// A file up through the mount and back down: on the remote's disk
/// (`remote_file`, when it has one) and back byte for byte.
fn round_trip(
    m: &MountedGateway,
    mount: &str,
    remote_file: Option<&Path>,
    logs: &dyn Fn() -> String,
) {
    let src = m.env.path("up.bin");
    write_random_file(&src, 200_000).unwrap();
    let back = m.env.path("back.bin");
    let out = m
        .client()
        .sftp(&format!(
            "put {} {mount}/up.bin\nget {mount}/up.bin {}\n",
            p(&src),
            p(&back)
        ))
        .unwrap();
    assert_ok(&out, &format!("put and get through the mount\n{}", logs()));
    if let Some(f) = remote_file {
        assert_same_file(&src, f);
    }
    assert_same_file(&src, &back);
}

/// Stops the gateway and returns everything it wrote (stdout and stderr),
/// after checking that the debug level was on.
fn stop_and_take_log(m: &mut MountedGateway) -> String {
    let mut gw = m.gw.take().expect("gateway running");
    gw.stop().unwrap();
    let log = format!("{}\n{}", gw.stdout.text(), gw.stderr.text());
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug did not reach the gateway:\n{log}"
    );
    log
}

/// The 1-based line of `config` that sets `key`.
fn line_of(config: &Path, key: &str) -> usize {
    let text = fs::read_to_string(config).unwrap();
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no `{key}` in\n{text}"))
        + 1
}

/// `password_file` (relative to the config's folder, mode 0600): the
/// mount works; the debug log, `remote list`, `remote test` and `config
/// check` never show the password, and nothing warns about the file.
#[test]
fn password_from_a_file_logs_in_and_never_shows() {
    let mut s = MountSetup::new().unwrap();
    let secret_file = s.env.path("secrets/partner.pw");
    write_secret(&secret_file, &format!("{TEST_PASSWORD}\n"), 0o600);
    s.remote().password = None;
    s.remote()
        .extra
        .push(("password_file".into(), toml_str("secrets/partner.pw")));
    start_with_env(&mut s.mount, &[]);
    let root = s.root.clone();
    round_trip(&s.mount, MOUNT, Some(&root.join("up.bin")), &|| s.logs());

    let test = s.remote_test().unwrap();
    assert_ok(&test, "remote test with password_file");
    assert_hidden(&test.text(), &[TEST_PASSWORD], "`gateway remote test`");
    let list = s.remote_list().unwrap();
    assert_ok(&list, "remote list");
    assert!(remote_list_line(&list, REMOTE).is_some(), "{list}");
    assert_hidden(&list.text(), &[TEST_PASSWORD], "`gateway remote list`");
    let check = gateway_with_env(&["config", "check"], &s.config_path, &[]);
    assert_ok(&check, "config check");
    assert_hidden(&check.text(), &[TEST_PASSWORD], "`gateway config check`");
    assert!(
        !check.text().contains("partner.pw"),
        "a mode 0600 secret file is warned about:\n{check}"
    );

    let log = stop_and_take_log(&mut s.mount);
    assert_hidden(&log, &[TEST_PASSWORD], "the gateway's debug log");
    assert!(
        !log.contains("partner.pw"),
        "a mode 0600 secret file is warned about:\n{log}"
    );
}

/// `password_env`: the mount works, the admin API (remotes, test, reload)
/// and the CLI never show the password; without the variable the config
/// is refused naming the variable, file, line and key.
#[test]
fn password_from_the_environment_logs_in_and_never_shows() {
    let mut s = MountSetup::new().unwrap();
    s.remote().password = None;
    s.remote()
        .extra
        .push(("password_env".into(), toml_str(PASSWORD_VAR)));
    s.cfg = s.cfg.clone().admin(
        "127.0.0.1:0",
        vec![AdminKeyConfig::for_key("ci", API_KEY, None)],
    );
    let env = [(PASSWORD_VAR, TEST_PASSWORD)];
    start_with_env(&mut s.mount, &env);
    let root = s.root.clone();
    round_trip(&s.mount, MOUNT, Some(&root.join("up.bin")), &|| s.logs());

    // The admin API.
    let line = s
        .gw()
        .stderr
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("admin API at http://")
        })
        .unwrap_or_else(|| panic!("no admin API line\n{}", s.logs()));
    let addr = line
        .split("admin API at http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    for (method, path) in [
        ("GET", "/api/v1/remotes"),
        ("POST", "/api/v1/remotes/partner/test"),
        ("POST", "/api/v1/reload"),
    ] {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "60", "-X", method, "-H"])
            .arg(format!("Authorization: Bearer {API_KEY}"))
            .arg(format!("http://{addr}{path}"));
        let out = run_with_timeout(curl, Duration::from_secs(90)).unwrap();
        assert_ok(&out, &format!("curl {method} {path}"));
        assert!(
            path == "/api/v1/reload" || out.stdout.contains("partner"),
            "{method} {path}: no remote in the answer\n{out}"
        );
        assert_hidden(&out.text(), &[TEST_PASSWORD], &format!("{method} {path}"));
    }
    // The reload read the variable again and kept the remote working.
    round_trip(&s.mount, MOUNT, Some(&root.join("up.bin")), &|| s.logs());

    let test = gateway_with_env(&["remote", "test", REMOTE], &s.config_path, &env);
    assert_ok(&test, "remote test with password_env");
    assert_hidden(&test.text(), &[TEST_PASSWORD], "`gateway remote test`");
    let list = gateway_with_env(&["remote", "list"], &s.config_path, &env);
    assert_ok(&list, "remote list with password_env");
    assert_hidden(&list.text(), &[TEST_PASSWORD], "`gateway remote list`");

    // Without the variable: refused, naming it, the file, the line and the key.
    let unset = gateway_with_env(&["remote", "test", REMOTE], &s.config_path, &[]);
    assert_eq!(unset.status.code(), Some(2), "{unset}");
    let want = format!(
        "{}:{}: key `remotes[0].password_env`",
        s.config_path.display(),
        line_of(&s.config_path, "password_env")
    );
    assert!(unset.stderr.contains(&want), "no `{want}`:\n{unset}");
    assert!(
        unset
            .stderr
            .contains(&format!("`{PASSWORD_VAR}` is not set")),
        "{unset}"
    );

    let log = stop_and_take_log(&mut s.mount);
    assert!(
        log.contains("config reloaded"),
        "no reload in the log:\n{log}"
    );
    assert_hidden(&log, &[TEST_PASSWORD], "the gateway's debug log");
}

/// `private_key_env` and `private_key_passphrase_env`: an encrypted key
/// the remote accepts (no password configured); neither the passphrase
/// nor any line of the key shows in the debug log or `remote test`.
#[test]
fn key_and_passphrase_from_the_environment_log_in_and_never_show() {
    let mut s = MountSetup::new().unwrap();
    let key = s.env.path("partner_key");
    let public = ssh_keygen_key(&key, "ed25519", None, None, PASSPHRASE).unwrap();
    s.sshd.authorize_key(&public).unwrap();
    let key_text = fs::read_to_string(&key).unwrap();
    fs::remove_file(&key).unwrap();
    let body: Vec<&str> = key_text
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    s.remote().password = None;
    s.remote()
        .extra
        .push(("private_key_env".into(), toml_str("GW_E2E_KEY")));
    s.remote().extra.push((
        "private_key_passphrase_env".into(),
        toml_str("GW_E2E_KEY_PASSPHRASE"),
    ));
    let env = [
        ("GW_E2E_KEY", key_text.as_str()),
        ("GW_E2E_KEY_PASSPHRASE", PASSPHRASE),
    ];
    start_with_env(&mut s.mount, &env);
    let root = s.root.clone();
    round_trip(&s.mount, MOUNT, Some(&root.join("up.bin")), &|| s.logs());

    let mut secrets = body.clone();
    secrets.push(PASSPHRASE);
    let test = gateway_with_env(&["remote", "test", REMOTE], &s.config_path, &env);
    assert_ok(&test, "remote test with the key from the environment");
    assert_hidden(&test.text(), &secrets, "`gateway remote test`");

    let log = stop_and_take_log(&mut s.mount);
    assert_hidden(&log, &secrets, "the gateway's debug log");
    // sshd let the gateway in with the key, not a password.
    assert!(
        s.sshd.log().contains("Accepted publickey"),
        "sshd did not accept the key\n{}",
        s.sshd.logs()
    );
}

/// `secret_access_key_file` on s3s-fs (which checks signatures): the
/// mount works; the secret key shows nowhere.
#[test]
fn s3_secret_key_from_a_file_signs_and_never_shows() {
    let s3 = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let mut remote = s3.remote_config("bucket");
    remote.secret_access_key = None;
    remote
        .extra
        .push(("secret_access_key_file".into(), toml_str("s3.secret")));
    let mut m = MountedGateway::new(remote, "/bucket").unwrap();
    write_secret(
        &m.env.path("s3.secret"),
        &format!("{}\n", s3.secret_key()),
        0o600,
    );
    start_with_env(&mut m, &[]);
    let object = s3.bucket_dir().map(|d| d.join("up.bin"));
    round_trip(&m, "/bucket", object.as_deref(), &|| {
        m.logs_with(&s3.logs())
    });
    let secret = s3.secret_key();
    let test = m.remote_test().unwrap();
    assert_ok(&test, "remote test with secret_access_key_file");
    assert_hidden(&test.text(), &[secret], "`gateway remote test`");
    let list = m.remote_list().unwrap();
    assert_ok(&list, "remote list");
    assert_hidden(&list.text(), &[secret], "`gateway remote list`");
    let log = stop_and_take_log(&mut m);
    assert_hidden(&log, &[secret], "the gateway's debug log");
}

/// A config with one remote (nobody listens there) whose password comes
/// from `password_file = FILE`; returns the config's path.
fn config_with_password_file(env: &TestEnv, file: &str) -> std::path::PathBuf {
    let mut cfg = env.config();
    let mut remote = RemoteConfig::sftp("partner", "127.0.0.1", free_port().unwrap(), "u");
    remote.extra.push(("password_file".into(), toml_str(file)));
    cfg.remotes = vec![remote];
    let path = env.path("config.toml");
    cfg.write(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A secret file of mode 0644: `serve` starts and logs a warning naming
/// the file, its mode and the fix; `config check` prints it too. Mode 0600
/// silences both.
#[test]
fn open_secret_file_is_warned_about() {
    let env = TestEnv::new().unwrap();
    let file = env.path("partner.pw");
    write_secret(&file, "Zq-open-file-pw-4471\n", 0o644);
    let config = config_with_password_file(&env, "partner.pw");
    let fix = format!("chmod 600 {}", file.display());

    let mut gw = Gateway::start(&GatewayCommand::serve_config(&config)).unwrap();
    let warning = gw
        .stderr
        .wait_for(Duration::from_secs(10), |l| l.contains("partner.pw"))
        .unwrap_or_else(|| panic!("no warning naming the file\n{}", gw.logs()));
    assert!(warning.contains("WARN"), "not a warning: {warning}");
    assert!(
        warning.contains(&file.display().to_string())
            && warning.contains("mode 0644")
            && warning.contains(&fix),
        "the warning lacks the file, its mode or the fix: {warning}"
    );
    gw.stop().unwrap();
    assert_hidden(&gw.logs(), &["Zq-open-file-pw-4471"], "the gateway's log");

    let check = gateway_with_env(&["config", "check"], &config, &[]);
    assert_ok(&check, "config check with an open secret file");
    assert!(
        check
            .stderr
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains("mode 0644") && l.contains(&fix)),
        "no warning line:\n{check}"
    );

    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let check = gateway_with_env(&["config", "check"], &config, &[]);
    assert_ok(&check, "config check with a mode 0600 secret file");
    assert!(!check.text().contains("warning"), "{check}");
}

/// A `password_file` that does not exist: `serve` and `config check` exit 2
/// with the config file, the line and the key, and the missing file.
#[test]
fn missing_secret_file_is_a_config_error_with_file_line_and_key() {
    let env = TestEnv::new().unwrap();
    let config = config_with_password_file(&env, "nowhere/partner.pw");
    let want = format!(
        "{}:{}: key `remotes[0].password_file`: cannot read `{}`: no such file",
        config.display(),
        line_of(&config, "password_file"),
        env.path("nowhere/partner.pw").display()
    );
    for args in [&["serve"][..], &["config", "check"][..]] {
        let out = gateway_with_env(args, &config, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{out}");
        assert!(out.stderr.contains(&want), "{args:?}: no `{want}`\n{out}");
    }
}
