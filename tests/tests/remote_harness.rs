//! Self-test of the sshd harness (tests/src/sshd.rs), without the gateway:
//! OpenSSH's own sftp against the tests' sshd.

use std::fs;

use e2e::sshd::*;
use e2e::*;

#[test]
fn remote_harness_sshd_serves_sftp_and_restarts() {
    let env = TestEnv::bare().unwrap();
    fs::create_dir_all(env.dir.path()).unwrap();
    let mut sshd = Sshd::start_default().unwrap();
    let root = sshd.remote_dir("self-test").unwrap();
    assert_eq!(
        sshd.connection_count(),
        0,
        "the start-up check must not connect (it would count as a connection)\n{}",
        sshd.logs()
    );

    // Key auth with a key authorized at the server.
    let key = env.path("id");
    let pubkey = client_key(&key).unwrap();
    sshd.authorize_key(&pubkey).unwrap();
    let client = Client::new(
        sshd.port(),
        TEST_USER,
        Auth::Key(key.clone()),
        &env.known_hosts,
    );
    let src = env.path("hello.bin");
    write_random_file(&src, 100_000).unwrap();
    let out = client
        .sftp(&format!(
            "put {} {}/hello.bin\nls -l {}\n",
            p(&src),
            p(&root),
            p(&root)
        ))
        .unwrap();
    assert_ok(
        &out,
        &format!("sftp with a key to the test sshd\n{}", sshd.logs()),
    );
    assert!(
        out.lists_name("hello.bin"),
        "ls does not list hello.bin\n{out}"
    );
    assert_same_file(&src, &root.join("hello.bin"));

    // Password auth.
    let pw_client = Client::new(
        sshd.port(),
        TEST_USER,
        Auth::Password(TEST_PASSWORD.into()),
        &env.known_hosts,
    );
    let out = pw_client.sftp(&format!("ls {}\n", p(&root))).unwrap();
    assert_ok(&out, &format!("sftp with the password\n{}", sshd.logs()));

    // The known_hosts entry matches the harness's view of the host key.
    let kh = fs::read_to_string(&env.known_hosts).unwrap();
    let blob = sshd.host_key_type_and_blob();
    assert!(kh.contains(&blob), "known_hosts {kh:?} lacks {blob:?}");
    let fp = sshd.host_key_fingerprint();
    assert!(fp.starts_with("SHA256:"), "fingerprint {fp:?}");

    let sources = sshd.connection_sources();
    assert_eq!(
        sources.into_iter().collect::<Vec<_>>(),
        vec!["127.0.0.1".to_string()],
        "connection sources\n{}",
        sshd.logs()
    );
    assert!(sshd.connection_count() >= 2, "{}", sshd.logs());
    assert!(sshd.accepted_count() >= 2, "{}", sshd.logs());

    // The sampler sees a live connection from a bound source address.
    let sampler = sshd.sampler();
    let slow = client
        .clone()
        .bind("127.0.0.2")
        .sftp(&format!("ls {}\n!sleep 1\nls {}\n", p(&root), p(&root)))
        .unwrap();
    let SamplerReport { max, samples, .. } = sampler.finish().unwrap();
    assert_ok(&slow, "sftp from 127.0.0.2");
    assert!(samples > 10, "only {samples} samples in > 1 s");
    assert_eq!(
        max, 1,
        "max established connections during one sftp session"
    );
    assert!(
        sshd.connection_sources().contains("127.0.0.2"),
        "{}",
        sshd.logs()
    );
    assert_eq!(sshd.established_connections().unwrap(), 0);

    // stop / start_again: same port, same key; a session open at the stop is cut.
    let port = sshd.port();
    let bg = {
        let c = client.clone();
        let r = root.clone();
        std::thread::spawn(move || c.sftp(&format!("ls {}\n!sleep 20\nls {}\n", p(&r), p(&r))))
    };
    let t0 = std::time::Instant::now();
    while sshd.established_connections().unwrap() == 0 {
        assert!(t0.elapsed().as_secs() < 20, "sftp never connected");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sshd.stop().unwrap();
    let out = client.sftp("ls /\n").unwrap();
    assert_failed(&out, "sftp to a stopped sshd");
    let before = sshd.connection_count();
    sshd.start_again().unwrap();
    assert_eq!(
        sshd.connection_count(),
        before,
        "start_again connected\n{}",
        sshd.logs()
    );
    assert_eq!(sshd.port(), port);
    assert_eq!(sshd.host_key_fingerprint(), fp);
    let out = client.sftp(&format!("ls {}\n", p(&root))).unwrap();
    assert_ok(&out, "sftp after start_again (same host key)");
    let cut = bg.join().unwrap().unwrap();
    assert_failed(&cut, "the session open while sshd was stopped");
    assert!(
        cut.elapsed.as_secs() < 20,
        "the cut session did not end at the stop\n{cut}"
    );

    // A new host key: strict clients refuse it.
    sshd.restart_with_new_host_key().unwrap();
    assert_eq!(sshd.port(), port);
    let fp2 = sshd.host_key_fingerprint();
    assert_ne!(fp, fp2, "restart_with_new_host_key kept the key");
    let mut strict = client.clone();
    strict.strict = true;
    let out = strict.sftp("ls /\n").unwrap();
    assert_failed(&out, "strict sftp after a host key change");
    assert_output_contains(&out, "HOST IDENTIFICATION HAS CHANGED", "strict sftp");
}
