//! Failed-login throttling: a ban after max_failures, lifted after ban_duration.

use std::thread::sleep;
use std::time::{Duration, Instant};

use e2e::*;

const PW: &str = "throttle-right-pw";

#[test]
fn ban_after_failures_then_unban() {
    let env = TestEnv::new().unwrap();
    let mut cfg = env.config();
    cfg.login = Some((3, "60s".into(), "4s".into()));
    cfg.users = vec![UserConfig::new("alice").password_hash(&hash_password(PW).unwrap())];
    let gw = env.start(&cfg).unwrap();
    let home = env.data.join("alice");
    std::fs::create_dir_all(&home).unwrap();
    let local = env.path("up.txt");
    std::fs::write(&local, b"after the ban\n").unwrap();

    for i in 1..=3 {
        let out = env
            .client(&gw, "alice", Auth::Password(format!("wrong-{i}")))
            .sftp("ls /\n")
            .unwrap();
        assert_failed(&out, &format!("wrong password attempt {i}"));
        assert_output_contains(
            &out,
            "Permission denied",
            &format!("wrong password attempt {i}"),
        );
    }
    let banned_at = Instant::now();

    let out = env
        .client(&gw, "alice", Auth::Password(PW.into()))
        .sftp(&format!("put {} /banned.txt\n", p(&local)))
        .unwrap();
    assert_failed(&out, "right password while the address is banned");
    assert!(
        !home.join("banned.txt").exists(),
        "upload arrived while banned\n{out}"
    );

    // The ban is per address: 127.0.0.2 is not banned.
    let out = env
        .client(&gw, "alice", Auth::Password(PW.into()))
        .bind("127.0.0.2")
        .sftp("ls /\n")
        .unwrap();
    assert_ok(
        &out,
        "right password from another address (127.0.0.2) during the ban",
    );

    sleep(Duration::from_secs(5).saturating_sub(banned_at.elapsed()) + Duration::from_millis(500));
    let out = env
        .client(&gw, "alice", Auth::Password(PW.into()))
        .sftp(&format!("put {} /after.txt\n", p(&local)))
        .unwrap();
    assert_ok(&out, "right password after the ban expired");
    assert_same_file(&local, &home.join("after.txt"));
}
