//! Config validation: `gateway config check` and `gateway serve` reject bad
//! files with messages naming the file, the line and the offending key/value.

use std::path::Path;
use std::time::Duration;

use e2e::*;

const LIMIT: Duration = Duration::from_secs(10);

fn run_gateway(args: &[&str]) -> CmdOutput {
    let spec = GatewayCommand {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    run_with_timeout(spec.command().unwrap(), LIMIT).unwrap_or_else(|e| {
        panic!(
            "`gateway {}` did not finish within {LIMIT:?}: {e:#}",
            args.join(" ")
        )
    })
}

/// 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config text")
        + 1
}

/// Both `config check` and `serve` must fail, quickly, with stderr containing every needle.
fn assert_rejected(config: &Path, needles: &[String]) {
    let path = config.display().to_string();
    for args in [
        vec!["config", "check", "--config", &path],
        vec!["serve", "--config", &path],
    ] {
        let out = run_gateway(&args);
        let what = format!("`gateway {}`", args.join(" "));
        assert_failed(&out, &what);
        let stderr = strip_ansi(&out.stderr);
        for needle in needles {
            assert!(
                stderr.contains(needle.as_str()),
                "{what}: stderr should contain {needle:?}\n{out}"
            );
        }
        assert!(
            !stderr.contains("listening on"),
            "{what} started listening with a bad config\n{out}"
        );
    }
}

fn server_section(env: &TestEnv) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nstorage = {}\nstate = {}\n",
        toml_str(&env.data.display().to_string()),
        toml_str(&env.state.display().to_string())
    )
}

#[test]
fn typo_in_key_is_rejected_with_file_and_line() {
    let env = TestEnv::bare().unwrap();
    let text = format!(
        "# e2e: a typo in [server]\n\n[server]\nstorage = {}\nstate = {}\nlisen = [\"127.0.0.1:0\"]\nlog_format = \"text\"\n",
        toml_str(&env.data.display().to_string()),
        toml_str(&env.state.display().to_string())
    );
    let cfg = env.path("config.toml");
    std::fs::write(&cfg, &text).unwrap();
    let line = line_of(&text, "lisen");
    assert_rejected(&cfg, &[format!("{}:{line}", cfg.display()), "lisen".into()]);
}

#[test]
fn bad_cidr_is_rejected_with_file_and_line() {
    let env = TestEnv::bare().unwrap();
    let text = format!(
        "{}\n[[users]]\nname = \"alice\"\npassword_hash = {}\nallowed_networks = [\"10.0.0.300/8\"]\n",
        server_section(&env),
        toml_str(&hash_password("pw").unwrap())
    );
    let cfg = env.path("config.toml");
    std::fs::write(&cfg, &text).unwrap();
    let line = line_of(&text, "10.0.0.300/8");
    assert_rejected(
        &cfg,
        &[
            format!("{}:{line}", cfg.display()),
            // The contract names the key; the value itself is on that line.
            "allowed_networks".into(),
        ],
    );
}

#[test]
fn missing_authorized_keys_file_is_rejected() {
    let env = TestEnv::bare().unwrap();
    let missing = env.path("no-such-dir/authorized_keys");
    let text = format!(
        "{}\n[[users]]\nname = \"alice\"\nauthorized_keys_file = {}\n",
        server_section(&env),
        toml_str(&missing.display().to_string())
    );
    let cfg = env.path("config.toml");
    std::fs::write(&cfg, &text).unwrap();
    assert_rejected(&cfg, &[missing.display().to_string()]);
}

#[test]
fn nonexistent_config_path_is_rejected() {
    let env = TestEnv::bare().unwrap();
    let cfg = env.path("does-not-exist.toml");
    assert_rejected(&cfg, &[cfg.display().to_string()]);
}

#[test]
fn valid_config_passes_check() {
    let env = TestEnv::bare().unwrap();
    let key = env.path("id");
    let pubkey = client_key(&key).unwrap();
    let keys_file = env.path("alice_keys");
    std::fs::write(&keys_file, format!("{pubkey}\n")).unwrap();
    let mut cfg = env.config();
    cfg.login = Some((5, "5m".into(), "15m".into()));
    let mut bob = UserConfig::new("bob")
        .password_hash(&hash_password("bob-pw").unwrap())
        .home("bob-home")
        .allowed_networks(&["127.0.0.1/32", "10.0.0.0/8"])
        .perm("/", &["list", "read"])
        .perm(
            "/upload",
            &["list", "read", "write", "mkdir", "rename", "delete"],
        );
    bob.authorized_keys.push(pubkey.clone());
    let mut alice = UserConfig::new("alice");
    alice.authorized_keys_file = Some(keys_file);
    cfg.users = vec![alice, bob];
    let path = env.path("config.toml");
    cfg.write(&path).unwrap();
    let out = run_gateway(&["config", "check", "--config", &path.display().to_string()]);
    assert_ok(
        &out,
        &format!("`gateway config check` of a valid file:\n{}", cfg.to_toml()),
    );
}

#[test]
fn hash_password_prints_argon2id_phc() {
    let h1 = hash_password("s3cret pass").unwrap();
    let h2 = hash_password("s3cret pass").unwrap();
    assert!(
        h1.starts_with("$argon2id$"),
        "hash-password output is not an argon2id PHC string: {h1:?}"
    );
    assert!(
        !h1.contains(char::is_whitespace),
        "hash contains whitespace: {h1:?}"
    );
    assert_ne!(
        h1, h2,
        "two hashes of the same password are identical (no random salt?)"
    );
}
