//! The SSH checksum commands (`md5sum`, `sha1sum`, `sha256sum`, `crc32`)
//! run with OpenSSH's `ssh` against the real gateway, on files in its own
//! storage and in SFTP (sshd), S3 (s3s-fs) and FTP (vsftpd) mounts; the
//! answers are compared with coreutils run on the original files (CRC-32
//! with python3's zlib). Then rclone 1.60's sftp backend: it must detect
//! MD5 and SHA-1 and `rclone check` must compare by hash.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::ftpd::{FtpServer, FtpServerOptions};
use e2e::mount::MountedGateway;
use e2e::s3d::{S3Server, S3ServerKind};
use e2e::sshd::Sshd;
use e2e::{run_with_timeout, write_random_file, CmdOutput};

const TIMEOUT: Duration = Duration::from_secs(180);

/// `ssh alice@gateway COMMAND` (one string, as ssh sends it), stdin closed.
fn ssh(m: &MountedGateway, command: &str) -> CmdOutput {
    run_with_timeout(ssh_command(m, command), TIMEOUT).expect("running ssh")
}

fn ssh_command(m: &MountedGateway, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p", &m.gw().port().to_string(), "-i"])
        .arg(&m.key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", "PasswordAuthentication=no"])
        .args(["-o", "StrictHostKeyChecking=accept-new"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            m.env.known_hosts.display()
        ))
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "alice@127.0.0.1"])
        .arg(command);
    cmd
}

/// `program ARGS` run in `dir`; its stdout.
fn tool(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect(program);
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// CRC-32 of `file` as the zlib in python3 computes it.
fn zlib_crc32(file: &Path) -> String {
    let out = tool(
        Path::new("/"),
        "python3",
        &[
            "-c",
            "import sys, zlib; print('%08x' % zlib.crc32(open(sys.argv[1], 'rb').read()))",
            &file.display().to_string(),
        ],
    );
    out.trim().to_string()
}

/// Single-quotes `s` for the command line ssh sends.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A gateway whose user alice has `/sftp` on sshd, `/s3` on s3s-fs and
/// `/ftp` on vsftpd mounted, and her own storage at `/`. The servers stop
/// after the gateway.
struct AllMounts {
    mount: MountedGateway,
    _sshd: Sshd,
    _s3: S3Server,
    _ftp: FtpServer,
    sshd_root: PathBuf,
}

impl AllMounts {
    fn start() -> AllMounts {
        let sshd = Sshd::start_default().expect("sshd");
        let sshd_root = sshd.remote_dir("root").expect("sshd root");
        let s3 = S3Server::start(S3ServerKind::S3sFs).expect("s3s-fs");
        let ftp = FtpServer::start(FtpServerOptions::vsftpd()).expect("vsftpd");
        let mut mount =
            MountedGateway::new(sshd.remote_config("sftp").root(&sshd_root), "/sftp").unwrap();
        mount.cfg.remotes.push(s3.remote_config("s3"));
        mount.cfg.remotes.push(ftp.remote_config("ftp"));
        let alice = mount.cfg.users.remove(0);
        mount.cfg.users.push(
            alice
                .mount("/s3", "s3", "")
                .mount("/ftp", "ftp", "")
                .perm("/", &["list", "read", "write", "delete", "rename", "mkdir"])
                .perm("/private", &["list"]),
        );
        mount.start_gateway().expect("gateway");
        AllMounts {
            mount,
            _sshd: sshd,
            _s3: s3,
            _ftp: ftp,
            sshd_root,
        }
    }
}

/// The original files, laid out as the user's tree has them so coreutils
/// run in `src` prints exactly what the gateway must.
fn make_sources(src: &Path, folder: &str) -> Vec<String> {
    let dir = src.join(folder);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
    fs::write(dir.join("empty"), b"").unwrap();
    write_random_file(&dir.join("with space.bin"), 100_000).unwrap();
    write_random_file(&dir.join("big.bin"), 3 * (1 << 20) + 123).unwrap();
    ["hello.txt", "empty", "with space.bin", "big.bin"]
        .iter()
        .map(|n| format!("{folder}/{n}"))
        .collect()
}

#[test]
fn checksums_match_coreutils_on_every_storage() {
    let all = AllMounts::start();
    let m = &all.mount;
    let src = m.env.path("src");
    for folder in ["local", "sftp", "s3", "ftp"] {
        let names = make_sources(&src, folder);
        // Upload through the gateway (mkdir for the local folder only;
        // the mounts' roots exist).
        let mut batch = String::new();
        if folder == "local" {
            batch += "mkdir /local\n";
        }
        for n in &names {
            batch += &format!("put \"{}\" \"/{n}\"\n", src.join(n).display());
        }
        let out = m.client().sftp(&batch).unwrap();
        assert!(
            out.success(),
            "upload to {folder}\n{out}\n{}",
            m.gateway_log()
        );

        let quoted: Vec<String> = names.iter().map(|n| q(n)).collect();
        let args: Vec<&str> = names.iter().map(String::as_str).collect();
        for command in ["md5sum", "sha1sum", "sha256sum"] {
            // Several files (relative to /, as coreutils run in `src`).
            let out = ssh(m, &format!("{command} {}", quoted.join(" ")));
            assert!(out.success(), "{folder}: {out}\n{}", m.gateway_log());
            assert_eq!(out.stdout, tool(&src, command, &args), "{folder}: {out}");
            // One file, absolute, with a space, escaped as rclone does.
            let escaped = format!("/{folder}/with\\ space.bin");
            let out = ssh(m, &format!("{command} {escaped}"));
            let expected = tool(&src, command, &[&format!("{folder}/with space.bin")]);
            assert_eq!(
                out.stdout,
                format!(
                    "{}  /{folder}/with space.bin\n",
                    &expected[..expected.find(' ').unwrap()]
                ),
                "{folder}: {out}"
            );
        }
        // crc32: the bare value for one file, value TAB name for several.
        let one = ssh(m, &format!("crc32 {}", q(&names[3])));
        assert!(one.success(), "{folder}: {one}");
        assert_eq!(
            one.stdout,
            format!("{}\n", zlib_crc32(&src.join(&names[3])))
        );
        let several = ssh(m, &format!("crc32 {}", quoted.join(" ")));
        let expected: String = names
            .iter()
            .map(|n| format!("{}\t{n}\n", zlib_crc32(&src.join(n))))
            .collect();
        assert_eq!(several.stdout, expected, "{folder}: {several}");
    }
    // The audit log names each checksum.
    let log = m.gateway_log();
    assert!(
        log.contains("checksum") && log.contains("/s3/big.bin"),
        "no audit line:\n{log}"
    );
}

#[test]
fn failures_refusals_stdin_and_confinement() {
    let all = AllMounts::start();
    let m = &all.mount;
    let home = m.env.data.join("alice");
    fs::write(home.join("hello.txt"), b"hello\n").unwrap();
    fs::create_dir_all(home.join("private")).unwrap();
    fs::write(home.join("private/secret.txt"), b"secret\n").unwrap();
    fs::write(m.env.data.join("outside.txt"), b"not alice's\n").unwrap();

    // A missing file among good ones: the others are printed, exit 1.
    let out = ssh(m, "md5sum /nope hello.txt /sftp/nope");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(out.stdout, "b1946ac92492d2347c6235b4d2611184  hello.txt\n");
    assert!(
        out.stderr
            .contains("md5sum: /nope: No such file or directory")
            && out
                .stderr
                .contains("md5sum: /sftp/nope: No such file or directory"),
        "{out}"
    );
    // A file alice may list but not read.
    let out = ssh(m, "sha1sum /private/secret.txt");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr
            .contains("sha1sum: /private/secret.txt: Permission denied"),
        "{out}"
    );
    // A folder.
    let out = ssh(m, "sha256sum /sftp");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("sha256sum: /sftp: Is a directory"),
        "{out}"
    );
    // `..` stays in alice's tree: the host's /etc/passwd and the storage
    // root's files are not reachable.
    for path in ["../../etc/passwd", "/../../../etc/passwd", "../outside.txt"] {
        let out = ssh(m, &format!("md5sum {path}"));
        assert_eq!(out.status.code(), Some(1), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
        assert!(out.stderr.contains("No such file or directory"), "{out}");
    }
    // No file: standard input, as rclone's probe expects.
    let out = ssh(m, "md5sum");
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "d41d8cd98f00b204e9800998ecf8427e  -\n");
    let out = ssh(m, "sha1sum");
    assert_eq!(out.stdout, "da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n");
    let out = ssh(m, "crc32");
    assert_eq!(out.stdout, "00000000\n");
    // Data on stdin.
    let mut cmd = ssh_command(m, "sha256sum - hello.txt");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![b'x'; 300_000])
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    let expected_x = {
        let f = m.env.path("x");
        fs::write(&f, vec![b'x'; 300_000]).unwrap();
        let s = tool(Path::new("/"), "sha256sum", &[&f.display().to_string()]);
        s[..64].to_string()
    };
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        format!(
            "{expected_x}  -\n5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  hello.txt\n"
        )
    );
    // Other commands and shell syntax: a message and a non-zero status.
    let out = ssh(m, "ls -l /");
    assert_eq!(out.status.code(), Some(127), "{out}");
    assert!(out.stderr.contains("ls: command not supported"), "{out}");
    let out = ssh(m, "md5sum hello.txt; cat /etc/passwd");
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    let out = ssh(m, "md5sum --check sums");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("unrecognized option '--check'"),
        "{out}"
    );
}

#[test]
fn hashing_a_large_file_does_not_hold_up_other_sessions() {
    let all = AllMounts::start();
    let m = &all.mount;
    // On the SFTP mount it is read through the gateway (no remote sha256).
    let big = all.sshd_root.join("large.bin");
    write_random_file(&big, 128 << 20).unwrap();
    let expected = tool(Path::new("/"), "sha256sum", &[&big.display().to_string()]);
    let expected = &expected[..64];
    let started = Instant::now();
    let mut hashing = ssh_command(m, "sha256sum /sftp/large.bin");
    let child = hashing
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let listed = m.client_n(2).sftp("ls /\n").unwrap();
    let ls_done = started.elapsed();
    // The point of the test: the listing was answered during the hash.
    let still_hashing = child_running(&child);
    assert!(listed.success() && listed.lists_name("sftp"), "{listed}");
    let out = child.wait_with_output().unwrap();
    let hash_done = started.elapsed();
    assert!(
        still_hashing,
        "the hash ended before the listing ({hash_done:?}): nothing was shown"
    );
    eprintln!(
        "ls answered in {:?} (done {ls_done:?} after the hash started); the hash took {hash_done:?}",
        listed.elapsed
    );
    assert!(out.status.success(), "{out:?}\n{}", m.gateway_log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{expected}  /sftp/large.bin\n")
    );
    assert!(
        listed.elapsed < Duration::from_secs(15),
        "ls took {:?} while a hash ran",
        listed.elapsed
    );
}

/// Whether `child` has not exited yet (without reaping it).
fn child_running(child: &std::process::Child) -> bool {
    // SAFETY: waitid(2) with WNOWAIT on our own child only peeks at its state.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() == 0
    }
}

/// rclone's sftp backend against the gateway: it detects md5sum and
/// sha1sum, and `rclone check` compares by hash, so a one-byte change
/// that keeps the size is found.
#[test]
fn rclone_check_compares_by_hash() {
    let all = AllMounts::start();
    let m = &all.mount;
    let conf = m.env.path("rclone.conf");
    fs::write(
        &conf,
        format!(
            "[gw]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = alice\nkey_file = {}\n",
            m.gw().port(),
            m.key.display()
        ),
    )
    .unwrap();
    let rclone = |args: &[&str]| {
        let mut cmd = Command::new("/usr/bin/rclone");
        cmd.arg("--config").arg(&conf).args(args);
        run_with_timeout(cmd, TIMEOUT).expect("running rclone")
    };
    let local = m.env.path("cmp");
    fs::create_dir_all(local.join("sub")).unwrap();
    fs::write(local.join("hello.txt"), b"hello\n").unwrap();
    write_random_file(&local.join("with space (1).bin"), 200_000).unwrap();
    write_random_file(&local.join("sub/it's.bin"), 1 << 20).unwrap();
    let local_arg = local.display().to_string();

    let out = rclone(&["copy", "-vv", &local_arg, "gw:rc"]);
    assert!(out.success(), "{out}\n{}", m.gateway_log());
    // rclone probed `md5sum` and `sha1sum` with empty stdin and took both.
    let text = out.text();
    for (hash, command) in [("md5", "md5sum"), ("sha1", "sha1sum")] {
        assert!(
            text.contains(&format!("Setting hash command for {hash} to \"{command}\"")),
            "rclone did not take {command}\n{out}"
        );
    }

    // The hashes rclone gets from the gateway are the files' own.
    let out = rclone(&["hashsum", "md5", "gw:rc"]);
    assert!(out.success(), "{out}");
    let mut got: Vec<&str> = out.stdout.lines().collect();
    got.sort();
    let expected = tool(
        &local,
        "md5sum",
        &["hello.txt", "with space (1).bin", "sub/it's.bin"],
    );
    let mut expected: Vec<&str> = expected.lines().collect();
    expected.sort();
    assert_eq!(got, expected, "{out}");
    let out = rclone(&["hashsum", "sha1", "gw:rc"]);
    assert!(out.success() && out.stdout.lines().count() == 3, "{out}");
    assert!(
        out.stdout
            .contains(&tool(&local, "sha1sum", &["hello.txt"])[..40]),
        "{out}"
    );

    // check: equal by hash; rclone ran md5sum here and found a common hash.
    let out = rclone(&["check", "--checksum", "-vv", &local_arg, "gw:rc"]);
    assert!(out.success(), "{out}\n{}", m.gateway_log());
    let text = out.text();
    for line in text.lines().filter(|l| l.contains("remote command")) {
        eprintln!("rclone: {line}");
    }
    assert!(!text.contains("No common hash"), "{out}");
    assert!(text.contains("0 differences found"), "{out}");
    assert!(text.contains("md5sum"), "{out}");

    // One byte changed on the gateway's side, same size (and a new mtime):
    // the cached checksum is not used and check fails.
    let stored = m.env.data.join("alice/rc/with space (1).bin");
    let mut bytes = fs::read(&stored).unwrap();
    bytes[1000] ^= 0x55;
    fs::write(&stored, &bytes).unwrap();
    let out = rclone(&["check", "--checksum", &local_arg, "gw:rc"]);
    assert!(!out.success(), "a changed byte went unnoticed\n{out}");
    assert!(out.text().contains("1 differences found"), "{out}");
}
