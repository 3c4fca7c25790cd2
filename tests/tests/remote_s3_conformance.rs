//! The S3 backend (`backends::s3`) against real S3-compatible servers:
//! the conformance suite (`backends::conformance`) on moto (which stores
//! `dir/` folder markers) and, except for the cases that need an empty
//! folder to be seen, on s3s-fs (which checks SigV4 but keeps a marker as
//! an empty directory that no listing shows); every connection must leave
//! from the dedicated address 127.0.0.2, and the server must see it so.
//! Also: streaming multipart uploads read back with ranged reads, dropped
//! and aborted uploads leave no multipart upload behind, wrong credentials
//! and a stopped server give clear errors, and `remote test`'s probe.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use backends::conformance;
use backends::dial::SourceAddresses;
use backends::s3::{S3Backend, S3Settings};
use backends::{Backend, ErrorKind, RenameMode, WriteMode};
use bytes::Bytes;
use e2e::direct::{pattern, put_in_pieces, runtime, storage_path as p};
use e2e::s3d::{S3Server, S3ServerKind};
use futures::TryStreamExt;

const SOURCE: &str = "127.0.0.2";
const MIB: usize = 1 << 20;

fn settings(server: &S3Server, root: &str) -> S3Settings {
    S3Settings {
        root: root.into(),
        sources: SourceAddresses::dedicated(vec![SOURCE.parse().unwrap()]),
        max_requests: 16,
        recursive_folder_rename: true,
        ..server.backend_settings("s3-conformance")
    }
}

fn only_source(peers: &BTreeSet<IpAddr>) {
    let want: BTreeSet<IpAddr> = [SOURCE.parse().unwrap()].into();
    assert_eq!(peers, &want, "the server saw connections from elsewhere");
}

/// Every case of the suite on moto, with the root a prefix of the bucket.
#[test]
fn conformance_on_moto() {
    let server = S3Server::start(S3ServerKind::Moto).unwrap();
    let sampler = server.connection_sampler();
    let rt = runtime();
    rt.block_on(async {
        let b = S3Backend::new(settings(&server, "/mount/root/")).unwrap();
        conformance::run_all(&b).await;
    });
    drop(rt);
    only_source(&sampler.finish().unwrap().peers);
    let keys = server.list_keys("").unwrap();
    assert!(
        keys.iter().all(|k| k.starts_with("mount/root/")),
        "keys outside the root: {keys:?}"
    );
    assert!(
        keys.contains(&"mount/root/c_list/sub/".to_string()),
        "{keys:?}"
    );
    assert_eq!(server.multipart_uploads_in_progress().unwrap(), 0);
}

/// The suite on s3s-fs, without the cases that need an empty folder to be
/// seen (`listing`, `folders`, `removal`): s3s-fs stores the marker `d/` as
/// an empty directory, which neither a listing nor HEAD reports.
#[test]
fn conformance_on_s3sfs() {
    let server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let sampler = server.connection_sampler();
    let rt = runtime();
    rt.block_on(async {
        let b = S3Backend::new(settings(&server, "")).unwrap();
        conformance::write_then_read(&b).await;
        conformance::replace_is_atomic(&b).await;
        conformance::exclusive_create(&b).await;
        conformance::stat_kinds(&b).await;
        conformance::renames(&b).await;
        conformance::modification_time(&b).await;
        conformance::truncation(&b).await;
        conformance::resume(&b).await;
        conformance::space(&b).await;
        // What the skipped cases check, where a folder has an entry.
        b.mkdir(&p("c_dirs")).await.unwrap();
        put_in_pieces(&b, "c_dirs/f", b"1", 1024).await;
        let err = b.mkdir(&p("c_dirs")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        let err = b.mkdir(&p("c_dirs/no/such")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = b.rmdir(&p("c_dirs")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty, "{err}");
        let err = b.remove(&p("c_dirs")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IsADirectory, "{err}");
        let err = b.list(&p("c_dirs/f")).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotADirectory, "{err}");
        let err = b.list(&p("c_dirs/none")).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    });
    drop(rt);
    only_source(&sampler.finish().unwrap().peers);
    assert_eq!(server.multipart_uploads_in_progress().unwrap(), 0);
}

/// A 40 MiB upload streams as a multipart upload (5 MiB parts) and reads
/// back identically, sequentially and at scattered offsets; the bytes on
/// the server's disk are the same.
#[test]
fn streaming_upload_and_ranged_reads() {
    let server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let data = pattern(40 * MIB + 12_345, 7);
    let rt = runtime();
    rt.block_on(async {
        let b = S3Backend::new(settings(&server, "big")).unwrap();
        put_in_pieces(&b, "f.bin", &data, 32 * 1024).await;
        let meta = b.stat(&p("f.bin")).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert!(meta.modified.is_some());
        let r = b.open_read(&p("f.bin")).await.unwrap();
        let mut got = Vec::with_capacity(data.len());
        loop {
            let chunk = r.read_at(got.len() as u64, 256 * 1024).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        assert!(got == data, "sequential read differs");
        for offset in [
            33 * MIB + 17,
            5,
            20 * MIB,
            20 * MIB + 100,
            40 * MIB,
            data.len() - 3,
        ] {
            let chunk = r.read_at(offset as u64, 100_000).await.unwrap();
            let end = (offset + 100_000).min(data.len());
            assert!(chunk[..] == data[offset..end], "read at {offset} differs");
        }
        assert!(r.read_at(data.len() as u64, 10).await.unwrap().is_empty());
    });
    let on_disk = std::fs::read(server.bucket_dir().unwrap().join("big/f.bin")).unwrap();
    assert!(on_disk == data, "the server stored other bytes");
    assert_eq!(server.multipart_uploads_in_progress().unwrap(), 0);
}

/// A writer dropped (or aborted) after some parts were sent leaves neither
/// the object nor a multipart upload; the old content stays.
#[test]
fn dropped_and_aborted_uploads_leave_nothing() {
    let server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let b = S3Backend::new(settings(&server, "")).unwrap();
        put_in_pieces(&b, "kept", b"old", 1024).await;
        for (name, drop_it) in [("dropped", true), ("aborted", false), ("kept", true)] {
            let mut w = b
                .open_write(&p(name), WriteMode::Replace { exclusive: false })
                .await
                .unwrap();
            for _ in 0..12 {
                w.write(Bytes::from(vec![1u8; MIB])).await.unwrap();
            }
            assert!(
                server.multipart_uploads_in_progress().unwrap() >= 1,
                "{name}: parts are sent before close"
            );
            if drop_it {
                drop(w);
            } else {
                w.abort().await.unwrap();
            }
            let mut left = usize::MAX;
            for _ in 0..100 {
                left = server.multipart_uploads_in_progress().unwrap();
                if left == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(left, 0, "{name}: a multipart upload was left behind");
        }
        let err = b.stat(&p("dropped")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = b.stat(&p("aborted")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let r = b.open_read(&p("kept")).await.unwrap();
        assert_eq!(&r.read_at(0, 10).await.unwrap()[..], b"old");
    });
    assert_eq!(server.object_keys().unwrap(), ["kept"]);
}

/// `remote test`: the probe reports the bucket and the dedicated address;
/// a wrong secret and an unknown bucket are clear errors naming the remote.
#[test]
fn probe_and_credential_errors() {
    let server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    server.put_object("inbox/a", b"x").unwrap();
    let rt = runtime();
    rt.block_on(async {
        let b = S3Backend::new(settings(&server, "inbox")).unwrap();
        let probe = b.probe().await.unwrap();
        assert_eq!(probe.endpoint, server.endpoint());
        assert_eq!(probe.region, "us-east-1");
        assert_eq!(probe.bucket, server.bucket());
        assert_eq!(probe.keys_seen, 1);
        assert_eq!(
            probe.local_addr.map(|a| a.ip().to_string()).as_deref(),
            Some(SOURCE)
        );

        let mut wrong = settings(&server, "inbox");
        wrong.secret_access_key = "not-the-secret".into();
        let err = S3Backend::new(wrong).unwrap().probe().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(
            err.message().starts_with("remote `s3-conformance`"),
            "{err}"
        );
        assert!(
            err.message().contains("secret access key does not match"),
            "{err}"
        );
        let err = S3Backend::new({
            let mut s = settings(&server, "inbox");
            s.secret_access_key = "not-the-secret".into();
            s
        })
        .unwrap()
        .stat(&p("a"))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "HEAD: {err}");

        let mut no_bucket = settings(&server, "");
        no_bucket.bucket = "no-such-bucket".into();
        let err = S3Backend::new(no_bucket)
            .unwrap()
            .probe()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            err.message()
                .contains("bucket `no-such-bucket` does not exist"),
            "{err}"
        );

        let mut unbindable = settings(&server, "");
        unbindable.sources = SourceAddresses::dedicated(vec!["192.0.2.10".parse().unwrap()]);
        let err = S3Backend::new(unbindable)
            .unwrap()
            .probe()
            .await
            .unwrap_err();
        assert!(
            err.message().contains("cannot bind source address"),
            "{err}"
        );
        assert!(err.message().contains("192.0.2.10"), "{err}");
    });
}

/// Renaming a folder is refused unless `recursive_folder_rename` is set.
#[test]
fn folder_rename_needs_the_setting() {
    let server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut s = settings(&server, "");
        s.recursive_folder_rename = false;
        let b = S3Backend::new(s).unwrap();
        b.mkdir(&p("d")).await.unwrap();
        put_in_pieces(&b, "d/f", b"1", 1024).await;
        let err = b
            .rename(&p("d"), &p("e"), RenameMode::NoReplace)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.message().contains("recursive_folder_rename"), "{err}");
        b.rename(&p("d/f"), &p("d/g"), RenameMode::NoReplace)
            .await
            .unwrap();
        let names: Vec<String> = b
            .list(&p("d"))
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["g"]);
    });
}

/// A stopped server is a connection error (not a hang), and the backend
/// works again once the server is back.
#[test]
fn a_stopped_server_fails_fast_and_recovers() {
    let mut server = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let rt = runtime();
    let b = rt.block_on(async {
        let b = S3Backend::new(settings(&server, "")).unwrap();
        put_in_pieces(&b, "f", b"data", 1024).await;
        b
    });
    server.stop().unwrap();
    rt.block_on(async {
        let started = std::time::Instant::now();
        let err = b.stat(&p("f")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
        assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    });
    server.start_again().unwrap();
    rt.block_on(async {
        assert_eq!(b.stat(&p("f")).await.unwrap().size, 4);
    });
}

/// Names with spaces, `+`, `%`, `&`, `=` and non-ASCII letters survive
/// uploads, listings, server-side copies (rename) and metadata updates;
/// case is kept.
#[test]
fn names_with_special_characters() {
    for kind in [S3ServerKind::S3sFs, S3ServerKind::Moto] {
        let server = S3Server::start(kind).unwrap();
        let rt = runtime();
        rt.block_on(async {
            let b = S3Backend::new(settings(&server, "")).unwrap();
            b.mkdir(&p("Dir é")).await.unwrap();
            put_in_pieces(&b, "Dir é/a b+c%d.TXT", b"content", 1024).await;
            b.rename(
                &p("Dir é/a b+c%d.TXT"),
                &p("Dir é/ü & =?#.bin"),
                RenameMode::NoReplace,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let when = std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
            b.set_modified(&p("Dir é/ü & =?#.bin"), when).await.unwrap();
            let meta = b.stat(&p("Dir é/ü & =?#.bin")).await.unwrap();
            assert_eq!((meta.size, meta.modified), (7, Some(when)), "{kind:?}");
            let names: Vec<String> = b
                .list(&p("Dir é"))
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .into_iter()
                .flatten()
                .map(|e| e.name)
                .collect();
            assert_eq!(names, ["ü & =?#.bin"], "{kind:?}");
            let err = b.stat(&p("dir é/ü & =?#.bin")).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{kind:?}: case is kept");
        });
    }
}
