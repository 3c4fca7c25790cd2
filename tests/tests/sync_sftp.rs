//! Syncs with an SFTP remote (the tests' own OpenSSH sshd), through the
//! real `gateway sync ...` commands and `gateway serve`: push, pull and
//! two-way checked file by file on sshd's disk, dry runs against the real
//! runs that follow, settle time, filters, and a schedule inside `serve`
//! with its recorded history.

use std::thread;
use std::time::{Duration, Instant};

use e2e::sync::scenarios;
use e2e::sync::*;

#[test]
fn sftp_push_with_keep() {
    scenarios::push(RemoteKind::Sftp, false);
}

#[test]
fn sftp_push_with_delete() {
    scenarios::push(RemoteKind::Sftp, true);
}

#[test]
fn sftp_pull_with_keep() {
    scenarios::pull(RemoteKind::Sftp, false);
}

#[test]
fn sftp_pull_with_delete() {
    scenarios::pull(RemoteKind::Sftp, true);
}

#[test]
fn sftp_two_way() {
    scenarios::two_way(RemoteKind::Sftp);
}

/// A dry run lists exactly what the real run then does, holds included:
/// a push with delete whose fresh file is held by `settle = "60s"`, and a
/// two-way sync whose file differs in size with equal times on both sides
/// (no newer side) is held too.
#[test]
fn sftp_dry_run_lists_exactly_what_the_run_does() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(
        rig.sync_config("outgoing", "push")
            .after_copy("delete")
            .settle("60s"),
    );
    rig.folder_pair("/shared", "shared");
    rig.add_sync(e2e::SyncConfig::new("both", "/shared", REMOTE, "shared", "two_way").settle("0s"));
    let files = sample_files();
    rig.seed_local(&files, ago(3600));
    let fresh = random_bytes(1234);
    write_at(&rig.local(), "nested/fresh.txt", &fresh, ago(0)).unwrap();

    let shared_l = rig.local_of("/shared");
    let shared_r = rig.remote_of("shared");
    let t = ago(1800);
    let (cl, cr) = (random_bytes(10), random_bytes(20));
    write_at(&shared_l, "conflict.txt", &cl, t).unwrap();
    write_at(&shared_r, "conflict.txt", &cr, t).unwrap();
    let only = random_bytes(77);
    write_at(&shared_l, "only here.txt", &only, t).unwrap();
    rig.fix_remote_owner();

    let (done, out) = rig.checked_run("outgoing");
    let mut expected = acts(Act::CopyPush, files.keys());
    expected.extend(acts(Act::DeleteGateway, files.keys()));
    expected.insert((Act::Hold, "nested/fresh.txt".into()));
    assert_actions(&done, &expected, "push with a settling file", &out);
    assert_tree(
        &rig.remote_dir(),
        &files,
        "remote after the push",
        &rig.logs(),
    );
    assert_tree(
        &rig.local(),
        &[("nested/fresh.txt".to_string(), fresh)].into(),
        "gateway folder after the push: only the held file remains",
        "",
    );

    let (done, out) = rig.checked_run("both");
    let expected: Actions = [
        (Act::CopyPush, "only here.txt".to_string()),
        (Act::Hold, "conflict.txt".to_string()),
    ]
    .into();
    assert_actions(
        &done,
        &expected,
        "two-way with a size conflict and equal times",
        &out,
    );
    assert_tree(
        &shared_r,
        &[
            ("conflict.txt".to_string(), cr),
            ("only here.txt".to_string(), only.clone()),
        ]
        .into(),
        "remote after the two-way run",
        "",
    );
    assert_tree(
        &shared_l,
        &[
            ("conflict.txt".to_string(), cl),
            ("only here.txt".to_string(), only),
        ]
        .into(),
        "gateway folder after the two-way run",
        "",
    );
}

/// `include` and `exclude` globs: `*` stays within a folder, `**` crosses
/// folders, a pattern without `/` matches the name in any folder, and an
/// excluded file is never copied even when included.
#[test]
fn sftp_include_and_exclude_filters() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(
        rig.sync_config(SYNC, "push")
            .after_copy("keep")
            .include("*.csv")
            .include("reports/**")
            .exclude("*.tmp"),
    );
    let names = [
        ("a.csv", true),
        ("sub/b.csv", true),
        ("sub/d.tmp.csv", true),
        ("reports/x.txt", true),
        ("reports/deep/z z.txt", true),
        ("reports/deep/y.tmp", false),
        ("c.txt", false),
        ("reportsX/z.txt", false),
        ("e.csv.tmp", false),
    ];
    let all: Files = names
        .iter()
        .map(|(n, _)| (n.to_string(), random_bytes(100)))
        .collect();
    rig.seed_local(&all, ago(3600));
    let (done, out) = rig.checked_run(SYNC);
    let wanted: Files = names
        .iter()
        .filter(|(_, w)| *w)
        .map(|(n, _)| (n.to_string(), all[*n].clone()))
        .collect();
    let expected = acts(Act::CopyPush, wanted.keys());
    assert_actions(
        &done,
        &expected,
        "include = [\"*.csv\", \"reports/**\"], exclude = [\"*.tmp\"]",
        &out,
    );
    assert_tree(
        &rig.remote_dir(),
        &wanted,
        "remote after the filtered push",
        "",
    );
    assert_tree(&rig.local(), &all, "gateway folder (keep)", "");
}

/// `every = "2s"` inside `gateway serve`: files arrive without any manual
/// run (also files added after the first runs), `gateway sync history`
/// (run with the same config while serve runs) shows at least two
/// scheduled runs that succeeded whose copied counts add up to the files
/// copied, and `gateway sync list` shows the sync with its schedule and
/// its last outcome.
#[test]
fn sftp_scheduled_sync_runs_inside_serve_and_records_its_runs() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "push").after_copy("keep").every("2s"));
    let first = sample_files();
    rig.seed_local(&first, ago(3600));
    rig.start_serve();

    let wait_for = |files: &Files, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let diffs = tree_diff(&rig.remote_dir(), files);
            if diffs.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: the scheduled sync did not bring the files to the remote within 60 s:\n  {}\n{}",
                    diffs.join("\n  "),
                    rig.logs()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for(&first, "first files");

    let second: Files = [
        ("later/one.txt".to_string(), random_bytes(3333)),
        ("later/twö.txt".to_string(), random_bytes(4444)),
    ]
    .into();
    rig.seed_local(&second, ago(60));
    let mut all = first.clone();
    all.extend(second.clone());
    wait_for(&all, "files added later");

    let total_bytes: u64 = all.values().map(|v| v.len() as u64).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (runs, out) = loop {
        let out = rig.history(SYNC);
        let runs = parse_history(&out);
        let ok: Vec<&HistoryRun> = runs
            .iter()
            .filter(|r| r.summary.outcome == "succeeded")
            .collect();
        let copied: u64 = ok.iter().map(|r| r.summary.copied).sum();
        if out.success() && ok.len() >= 2 && copied == all.len() as u64 {
            break (runs, out);
        }
        if Instant::now() > deadline {
            panic!(
                "`gateway sync history {SYNC}` does not show >= 2 succeeded runs copying {} files in all (parsed: {runs:#?})\n{out}\n{}",
                all.len(),
                rig.logs()
            );
        }
        thread::sleep(Duration::from_millis(500));
    };
    eprintln!("{}", out.stdout);
    for r in &runs {
        assert_eq!(
            r.trigger, "schedule",
            "a run nobody started by hand is not marked `schedule`: {r:?}\n{out}"
        );
        assert_eq!(r.summary.failed, 0, "{r:?}\n{out}");
        assert!(
            chrono_like(&r.start),
            "start {:?} does not look like RFC 3339\n{out}",
            r.start
        );
    }
    let bytes: u64 = runs.iter().map(|r| r.summary.bytes).sum();
    assert_eq!(
        bytes, total_bytes,
        "the runs' byte counts do not add up to the bytes copied\n{out}"
    );
    assert!(
        runs.iter().filter(|r| r.summary.copied > 0).count() >= 2,
        "the files seeded before and after the first run should be copied by different runs\n{out}"
    );

    let list = rig.cli(&["list"]);
    assert!(list.success(), "`gateway sync list` failed\n{list}");
    eprintln!("{}", list.stdout);
    let row = list
        .stdout
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == SYNC))
        .unwrap_or_else(|| panic!("`gateway sync list` has no row for {SYNC}\n{list}"));
    for needle in ["push", REMOTE, "every 2s", "succeeded"] {
        assert!(
            row.contains(needle),
            "`gateway sync list`'s row for {SYNC} lacks {needle:?}: {row:?}\n{list}"
        );
    }
}

/// `2026-01-02T03:04:05...`.
fn chrono_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
}
