//! The command line as a person meets it: which config file each command
//! uses (`--config`, then `GATEWAY_CONFIG`, then `/etc/gateway/config.toml`)
//! and that it says so, a refusal instead of silent built-in defaults,
//! suggestions for mistyped commands, shell completions and the manual page.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;

const SYSTEM_CONFIG: &str = "/etc/gateway/config.toml";

/// A config with one remote, on `env`'s storage and state.
fn write_config(env: &TestEnv) -> std::path::PathBuf {
    let path = env.path("gw.toml");
    fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstorage = {}\nstate = {}\n\n\
             [[remotes]]\nname = \"partner\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = 9\nusername = \"u\"\npassword = \"p\"\n",
            toml_str(&env.data.display().to_string()),
            toml_str(&env.state.display().to_string()),
        ),
    )
    .unwrap();
    path
}

/// `gateway ARGS` in `cwd` with `envs` (and no other GATEWAY* variable).
fn gateway(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> CmdOutput {
    let cmd = GatewayCommand {
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: Some(cwd.to_path_buf()),
        envs: envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    run_with_timeout(cmd.command().unwrap(), Duration::from_secs(60)).unwrap()
}

#[test]
fn remote_list_refuses_the_built_in_defaults_and_names_the_ways_to_give_a_file() {
    let env = TestEnv::bare().unwrap();
    let out = gateway(&["remote", "list"], &env.path(""), &[]);
    if Path::new(SYSTEM_CONFIG).is_file() {
        // This machine has a system config: it must be the one used, and said.
        assert!(
            out.stderr.contains("(the system config)"),
            "{SYSTEM_CONFIG} exists but was not named\n{out}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{out}");
    for words in [
        "`gateway remote` needs a config file",
        "--config FILE",
        "GATEWAY_CONFIG",
        SYSTEM_CONFIG,
    ] {
        assert!(out.stderr.contains(words), "no {words:?} in\n{out}");
    }
    assert!(out.stdout.trim().is_empty(), "{out}");
}

#[test]
fn gateway_config_names_the_file_and_config_wins_over_it() {
    let env = TestEnv::new().unwrap();
    let config = write_config(&env);
    let config_s = config.display().to_string();

    let out = gateway(
        &["remote", "list"],
        &env.path(""),
        &[("GATEWAY_CONFIG", &config_s)],
    );
    assert_ok(&out, "remote list with GATEWAY_CONFIG");
    assert!(
        out.stderr
            .contains(&format!("using config {config_s} (from GATEWAY_CONFIG)")),
        "{out}"
    );
    assert!(out.stdout.contains("partner"), "{out}");

    // --config wins over a GATEWAY_CONFIG naming a missing file.
    let out = gateway(
        &["sync", "list", "--config", &config_s],
        &env.path(""),
        &[("GATEWAY_CONFIG", "/nonexistent/gw.toml")],
    );
    assert_ok(&out, "sync list with --config");
    assert!(
        out.stderr
            .contains(&format!("using config {config_s} (from --config)")),
        "{out}"
    );

    // A GATEWAY_CONFIG naming a missing file is an error that names it.
    let out = gateway(
        &["remote", "list"],
        &env.path(""),
        &[("GATEWAY_CONFIG", "/nonexistent/gw.toml")],
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("/nonexistent/gw.toml"), "{out}");
    assert!(out.stderr.contains("cannot read the config file"), "{out}");

    // config check and serve say which file they use.
    let out = gateway(
        &["config", "check"],
        &env.path(""),
        &[("GATEWAY_CONFIG", &config_s)],
    );
    assert_ok(&out, "config check with GATEWAY_CONFIG");
    assert!(out.stderr.contains("(from GATEWAY_CONFIG)"), "{out}");
    let gw = Gateway::start(&GatewayCommand {
        args: vec!["serve".into()],
        cwd: Some(env.path("")),
        envs: vec![("GATEWAY_CONFIG".into(), config_s.clone())],
    })
    .unwrap();
    let line = gw
        .stderr
        .wait_for(Duration::from_secs(30), |l| l.contains("config: "))
        .unwrap_or_else(|| panic!("serve does not log its config\n{}", gw.logs()));
    assert!(
        line.contains(&format!("{config_s} (from GATEWAY_CONFIG)")),
        "{line}"
    );
}

#[test]
fn a_mistyped_command_gets_a_suggestion() {
    let env = TestEnv::bare().unwrap();
    let out = gateway(&["remot", "list"], &env.path(""), &[]);
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("a similar subcommand exists: 'remote'"),
        "{out}"
    );
    let out = gateway(&["sync", "histroy", "x"], &env.path(""), &[]);
    assert!(out.stderr.contains("'history'"), "{out}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_grammar() {
    let env = TestEnv::bare().unwrap();
    let out = gateway(&["completions", "bash"], &env.path(""), &[]);
    assert_ok(&out, "completions bash");
    let script = env.path("gateway.bash");
    fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {check:?}");
    // Sourced, it completes `gateway rem` to `remote`.
    let probe = format!(
        "source {}; COMP_WORDS=(gateway rem); COMP_CWORD=1; _gateway gateway rem gateway; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let done = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let words = String::from_utf8_lossy(&done.stdout);
    assert!(words.lines().any(|w| w == "remote"), "{words:?} {done:?}");

    for (shell, marker) in [("zsh", "#compdef gateway"), ("fish", "complete -c gateway")] {
        let out = gateway(&["completions", shell], &env.path(""), &[]);
        assert_ok(&out, shell);
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
    }

    let out = gateway(&["man"], &env.path(""), &[]);
    assert_ok(&out, "man");
    assert!(out.stdout.contains(".TH gateway 1"), "{}", out.stdout);
    for command in ["serve", "remote", "sync", "completions"] {
        assert!(
            out.stdout.contains(command),
            "no {command} in the manual page"
        );
    }
}
