//! First start with no config: generated admin user, host keys, state database,
//! a 64 MiB round trip, basic folder operations, and a restart that keeps
//! the host key and the password and does not print the password again.

use std::fs;
use std::path::Path;
use std::time::Duration;

use e2e::*;

/// The login details the gateway printed at first start.
struct Banner {
    password: String,
    user: String,
    host: String,
    port: u16,
}

fn parse_banner(stdout: &str) -> Banner {
    let pw_re = regex::Regex::new(r"password: (\S+)").unwrap();
    let login_re = regex::Regex::new(r"log in with: (.+)").unwrap();
    let password = pw_re
        .captures(stdout)
        .unwrap_or_else(|| panic!("no `password: ...` in the first-start output:\n{stdout}"))[1]
        .to_string();
    let login = login_re
        .captures(stdout)
        .unwrap_or_else(|| panic!("no `log in with: ...` in the first-start output:\n{stdout}"))[1]
        .trim()
        .to_string();
    let words: Vec<&str> = login.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"sftp"),
        "login command should start with sftp: {login:?}"
    );
    let port_pos = words
        .iter()
        .position(|w| *w == "-P")
        .unwrap_or_else(|| panic!("login command has no -P PORT: {login:?}"));
    let port: u16 = words
        .get(port_pos + 1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("login command has no port number after -P: {login:?}"));
    let dest = words.last().unwrap();
    let (user, host) = dest
        .split_once('@')
        .unwrap_or_else(|| panic!("login command does not end with user@host: {login:?}"));
    Banner {
        password,
        user: user.into(),
        host: host.into(),
        port,
    }
}

fn gateway_in(cwd: &Path, listen: &str) -> GatewayCommand {
    GatewayCommand {
        args: vec!["serve".into()],
        cwd: Some(cwd.into()),
        envs: vec![("GATEWAY__SERVER__LISTEN".into(), listen.into())],
    }
}

#[test]
fn fresh_start() {
    let env = TestEnv::bare().unwrap();
    let cwd = env.path("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let storage = cwd.join("gateway-data");
    let state = cwd.join("gateway-state");

    // ---- first start -------------------------------------------------------
    let mut gw = Gateway::start(&gateway_in(&cwd, "127.0.0.1:0")).unwrap();
    let port = gw.port();
    assert_ne!(port, 0, "gateway reported port 0");
    assert!(
        gw.stdout
            .wait_for(Duration::from_secs(15), |l| l.contains("log in with:"))
            .is_some(),
        "first start printed no `log in with:` line on stdout\n{}",
        gw.logs()
    );
    let stdout = gw.stdout.text();
    assert!(
        stdout.contains("First start: created user \"admin\"."),
        "missing first-start banner on stdout:\n{stdout}"
    );
    let banner = parse_banner(&stdout);
    assert_eq!(banner.user, "admin", "printed login user");
    assert_eq!(banner.port, port, "printed port vs the `listening on` port");
    assert_eq!(banner.host, "127.0.0.1", "printed host");
    assert!(
        banner.password.len() >= 12,
        "generated password is short: {:?}",
        banner.password
    );

    let mut admin = Client::new(
        banner.port,
        &banner.user,
        Auth::Password(banner.password.clone()),
        &env.known_hosts,
    );
    admin.host = banner.host.clone();

    // ---- 64 MiB round trip ------------------------------------------------
    let big = env.path("big.bin");
    let big_back = env.path("big-back.bin");
    write_random_file(&big, 64 << 20).unwrap();
    let out = admin
        .sftp(&format!(
            "put {} /big.bin\nget /big.bin {}\n",
            p(&big),
            p(&big_back)
        ))
        .unwrap();
    assert_ok(
        &out,
        "upload + download of 64 MiB with the printed password",
    );
    assert_same_file(&big, &storage.join("big.bin"));
    assert_same_file(&big, &big_back);

    // ---- mkdir, put, ls ----------------------------------------------------
    let small = env.path("small.txt");
    fs::write(&small, b"hello from the e2e test\n").unwrap();
    let out = admin
        .sftp(&format!(
            "mkdir /docs\nput {} /docs/a.txt\nls /\nls /docs\n",
            p(&small)
        ))
        .unwrap();
    assert_ok(&out, "mkdir + put + ls");
    assert!(
        storage.join("docs").is_dir(),
        "mkdir /docs did not create gateway-data/docs\n{out}"
    );
    assert_same_file(&small, &storage.join("docs/a.txt"));
    for name in ["big.bin", "docs", "a.txt"] {
        assert!(
            out.lists_name(name),
            "`ls` output does not list {name}\n{out}"
        );
    }

    // ---- rename ------------------------------------------------------------
    let out = admin
        .sftp("rename /docs/a.txt /docs/b.txt\nls /docs\n")
        .unwrap();
    assert_ok(&out, "rename");
    assert!(
        !storage.join("docs/a.txt").exists(),
        "a.txt still on disk after rename\n{out}"
    );
    assert_same_file(&small, &storage.join("docs/b.txt"));
    assert!(
        out.lists_name("b.txt") && !out.lists_name("a.txt"),
        "listing after rename\n{out}"
    );

    // ---- rm, rmdir ---------------------------------------------------------
    let out = admin
        .sftp("rm /docs/b.txt\nrmdir /docs\nrm /big.bin\n")
        .unwrap();
    assert_ok(&out, "rm + rmdir");
    assert!(
        !storage.join("docs").exists(),
        "gateway-data/docs still exists after rmdir\n{out}"
    );
    assert!(
        !storage.join("big.bin").exists(),
        "gateway-data/big.bin still exists after rm\n{out}"
    );

    // ---- stop --------------------------------------------------------------
    let status = gw.stop().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "gateway exit status after SIGTERM: {status}\n{}",
        gw.logs()
    );

    // ---- host keys and state database ------------------------------------
    for key in ["ssh_host_ed25519_key", "ssh_host_rsa_key"] {
        let path = state.join("host_keys").join(key);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("host key {} not readable: {e}", path.display()));
        assert!(
            text.contains("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "{} is not in OpenSSH private key format",
            path.display()
        );
    }
    let db_files: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.metadata()
                .map(|m| m.is_file() && m.len() > 0)
                .unwrap_or(false)
        })
        .map(|e| e.file_name())
        .collect();
    assert!(
        !db_files.is_empty(),
        "state dir {} holds no (non-empty) database file",
        state.display()
    );

    // ---- second start: same cwd, same port ---------------------------------
    let mut gw2 = Gateway::start(&gateway_in(&cwd, &format!("127.0.0.1:{port}"))).unwrap();
    assert_eq!(
        gw2.port(),
        port,
        "second start did not listen on the requested port"
    );

    let mut strict = admin.clone();
    strict.strict = true;
    let out = strict
        .sftp(&format!("put {} /again.txt\nls /\n", p(&small)))
        .unwrap();
    assert!(
        !out.text()
            .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "host key changed across restart\n{out}"
    );
    assert_ok(
        &out,
        "login after restart with StrictHostKeyChecking=yes and the first password",
    );
    assert_same_file(&small, &storage.join("again.txt"));

    let status = gw2.stop().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "second gateway exit status: {status}\n{}",
        gw2.logs()
    );
    let stdout2 = gw2.stdout.text();
    assert!(
        !stdout2.contains("password:") && !stdout2.contains(&banner.password),
        "second start printed the password again:\n{stdout2}"
    );
    assert!(
        !stdout2.contains("First start"),
        "second start printed the first-start banner:\n{stdout2}"
    );
}

/// The state database an older gateway (redb 2, file format v2) left in
/// `gateway-state/`: the current binary migrates it on start, the first
/// user logs in with the password that older gateway printed, and the S3
/// key it issued is still listed. See `tests/fixtures/state-redb2/`.
#[test]
fn a_state_folder_from_the_redb2_gateway_keeps_its_users_and_keys() {
    let env = TestEnv::bare().unwrap();
    let cwd = env.path("cwd");
    let state = cwd.join("gateway-state");
    fs::create_dir_all(&state).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/state-redb2/state.redb.gz");
    let unzipped = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(unzipped.status.success(), "gzip -dc {}", fixture.display());
    fs::write(state.join("state.redb"), &unzipped.stdout).unwrap();
    // The folder as the gateway left it: private.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();

    let mut gw = Gateway::start(&gateway_in(&cwd, "127.0.0.1:0")).unwrap();
    assert!(
        gw.stdout
            .wait_for(Duration::from_secs(5), |l| l.contains("listening on"))
            .is_some()
            || gw.logs().contains("listening on"),
        "{}",
        gw.logs()
    );
    let logs = gw.logs();
    assert!(
        logs.contains("migrated from redb file format v2")
            && logs.contains("state.redb.redb2-backup"),
        "no migration line in the log:\n{logs}"
    );
    assert!(
        !gw.stdout.text().contains("First start"),
        "the migrated admin user was not found: a new one was created\n{logs}"
    );

    // The password the redb 2 gateway printed at its first start.
    let admin = Client::new(
        gw.port(),
        "admin",
        Auth::Password("4dLPpVXGCB2XFBRmdaEz".into()),
        &env.known_hosts,
    );
    let small = env.path("small.txt");
    fs::write(&small, b"written after the migration\n").unwrap();
    let out = admin
        .sftp(&format!("put {} /after.txt\nls /\n", p(&small)))
        .unwrap();
    assert_ok(&out, &format!("login with the old password\n{}", gw.logs()));
    assert_same_file(&small, &cwd.join("gateway-data/after.txt"));
    assert_eq!(gw.stop().unwrap().code(), Some(0), "{}", gw.logs());

    // The S3 key the old gateway issued, read by the CLI on the new file.
    let config = cwd.join("gateway.toml");
    fs::write(
        &config,
        "[server]\nstorage = \"gateway-data\"\nstate = \"gateway-state\"\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(gateway_bin().unwrap());
    cmd.current_dir(&cwd)
        .args(["user", "s3-key", "list", "-c", "gateway.toml"]);
    let listed = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert_ok(&listed, "s3-key list on the migrated state");
    assert!(
        listed.stdout.contains("GWBLFM5G4H4FQPMX5X4G"),
        "the old S3 key is not listed:\n{}",
        listed.text()
    );
}
