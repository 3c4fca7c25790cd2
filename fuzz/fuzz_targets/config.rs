//! `gateway::config::load_with_env`: the TOML file, then `GATEWAY__*`
//! environment overrides, then validation.
//!
//! Input: the config file's bytes; after the first NUL byte (if any),
//! environment overrides, one `KEY=VALUE` per line (`GATEWAY__` is added
//! in front of a key that lacks it). The file is written to a temporary
//! folder of its own (relative paths in it resolve there, and name
//! nothing) and loaded as the gateway loads it.
//!
//! Checked: no panic, no hang; every problem has a message, and a line
//! number inside the file; accepted settings keep what validation
//! promises (at least one listen address, user names non-empty, unique,
//! without `/` or spaces).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

#[path = "common/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .take(16)
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("GATEWAY__") {
                k.to_string()
            } else {
                format!("GATEWAY__{k}")
            };
            (k, v.to_string())
        })
        .collect();
    let path = scratch::scratch().join("gateway.toml");
    std::fs::write(&path, file).expect("write the config file");
    let text = String::from_utf8_lossy(file);
    let lines = text.lines().count().max(1);
    let result = gateway::config::load_with_env(Some(&path), env);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        match &result {
            Ok(s) => eprintln!(
                "accepted: {} users, {} remotes",
                s.users.len(),
                s.remotes.len()
            ),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    match result {
        Err(err) => {
            assert!(!err.0.is_empty(), "an error without problems");
            for p in &err.0 {
                assert!(
                    !p.message.trim().is_empty(),
                    "a problem without a message: {p:?}"
                );
                if let Some(line) = p.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "line {line} outside a file of {lines} lines: {p:?}"
                    );
                }
            }
        }
        Ok(settings) => {
            assert!(
                !settings.listen.is_empty(),
                "accepted without a listen address"
            );
            let mut names = HashSet::new();
            for u in &settings.users {
                assert!(
                    !u.name.is_empty()
                        && !u
                            .name
                            .contains(|c: char| c.is_whitespace() || c.is_control() || c == '/'),
                    "accepted user name {:?}",
                    u.name
                );
                assert!(names.insert(u.name.clone()), "user {:?} twice", u.name);
            }
        }
    }
});
