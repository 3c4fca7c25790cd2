//! The backend against a scripted FTP server on loopback: stalls become
//! timeouts, refusals become the right error kinds, and connections that
//! broke are not reused.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{CertificateCheck, FtpBackend, FtpSettings, FtpTls};
use crate::dial::SourceAddresses;
use crate::pool::PoolSettings;
use crate::{Backend, ConnectFailure, ErrorKind, HashKind, StoragePath};

/// How the scripted server answers one command line ("" = the greeting);
/// `None` means it never answers.
type Script = fn(&str) -> Option<String>;

fn login(line: &str) -> Option<String> {
    login_offering(line, "211-Features:\r\n SIZE\r\n211 End\r\n")
}

/// [`login`] with `feat` as the FEAT reply.
fn login_offering(line: &str, feat: &str) -> Option<String> {
    let reply = match line.split(' ').next().unwrap_or("") {
        "" => "220 scripted\r\n",
        "USER" => "331 password please\r\n",
        "PASS" => "230 welcome\r\n",
        "FEAT" => feat,
        "TYPE" => "200 binary\r\n",
        "PWD" => "257 \"/home/x\" is current\r\n",
        "NOOP" => "200 ok\r\n",
        "QUIT" => "221 bye\r\n",
        _ => return None,
    };
    Some(reply.to_string())
}

/// Starts the server; returns its port.
async fn serve(script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut next = Some(String::new());
                while let Some(line) = next {
                    match script(&line) {
                        Some(reply) => {
                            if write.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                            if reply.starts_with("421") {
                                return;
                            }
                        }
                        None => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    }
                    next = lines.next_line().await.ok().flatten();
                }
            });
        }
    });
    port
}

fn backend(port: u16) -> FtpBackend {
    FtpBackend::new(FtpSettings {
        name: "scripted".into(),
        host: "127.0.0.1".into(),
        port,
        username: "x".into(),
        password: "y".into(),
        tls: FtpTls::Never,
        certificate: CertificateCheck::AllowAny,
        root: String::new(),
        sources: SourceAddresses::system(),
        connect_timeout: Duration::from_millis(400),
        io_timeout: Duration::from_millis(300),
        atomic_uploads: true,
        pool: PoolSettings {
            max: 2,
            wait: Duration::from_secs(5),
            idle: Duration::from_secs(30),
        },
    })
    .unwrap()
}

fn file() -> StoragePath {
    StoragePath::parse("f").unwrap()
}

#[tokio::test]
async fn a_silent_server_is_a_connect_timeout() {
    let port = serve(|_| None).await;
    let started = Instant::now();
    let err = backend(port).stat(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.connect_failure(), Some(ConnectFailure::Timeout));
}

#[tokio::test]
async fn a_stalled_command_is_a_timeout_and_drops_the_connection() {
    let port = serve(login).await;
    let b = backend(port);
    let err = b.stat(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.message().contains("no answer within"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.pool_stats().open, 0, "the stalled connection is not kept");
}

#[tokio::test]
async fn refusals_map_to_kinds() {
    let port = serve(|line| match line.split(' ').next().unwrap_or("") {
        "SIZE" => Some("550 No such file or directory\r\n".into()),
        "CWD" if line == "CWD /home/x" => Some("250 ok\r\n".into()),
        "CWD" => Some("550 No such file or directory\r\n".into()),
        "MKD" => Some("553 Permission denied\r\n".into()),
        "DELE" => Some("421 Service not available, closing\r\n".into()),
        _ => login(line),
    })
    .await;
    let b = backend(port);
    let err = b.stat(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = b.mkdir(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("553 Permission denied"), "{err}");
    let err = b.remove(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(err.is_temporary());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.pool_stats().open, 0, "a 421 connection is not kept");
    // A path with a line break never reaches the server as two commands.
    let err = b
        .stat(&StoragePath::parse("a\r\nDELE b").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidPath, "{err}");
}

#[tokio::test]
async fn a_refused_login_names_the_user() {
    let port = serve(|line| match line.split(' ').next().unwrap_or("") {
        "PASS" => Some("530 Login incorrect.\r\n".into()),
        _ => login(line),
    })
    .await;
    let err = backend(port).stat(&file()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains("authentication failed for user `x`"),
        "{err}"
    );
    assert_eq!(err.connect_failure(), Some(ConnectFailure::AuthFailed));
}

/// DELE lines the server of the test below received.
static DELETED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[tokio::test]
async fn remembered_partial_uploads_are_removed_through_the_next_connection() {
    let port = serve(|line| match line.split(' ').next().unwrap_or("") {
        "DELE" => {
            DELETED.lock().unwrap().push(line.to_string());
            Some("250 deleted\r\n".into())
        }
        "SIZE" => Some("550 No such file\r\n".into()),
        "CWD" => Some("250 ok\r\n".into()),
        _ => login(line),
    })
    .await;
    let b = backend(port);
    b.removals().remember("/home/x/big.bin", "test");
    b.removals().remember("/home/x/.gw-upload-1-f", "test");
    b.removals().remember("/home/x/written-again", "test");
    // A new upload (or rename) to a remembered path forgets it.
    b.removals().forget("/home/x/written-again").await;
    assert_eq!(b.pending_removals().len(), 2);
    assert!(b.stat(&StoragePath::root()).await.unwrap().is_dir());
    assert_eq!(
        *DELETED.lock().unwrap(),
        ["DELE /home/x/.gw-upload-1-f", "DELE /home/x/big.bin"]
    );
    assert!(b.pending_removals().is_empty());
    assert!(b.stat(&StoragePath::root()).await.unwrap().is_dir());
    assert_eq!(DELETED.lock().unwrap().len(), 2, "removed once only");
}

#[tokio::test]
async fn a_removal_through_a_connection_that_breaks_stays_remembered() {
    let port = serve(|line| match line.split(' ').next().unwrap_or("") {
        "DELE" => Some("421 Service not available, closing\r\n".into()),
        "SIZE" => Some("550 No such file\r\n".into()),
        "CWD" => Some("250 ok\r\n".into()),
        _ => login(line),
    })
    .await;
    let b = backend(port);
    b.removals().remember("/home/x/big.bin", "test");
    assert!(b.stat(&StoragePath::root()).await.unwrap().is_dir());
    assert_eq!(b.pending_removals(), ["/home/x/big.bin"]);
}

/// Hash commands the servers of the checksum tests below received, per test.
static HASH_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn logged(prefix: &str) -> Vec<String> {
    HASH_LOG
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

/// A server's answers about the files `f` (6 bytes), `d` (a folder),
/// `busy` (cannot be hashed now), `slow` (hashing never ends) and `missing`.
fn files(line: &str) -> Option<String> {
    let reply = match line {
        "SIZE /home/x/f" | "SIZE /home/x/busy" | "SIZE /home/x/slow" | "SIZE /home/x/a b" => {
            "213 6\r\n"
        }
        "SIZE /home/x/d" => "550 /home/x/d: not a plain file.\r\n",
        "CWD /home/x/d" => "250 ok\r\n",
        _ if line.starts_with("SIZE ") || line.starts_with("CWD ") => {
            "550 No such file or directory\r\n"
        }
        _ => return None,
    };
    Some(reply.to_string())
}

#[tokio::test]
async fn checksums_from_hash() {
    let port = serve(|line| {
        if line.starts_with("OPTS HASH") || line.starts_with("HASH") {
            HASH_LOG.lock().unwrap().push(format!("hash-test {line}"));
        }
        let reply = match line {
            "OPTS HASH MD5" => "200 MD5\r\n",
            "OPTS HASH CRC32" => "200 CRC32\r\n",
            "HASH /home/x/f" => "213 MD5 0-6 B1946AC92492D2347C6235B4D2611184 /home/x/f\r\n",
            "HASH /home/x/busy" => "450 File busy, try later\r\n",
            "HASH /home/x/slow" => return None,
            _ => {
                return files(line).or_else(|| {
                    login_offering(
                        line,
                        "211-Features:\r\n SIZE\r\n HASH SHA-1*;MD5;CRC32\r\n211 End\r\n",
                    )
                })
            }
        };
        Some(reply.to_string())
    })
    .await;
    let b = backend(port);
    let p = |s: &str| StoragePath::parse(s).unwrap();
    for _ in 0..2 {
        assert_eq!(
            b.checksum(&p("f"), HashKind::Md5).await.unwrap().as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184")
        );
    }
    assert_eq!(
        logged("hash-test OPTS"),
        ["hash-test OPTS HASH MD5"],
        "MD5 is selected once per connection"
    );
    // The server answers for MD5 here whatever is selected: the reply
    // names another algorithm than the one asked for, so it is not taken.
    assert_eq!(b.checksum(&p("f"), HashKind::Crc32).await.unwrap(), None);
    assert_eq!(logged("hash-test OPTS").len(), 2);
    let err = b.checksum(&p("missing"), HashKind::Md5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = b.checksum(&p("d"), HashKind::Md5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IsADirectory, "{err}");
    assert_eq!(b.checksum(&p("busy"), HashKind::Md5).await.unwrap(), None);
    // Hashing that takes longer than the I/O timeout: no checksum, and the
    // connection (whose answer would come later, unasked) is not kept.
    let started = Instant::now();
    assert_eq!(b.checksum(&p("slow"), HashKind::Md5).await.unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.pool_stats().open, 0, "the stalled connection is not kept");
    assert_eq!(
        b.checksum(&p("f"), HashKind::Md5).await.unwrap().as_deref(),
        Some("b1946ac92492d2347c6235b4d2611184"),
        "a new connection selects MD5 again"
    );
}

#[tokio::test]
async fn checksums_from_xmd5_and_xcrc() {
    let port = serve(|line| {
        if line.starts_with('X') {
            HASH_LOG.lock().unwrap().push(format!("x-test {line}"));
        }
        let reply = match line {
            "XMD5 /home/x/f" => "250 B1946AC92492D2347C6235B4D2611184\r\n",
            "XCRC /home/x/f" => "250 363A3020\r\n",
            "XMD5 /home/x/busy" => "550 Permission denied\r\n",
            _ => {
                return files(line).or_else(|| {
                    login_offering(
                        line,
                        "211-Features:\r\n SIZE\r\n XCRC\r\n XMD5\r\n211 End\r\n",
                    )
                })
            }
        };
        Some(reply.to_string())
    })
    .await;
    let b = backend(port);
    let p = |s: &str| StoragePath::parse(s).unwrap();
    assert_eq!(
        b.checksum(&p("f"), HashKind::Md5).await.unwrap().as_deref(),
        Some("b1946ac92492d2347c6235b4d2611184")
    );
    assert_eq!(
        b.checksum(&p("f"), HashKind::Crc32)
            .await
            .unwrap()
            .as_deref(),
        Some("363a3020")
    );
    assert_eq!(b.checksum(&p("busy"), HashKind::Md5).await.unwrap(), None);
    let err = b
        .checksum(&p("missing"), HashKind::Crc32)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // XMD5 may read a blank as the end of the name: not asked at all.
    assert_eq!(b.checksum(&p("a b"), HashKind::Md5).await.unwrap(), None);
    assert_eq!(
        logged("x-test"),
        [
            "x-test XMD5 /home/x/f",
            "x-test XCRC /home/x/f",
            "x-test XMD5 /home/x/busy"
        ]
    );
}

#[tokio::test]
async fn no_checksums_without_hash_commands() {
    let port = serve(|line| match line.split(' ').next().unwrap_or("") {
        "HASH" | "XMD5" | "XCRC" | "OPTS" => {
            HASH_LOG.lock().unwrap().push(format!("none-test {line}"));
            Some("500 Unknown command\r\n".into())
        }
        _ => files(line).or_else(|| login(line)),
    })
    .await;
    let b = backend(port);
    let p = |s: &str| StoragePath::parse(s).unwrap();
    for kind in HashKind::ALL {
        assert_eq!(b.checksum(&p("f"), kind).await.unwrap(), None, "{kind:?}");
        // Once FEAT is known, not even the file is looked at.
        assert_eq!(b.checksum(&p("missing"), kind).await.unwrap(), None);
    }
    assert!(logged("none-test").is_empty(), "{:?}", logged("none-test"));
}
