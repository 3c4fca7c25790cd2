//! `gateway sync run` on a terminal: its progress bar moves during a large
//! file, not only between files, and shows the rate and the time left.
//! The terminal is a pseudo-terminal from util-linux's `script`.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::sync::*;
use e2e::*;

#[test]
fn the_progress_bar_moves_during_a_large_file_with_rate_and_time_left() {
    let mut rig = SyncRig::new(RemoteKind::Sftp).unwrap();
    let sync = rig.sync_config("big", "push");
    rig.add_sync(sync);
    rig.write_config();
    let big = rig.local_of(FOLDER).join("big.bin");
    fs::write(&big, vec![0x5au8; 192 << 20]).unwrap();

    let command = format!(
        "{} sync run big --config {}",
        gateway_bin().unwrap().display(),
        rig.config_path.display()
    );
    let mut script = Command::new("script");
    script.args(["-qefc", &command, "/dev/null"]);
    let out = run_with_timeout(script, Duration::from_secs(300)).unwrap();
    assert_ok(&out, &format!("sync run on a terminal\n{}", rig.logs()));
    assert!(rig.remote_of(REMOTE_PATH).join("big.bin").exists(), "{out}");

    // Every drawing of the bar, as the terminal got it.
    let frames: Vec<&str> = out
        .stdout
        .split(['\r', '\n'])
        .map(|f| f.trim_start_matches("\u{1b}[K"))
        .filter(|f| f.starts_with('[') && f.contains(" files, "))
        .collect();
    let during: Vec<&str> = frames
        .iter()
        .copied()
        .filter(|f| f.contains("0/1 files"))
        .collect();
    let distinct: std::collections::BTreeSet<&str> = during
        .iter()
        .map(|f| {
            f.split(" files, ")
                .nth(1)
                .unwrap_or("")
                .split(" / ")
                .next()
                .unwrap_or("")
        })
        .collect();
    assert!(
        distinct.len() >= 3,
        "the bar did not move while the one file was copied: {during:#?}"
    );
    assert!(
        during
            .iter()
            .any(|f| f.contains("MiB/s") && f.contains(" left")),
        "no rate and time left: {during:#?}"
    );
    assert!(out.stdout.contains("copied push big.bin"), "{out}");
}
