//! Outbound connections to a remote: source addresses (`dedicated_ips`), the
//! pool cap (`max_connections`) and recovery after the remote goes away.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use e2e::sshd::*;
use e2e::*;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `n` parallel clients each uploading (and listing) their own `size`-byte file.
fn parallel_uploads(s: &MountSetup, n: usize, size: usize, tag: &str) -> Vec<PathBuf> {
    let srcs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let src = s.env.path(&format!("{tag}-{i}.bin"));
            write_random_file(&src, size).unwrap();
            src
        })
        .collect();
    let jobs = srcs
        .iter()
        .enumerate()
        .map(|(i, src)| {
            (
                s.client_n(i),
                format!("put {} {MOUNT}/{tag}-{i}.bin\nls {MOUNT}\n", p(src)),
            )
        })
        .collect();
    let outs = sftp_in_parallel(jobs);
    assert_all_ok(&outs, &format!("{n} parallel uploads"), &s.logs());
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.root.join(format!("{tag}-{i}.bin")));
    }
    srcs
}

/// With `dedicated_ips = ["127.0.0.2", "127.0.0.3"]` every connection to the
/// remote comes from one of them, and both are used.
#[test]
fn remote_dedicated_ips_are_the_only_sources() {
    let mut s = MountSetup::new().unwrap();
    s.cfg.dedicated_ips = Some(vec!["127.0.0.2".into(), "127.0.0.3".into()]);
    s.start_gateway().unwrap();
    parallel_uploads(&s, 8, 2 << 20, "dip");
    let sources = s.sshd.connection_sources();
    assert!(
        !sources.is_empty(),
        "sshd logged no connection at all\n{}",
        s.logs()
    );
    assert!(
        sources.is_subset(&set(&["127.0.0.2", "127.0.0.3"])),
        "connections from outside dedicated_ips: {sources:?}\n{}",
        s.logs()
    );
    assert_eq!(
        sources,
        set(&["127.0.0.2", "127.0.0.3"]),
        "not both dedicated IPs were used for {} connections\n{}",
        s.sshd.connection_count(),
        s.logs()
    );
    // `remote test` uses them too.
    let out = s.remote_test().unwrap();
    assert_ok(&out, "remote test with dedicated IPs");
    assert!(
        out.stdout.contains("127.0.0.2") || out.stdout.contains("127.0.0.3"),
        "remote test does not name a dedicated IP as the source address\n{out}"
    );
}

/// The only dedicated IP cannot be bound: the operation fails, sshd sees no
/// connection, and both the log and `remote test` name the address.
#[test]
fn remote_unbindable_dedicated_ip_fails_without_connecting() {
    let mut s = MountSetup::new().unwrap();
    s.cfg.dedicated_ips = Some(vec!["192.0.2.1".into()]);
    s.start_gateway().unwrap();
    let src = s.env.path("x.txt");
    fs::write(&src, b"x\n").unwrap();
    let mut c = s.client();
    c.timeout = Duration::from_secs(90);
    let out = c.sftp(&format!("put {} {MOUNT}/x.txt\n", p(&src))).unwrap();
    assert_failed(
        &out,
        "put through a mount whose only source address cannot be bound",
    );
    assert!(!s.root.join("x.txt").exists(), "{out}");
    assert_eq!(
        s.sshd.connection_count(),
        0,
        "sshd saw a connection although no source address could be bound\n{}",
        s.logs()
    );
    let log = s.gateway_log();
    assert!(
        log.contains("cannot bind source address") && log.contains("192.0.2.1"),
        "the gateway's log does not say `cannot bind source address` with 192.0.2.1\n{out}\n{}",
        s.logs()
    );

    let out = s.remote_test().unwrap();
    assert_failed(&out, "remote test with an unbindable dedicated IP");
    let err = strip_ansi(&out.stderr);
    assert!(
        err.contains("cannot bind source address") && err.contains("192.0.2.1"),
        "remote test's stderr should say `cannot bind source address` and 192.0.2.1\n{out}"
    );
    assert_eq!(s.sshd.connection_count(), 0, "{}", s.sshd.logs());
}

/// One unbindable dedicated IP next to a good one: the gateway uses the good one.
#[test]
fn remote_unbindable_dedicated_ip_falls_back_to_the_other() {
    let mut s = MountSetup::new().unwrap();
    s.cfg.dedicated_ips = Some(vec!["192.0.2.1".into(), "127.0.0.3".into()]);
    s.start_gateway().unwrap();
    parallel_uploads(&s, 3, 100_000, "fb");
    let out = s.remote_test().unwrap();
    assert_ok(&out, "remote test with one bindable dedicated IP");
    assert_eq!(
        s.sshd.connection_sources(),
        set(&["127.0.0.3"]),
        "{}",
        s.logs()
    );
}

/// `use_dedicated_ips = false`: the remote is reached from the default address.
#[test]
fn remote_use_dedicated_ips_false_connects_from_default_address() {
    let mut s = MountSetup::new().unwrap();
    s.cfg.dedicated_ips = Some(vec!["127.0.0.2".into(), "127.0.0.3".into()]);
    s.remote().use_dedicated_ips = Some(false);
    s.start_gateway().unwrap();
    parallel_uploads(&s, 3, 100_000, "nodip");
    assert_eq!(
        s.sshd.connection_sources(),
        set(&["127.0.0.1"]),
        "{}",
        s.logs()
    );
}

const POOL_CAP: usize = 5;
const POOL_CLIENTS: usize = 40;

/// 40 clients through a remote capped at 5 connections: sshd never sees more
/// than 5, every file arrives intact. Then sshd is killed during transfers
/// (clients fail, nothing hangs) and started again: all new transfers work.
#[test]
fn remote_pool_caps_connections_and_recovers_from_sshd_restart() {
    let mut s = MountSetup::new().unwrap();
    {
        let r = s.remote();
        r.max_connections = Some(POOL_CAP as u32);
        r.pool_wait = Some("45s".into());
        r.connect_timeout = Some("5s".into());
    }
    // 40 clients from one address at once: more than the default 32 that
    // may log in together or connect at once from one address.
    s.cfg.login_extra.extend([
        "max_unauthenticated_per_address = 0".to_string(),
        "connection_burst_per_address = 64".to_string(),
    ]);
    s.start_gateway().unwrap();

    // Phase 1: 40 clients, 4 MiB each, up and down.
    let srcs: Vec<PathBuf> = (0..POOL_CLIENTS)
        .map(|i| {
            let src = s.env.path(&format!("c-{i}.bin"));
            write_random_file(&src, 4 << 20).unwrap();
            src
        })
        .collect();
    let jobs = (0..POOL_CLIENTS)
        .map(|i| {
            let mut c = s.client_n(i);
            c.timeout = Duration::from_secs(240);
            (
                c,
                format!(
                    "put {} {MOUNT}/c-{i}.bin\nget {MOUNT}/c-{i}.bin {}\n",
                    p(&srcs[i]),
                    p(&s.env.path(&format!("back-{i}.bin")))
                ),
            )
        })
        .collect();
    let sampler = s.sshd.sampler();
    let t0 = Instant::now();
    let outs = sftp_in_parallel(jobs);
    let SamplerReport { max, samples, .. } = sampler.finish().unwrap();
    let took = t0.elapsed();
    assert_all_ok(&outs, "40 clients through a pool of 5", &s.logs());
    assert!(
        max <= POOL_CAP,
        "sshd saw {max} established connections at once (cap {POOL_CAP}; {samples} samples over {took:?})\n{}",
        s.logs()
    );
    assert!(
        max >= 1,
        "the sampler never saw a connection ({samples} samples)"
    );
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.root.join(format!("c-{i}.bin")));
        assert_same_file(src, &s.env.path(&format!("back-{i}.bin")));
    }
    eprintln!(
        "phase 1: 40 clients in {took:?}, max {max} connections, {} connections in all",
        s.sshd.connection_count()
    );

    // Phase 2: kill sshd while 10 uploads run.
    let big: Vec<PathBuf> = (0..10)
        .map(|i| {
            let src = s.env.path(&format!("cut-{i}.bin"));
            write_random_file(&src, 48 << 20).unwrap();
            src
        })
        .collect();
    let root = s.root.clone();
    let (outs, stopped_at) = thread::scope(|sc| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let mut c = s.client_n(100 + i);
                // Killed after 80 s: a client still running ~60 s after the kill hangs.
                c.timeout = Duration::from_secs(80);
                let batch = format!("put {} {MOUNT}/cut-{i}.bin\n", p(&big[i]));
                sc.spawn(move || c.sftp(&batch))
            })
            .collect();
        // Wait until uploads are visibly under way on the remote's disk.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let started = (0..10).any(|i| {
                fs::metadata(root.join(format!("cut-{i}.bin")))
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
            });
            if started || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        s.sshd.stop().unwrap();
        let stopped_at = Instant::now();
        let outs: Vec<_> = handles
            .into_iter()
            .map(|h| (h.join().expect("client thread panicked"), Instant::now()))
            .collect();
        (outs, stopped_at)
    });
    let mut failures = 0;
    let mut slowest = Duration::ZERO;
    for (i, (out, ended)) in outs.iter().enumerate() {
        let out = match out {
            Ok(o) => o,
            Err(e) => panic!(
                "client {i} still hung {:?} after sshd was killed (limit ~60 s): {e:#}\n{}",
                ended.saturating_duration_since(stopped_at),
                s.logs()
            ),
        };
        let after = ended.saturating_duration_since(stopped_at);
        slowest = slowest.max(after);
        assert!(
            after <= Duration::from_secs(65),
            "client {i} ended {after:?} after sshd was killed (hang)\n{out}"
        );
        if out.success() {
            // Only acceptable if the upload had really completed before the kill.
            assert_same_file(&big[i], &root.join(format!("cut-{i}.bin")));
        } else {
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "no client got an error although sshd was killed during their uploads\n{}",
        s.logs()
    );
    eprintln!(
        "phase 2: {failures} of 10 clients failed as expected, the last ended {slowest:?} after the kill"
    );

    // Phase 3: sshd back on the same port; 10 new transfers all succeed.
    s.sshd.start_again().unwrap();
    let sampler = s.sshd.sampler();
    let srcs: Vec<PathBuf> = (0..10)
        .map(|i| {
            let src = s.env.path(&format!("after-{i}.bin"));
            write_random_file(&src, 1 << 20).unwrap();
            src
        })
        .collect();
    let jobs = (0..10)
        .map(|i| {
            let mut c = s.client_n(200 + i);
            c.timeout = Duration::from_secs(120);
            (
                c,
                format!(
                    "put {} {MOUNT}/after-{i}.bin\nget {MOUNT}/after-{i}.bin {}\n",
                    p(&srcs[i]),
                    p(&s.env.path(&format!("after-back-{i}.bin")))
                ),
            )
        })
        .collect();
    let t0 = Instant::now();
    let outs = sftp_in_parallel(jobs);
    let max = sampler.finish().unwrap().max;
    eprintln!(
        "phase 3: 10 clients in {:?}, max {max} connections",
        t0.elapsed()
    );
    assert_all_ok(&outs, "10 transfers after sshd came back", &s.logs());
    assert!(max <= POOL_CAP, "{max} connections after the restart");
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.root.join(format!("after-{i}.bin")));
        assert_same_file(src, &s.env.path(&format!("after-back-{i}.bin")));
    }
}
