//! Sync safety, end to end with the real `gateway` binary and OpenSSH sshd:
//! `kill -9` at random points of a push with delete loses and duplicates
//! nothing; a file being appended to is neither copied half-written nor
//! deleted; the remote's connection cap holds while a scheduled sync and
//! live SFTP sessions share it; a second run of a running sync is refused;
//! and the CLI's refusals (unknown sync, delete with two-way).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use e2e::sshd::{assert_all_ok, sftp_in_parallel, MountSetup, REMOTE as MOUNT_REMOTE};
use e2e::sync::*;
use e2e::*;

// ---------------------------------------------------------------------------
// kill -9 during a push with delete
// ---------------------------------------------------------------------------

/// For every original file: it is at the source (unchanged) or complete at
/// the destination, and a file at the destination under its final name is
/// always complete. Returns the number of hidden temporary uploads there.
fn check_nothing_lost(rig: &SyncRig, originals: &Files, when: &str) -> usize {
    let (src, dst) = (rig.local(), rig.remote_dir());
    let mut problems = vec![];
    for (rel, data) in originals {
        let s = fs::read(src.join(rel)).ok();
        let d = fs::read(dst.join(rel)).ok();
        for (got, wrong) in [
            (&s, format!("source {rel:?} changed")),
            (
                &d,
                format!("destination {rel:?} is incomplete or wrong under its final name"),
            ),
        ] {
            if let Some(got) = got.as_ref().filter(|got| *got != data) {
                problems.push(format!(
                    "{wrong}: {} bytes, expected {}",
                    got.len(),
                    data.len()
                ));
            }
        }
        if s.is_none() && d.is_none() {
            problems.push(format!("{rel:?} is on neither side: lost"));
        }
    }
    for rel in walk_files(&dst).unwrap() {
        if !is_temp(&rel) && !originals.contains_key(&rel) {
            problems.push(format!("unexpected file at the destination: {rel:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{when}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    temp_leftovers(&dst).len()
}

/// `kill -9` of `gateway sync run` at several random points of a push with
/// delete of 500 files to sshd, re-running after each kill: after every
/// kill no file is lost or half-written under its final name, a second run
/// while one is in progress is refused with the pid of the first, and the
/// final run (exit 0) leaves every file exactly once at the destination with
/// its content and none at the source. Set `SYNC_SEED` to replay the kill
/// points.
#[test]
fn sync_survives_kill_9_at_random_points() {
    let (mut rng, seed) = Rng::from_env_or_time();
    eprintln!("SYNC_SEED={seed}");
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "push").after_copy("delete"));
    let mut originals = Files::new();
    for i in 0..500u32 {
        let rel = match i % 5 {
            0 => format!("f{i:03}.bin"),
            1 => format!("a/f {i:03}.bin"),
            2 => format!("a/b/f{i:03}.dat"),
            3 => format!("c/ü{i:03}.txt"),
            _ => format!("d/e/f/g{i:03}"),
        };
        let len = match rng.below(10) {
            0 => 0,
            1..=6 => rng.below(20_000) as usize,
            _ => 20_000 + rng.below(400_000) as usize,
        };
        originals.insert(rel, rng.bytes(len));
    }
    let total: usize = originals.values().map(Vec::len).sum();
    eprintln!("500 files, {total} bytes");
    rig.seed_local(&originals, ago(3600));
    rig.write_config();

    let kills = 8;
    let mut killed_after_actions = 0;
    let mut leftovers = 0;
    for round in 0..kills {
        let mut p = SyncProcess::spawn(&rig.config_path, SYNC).expect("spawn sync run");
        if round == 0 {
            // A second run while the first is in progress is refused.
            p.wait_for_actions(1, Duration::from_secs(120));
            if p.try_status().is_none() {
                let second = gateway_sync(&rig.config_path, &["run", SYNC], RUN_TIMEOUT)
                    .expect("second run");
                let text = second.text();
                assert_eq!(
                    second.status.code(),
                    Some(1),
                    "a second run while one runs must exit 1\n{second}"
                );
                // The contract's line is `sync NAME is already running (pid P)`;
                // more after the pid (such as the run id) is fine.
                let needle = format!("sync {SYNC} is already running (pid {}", p.pid());
                assert!(text.contains(&needle), "expected {needle:?}\n{second}");
            }
        }
        // Kill after a random number of actions (or a random moment early on).
        let target = p.done_actions() + rng.below(160) as usize;
        if rng.below(3) == 0 {
            thread::sleep(Duration::from_millis(rng.below(600)));
        } else {
            p.wait_for_actions(target, Duration::from_secs(120));
            thread::sleep(Duration::from_millis(rng.below(40)));
        }
        let actions_before_kill = p.done_actions();
        let elapsed = p.elapsed();
        match p.kill9() {
            Some(_) => {
                if actions_before_kill > 0 {
                    killed_after_actions += 1;
                }
                eprintln!(
                    "round {round}: killed after {elapsed:?}, {actions_before_kill} actions printed"
                );
            }
            None => {
                let (st, out) = p.wait(Duration::from_secs(5)).unwrap();
                eprintln!("round {round}: the run finished ({st}) before the kill\n{out}");
                if st.success() {
                    break;
                }
            }
        }
        leftovers = check_nothing_lost(&rig, &originals, &format!("after kill {round}"));
        eprintln!("round {round}: {leftovers} hidden temporary upload(s) at the destination");
    }

    let fin = rig.run(SYNC);
    assert!(
        fin.success(),
        "the final run after the kills failed\n{fin}\n{}",
        rig.logs()
    );
    check_nothing_lost(&rig, &originals, "after the final run");
    assert_tree(
        &rig.remote_dir(),
        &originals,
        "destination after the final run",
        "",
    );
    assert_tree(
        &rig.local(),
        &Files::new(),
        "source after the final run",
        "",
    );
    let final_leftovers = temp_leftovers(&rig.remote_dir());
    eprintln!(
        "hidden temporary uploads at the destination: {leftovers} after the last kill, {} after the final run: {final_leftovers:?}",
        final_leftovers.len()
    );

    let hist = rig.history(SYNC);
    assert!(hist.success(), "`gateway sync history` failed\n{hist}");
    let runs = parse_history(&hist);
    eprintln!("{}", hist.stdout);
    assert_eq!(
        runs.first().map(|r| r.summary.outcome.as_str()),
        Some("succeeded"),
        "the newest run in the history should be the final one, succeeded\n{hist}"
    );
    if killed_after_actions > 0 {
        assert!(
            runs.iter().any(|r| r.summary.outcome == "interrupted"),
            "{killed_after_actions} run(s) were killed after copying, but none is `interrupted` in the history\n{hist}"
        );
    }
}

// ---------------------------------------------------------------------------
// A file being appended to
// ---------------------------------------------------------------------------

const BASE: u64 = 48 << 20;
const CHUNK: u64 = 64 << 10;

/// Panics unless `dest` is a complete state of the growing file: a
/// prefix of the pattern ending at `BASE + k * CHUNK`.
fn assert_complete_state(dest: &std::path::Path, what: &str) {
    let got = fs::read(dest).unwrap();
    let len = got.len() as u64;
    assert!(
        len >= BASE && (len - BASE).is_multiple_of(CHUNK),
        "{what}: {} has {len} bytes: not a size the source ever had between appends (48 MiB + k x 64 KiB)",
        dest.display()
    );
    assert!(
        got == pattern(0, got.len()),
        "{what}: {} has the right size but not the source's content",
        dest.display()
    );
}

/// A 48 MiB file that a thread appends 64 KiB to every 50 ms during a push
/// with delete (`settle = "0s"`): after the run the destination has no
/// such file or one the source had at a complete point, and the source is
/// still there; the other files went through. Once the appends stop, the
/// next run brings it over complete and deletes the source.
#[test]
fn sync_neither_copies_half_written_nor_deletes_a_growing_file() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "push").after_copy("delete"));
    let others: Files = [
        ("one.txt".to_string(), random_bytes(1000)),
        ("sub/two.bin".to_string(), random_bytes(200_000)),
    ]
    .into();
    rig.seed_local(&others, ago(3600));
    let growing = rig.local().join("growing.bin");
    {
        let mut f = fs::File::create(&growing).unwrap();
        for off in (0..BASE).step_by(1 << 20) {
            f.write_all(&pattern(off, 1 << 20)).unwrap();
        }
        f.sync_all().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let size = Arc::new(AtomicU64::new(BASE));
    let appender = {
        let (stop, size, path) = (stop.clone(), size.clone(), growing.clone());
        thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("the growing file vanished during the run: {e}"))?;
                let off = size.load(Ordering::SeqCst);
                f.write_all(&pattern(off, CHUNK as usize))
                    .map_err(|e| format!("append: {e}"))?;
                size.store(off + CHUNK, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    thread::sleep(Duration::from_millis(200));

    let dest = rig.remote_dir().join("growing.bin");
    for round in 0..5 {
        let out = rig.run(SYNC);
        eprintln!("run {round} while appending:\n{out}");
        assert!(
            out.success(),
            "run {round} while appending: a file changing during the run is skipped, not failed: exit 0 expected\n{out}\n{}",
            rig.logs()
        );
        let done = run_actions(&out);
        assert!(
            !done.contains(&(Act::DeleteGateway, "growing.bin".into())),
            "run {round} deleted the file being appended to\n{out}"
        );
        assert!(
            growing.exists(),
            "run {round}: the source of the growing file is gone\n{out}"
        );
        if dest.exists() {
            assert_complete_state(&dest, &format!("after run {round} while appending"));
        }
        let mut expected = others.clone();
        if let Ok(d) = fs::read(&dest) {
            expected.insert("growing.bin".into(), d);
        }
        assert_tree(
            &rig.remote_dir(),
            &expected,
            &format!("remote after run {round}"),
            &out.to_string(),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let appended = appender.join().expect("appender thread");
    assert!(appended.is_ok(), "{appended:?}");
    let final_size = size.load(Ordering::SeqCst);
    eprintln!(
        "appends stopped at {final_size} bytes ({} appends)",
        (final_size - BASE) / CHUNK
    );
    assert!(final_size > BASE, "the appender never appended");
    assert_eq!(fs::metadata(&growing).unwrap().len(), final_size);

    let out = rig.run(SYNC);
    assert!(
        out.success(),
        "run after the appends stopped failed\n{out}\n{}",
        rig.logs()
    );
    assert!(
        run_actions(&out).contains(&(Act::CopyPush, "growing.bin".into())),
        "the run after the appends stopped did not copy growing.bin\n{out}"
    );
    assert_eq!(
        fs::metadata(&dest).map(|m| m.len()).ok(),
        Some(final_size),
        "growing.bin at the destination should have its final size\n{out}"
    );
    assert_complete_state(&dest, "after the appends stopped");
    assert!(
        !growing.exists(),
        "the source of growing.bin remains after a complete copy with after_copy = delete\n{out}"
    );
    assert_tree(&rig.local(), &Files::new(), "gateway folder at the end", "");
    eprintln!(
        "hidden temporary uploads at the destination: {:?}",
        temp_leftovers(&rig.remote_dir())
    );
}

// ---------------------------------------------------------------------------
// The connection cap with a scheduled sync and live sessions
// ---------------------------------------------------------------------------

/// sshd remote with `max_connections = 4`; `gateway serve` runs a push of
/// 300 files with `parallel = 4` every second while three OpenSSH `sftp`
/// clients write and read through a mount of the same remote. sshd never
/// sees more than 4 established connections; the files arrive intact and
/// the clients' transfers are intact.
#[test]
fn sync_and_live_sessions_share_the_remote_connection_cap() {
    let mut s = MountSetup::new().expect("set-up");
    s.remote().max_connections = Some(4);
    s.remote().pool_wait = Some("120s".into());
    let outbound = s.env.data.join("outbound");
    let synced = s.root.join("synced");
    fs::create_dir_all(&outbound).unwrap();
    fs::create_dir_all(&synced).unwrap();
    e2e::sshd::chown_to_test_user(&synced).unwrap();
    s.cfg.syncs.push(
        SyncConfig::new(SYNC, "/outbound", MOUNT_REMOTE, "synced", "push")
            .after_copy("keep")
            .parallel(4)
            .every("1s")
            .settle("0s"),
    );
    let (mut rng, seed) = Rng::from_env_or_time();
    eprintln!("SYNC_SEED={seed}");
    let mut files = Files::new();
    for i in 0..300u32 {
        let len = 1000 + rng.below(200_000) as usize;
        files.insert(format!("batch{}/file {i:03}.dat", i % 7), rng.bytes(len));
    }
    write_files(&outbound, &files, ago(3600)).unwrap();

    // The clients' own files.
    let mut jobs = vec![];
    let mut client_files = BTreeMap::new();
    for c in 0..3 {
        let mut batch = format!("-mkdir /partner/c{c}\n");
        for k in 0..4 {
            let local = s.env.path(&format!("c{c}-{k}.bin"));
            write_random_file(&local, 1_000_000 + k * 250_000).unwrap();
            batch += &format!("put {} /partner/c{c}/f{k}.bin\n", p(&local));
            client_files.insert(format!("c{c}/f{k}.bin"), local);
        }
        for k in 0..4 {
            let back = s.env.path(&format!("c{c}-{k}.back"));
            batch += &format!("get /partner/c{c}/f{k}.bin {}\n", p(&back));
        }
        batch += &format!("ls -l /partner/c{c}\n");
        jobs.push(batch);
    }

    let sampler = s.sshd.sampler();
    s.start_gateway().expect("gateway start");
    let clients: Vec<(Client, String)> = jobs
        .into_iter()
        .enumerate()
        .map(|(i, b)| (s.client_n(i), b))
        .collect();
    // Rounds of the three clients at once until the sync has brought every
    // file (at least two rounds; the schedule keeps listing meanwhile).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut rounds = 0;
    let mut rounds_during_sync = 0;
    loop {
        let arrived_before = tree_diff(&synced, &files).is_empty();
        let outs = sftp_in_parallel(clients.clone());
        rounds += 1;
        if !arrived_before {
            rounds_during_sync += 1;
        }
        assert_all_ok(
            &outs,
            &format!("sftp clients, round {rounds}, during the sync"),
            &s.logs(),
        );
        let diffs = tree_diff(&synced, &files);
        if diffs.is_empty() && rounds >= 2 {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "the scheduled sync did not bring all 300 files within 180 s ({} differences, first: {:?})\n{}",
                diffs.len(),
                diffs.first(),
                s.logs()
            );
        }
    }
    eprintln!("{rounds} client rounds, {rounds_during_sync} started before every file had arrived");
    // A few more scheduled runs (listings) under the sampler.
    thread::sleep(Duration::from_secs(3));
    let report = sampler.finish().expect("sampler");
    eprintln!(
        "sshd connections: max {} over {} samples",
        report.max, report.samples
    );

    for c in 0..3 {
        for k in 0..4 {
            let local = s.env.path(&format!("c{c}-{k}.bin"));
            assert_same_file(&local, &s.root.join(format!("c{c}/f{k}.bin")));
            assert_same_file(&local, &s.env.path(&format!("c{c}-{k}.back")));
        }
    }
    assert!(report.max >= 1, "the sampler saw no connection at all");
    assert!(
        report.max <= 4,
        "sshd saw {} established connections at once; the remote's max_connections is 4\n{}",
        report.max,
        s.logs()
    );
}

// ---------------------------------------------------------------------------
// CLI refusals
// ---------------------------------------------------------------------------

/// `gateway sync run` of a name no `[[syncs]]` declares fails with a
/// message naming it.
#[test]
fn sync_run_of_an_unknown_name_fails_clearly() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "push"));
    let out = rig.run("no-such-sync");
    assert!(
        !out.success(),
        "`gateway sync run no-such-sync` succeeded\n{out}"
    );
    assert!(
        out.text().contains("no-such-sync"),
        "the message does not name the unknown sync\n{out}"
    );
    eprintln!("{out}");
    let out = rig.cli(&["history", "no-such-sync"]);
    assert!(
        !out.success() && out.text().contains("no-such-sync"),
        "`gateway sync history no-such-sync` should fail naming it\n{out}"
    );
}

/// `after_copy = "delete"` with `direction = "two_way"` is refused by
/// `gateway config check`, naming the file and line.
#[test]
fn sync_two_way_with_delete_is_refused_with_its_line() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "two_way").after_copy("delete"));
    rig.write_config();
    let text = fs::read_to_string(&rig.config_path).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("after_copy = \"delete\""))
        .unwrap()
        + 1;
    let out = config_check(&rig.config_path).unwrap();
    assert!(
        !out.success(),
        "`gateway config check` accepted two_way with delete\n{out}"
    );
    let needle = format!("{}:{line}", rig.config_path.display());
    assert!(
        out.text().contains(&needle) && out.text().contains("after_copy"),
        "the refusal should name {needle} and after_copy\n{out}"
    );
    let run = rig.run(SYNC);
    assert!(
        !run.success(),
        "`gateway sync run` ran a two_way sync with delete\n{run}"
    );
}
