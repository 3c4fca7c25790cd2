//! Refusals: bad credentials, disallowed source address, missing permissions,
//! and attempts to leave the user's home folder.

use std::fs;
use std::path::PathBuf;

use e2e::*;

const ALICE_PW: &str = "alice-correct-horse-7";
const ROOT_SECRET: &str = "root-secret.txt";
const BOB_SECRET: &str = "bob-secret.txt";

/// One gateway with users `alice` (password + key, given permissions and
/// networks) and `bob`, plus sentinel files in the storage root and in bob's home.
struct Fixture {
    env: TestEnv,
    gw: Gateway,
    key: PathBuf,
    alice_home: PathBuf,
}

impl Fixture {
    fn new(perms: &[(&str, &[&str])], networks: Option<&[&str]>) -> Fixture {
        let env = TestEnv::new().unwrap();
        let key = env.path("id_alice");
        let pubkey = client_key(&key).unwrap();
        let bob_pub = client_key(&env.path("id_bob")).unwrap();

        let alice_home = env.data.join("alice");
        fs::create_dir_all(&alice_home).unwrap();
        fs::create_dir_all(env.data.join("bob")).unwrap();
        fs::write(env.data.join(ROOT_SECRET), b"storage root secret\n").unwrap();
        fs::write(env.data.join("bob").join(BOB_SECRET), b"bob's secret\n").unwrap();

        let mut alice = UserConfig::new("alice")
            .password_hash(&hash_password(ALICE_PW).unwrap())
            .key(&pubkey)
            .home("alice");
        for (folder, words) in perms {
            alice = alice.perm(folder, words);
        }
        if let Some(n) = networks {
            alice = alice.allowed_networks(n);
        }
        let mut cfg = env.config();
        cfg.users = vec![alice, UserConfig::new("bob").key(&bob_pub).home("bob")];
        let gw = env.start(&cfg).unwrap();
        Fixture {
            env,
            gw,
            key,
            alice_home,
        }
    }

    fn with_perms(perms: &[(&str, &[&str])]) -> Fixture {
        Self::new(perms, None)
    }

    fn key_client(&self) -> Client {
        self.env
            .client(&self.gw, "alice", Auth::Key(self.key.clone()))
    }

    fn pw_client(&self, user: &str, pw: &str) -> Client {
        self.env.client(&self.gw, user, Auth::Password(pw.into()))
    }

    fn local_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.env.path(name);
        fs::write(&path, content).unwrap();
        path
    }
}

const ALL: &[&str] = &["list", "read", "write", "delete", "rename", "mkdir"];

#[test]
fn wrong_password_is_refused() {
    let fx = Fixture::with_perms(&[("/", ALL)]);
    let local = fx.local_file("up.txt", b"should never arrive\n");
    let before = tree_snapshot(&fx.env.data).unwrap();

    let out = fx
        .pw_client("alice", "not-the-password")
        .sftp(&format!("put {} /up.txt\n", p(&local)))
        .unwrap();
    assert_failed(&out, "login with a wrong password");
    assert_output_contains(&out, "Permission denied", "wrong password");
    assert_eq!(
        tree_snapshot(&fx.env.data).unwrap(),
        before,
        "storage changed after a refused login\n{out}"
    );

    // Control: the right password works, so the refusal was about the password.
    let out = fx
        .pw_client("alice", ALICE_PW)
        .sftp(&format!("put {} /up.txt\n", p(&local)))
        .unwrap();
    assert_ok(&out, "login with the right password");
    assert!(
        fx.alice_home.join("up.txt").is_file(),
        "upload with the right password did not arrive\n{out}"
    );
}

#[test]
fn unknown_user_looks_like_wrong_password() {
    let fx = Fixture::with_perms(&[("/", ALL)]);
    let before = tree_snapshot(&fx.env.data).unwrap();
    // First connection adds the host key to known_hosts (and prints a warning); do it
    // before the two runs that are compared.
    let warmup = fx.pw_client("alice", "wrong-1").sftp("ls /\n").unwrap();
    assert_failed(&warmup, "warm-up login with a wrong password");

    let wrong = fx.pw_client("alice", "wrong-2").sftp("ls /\n").unwrap();
    let unknown = fx.pw_client("mallory", "wrong-2").sftp("ls /\n").unwrap();
    assert_failed(&wrong, "wrong password");
    assert_failed(&unknown, "unknown user");
    assert_output_contains(&unknown, "Permission denied", "unknown user");
    assert_eq!(
        wrong.status.code(),
        unknown.status.code(),
        "exit codes differ between wrong password and unknown user\n{wrong}\n{unknown}"
    );
    let norm = |s: String, user: &str| s.replace(user, "USER");
    assert_eq!(
        norm(wrong.text(), "alice"),
        norm(unknown.text(), "mallory"),
        "unknown user and wrong password produce different client output (user enumeration)"
    );
    assert_eq!(
        tree_snapshot(&fx.env.data).unwrap(),
        before,
        "storage changed"
    );
}

#[test]
fn disallowed_source_address_is_refused() {
    let fx = Fixture::new(&[("/", ALL)], Some(&["127.0.0.1/32"]));
    let local = fx.local_file("up.txt", b"from 127.0.0.2\n");
    let before = tree_snapshot(&fx.env.data).unwrap();

    let out = fx
        .pw_client("alice", ALICE_PW)
        .bind("127.0.0.2")
        .sftp(&format!("put {} /up.txt\n", p(&local)))
        .unwrap();
    assert_failed(
        &out,
        "right password from 127.0.0.2 (not in allowed_networks)",
    );
    assert_eq!(
        tree_snapshot(&fx.env.data).unwrap(),
        before,
        "storage changed\n{out}"
    );

    let out = fx.key_client().bind("127.0.0.2").sftp("ls /\n").unwrap();
    assert_failed(&out, "right key from 127.0.0.2 (not in allowed_networks)");

    // Control: the same credentials from 127.0.0.1 work.
    let out = fx
        .pw_client("alice", ALICE_PW)
        .bind("127.0.0.1")
        .sftp(&format!("put {} /up.txt\n", p(&local)))
        .unwrap();
    assert_ok(&out, "right password from 127.0.0.1");
    assert!(
        fx.alice_home.join("up.txt").is_file(),
        "upload from 127.0.0.1 did not arrive\n{out}"
    );
}

#[test]
fn write_into_read_only_folder_is_refused() {
    let fx = Fixture::with_perms(&[("/", &["list", "read"]), ("/upload", ALL)]);
    fs::create_dir_all(fx.alice_home.join("upload")).unwrap();
    let local = fx.local_file("up.txt", b"payload\n");

    let out = fx
        .key_client()
        .sftp(&format!("put {} /ro.txt\n", p(&local)))
        .unwrap();
    assert_failed(&out, "put into a list,read folder");
    assert_output_contains(&out, "Permission denied", "put into a read-only folder");
    assert!(
        !fx.alice_home.join("ro.txt").exists(),
        "file appeared despite the refusal\n{out}"
    );

    // Control: the writable sub-folder accepts the same upload.
    let out = fx
        .key_client()
        .sftp(&format!("put {} /upload/ok.txt\n", p(&local)))
        .unwrap();
    assert_ok(&out, "put into the writable /upload");
    assert_same_file(&local, &fx.alice_home.join("upload/ok.txt"));
}

#[test]
fn delete_without_delete_permission_is_refused() {
    let fx = Fixture::with_perms(&[("/", &["list", "read", "write", "rename", "mkdir"])]);
    fs::write(fx.alice_home.join("keep.txt"), b"keep me\n").unwrap();

    let out = fx.key_client().sftp("rm /keep.txt\n").unwrap();
    assert_failed(&out, "rm without delete permission");
    assert_output_contains(&out, "Permission denied", "rm without delete permission");
    assert_eq!(
        fs::read(fx.alice_home.join("keep.txt")).ok().as_deref(),
        Some(&b"keep me\n"[..]),
        "keep.txt was deleted or changed\n{out}"
    );

    fs::create_dir(fx.alice_home.join("keepdir")).unwrap();
    let out = fx.key_client().sftp("rmdir /keepdir\n").unwrap();
    assert_failed(&out, "rmdir without delete permission");
    assert!(
        fx.alice_home.join("keepdir").is_dir(),
        "keepdir was removed\n{out}"
    );
}

#[test]
fn rename_without_rename_permission_is_refused() {
    let fx = Fixture::with_perms(&[("/", &["list", "read", "write", "delete", "mkdir"])]);
    fs::write(fx.alice_home.join("a.txt"), b"a\n").unwrap();

    let out = fx.key_client().sftp("rename /a.txt /b.txt\n").unwrap();
    assert_failed(&out, "rename without rename permission");
    assert_output_contains(
        &out,
        "Permission denied",
        "rename without rename permission",
    );
    assert!(
        fx.alice_home.join("a.txt").is_file(),
        "a.txt disappeared\n{out}"
    );
    assert!(
        !fx.alice_home.join("b.txt").exists(),
        "b.txt appeared\n{out}"
    );
}

#[test]
fn mkdir_without_mkdir_permission_is_refused() {
    let fx = Fixture::with_perms(&[("/", &["list", "read", "write", "delete", "rename"])]);

    let out = fx.key_client().sftp("mkdir /newdir\n").unwrap();
    assert_failed(&out, "mkdir without mkdir permission");
    assert_output_contains(&out, "Permission denied", "mkdir without mkdir permission");
    assert!(
        !fx.alice_home.join("newdir").exists(),
        "newdir was created\n{out}"
    );
}

#[test]
fn dot_dot_and_absolute_paths_stay_in_home() {
    let fx = Fixture::with_perms(&[("/", ALL)]);
    fs::write(fx.alice_home.join("mine.txt"), b"alice's own file\n").unwrap();
    let unique = format!("escape-{}.txt", std::process::id());
    let local = fx.local_file("escape-src.txt", b"trying to escape\n");
    let before_outside: Vec<_> = {
        let mut t = tree_snapshot(&fx.env.data).unwrap();
        t.retain(|k, _| !k.starts_with("alice"));
        t.into_iter().collect()
    };

    let got_passwd = fx.env.path("got-passwd");
    let got_root = fx.env.path("got-root-secret");
    let got_bob = fx.env.path("got-bob-secret");
    let got_abs = fx.env.path("got-abs-passwd");
    let batch = format!(
        "-put {local} ../../{unique}\n\
         -put {local} ../../../../../../tmp/{unique}\n\
         -get ../../../etc/passwd {got_passwd}\n\
         -get ../{ROOT_SECRET} {got_root}\n\
         -get ../bob/{BOB_SECRET} {got_bob}\n\
         -get /etc/passwd {got_abs}\n\
         cd ..\n\
         pwd\n\
         ls -1a\n\
         ls -1a /..\n\
         -ls -1a ../bob\n\
         -ls -1a /../..\n",
        local = p(&local),
        got_passwd = p(&got_passwd),
        got_root = p(&got_root),
        got_bob = p(&got_bob),
        got_abs = p(&got_abs),
    );
    let out = fx.key_client().sftp(&batch).unwrap();

    // Nothing written outside alice's home.
    for outside in [
        fx.env.data.join(&unique),
        fx.env.dir.path().join(&unique),
        fx.env.dir.path().parent().unwrap().join(&unique),
        PathBuf::from("/").join(&unique),
        PathBuf::from("/tmp").join(&unique),
    ] {
        assert!(
            !outside.exists(),
            "`put ../..` created {} outside the home\n{out}",
            outside.display()
        );
    }
    let mut after_outside = tree_snapshot(&fx.env.data).unwrap();
    after_outside.retain(|k, _| !k.starts_with("alice"));
    assert_eq!(
        after_outside.into_iter().collect::<Vec<_>>(),
        before_outside,
        "storage outside alice's home changed\n{out}"
    );

    // Nothing read from outside: no local copies, or at least not the real contents.
    for (got, real) in [
        (&got_passwd, PathBuf::from("/etc/passwd")),
        (&got_abs, PathBuf::from("/etc/passwd")),
        (&got_root, fx.env.data.join(ROOT_SECRET)),
        (&got_bob, fx.env.data.join("bob").join(BOB_SECRET)),
    ] {
        if got.exists() {
            assert_ne!(
                fs::read(got).unwrap(),
                fs::read(&real).unwrap(),
                "{} was read through the gateway into {}\n{out}",
                real.display(),
                got.display()
            );
        }
    }
    assert!(
        !got_abs.exists(),
        "`get /etc/passwd` downloaded something\n{out}"
    );
    assert!(
        out.text().contains("not found") || out.text().contains("No such file"),
        "`get /etc/passwd` should report not found\n{out}"
    );

    // Listings from `/`, `/..` and `/../..` show alice's home only.
    assert!(
        out.lists_name("mine.txt"),
        "listing after `cd ..` does not show the home's mine.txt\n{out}"
    );
    for foreign in [ROOT_SECRET, BOB_SECRET, "bob", "alice"] {
        assert!(
            !out.lists_name(foreign),
            "a listing shows {foreign:?}, which is outside alice's home\n{out}"
        );
    }
    assert!(
        out.stdout.contains("Remote working directory: /\n")
            || out.stdout.contains("Remote working directory: /\r\n"),
        "`cd ..` from / should stay at /\n{out}"
    );
}

#[test]
fn symlinks_in_storage_cannot_lead_outside_the_home_storage() {
    let fx = Fixture::with_perms(&[("/", ALL)]);
    // Links planted in alice's home (by someone with shell access) that
    // point at bob's home, the storage root and the machine's /etc.
    std::os::unix::fs::symlink(fx.env.data.join("bob"), fx.alice_home.join("to-bob")).unwrap();
    std::os::unix::fs::symlink("../bob", fx.alice_home.join("rel-bob")).unwrap();
    std::os::unix::fs::symlink("../..", fx.alice_home.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", fx.alice_home.join("passwd")).unwrap();
    let local = fx.local_file("overwrite.txt", b"overwritten through a link\n");
    let got_bob = fx.env.path("got-bob");
    let got_passwd = fx.env.path("got-passwd");
    let batch = format!(
        "-get to-bob/{BOB_SECRET} {got_bob}\n\
         -get rel-bob/{BOB_SECRET} {got_bob}\n\
         -put {local} rel-bob/{BOB_SECRET}\n\
         -ls rel-bob\n\
         -get passwd {got_passwd}\n\
         -put {local} to-bob/{BOB_SECRET}\n\
         -put {local} up/planted.txt\n\
         -ls to-bob\n",
        got_bob = p(&got_bob),
        got_passwd = p(&got_passwd),
        local = p(&local),
    );
    let out = fx.key_client().sftp(&batch).unwrap();
    assert!(
        !got_bob.exists(),
        "bob's file was read through a symlink\n{out}"
    );
    assert!(
        !got_passwd.exists(),
        "/etc/passwd was read through a symlink\n{out}"
    );
    assert_eq!(
        fs::read(fx.env.data.join("bob").join(BOB_SECRET)).unwrap(),
        b"bob's secret\n",
        "bob's file was overwritten through a symlink\n{out}"
    );
    assert!(
        !fx.env.data.join("planted.txt").exists()
            && !fx.env.dir.path().join("planted.txt").exists(),
        "a file was planted outside the home through a symlink\n{out}"
    );
    assert!(
        !out.lists_name(BOB_SECRET),
        "bob's folder was listed through a symlink\n{out}"
    );
}
