//! `Backend::checksum` against real servers, the backends built directly
//! (no gateway): OpenSSH's sshd runs `md5sum` over an exec channel (and
//! an SFTP-only account or a server without `md5sum` gives none, once
//! and for all); S3 servers give a single-part object's MD5 as its ETag
//! (a multipart upload's ETag is not one) and a stored CRC-32 when the
//! object was uploaded with one; vsftpd and pure-ftpd offer no hash
//! command at all, so they give none.

use std::time::{Duration, Instant};

use backends::ftp::FtpBackend;
use backends::hash::of_bytes;
use backends::s3::{S3Backend, MIN_PART_SIZE};
use backends::sftp::SftpBackend;
use backends::{Backend, ErrorKind, HashKind};
use e2e::direct::{pattern, put, runtime, storage_path as p};
use e2e::ftpd::{FtpServer, FtpServerOptions};
use e2e::s3d::{encode_key, xml_values, S3Server, S3ServerKind, BUCKET};
use e2e::sshd::{Sshd, SshdOptions};

const MD5_HELLO: &str = "b1946ac92492d2347c6235b4d2611184";

async fn sum(b: &dyn Backend, path: &str, kind: HashKind) -> Option<String> {
    b.checksum(&p(path), kind)
        .await
        .unwrap_or_else(|e| panic!("checksum {kind:?} of {path}: {e}"))
}

async fn sum_err(b: &dyn Backend, path: &str, kind: HashKind) -> ErrorKind {
    match b.checksum(&p(path), kind).await {
        Ok(s) => panic!("checksum {kind:?} of {path}: expected an error, got {s:?}"),
        Err(e) => e.kind(),
    }
}

// ---------------------------------------------------------------------------
// SFTP
// ---------------------------------------------------------------------------

fn sftp_backend(sshd: &Sshd, root: &str) -> SftpBackend {
    SftpBackend::new(sshd.backend_settings("sums", root))
}

/// An sshd with `extra_config` added to its config, and a fresh folder on
/// it (the root for [`sftp_backend`]).
fn sshd_with(extra_config: &str) -> (Sshd, String) {
    let sshd = Sshd::start(SshdOptions {
        extra_config: vec![extra_config.into()],
        ..SshdOptions::default()
    })
    .unwrap();
    let root = sshd.remote_dir("sums").unwrap().display().to_string();
    (sshd, root)
}

/// Names the login shell must get exactly: quotes, `$(...)`, backticks,
/// a backslash, a leading dash, globs and non-ASCII letters.
const AWKWARD_NAMES: [&str; 4] = [
    "it's a \"test\" $(id) `id` ; * ?.txt",
    "back\\slash\\",
    "-n",
    "ünï cødé 文件",
];

#[test]
fn sftp_md5_comes_from_md5sum_on_the_server() {
    let sshd = Sshd::start_default().unwrap();
    let root = sshd.remote_dir("sums").unwrap();
    let big = pattern(3 * (1 << 20) + 123, 7);
    runtime().block_on(async {
        let b = sftp_backend(&sshd, &root.display().to_string());
        put(&b, "hello", b"hello\n").await;
        put(&b, "empty", b"").await;
        b.mkdir(&p("dir")).await.unwrap();
        put(&b, "dir/big.bin", &big).await;
        for name in AWKWARD_NAMES {
            put(&b, &format!("dir/{name}"), name.as_bytes()).await;
        }
        assert_eq!(
            sum(&b, "hello", HashKind::Md5).await.as_deref(),
            Some(MD5_HELLO)
        );
        assert_eq!(
            sum(&b, "empty", HashKind::Md5).await.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            sum(&b, "dir/big.bin", HashKind::Md5).await,
            Some(of_bytes(HashKind::Md5, &big))
        );
        for name in AWKWARD_NAMES {
            assert_eq!(
                sum(&b, &format!("dir/{name}"), HashKind::Md5).await,
                Some(of_bytes(HashKind::Md5, name.as_bytes())),
                "{name}"
            );
        }
        // No command computes CRC-32 everywhere (cksum's CRC is another).
        assert_eq!(sum(&b, "hello", HashKind::Crc32).await, None);
        assert_eq!(
            sum_err(&b, "missing", HashKind::Md5).await,
            ErrorKind::NotFound
        );
        assert_eq!(
            sum_err(&b, "dir", HashKind::Md5).await,
            ErrorKind::IsADirectory
        );
        assert!(!b.exec_checksums_unavailable());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = b.pool_stats();
        assert_eq!(stats.open, stats.idle, "connections still out: {stats:?}");

        // A root relative to the login folder (/var/lib/gwtest): the login
        // shell is given the absolute path SFTP means.
        let relative = format!("../../..{}", root.display());
        let b = sftp_backend(&sshd, &relative);
        assert_eq!(b.stat(&p("hello")).await.unwrap().size, 6);
        assert_eq!(
            sum(&b, "hello", HashKind::Md5).await.as_deref(),
            Some(MD5_HELLO)
        );
        assert_eq!(
            sum(&b, "dir/back\\slash\\", HashKind::Md5).await,
            Some(of_bytes(HashKind::Md5, b"back\\slash\\"))
        );
    });
}

/// Checks `b` gives no MD5, remembers so (the next call answers at once)
/// and still works for SFTP.
async fn no_md5_and_remembered(b: &SftpBackend) {
    put(b, "hello", b"hello\n").await;
    assert!(!b.exec_checksums_unavailable());
    assert_eq!(sum(b, "hello", HashKind::Md5).await, None);
    assert!(b.exec_checksums_unavailable());
    let started = Instant::now();
    assert_eq!(sum(b, "hello", HashKind::Md5).await, None);
    // Not even a missing file is looked at any more.
    assert_eq!(sum(b, "missing", HashKind::Md5).await, None);
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(b.stat(&p("hello")).await.unwrap().size, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = b.pool_stats();
    assert_eq!(stats.open, stats.idle, "connections still out: {stats:?}");
}

/// `ForceCommand internal-sftp`: the server accepts the command but runs
/// its SFTP server instead, which ends at once on the closed stdin.
#[test]
fn sftp_only_account_gives_no_md5() {
    let (sshd, root) = sshd_with("ForceCommand internal-sftp");
    runtime().block_on(async {
        let b = sftp_backend(&sshd, &root);
        let started = Instant::now();
        no_md5_and_remembered(&b).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    });
}

/// A server where the login shell finds no `md5sum` (exit 127).
#[test]
fn sftp_without_md5sum_gives_no_md5() {
    let (sshd, root) = sshd_with("SetEnv PATH=/nonexistent");
    runtime().block_on(async {
        let b = sftp_backend(&sshd, &root);
        no_md5_and_remembered(&b).await;
    });
}

// ---------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------

/// Uploads `data` as `key` in one part of a multipart upload, with curl:
/// its ETag is then `<md5 of the part's md5>-1`, no MD5 of the content.
fn put_one_part_upload(server: &S3Server, key: &str, data: &[u8]) {
    let path = format!("/{BUCKET}/{}", encode_key(key));
    let r = server
        .request("POST", &format!("{path}?uploads="), Some(b""))
        .unwrap();
    assert!(r.ok(), "CreateMultipartUpload: {r}");
    let id = xml_values(&r.text(), "UploadId")
        .pop()
        .expect("an UploadId");
    let r = server
        .request(
            "PUT",
            &format!("{path}?partNumber=1&uploadId={id}"),
            Some(data),
        )
        .unwrap();
    assert!(r.ok(), "UploadPart: {r}");
    let body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>\
         <ETag>\"{}\"</ETag></Part></CompleteMultipartUpload>",
        of_bytes(HashKind::Md5, data)
    );
    let r = server
        .request(
            "POST",
            &format!("{path}?uploadId={id}"),
            Some(body.as_bytes()),
        )
        .unwrap();
    assert!(r.ok(), "CompleteMultipartUpload: {r}");
}

fn s3_checksums(kind: S3ServerKind) {
    let server = S3Server::start(kind).unwrap();
    let small = pattern(100_000, 3);
    put_one_part_upload(&server, "dir/one-part.bin", b"hello\n");
    runtime().block_on(async {
        let b = S3Backend::new(server.backend_settings("sums")).unwrap();
        put(&b, "hello", b"hello\n").await;
        put(&b, "empty", b"").await;
        put(&b, "dir/small.bin", &small).await;
        assert_eq!(
            sum(&b, "hello", HashKind::Md5).await.as_deref(),
            Some(MD5_HELLO),
            "{kind:?}"
        );
        assert_eq!(
            sum(&b, "empty", HashKind::Md5).await.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e"),
            "{kind:?}"
        );
        assert_eq!(
            sum(&b, "dir/small.bin", HashKind::Md5).await,
            Some(of_bytes(HashKind::Md5, &small)),
            "{kind:?}"
        );
        assert_eq!(
            sum(&b, "dir/one-part.bin", HashKind::Md5).await,
            None,
            "{kind:?}: a multipart ETag is no MD5"
        );
        // This backend uploads without checksums: none is stored.
        assert_eq!(sum(&b, "hello", HashKind::Crc32).await, None, "{kind:?}");
        assert_eq!(
            sum_err(&b, "missing", HashKind::Md5).await,
            ErrorKind::NotFound,
            "{kind:?}"
        );
        assert_eq!(
            sum_err(&b, "dir", HashKind::Md5).await,
            ErrorKind::IsADirectory,
            "{kind:?}"
        );
        assert_eq!(
            sum_err(&b, "", HashKind::Crc32).await,
            ErrorKind::IsADirectory,
            "{kind:?}: the root"
        );
    });
    // An object another client uploaded with its CRC-32: the server keeps
    // it and tells it when asked (checksum mode).
    let reply = server
        .request_as(
            "PUT",
            &format!("/{BUCKET}/{}", encode_key("with-crc")),
            Some(b"hello\n"),
            server.access_key(),
            server.secret_key(),
            &[
                "x-amz-checksum-crc32: NjowIA==",
                "x-amz-sdk-checksum-algorithm: CRC32",
            ],
        )
        .unwrap();
    assert!(reply.ok(), "{kind:?}: {reply}");
    runtime().block_on(async {
        let b = S3Backend::new(server.backend_settings("sums")).unwrap();
        let crc = sum(&b, "with-crc", HashKind::Crc32).await;
        eprintln!("{kind:?}: CRC-32 of an object uploaded with one: {crc:?}");
        assert_eq!(crc.as_deref(), Some("363a3020"), "{kind:?}");
        assert_eq!(
            sum(&b, "with-crc", HashKind::Md5).await.as_deref(),
            Some(MD5_HELLO),
            "{kind:?}"
        );
    });
}

#[test]
fn s3_checksums_on_s3sfs() {
    s3_checksums(S3ServerKind::S3sFs);
}

/// A file larger than a part goes up as a multipart upload: no MD5. On
/// moto too, whose CompleteMultipartUpload answer (root element
/// `CompleteMultipartUploadResponse`) the SDK cannot read: the backend
/// checks the object with HEAD instead of failing the upload.
#[test]
fn s3_multipart_upload_has_no_md5() {
    for kind in [S3ServerKind::Moto, S3ServerKind::S3sFs] {
        s3_multipart_upload_has_no_md5_on(kind);
    }
}

fn s3_multipart_upload_has_no_md5_on(kind: S3ServerKind) {
    let server = S3Server::start(kind).unwrap();
    let data = pattern(2 * MIN_PART_SIZE + 1000, 5);
    runtime().block_on(async {
        let b = S3Backend::new(server.backend_settings("sums")).unwrap();
        put(&b, "multi.bin", &data).await;
        assert_eq!(
            b.stat(&p("multi.bin")).await.unwrap().size,
            data.len() as u64
        );
        for kind in HashKind::ALL {
            assert_eq!(sum(&b, "multi.bin", kind).await, None, "{kind:?}");
        }
    });
}

#[test]
fn s3_checksums_on_moto() {
    s3_checksums(S3ServerKind::Moto);
}

// ---------------------------------------------------------------------------
// FTP
// ---------------------------------------------------------------------------

fn ftp_backend(server: &FtpServer) -> FtpBackend {
    FtpBackend::new(server.backend_settings("sums")).unwrap()
}

/// Whatever FEAT offers decides: a hash command gives the right checksum,
/// none gives `None` (both servers here offer none).
fn ftp_checksums(options: FtpServerOptions, what: &str) {
    let server = FtpServer::start(options).unwrap();
    runtime().block_on(async {
        let b = ftp_backend(&server);
        put(&b, "hello", b"hello\n").await;
        let features = b.probe().await.unwrap().features;
        eprintln!("{what} FEAT: {features:?}");
        let offers = |words: &[&str]| {
            features.iter().any(|l| {
                let name = l.split_whitespace().next().unwrap_or("");
                words.iter().any(|w| name.eq_ignore_ascii_case(w))
            })
        };
        assert!(
            !offers(&["HASH", "XMD5", "XCRC"]),
            "{what} now offers a hash command: {features:?}; expect checksums from it"
        );
        for kind in HashKind::ALL {
            assert_eq!(sum(&b, "hello", kind).await, None, "{what}: {kind:?}");
        }
    });
}

#[test]
fn ftp_checksums_on_vsftpd() {
    ftp_checksums(FtpServerOptions::vsftpd(), "vsftpd");
}

#[test]
fn ftp_checksums_on_pure_ftpd() {
    ftp_checksums(FtpServerOptions::pure_ftpd(), "pure-ftpd");
}
