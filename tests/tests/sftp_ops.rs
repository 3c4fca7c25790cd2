//! Individual SFTP operations with OpenSSH's sftp and key auth.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use e2e::*;

/// A gateway with one user `alice` (key auth, all permissions).
struct Setup {
    env: TestEnv,
    _gw: Gateway,
    client: Client,
    home: PathBuf,
}

fn setup() -> Setup {
    let env = TestEnv::new().unwrap();
    let key = env.path("id");
    let pubkey = client_key(&key).unwrap();
    let mut cfg = env.config();
    cfg.users = vec![UserConfig::new("alice").key(&pubkey)];
    let gw = env.start(&cfg).unwrap();
    let home = env.data.join("alice");
    fs::create_dir_all(&home).unwrap();
    let client = env.client(&gw, "alice", Auth::Key(key));
    Setup {
        env,
        _gw: gw,
        client,
        home,
    }
}

fn mtime_secs(path: &std::path::Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn put_p_preserves_mtime() {
    let s = setup();
    let src = s.env.path("old.bin");
    write_random_file(&src, 100_000).unwrap();
    let old = UNIX_EPOCH + Duration::from_secs(981_173_106); // 2001-02-03
    fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(
        mtime_secs(&src),
        981_173_106,
        "could not set the source's mtime"
    );

    let out = s
        .client
        .sftp(&format!("put -p {} /old.bin\nls -l /old.bin\n", p(&src)))
        .unwrap();
    assert_ok(&out, "put -p");
    let dst = s.home.join("old.bin");
    assert_same_file(&src, &dst);
    assert_eq!(
        mtime_secs(&dst),
        981_173_106,
        "`put -p` did not preserve the mtime on disk\n{out}"
    );
    let line = out
        .listing()
        .into_iter()
        .find(|l| l.contains("old.bin"))
        .unwrap_or_else(|| panic!("`ls -l /old.bin` printed no line for old.bin\n{out}"));
    assert!(
        line.contains("2001"),
        "`ls -l` does not show the preserved 2001 mtime: {line:?}\n{out}"
    );

    // And `get -p` brings it back down.
    let back = s.env.path("old-back.bin");
    let out = s
        .client
        .sftp(&format!("get -p /old.bin {}\n", p(&back)))
        .unwrap();
    assert_ok(&out, "get -p");
    assert_same_file(&src, &back);
    assert_eq!(
        mtime_secs(&back),
        981_173_106,
        "`get -p` did not preserve the mtime\n{out}"
    );
}

#[test]
fn reput_and_reget_resume_partial_transfers() {
    let s = setup();
    let src = s.env.path("resume.bin");
    write_random_file(&src, 3 << 20).unwrap();
    let bytes = fs::read(&src).unwrap();

    // A partial upload: the first MiB already on the server.
    fs::write(s.home.join("resume.bin"), &bytes[..1 << 20]).unwrap();
    let out = s
        .client
        .sftp(&format!("reput {} /resume.bin\n", p(&src)))
        .unwrap();
    assert_ok(&out, "reput");
    assert_same_file(&src, &s.home.join("resume.bin"));

    // A partial download: the first MiB already local.
    let local = s.env.path("resume-back.bin");
    fs::write(&local, &bytes[..1 << 20]).unwrap();
    let out = s
        .client
        .sftp(&format!("reget /resume.bin {}\n", p(&local)))
        .unwrap();
    assert_ok(&out, "reget");
    assert_same_file(&src, &local);
}

#[test]
fn df_reports_space() {
    let s = setup();
    let out = s.client.sftp("df /\ndf -h /\n").unwrap();
    assert_ok(&out, "df (statvfs@openssh.com)");
    assert!(out.stdout.contains("Avail"), "`df` printed no table\n{out}");
    let numbers = out
        .listing()
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.chars().all(|c| c.is_ascii_digit()))
        })
        .count();
    assert!(numbers >= 1, "`df` printed no row of numbers\n{out}");
}

#[test]
fn symlink_is_refused_with_a_message() {
    let s = setup();
    fs::write(s.home.join("target.txt"), b"t\n").unwrap();
    let out = s.client.sftp("ln -s /target.txt /link.txt\n").unwrap();
    assert_failed(&out, "ln -s");
    assert!(
        out.text().to_lowercase().contains("symlink"),
        "`ln -s` failed without a symlink error message\n{out}"
    );
    assert!(
        fs::symlink_metadata(s.home.join("link.txt")).is_err(),
        "link.txt exists on disk after a refused symlink\n{out}"
    );
}

#[test]
fn rename_over_existing_file_uses_posix_rename() {
    let s = setup();
    fs::write(s.home.join("new.txt"), b"new contents\n").unwrap();
    fs::write(s.home.join("current.txt"), b"old contents\n").unwrap();
    let out = s.client.sftp("rename /new.txt /current.txt\n").unwrap();
    assert_ok(
        &out,
        "rename over an existing file (posix-rename@openssh.com)",
    );
    assert!(
        !s.home.join("new.txt").exists(),
        "new.txt still exists after rename\n{out}"
    );
    assert_eq!(
        fs::read(s.home.join("current.txt")).unwrap(),
        b"new contents\n",
        "current.txt was not replaced\n{out}"
    );
}

#[test]
fn listing_300_files_returns_all() {
    let s = setup();
    let dir = s.home.join("many");
    fs::create_dir(&dir).unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("file-{i:03}.dat")).collect();
    for (i, n) in names.iter().enumerate() {
        fs::write(dir.join(n), vec![b'x'; i]).unwrap();
    }
    let out = s.client.sftp("ls -l /many\n").unwrap();
    assert_ok(&out, "ls -l of a folder with 300 files");
    let missing: Vec<&String> = names.iter().filter(|n| !out.lists_name(n)).collect();
    assert!(
        missing.is_empty(),
        "{} of 300 names missing from `ls -l`, e.g. {:?}\n{out}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let rows = out.listing().iter().filter(|l| l.contains("file-")).count();
    assert_eq!(
        rows, 300,
        "`ls -l` printed {rows} rows for 300 files (duplicates?)\n{out}"
    );
    // Size column of one file: file-123.dat holds 123 bytes.
    let row = out
        .listing()
        .into_iter()
        .find(|l| l.ends_with("file-123.dat"))
        .unwrap();
    assert!(
        row.split_whitespace().any(|w| w == "123"),
        "size 123 not shown for file-123.dat: {row:?}"
    );
}
