//! A folder mounted on a remote SFTP server (the tests' own OpenSSH sshd):
//! every operation through the gateway passes through to the remote's disk
//! at once, both ways, and `gateway remote test` reports one clear reason.

use std::fs;
use std::time::Duration;

use e2e::sshd::*;
use e2e::*;

/// A change to a mount set-up that should make `remote test` fail.
type SetupChange = Box<dyn Fn(&mut MountSetup)>;

/// 256 MiB up through the mount and back down: byte-identical on the remote's
/// disk and locally.
#[test]
fn remote_mount_passes_256_mib_through_both_ways() {
    let mut s = MountSetup::new().unwrap();
    s.start_gateway().unwrap();
    let src = s.env.path("big.bin");
    write_random_file(&src, 256 << 20).unwrap();
    let back = s.env.path("big-back.bin");
    let mut client = s.client();
    client.timeout = Duration::from_secs(600);

    let out = client
        .sftp(&format!("put {} {MOUNT}/big.bin\n", p(&src)))
        .unwrap();
    assert_ok(
        &out,
        &format!("put 256 MiB through the mount\n{}", s.logs()),
    );
    assert!(
        !s.env.data.join("alice/partner/big.bin").exists(),
        "the upload landed in the gateway's own storage, not on the remote\n{out}"
    );
    assert_same_large_file(&src, &s.root.join("big.bin"));

    let out = client
        .sftp(&format!("get {MOUNT}/big.bin {}\n", p(&back)))
        .unwrap();
    assert_ok(
        &out,
        &format!("get 256 MiB through the mount\n{}", s.logs()),
    );
    assert_same_large_file(&src, &back);
    let _ = fs::remove_file(&back);
    let _ = fs::remove_file(s.root.join("big.bin"));
}

/// mkdir / put / ls / rename / rm / rmdir through the mount: the remote's disk
/// shows each batch's effect right after it.
#[test]
fn remote_mount_ops_show_up_on_remote_disk_at_once() {
    let mut s = MountSetup::new().unwrap();
    s.start_gateway().unwrap();
    let c = s.client();
    let src = s.env.path("a.bin");
    write_random_file(&src, 300_000).unwrap();
    let root = s.root.clone();

    let out = c
        .sftp(&format!(
            "mkdir {MOUNT}/d1\nmkdir {MOUNT}/d1/sub\nput {} {MOUNT}/d1/a.bin\nls -l {MOUNT}/d1\n",
            p(&src)
        ))
        .unwrap();
    assert_ok(&out, "mkdir + put through the mount");
    assert!(
        root.join("d1").is_dir(),
        "mkdir d1 not on the remote disk\n{out}"
    );
    assert!(
        root.join("d1/sub").is_dir(),
        "mkdir d1/sub not on the remote disk\n{out}"
    );
    assert_same_file(&src, &root.join("d1/a.bin"));
    assert!(out.lists_name("a.bin"), "`ls -l` misses a.bin\n{out}");
    assert!(out.lists_name("sub"), "`ls -l` misses sub\n{out}");
    let row = out
        .listing()
        .into_iter()
        .find(|l| l.ends_with("a.bin"))
        .unwrap();
    assert!(
        row.split_whitespace().any(|w| w == "300000"),
        "`ls -l` does not show a.bin's size 300000: {row:?}\n{out}"
    );

    let out = c
        .sftp(&format!(
            "rename {MOUNT}/d1/a.bin {MOUNT}/d1/b.bin\nrename {MOUNT}/d1/sub {MOUNT}/sub2\n"
        ))
        .unwrap();
    assert_ok(&out, "rename through the mount");
    assert!(
        !root.join("d1/a.bin").exists(),
        "a.bin still on the remote disk after rename\n{out}"
    );
    assert_same_file(&src, &root.join("d1/b.bin"));
    assert!(
        root.join("sub2").is_dir() && !root.join("d1/sub").exists(),
        "folder rename d1/sub -> sub2 not on the remote disk\n{out}"
    );

    let out = c.sftp(&format!("rm {MOUNT}/d1/b.bin\n")).unwrap();
    assert_ok(&out, "rm through the mount");
    assert!(
        !root.join("d1/b.bin").exists(),
        "b.bin still on the remote disk after rm\n{out}"
    );

    let out = c
        .sftp(&format!(
            "rmdir {MOUNT}/d1\nrmdir {MOUNT}/sub2\nls {MOUNT}\n"
        ))
        .unwrap();
    assert_ok(&out, "rmdir through the mount");
    assert!(
        !root.join("d1").exists() && !root.join("sub2").exists(),
        "folders still on the remote disk after rmdir\n{out}"
    );
    assert_eq!(
        tree_snapshot(&root).unwrap().len(),
        0,
        "remote root not empty at the end\n{out}"
    );
    assert!(
        !out.lists_name("d1") && !out.lists_name("sub2"),
        "`ls` still lists removed folders\n{out}"
    );
    assert!(
        !s.env.data.join("alice/partner/d1").exists(),
        "operations went to the gateway's own storage\n{out}"
    );
}

/// Files created, changed and removed directly on the remote's disk are seen
/// through the gateway on the next operation (no stale cache).
#[test]
fn remote_changes_on_remote_disk_are_seen_at_once() {
    let mut s = MountSetup::new().unwrap();
    s.start_gateway().unwrap();
    let c = s.client();
    let out = c.sftp(&format!("ls -l {MOUNT}\n")).unwrap();
    assert_ok(&out, "ls of the empty mount");
    assert!(!out.lists_name("fresh.txt"), "{out}");

    let f = s.root.join("fresh.txt");
    fs::write(&f, b"version one\n").unwrap();
    chown_to_test_user(&f).unwrap();
    let back = s.env.path("fresh-back.txt");
    let out = c
        .sftp(&format!(
            "ls -l {MOUNT}\nget {MOUNT}/fresh.txt {}\n",
            p(&back)
        ))
        .unwrap();
    assert_ok(
        &out,
        "ls + get right after creating a file on the remote disk",
    );
    assert!(
        out.lists_name("fresh.txt"),
        "a file created on the remote disk is not listed through the gateway\n{out}"
    );
    assert_eq!(fs::read(&back).unwrap(), b"version one\n");

    fs::write(&f, b"version two, longer\n").unwrap();
    let out = c
        .sftp(&format!("get {MOUNT}/fresh.txt {}\n", p(&back)))
        .unwrap();
    assert_ok(&out, "get after changing the file on the remote disk");
    assert_eq!(
        fs::read(&back).unwrap(),
        b"version two, longer\n",
        "stale contents through the gateway\n{out}"
    );

    fs::remove_file(&f).unwrap();
    fs::create_dir(s.root.join("newdir")).unwrap();
    chown_to_test_user(&s.root.join("newdir")).unwrap();
    let out = c.sftp(&format!("ls -l {MOUNT}\n")).unwrap();
    assert_ok(&out, "ls after removing the file on the remote disk");
    assert!(
        !out.lists_name("fresh.txt"),
        "a file removed on the remote disk is still listed\n{out}"
    );
    assert!(
        out.lists_name("newdir"),
        "a folder created on the remote disk is not listed\n{out}"
    );
}

/// A mount on a sub-path of the remote root (`remote_path`) shows only that sub-folder.
#[test]
fn rmdir_of_the_mount_point_is_refused_and_the_remote_folder_stays() {
    let mut s = MountSetup::new().unwrap();
    s.start_gateway().unwrap();
    assert!(s.root.is_dir());
    let out = s
        .client()
        .sftp(&format!(
            "rmdir {MOUNT}
"
        ))
        .unwrap();
    assert!(
        !out.success(),
        "rmdir of the (empty) mount point succeeded\n{out}"
    );
    assert!(
        s.root.is_dir(),
        "rmdir of the mount point removed the mounted folder on the remote\n{out}"
    );
    // Folders inside the mount still go.
    let out = s
        .client()
        .sftp(&format!("mkdir {MOUNT}/sub\nrmdir {MOUNT}/sub\n"))
        .unwrap();
    assert_ok(
        &out,
        &format!("mkdir and rmdir inside the mount\n{}", s.logs()),
    );
    assert!(!s.root.join("sub").exists());
}

#[test]
fn remote_mount_of_a_remote_sub_path() {
    let mut s = MountSetup::new().unwrap();
    fs::create_dir_all(s.root.join("in/box")).unwrap();
    fs::write(s.root.join("outside.txt"), b"x").unwrap();
    fs::write(s.root.join("in/box/inside.txt"), b"y").unwrap();
    chown_to_test_user(&s.root).unwrap();
    s.cfg.users[0].mounts[0].remote_path = "in/box".into();
    s.start_gateway().unwrap();
    let src = s.env.path("up.txt");
    fs::write(&src, b"uploaded\n").unwrap();
    let out = s
        .client()
        .sftp(&format!("ls {MOUNT}\nput {} {MOUNT}/up.txt\n", p(&src)))
        .unwrap();
    assert_ok(&out, "ls + put on a mount of remote_path = in/box");
    assert!(out.lists_name("inside.txt"), "{out}");
    assert!(!out.lists_name("outside.txt"), "{out}");
    assert_same_file(&src, &s.root.join("in/box/up.txt"));
}

/// `gateway remote test`: success names the source address, the host key
/// fingerprint and a round-trip time; each failure one clear reason.
#[test]
fn remote_test_command_reports_success_and_one_clear_reason() {
    let mut s = MountSetup::new().unwrap();
    s.write_config().unwrap();
    let out = s.remote_test().unwrap();
    assert_ok(&out, &format!("remote test\n{}", s.sshd.logs()));
    let fp = s.sshd.host_key_fingerprint();
    assert!(
        out.stdout.contains(&fp),
        "remote test does not print the host key fingerprint {fp}\n{out}"
    );
    assert!(
        out.stdout.contains("127.0.0.1"),
        "remote test does not print the source address\n{out}"
    );
    let rtt = regex::Regex::new(r"\d+(\.\d+)?\s*(ms|µs|us|s)\b").unwrap();
    assert!(
        rtt.is_match(&out.stdout),
        "remote test prints no round-trip time\n{out}"
    );

    let cases: Vec<(&str, SetupChange)> = vec![
        (
            "authentication failed",
            Box::new(|s: &mut MountSetup| s.cfg.remotes[0].password = Some("wrong-pass".into())),
        ),
        (
            "remote path missing",
            Box::new(|s: &mut MountSetup| {
                let missing = s.root.join("no-such-folder");
                s.cfg.remotes[0].root = Some(missing.display().to_string());
            }),
        ),
        (
            "unreachable",
            Box::new(|s: &mut MountSetup| {
                s.cfg.remotes[0].port = Some(free_port().unwrap());
                s.cfg.remotes[0].connect_timeout = Some("5s".into());
            }),
        ),
    ];
    let good = s.cfg.clone();
    let mut problems = vec![];
    for (reason, break_it) in cases {
        s.cfg = good.clone();
        break_it(&mut s);
        s.write_config().unwrap();
        let out = s.remote_test().unwrap();
        if out.success() {
            problems.push(format!("[{reason}] remote test exited 0\n{out}"));
        } else if !strip_ansi(&out.stderr).contains(reason) {
            problems.push(format!("[{reason}] stderr does not say {reason:?}\n{out}"));
        } else if out.stderr.trim().lines().count() > 3 {
            problems.push(format!(
                "[{reason}] expected ONE clear reason, stderr has {} lines\n{out}",
                out.stderr.trim().lines().count()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
