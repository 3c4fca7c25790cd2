//! `gateway::core::tree::VirtualPath::resolve` and the mount table
//! (`Tree::locate`): the one place a client path becomes a storage path.
//!
//! Input (UTF-8, as SFTP paths arrive): the client path on the first line;
//! each further line `AT=BASE` adds a mount of folder `AT` of the tree on
//! folder `BASE` of a storage (lines that are not valid mounts are skipped).
//!
//! Checked, for every path that resolves: the result is absolute and
//! normal (no empty, `.` or `..` names, no NUL, no trailing `/`), resolving
//! it again changes nothing, `..` in front cannot climb above the root,
//! and `<path>/..` is its parent. The mount table picks the mount with the
//! longest matching folder, and the storage path is that mount's base
//! joined with the rest, so it never leaves the base (the user's home for
//! `Tree::single`).
#![no_main]

use std::sync::{Arc, OnceLock};

use backends::{Backend, LocalBackend, StoragePath};
use gateway::core::tree::{Mount, Tree, VirtualPath};
use libfuzzer_sys::fuzz_target;

#[path = "common/scratch.rs"]
mod scratch;

/// A real backend (its folder is never touched: `locate` does no I/O).
fn storage() -> Arc<dyn Backend> {
    static STORAGE: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    STORAGE
        .get_or_init(|| Arc::new(LocalBackend::open(scratch::scratch()).expect("local backend")))
        .clone()
}

fn names(p: &VirtualPath) -> Vec<&str> {
    p.as_str()
        .split('/')
        .skip(1)
        .filter(|n| !n.is_empty())
        .collect()
}

fn check_normal(client: &str, v: &VirtualPath) {
    let s = v.as_str();
    assert!(s.starts_with('/'), "{client:?} resolved to relative {s:?}");
    assert!(!s.contains('\0'), "{client:?} resolved to {s:?} with NUL");
    if s != "/" {
        assert!(!s.ends_with('/'), "{client:?} resolved to {s:?}");
        for name in s[1..].split('/') {
            assert!(
                !name.is_empty() && name != "." && name != "..",
                "{client:?} resolved to {s:?}"
            );
        }
    }
    assert_eq!(v.is_root(), s == "/");
}

fn check_location(tree: &Tree, all: &[(VirtualPath, StoragePath)], v: &VirtualPath) {
    let loc = tree.locate(v);
    let (at, base) = &all[loc.mount];
    let (vn, an) = (names(v), names(at));
    assert!(
        vn.starts_with(&an),
        "{v:?} located on mount {at:?}, which is not above it"
    );
    // No other mount above the path is longer.
    for (other, _) in all {
        let on = names(other);
        if vn.starts_with(&on) {
            assert!(
                on.len() <= an.len(),
                "{v:?} located on {at:?} although {other:?} is longer"
            );
        }
    }
    let rest = StoragePath::from_names(vn[an.len()..].iter().copied())
        .expect("the rest of a resolved path is a valid storage path");
    assert_eq!(loc.path, base.join(&rest), "{v:?} on {at:?}");
    assert!(
        loc.path.starts_with(base),
        "{v:?} located at {:?}, outside the mount base {base:?}",
        loc.path
    );
    assert!(
        loc.path
            .names()
            .all(|n| n != ".." && n != "." && !n.contains('\0')),
        "{v:?} located at {:?}",
        loc.path
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let client = lines.next().unwrap_or_default();
    let Ok(v) = VirtualPath::resolve(client) else {
        return;
    };
    check_normal(client, &v);

    // Resolving is idempotent, relative is relative to `/`, `..` stops at `/`.
    assert_eq!(
        VirtualPath::resolve(v.as_str()).as_ref(),
        Ok(&v),
        "{client:?}"
    );
    if !client.starts_with('/') {
        assert_eq!(VirtualPath::resolve(&format!("/{client}")).as_ref(), Ok(&v));
    }
    assert_eq!(
        VirtualPath::resolve(&format!("/../../{client}")).as_ref(),
        Ok(&v),
        "`..` climbed above the root for {client:?}"
    );
    assert_eq!(
        VirtualPath::resolve(&format!("{}/..", v.as_str())).as_ref(),
        Ok(&v.parent()),
        "{client:?}"
    );
    check_normal(client, &v.parent());

    // The user's home as the whole tree.
    let home = StoragePath::parse("users/alice").unwrap();
    let single = Tree::single(storage(), home.clone());
    check_location(&single, &[(VirtualPath::root(), home)], &v);

    // A tree with the mounts of the input.
    let mut mounts = Vec::new();
    let mut all = vec![(VirtualPath::root(), StoragePath::root())];
    for line in lines.take(8) {
        let Some((at, base)) = line.split_once('=') else {
            continue;
        };
        let (Ok(at), Ok(base)) = (VirtualPath::resolve(at), StoragePath::parse(base)) else {
            continue;
        };
        // The config refuses the same folder twice (a mount at `/` is
        // accepted there, and shadows the home: the later mount wins ties).
        if all[1..].iter().any(|(a, _)| *a == at) {
            continue;
        }
        all.push((at.clone(), base.clone()));
        mounts.push(Mount {
            at,
            backend: storage(),
            base,
        });
    }
    let tree = Tree::with_mounts(storage(), mounts);
    check_location(&tree, &all, &v);
    check_location(&tree, &all, &v.parent());
});
