//! The README's "Tested against" table is checked, so it cannot drift from
//! what the tests run: every test file a row names exists and mentions its
//! server, and every version is the one installed now.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::run_with_timeout;

/// One row of the table.
struct Row {
    server: String,
    version: String,
    tests: Vec<String>,
}

fn rows() -> Vec<Row> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## Tested against\n")
        .nth(1)
        .expect("the README has a `## Tested against` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| server ") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 6, "a row of 6 cells: {l}");
            Row {
                server: cells[0].to_string(),
                version: cells[1].to_string(),
                tests: cells[5].split(',').map(|t| t.trim().to_string()).collect(),
            }
        })
        .collect()
}

/// The word a test file about `server` must contain (case-insensitive).
fn keyword(server: &str) -> &'static str {
    let s = server.to_lowercase();
    [
        ("openssh", "sshd"),
        ("asyncssh", "asyncssh"),
        ("vsftpd", "vsftpd"),
        ("pure-ftpd", "pure"),
        ("proftpd", "proftpd"),
        ("s3s-fs", "s3"),
        ("moto", "moto"),
        ("rclone", "rclone"),
    ]
    .into_iter()
    .find(|(name, _)| s.starts_with(name))
    .map(|(_, word)| word)
    .unwrap_or_else(|| panic!("no keyword known for server `{server}`: add one"))
}

/// What the installed server says of its version.
fn installed_version(server: &str) -> String {
    let s = server.to_lowercase();
    let run = |program: &str, args: &[&str]| -> String {
        let mut cmd = Command::new(program);
        cmd.args(args);
        run_with_timeout(cmd, Duration::from_secs(60))
            .map(|o| o.text())
            .unwrap_or_else(|e| format!("(cannot run {program}: {e})"))
    };
    let path = |p: anyhow::Result<std::path::PathBuf>| {
        p.map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("(not installed: {e})"))
    };
    if s.starts_with("openssh") {
        run("dpkg-query", &["-W", "-f=${Version}", "openssh-server"])
    } else if s.starts_with("asyncssh") {
        run(
            "python3",
            &["-c", "import asyncssh; print(asyncssh.__version__)"],
        )
    } else if s.starts_with("vsftpd") {
        run("dpkg-query", &["-W", "-f=${Version}", "vsftpd"])
    } else if s.starts_with("pure-ftpd") {
        run(&path(e2e::ftpd::pure_ftpd_bin()), &["--help"])
    } else if s.starts_with("proftpd") {
        run(&path(e2e::ftpd::proftpd_bin()), &["-v"])
    } else if s.starts_with("s3s-fs") {
        run(&path(e2e::s3d::s3s_fs_bin()), &["--version"])
    } else if s.starts_with("moto") {
        run("python3", &["-c", "import moto; print(moto.__version__)"])
    } else if s.starts_with("rclone") {
        run(&path(e2e::s3d::rclone_new_bin()), &["version"])
    } else {
        panic!("no version check known for server `{server}`: add one")
    }
}

#[test]
fn every_row_names_existing_tests_of_its_server() {
    let rows = rows();
    assert!(rows.len() >= 7, "the table lost rows: {}", rows.len());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for row in &rows {
        for test in &row.tests {
            let text = std::fs::read_to_string(dir.join(test))
                .unwrap_or_else(|e| panic!("{}: test file {test}: {e}", row.server));
            assert!(
                text.to_lowercase().contains(keyword(&row.server)),
                "{}: {test} does not mention `{}`",
                row.server,
                keyword(&row.server)
            );
        }
    }
}

#[test]
fn every_version_is_the_one_installed() {
    for row in rows() {
        let installed = installed_version(&row.server);
        // `5` matches 5.2.1; `9.2p1` matches 1:9.2p1-2+deb12u10.
        let matches = installed
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .any(|word| {
                let word = word.trim_start_matches('v');
                word == row.version || word.starts_with(&format!("{}.", row.version))
            });
        assert!(
            matches,
            "README says {} {}, installed: {}",
            row.server,
            row.version,
            installed.trim()
        );
    }
}
