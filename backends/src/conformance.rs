//! The conformance suite: plain async cases that every backend must pass.
//! A new backend is done when `run_all` passes against a real server.
//!
//! Each case works in its own folder under the backend's root and panics
//! with a message naming the case when the backend misbehaves. Cases for
//! optional features look at [`crate::Capabilities`] and skip themselves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;

use crate::backend::{Backend, DirEntry, HashKind, RenameMode, WriteMode};
use crate::{ErrorKind, StoragePath};

fn p(s: &str) -> StoragePath {
    StoragePath::parse(s).expect("test paths are valid")
}

async fn put(b: &dyn Backend, path: &str, data: &[u8]) {
    let mut w = b
        .open_write(&p(path), WriteMode::Replace { exclusive: false })
        .await
        .unwrap_or_else(|e| panic!("open_write {path}: {e}"));
    for chunk in data.chunks(32 * 1024) {
        w.write(Bytes::copy_from_slice(chunk))
            .await
            .unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
    w.close()
        .await
        .unwrap_or_else(|e| panic!("close {path}: {e}"));
}

async fn get(b: &dyn Backend, path: &str) -> Vec<u8> {
    let r = b
        .open_read(&p(path))
        .await
        .unwrap_or_else(|e| panic!("open_read {path}: {e}"));
    let mut out = Vec::new();
    loop {
        let chunk = r
            .read_at(out.len() as u64, 64 * 1024)
            .await
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

async fn list(b: &dyn Backend, path: &str) -> Vec<DirEntry> {
    let stream = b
        .list(&p(path))
        .await
        .unwrap_or_else(|e| panic!("list {path}: {e}"));
    let pages: Vec<Vec<DirEntry>> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("list {path}: {e}"));
    let mut all: Vec<DirEntry> = pages.into_iter().flatten().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs every case against `backend`, each in its own folder.
pub async fn run_all(backend: &dyn Backend) {
    write_then_read(backend).await;
    replace_is_atomic(backend).await;
    exclusive_create(backend).await;
    stat_kinds(backend).await;
    listing(backend).await;
    folders(backend).await;
    removal(backend).await;
    renames(backend).await;
    modification_time(backend).await;
    truncation(backend).await;
    resume(backend).await;
    space(backend).await;
    checksums(backend).await;
}

/// Written bytes read back identically at any offset; EOF is an empty read.
pub async fn write_then_read(b: &dyn Backend) {
    b.mkdir(&p("c_rw")).await.expect("mkdir c_rw");
    let data = pattern(300_000);
    put(b, "c_rw/f.bin", &data).await;
    assert_eq!(
        get(b, "c_rw/f.bin").await,
        data,
        "write_then_read: content differs"
    );
    let r = b.open_read(&p("c_rw/f.bin")).await.expect("open");
    assert_eq!(
        &r.read_at(1000, 10).await.expect("read")[..],
        &data[1000..1010]
    );
    assert_eq!(
        r.read_at(299_995, 100).await.expect("read tail").len(),
        5,
        "short read at the end"
    );
    assert!(
        r.read_at(300_000, 10)
            .await
            .expect("read at eof")
            .is_empty(),
        "EOF is empty"
    );
    assert_eq!(r.metadata().await.expect("metadata").size, 300_000);
    put(b, "c_rw/empty", b"").await;
    assert_eq!(b.stat(&p("c_rw/empty")).await.expect("stat empty").size, 0);
    let err = b
        .open_read(&p("c_rw/missing"))
        .await
        .err()
        .expect("missing file opens");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "open_read of a missing file: {err}"
    );
}

/// A replacing write is invisible until close; abort keeps the old content.
pub async fn replace_is_atomic(b: &dyn Backend) {
    b.mkdir(&p("c_atomic")).await.expect("mkdir");
    put(b, "c_atomic/f", b"old").await;
    let mut w = b
        .open_write(&p("c_atomic/f"), WriteMode::Replace { exclusive: false })
        .await
        .expect("open");
    w.write(Bytes::from_static(b"new content"))
        .await
        .expect("write");
    assert_eq!(
        get(b, "c_atomic/f").await,
        b"old",
        "old content visible until close"
    );
    assert_eq!(
        list(b, "c_atomic").await.len(),
        1,
        "no temporary file is listed"
    );
    w.abort().await.expect("abort");
    assert_eq!(
        get(b, "c_atomic/f").await,
        b"old",
        "abort keeps the old content"
    );
    let mut w = b
        .open_write(&p("c_atomic/g"), WriteMode::Replace { exclusive: false })
        .await
        .expect("open");
    w.write(Bytes::from_static(b"partial"))
        .await
        .expect("write");
    assert_eq!(
        b.stat(&p("c_atomic/g")).await.err().map(|e| e.kind()),
        Some(ErrorKind::NotFound),
        "unfinished file is not visible"
    );
    drop(w);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        list(b, "c_atomic").await.len(),
        1,
        "a dropped writer leaves nothing"
    );
    put(b, "c_atomic/f", b"newer").await;
    assert_eq!(get(b, "c_atomic/f").await, b"newer");
}

/// Exclusive creation refuses an existing file.
pub async fn exclusive_create(b: &dyn Backend) {
    b.mkdir(&p("c_excl")).await.expect("mkdir");
    put(b, "c_excl/f", b"x").await;
    let err = b
        .open_write(&p("c_excl/f"), WriteMode::Replace { exclusive: true })
        .await
        .err()
        .expect("exclusive over existing");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let w = b
        .open_write(&p("c_excl/g"), WriteMode::Replace { exclusive: true })
        .await
        .expect("exclusive new");
    w.close().await.expect("close");
    assert_eq!(b.stat(&p("c_excl/g")).await.expect("stat").size, 0);
}

/// stat tells files from folders, and missing from present.
pub async fn stat_kinds(b: &dyn Backend) {
    b.mkdir(&p("c_stat")).await.expect("mkdir");
    put(b, "c_stat/f", b"12345").await;
    let f = b.stat(&p("c_stat/f")).await.expect("stat file");
    assert!(!f.is_dir());
    assert_eq!(f.size, 5);
    assert!(b.stat(&p("c_stat")).await.expect("stat dir").is_dir());
    assert!(b
        .stat(&StoragePath::root())
        .await
        .expect("stat root")
        .is_dir());
    let err = b.stat(&p("c_stat/nope")).await.expect_err("stat missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Listings return every entry once, across pages, with kinds and sizes.
pub async fn listing(b: &dyn Backend) {
    b.mkdir(&p("c_list")).await.expect("mkdir");
    assert!(list(b, "c_list").await.is_empty(), "new folder is empty");
    for i in 0..300 {
        put(b, &format!("c_list/f{i:03}"), &[b'x'; 3]).await;
    }
    b.mkdir(&p("c_list/sub")).await.expect("mkdir sub");
    let entries = list(b, "c_list").await;
    assert_eq!(entries.len(), 301, "every entry listed once");
    assert_eq!(entries[0].name, "f000");
    assert_eq!(entries[0].metadata.size, 3);
    assert!(entries[300].metadata.is_dir() && entries[300].name == "sub");
    let err = b
        .list(&p("c_list/missing"))
        .await
        .err()
        .expect("list missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = b.list(&p("c_list/f000")).await.err().expect("list a file");
    assert_eq!(err.kind(), ErrorKind::NotADirectory, "{err}");
}

/// mkdir needs a parent and refuses an existing name.
pub async fn folders(b: &dyn Backend) {
    b.mkdir(&p("c_dirs")).await.expect("mkdir");
    let err = b.mkdir(&p("c_dirs")).await.expect_err("mkdir twice");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let err = b
        .mkdir(&p("c_dirs/no/such"))
        .await
        .expect_err("mkdir without parent");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    b.mkdir(&p("c_dirs/a")).await.expect("mkdir nested");
    assert!(b.stat(&p("c_dirs/a")).await.expect("stat").is_dir());
}

/// remove takes files, rmdir takes empty folders only.
pub async fn removal(b: &dyn Backend) {
    b.mkdir(&p("c_rm")).await.expect("mkdir");
    b.mkdir(&p("c_rm/d")).await.expect("mkdir d");
    put(b, "c_rm/d/f", b"1").await;
    let err = b.rmdir(&p("c_rm/d")).await.expect_err("rmdir non-empty");
    assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty, "{err}");
    let err = b.remove(&p("c_rm/d")).await.expect_err("remove a folder");
    assert_eq!(err.kind(), ErrorKind::IsADirectory, "{err}");
    b.remove(&p("c_rm/d/f")).await.expect("remove file");
    let err = b.remove(&p("c_rm/d/f")).await.expect_err("remove twice");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    b.rmdir(&p("c_rm/d")).await.expect("rmdir empty");
    assert_eq!(
        b.stat(&p("c_rm/d")).await.err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
}

/// Renames move files and folders; NoReplace refuses an existing target.
pub async fn renames(b: &dyn Backend) {
    b.mkdir(&p("c_mv")).await.expect("mkdir");
    put(b, "c_mv/a", b"aaa").await;
    put(b, "c_mv/b", b"bbb").await;
    let err = b
        .rename(&p("c_mv/a"), &p("c_mv/b"), RenameMode::NoReplace)
        .await
        .expect_err("rename onto existing");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(get(b, "c_mv/b").await, b"bbb", "target untouched");
    b.rename(&p("c_mv/a"), &p("c_mv/c"), RenameMode::NoReplace)
        .await
        .expect("rename");
    assert_eq!(get(b, "c_mv/c").await, b"aaa");
    assert_eq!(
        b.stat(&p("c_mv/a")).await.err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    if b.capabilities().rename_replace {
        b.rename(&p("c_mv/c"), &p("c_mv/b"), RenameMode::Replace)
            .await
            .expect("rename replace");
        assert_eq!(get(b, "c_mv/b").await, b"aaa");
    }
    b.mkdir(&p("c_mv/d")).await.expect("mkdir d");
    put(b, "c_mv/d/inner", b"i").await;
    b.rename(&p("c_mv/d"), &p("c_mv/e"), RenameMode::NoReplace)
        .await
        .expect("rename folder");
    assert_eq!(get(b, "c_mv/e/inner").await, b"i");
    let err = b
        .rename(&p("c_mv/missing"), &p("c_mv/x"), RenameMode::NoReplace)
        .await
        .expect_err("rename missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Modification times set are read back (to the second).
pub async fn modification_time(b: &dyn Backend) {
    if !b.capabilities().set_modified {
        return;
    }
    b.mkdir(&p("c_mtime")).await.expect("mkdir");
    put(b, "c_mtime/f", b"x").await;
    let when = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    b.set_modified(&p("c_mtime/f"), when)
        .await
        .expect("set mtime");
    let got = b
        .stat(&p("c_mtime/f"))
        .await
        .expect("stat")
        .modified
        .expect("has mtime");
    assert_eq!(
        got.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok(),
        Some(1_500_000_000)
    );
    let now = b.stat(&p("c_mtime")).await.expect("stat dir").modified;
    assert!(now.is_none_or(|t| t <= SystemTime::now() + Duration::from_secs(60)));
}

/// Truncation shortens and extends.
pub async fn truncation(b: &dyn Backend) {
    if !b.capabilities().truncate {
        return;
    }
    b.mkdir(&p("c_trunc")).await.expect("mkdir");
    put(b, "c_trunc/f", b"0123456789").await;
    b.truncate(&p("c_trunc/f"), 4).await.expect("truncate");
    assert_eq!(get(b, "c_trunc/f").await, b"0123");
    b.truncate(&p("c_trunc/f"), 6).await.expect("extend");
    assert_eq!(get(b, "c_trunc/f").await, b"0123\0\0");
}

/// A resumed write continues the file at an offset.
pub async fn resume(b: &dyn Backend) {
    if !b.capabilities().resume_write {
        return;
    }
    b.mkdir(&p("c_resume")).await.expect("mkdir");
    put(b, "c_resume/f", b"hello ").await;
    let mut w = b
        .open_write(&p("c_resume/f"), WriteMode::Resume { offset: 6 })
        .await
        .expect("resume");
    assert_eq!(w.position(), 6);
    w.write(Bytes::from_static(b"world")).await.expect("write");
    w.close().await.expect("close");
    assert_eq!(get(b, "c_resume/f").await, b"hello world");
}

/// Space figures are plausible.
pub async fn space(b: &dyn Backend) {
    if !b.capabilities().space_info {
        return;
    }
    let s = b.space(&StoragePath::root()).await.expect("space");
    assert!(s.block_size > 0 && s.blocks >= s.blocks_free, "{s:?}");
}

/// A checksum, where the backend gives one, is that of the file's current
/// bytes; a missing file is `NotFound` and a folder `IsADirectory` (or no
/// checksum, from a backend that gives none without asking).
pub async fn checksums(b: &dyn Backend) {
    b.mkdir(&p("c_sum")).await.expect("mkdir c_sum");
    put(b, "c_sum/f", b"hello\n").await;
    let hello = [
        (HashKind::Md5, "b1946ac92492d2347c6235b4d2611184"),
        (HashKind::Crc32, "363a3020"),
    ];
    for (kind, want) in hello {
        match b.checksum(&p("c_sum/f"), kind).await {
            Ok(Some(sum)) => assert_eq!(sum, want, "{kind:?} of c_sum/f"),
            Ok(None) => {}
            Err(e) => panic!("checksum {kind:?} of c_sum/f: {e}"),
        }
        for (path, want) in [
            ("c_sum/nope", ErrorKind::NotFound),
            ("c_sum", ErrorKind::IsADirectory),
        ] {
            match b.checksum(&p(path), kind).await {
                Ok(None) => {}
                Ok(Some(sum)) => panic!("checksum {kind:?} of {path}: got {sum}"),
                Err(e) => assert_eq!(e.kind(), want, "checksum {kind:?} of {path}: {e}"),
            }
        }
    }
    let data = pattern(200_000);
    put(b, "c_sum/f", &data).await;
    for kind in HashKind::ALL {
        match b.checksum(&p("c_sum/f"), kind).await {
            Ok(Some(sum)) => assert_eq!(
                sum,
                crate::hash::of_bytes(kind, &data),
                "{kind:?} of c_sum/f after it was replaced"
            ),
            Ok(None) => {}
            Err(e) => panic!("checksum {kind:?} of c_sum/f: {e}"),
        }
    }
}
