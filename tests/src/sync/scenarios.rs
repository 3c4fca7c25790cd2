//! Push, pull and two-way scenarios, each on its own [`SyncRig`].

use super::*;

/// What tells a push from a pull in [`one_way`]: which side the files
/// start on, what copying and deleting them is called, and how
/// failure messages name what is left behind.
struct OneWay {
    /// The sync's `direction`, also its name in failure messages.
    direction: &'static str,
    /// Where the files are at first.
    source: Side,
    /// Where they are copied to.
    destination: Side,
    /// Copying a file from the source to the destination.
    copy: Act,
    /// Deleting a copied file at the source (`after_copy = "delete"`).
    delete: Act,
    /// A file only the destination has: it must stay.
    destination_only: &'static str,
    /// The hidden temporary files at the destination, as failure
    /// messages name them.
    temporaries: &'static str,
    /// With delete, also `delete_empty_folders = true`, and no folder
    /// is left at the source.
    delete_empty_folders: bool,
}

const PUSH: OneWay = OneWay {
    direction: "push",
    source: Side::Gateway,
    destination: Side::Remote,
    copy: Act::CopyPush,
    delete: Act::DeleteGateway,
    destination_only: "remote only.txt",
    temporaries: "temporary uploads left at the remote",
    delete_empty_folders: true,
};

const PULL: OneWay = OneWay {
    direction: "pull",
    source: Side::Remote,
    destination: Side::Gateway,
    copy: Act::CopyPull,
    delete: Act::DeleteRemote,
    destination_only: "gateway only.txt",
    temporaries: "temporary downloads left in the gateway folder",
    delete_empty_folders: false,
};

/// Push: every file of [`sample_files`] arrives at the remote with its
/// content; a stale copy there (other size) is replaced; a remote-only
/// file stays. With `delete`, the sources are deleted (and, with
/// `delete_empty_folders`, their folders); with keep they stay. A
/// second run does nothing.
pub fn push(kind: RemoteKind, delete: bool) {
    one_way(kind, &PUSH, delete);
}

/// Pull: the mirror image of [`push`] (no `delete_empty_folders`).
pub fn pull(kind: RemoteKind, delete: bool) {
    one_way(kind, &PULL, delete);
}

/// [`push`] or [`pull`], as `way` says.
fn one_way(kind: RemoteKind, way: &OneWay, delete: bool) {
    let mut rig = SyncRig::new(kind).expect("set-up");
    let after_copy = if delete { "delete" } else { "keep" };
    let mut sync = rig.sync_config(SYNC, way.direction).after_copy(after_copy);
    if delete && way.delete_empty_folders {
        sync = sync.delete_empty_folders(true);
    }
    rig.add_sync(sync);
    let files = sample_files();
    rig.seed(way.source, &files, ago(3600 + 17));
    let stale: Files = [
        ("nested/a.bin".to_string(), b"stale".to_vec()),
        (way.destination_only.to_string(), b"stays".to_vec()),
    ]
    .into();
    rig.seed(way.destination, &stale, ago(7200));
    let (source, destination) = (rig.dir(way.source), rig.dir(way.destination));
    let (from, to) = (way.source.label(), way.destination.label());
    let name = way.direction;

    let (done, out) = rig.checked_run(SYNC);
    let mut expected = acts(way.copy, files.keys());
    if delete {
        expected.extend(acts(way.delete, files.keys()));
    }
    assert_actions(
        &done,
        &expected,
        &format!("{name} ({after_copy}) did not do what was expected"),
        &out,
    );
    let destination_expected = with(&files, &[(way.destination_only, b"stays")]);
    assert_tree(
        &destination,
        &destination_expected,
        &format!("{to} after {name}"),
        &rig.logs(),
    );
    let source_expected = if delete { Files::new() } else { files };
    assert_tree(
        &source,
        &source_expected,
        &format!("{from} after {name} with {after_copy}"),
        &rig.logs(),
    );
    if delete && way.delete_empty_folders {
        let left = walk_folders(&source).unwrap();
        assert!(
            left.is_empty(),
            "delete_empty_folders = true, but folders emptied by the deletes remain in the {from}: {left:?}\n{out}"
        );
    }
    let leftovers = temp_leftovers(&destination);
    assert!(
        leftovers.is_empty(),
        "{} after a clean run: {leftovers:?}",
        way.temporaries
    );
    if delete && way.source == Side::Remote {
        // What S3 looks like once every key under a prefix is deleted.
        rig.s3_forget_empty_folders();
    }

    second_run_does_nothing(&rig, name, &[(way.destination, &destination_expected)]);
}

/// Two-way: each side's own files (nested, empty, non-ASCII) go to the
/// other side; of two files with different sizes the newer wins (one
/// newer on each side); a name with the same size on both sides is left
/// alone although the contents differ. Nothing is deleted. A second run
/// does nothing.
pub fn two_way(kind: RemoteKind) {
    let mut rig = SyncRig::new(kind).expect("set-up");
    rig.add_sync(rig.sync_config(SYNC, "two_way"));
    let old = ago(2 * 3600 + 13);
    let new = ago(600 + 7);
    let here_only: Files = [
        ("here only.txt".to_string(), random_bytes(500)),
        ("nested/hère only ü.bin".to_string(), random_bytes(20_000)),
        ("empty here.txt".to_string(), vec![]),
    ]
    .into();
    let there_only: Files = [
        ("there only.txt".to_string(), random_bytes(600)),
        (
            "nested/deep/thère only é.bin".to_string(),
            random_bytes(30_000),
        ),
        ("empty there.txt".to_string(), vec![]),
    ]
    .into();
    let (newer_here_g, newer_here_r) = (random_bytes(3000), random_bytes(1000));
    let (newer_there_g, newer_there_r) = (random_bytes(1500), random_bytes(4500));
    let (same_g, same_r) = (vec![b'g'; 100], vec![b'r'; 100]);
    let both = random_bytes(2500);

    rig.seed_local(&here_only, old);
    rig.seed_remote(&there_only, old);
    let l = rig.local();
    let r = rig.remote_dir();
    // (name, gateway side's content and time, remote side's content and time)
    for (name, (g, g_time), (r_data, r_time)) in [
        ("newer here.txt", (&newer_here_g, new), (&newer_here_r, old)),
        (
            "sub dir/newer there.txt",
            (&newer_there_g, old),
            (&newer_there_r, new),
        ),
        ("same size.txt", (&same_g, new), (&same_r, old)),
        ("nested/identical.txt", (&both, old), (&both, old)),
    ] {
        write_at(&l, name, g, g_time).unwrap();
        write_at(&r, name, r_data, r_time).unwrap();
    }
    rig.fix_remote_owner();

    let (done, out) = rig.checked_run(SYNC);
    let mut expected = acts(Act::CopyPush, here_only.keys());
    expected.insert((Act::CopyPush, "newer here.txt".into()));
    expected.extend(acts(Act::CopyPull, there_only.keys()));
    expected.insert((Act::CopyPull, "sub dir/newer there.txt".into()));
    assert_actions(
        &done,
        &expected,
        "two-way did not do what was expected",
        &out,
    );
    let mut common = here_only.clone();
    common.extend(there_only.clone());
    common.insert("newer here.txt".into(), newer_here_g.clone());
    common.insert("sub dir/newer there.txt".into(), newer_there_r.clone());
    common.insert("nested/identical.txt".into(), both.clone());
    let mut local_expected = common.clone();
    local_expected.insert("same size.txt".into(), same_g.clone());
    let mut remote_expected = common;
    remote_expected.insert("same size.txt".into(), same_r.clone());
    assert_tree(
        &l,
        &local_expected,
        "gateway folder after two-way",
        &rig.logs(),
    );
    assert_tree(&r, &remote_expected, "remote after two-way", &rig.logs());

    second_run_does_nothing(
        &rig,
        "two-way run",
        &[
            (Side::Gateway, &local_expected),
            (Side::Remote, &remote_expected),
        ],
    );
}

/// Runs sync [`SYNC`] again ([`SyncRig::checked_run`]) and checks that
/// it did nothing and that the folder on each `side` still holds
/// exactly its `files`; `run` names the run in failure messages.
fn second_run_does_nothing(rig: &SyncRig, run: &str, trees: &[(Side, &Files)]) {
    let (again, out) = rig.checked_run(SYNC);
    assert!(
        again.is_empty(),
        "a second {run} did something although nothing changed:\n{}\n{out}",
        show(&again)
    );
    for (side, files) in trees {
        assert_tree(
            &rig.dir(*side),
            files,
            &format!("{} after the second {run}", side.label()),
            &rig.logs(),
        );
    }
}
