//! The SFTP packet loop and request dispatcher (`gateway::ssh::sftp::serve`),
//! over the local backend on a fresh temporary folder, as `ssh.rs` sets a
//! session up: the user's home is a subtree of the storage, `/mnt` a mount
//! on a second storage, and `/ro` a folder the user may only list and read.
//!
//! Input: one mode byte, then the bytes a client sends on the SFTP channel
//! (length-prefixed packets, starting with INIT in the seeds), written
//! through a small in-memory pipe, then end of input. Mode even: all at
//! once (requests run concurrently, up to 128); odd: lockstep, each
//! whole packet sent once the previous one has its reply (so OPEN, WRITE
//! "h0", CLOSE "h0" reach the writer), the rest as it comes.
//!
//! Checked: no panic and no hang (libFuzzer's -timeout); every reply is a
//! well-formed packet of a reply type, decoded to its last byte; one
//! reply per request, in request order and with its request id (a prefix
//! of them when the client broke the framing); REALPATH gives normal
//! absolute paths and READDIR plain names; nothing outside the home and
//! the mount's folder changed (the other user's files, the read-only
//! folder, the second storage's other folder, the temporary folder's
//! parent); no transfer is left counted once the session ended. The
//! folder is on /dev/shm when there is one (see `common/scratch.rs`).
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use backends::{Backend, LocalBackend, StoragePath};
use bytes::{Buf, Bytes};
use gateway::ssh::sftp::{serve, SessionContext, MAX_DATA_LEN, MAX_PACKET_LEN};
use gateway::core::transfers::ActiveTransfers;
use gateway::core::tree::{Mount, Tree, VirtualPath};
use libfuzzer_sys::fuzz_target;
use policy::{PathPermissions, Permission, PermissionSet, User};
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The files every run starts with (relative to the run's folder).
const FILES: &[(&str, &str)] = &[
    ("storage/users/alice/hello.txt", "hello, world\n"),
    ("storage/users/alice/ro/readonly.txt", "read only\n"),
    ("storage/users/bob/secret.txt", "bob's secret\n"),
    ("remote/share/remote.txt", "on the remote\n"),
    ("remote/other/canary.txt", "not mounted\n"),
    ("outside.txt", "outside every storage\n"),
];
const DIRS: &[&str] = &["storage/users/alice/sub"];
/// The user's home (relative to the run's folder).
const HOME: &str = "storage/users/alice";
/// Where the client may change things (relative to the run's folder).
const WRITABLE: &[&str] = &[HOME, "remote/share"];
/// Inside WRITABLE, but the permissions allow only List and Read.
const READ_ONLY: &str = "storage/users/alice/ro";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(4)
            .build()
            .expect("runtime")
    })
}

#[path = "common/scratch.rs"]
mod scratch;

/// The parent of every run's folder: it holds nothing else.
fn base() -> &'static Path {
    scratch::scratch()
}

/// Every path under `dir` (relative), with the content of the files the
/// client must not change (others may be huge sparse files: not read).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                assert!(kind.is_file(), "{rel:?} is neither a file nor a folder");
                let content = if writable(&rel) {
                    Vec::new()
                } else {
                    std::fs::read(&path).expect("read")
                };
                out.insert(rel, Some(content));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Whether the client may create, change or remove `path` (relative to
/// the run's folder). The home itself cannot be removed; the mount's
/// folder can (an empty `/mnt` may be removed like any folder).
fn writable(path: &Path) -> bool {
    WRITABLE.iter().any(|w| path.starts_with(w))
        && !path.starts_with(READ_ONLY)
        && path != Path::new(HOME)
}

/// The complete frames of the client's bytes, up to the first one the
/// server must refuse (and whether there was one).
fn frames(mut input: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    while input.len() >= 4 {
        let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
        if len == 0 || len > MAX_PACKET_LEN {
            return (out, true);
        }
        if input.len() < 4 + len {
            break;
        }
        out.push(&input[4..4 + len]);
        input = &input[4 + len..];
    }
    (out, false)
}

/// How many whole replies `output` holds.
fn complete_replies(mut output: &[u8]) -> usize {
    let mut n = 0;
    while output.len() >= 4 {
        let len = u32::from_be_bytes([output[0], output[1], output[2], output[3]]) as usize;
        if output.len() < 4 + len {
            break;
        }
        output = &output[4 + len..];
        n += 1;
    }
    n
}

fn request_id(frame: &[u8]) -> u32 {
    match frame.get(1..5) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn reply_id(p: &Packet) -> Option<u32> {
    Some(match p {
        Packet::Status(s) => s.id,
        Packet::Handle(h) => h.id,
        Packet::Data(d) => d.id,
        Packet::Name(n) => n.id,
        Packet::Attrs(a) => a.id,
        Packet::ExtendedReply(e) => e.id,
        Packet::Version(_) => return None,
        other => panic!("the server sent a request packet: {other:?}"),
    })
}

/// `FUZZ_DEBUG=1`: print every reply (to check what a seed does).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_READDIR: u8 = 12;
const SSH_FXP_REALPATH: u8 = 16;

fn check_replies(input: &[u8], output: &[u8]) {
    let (requests, broken) = frames(input);
    let mut out = output;
    let mut n = 0;
    while !out.is_empty() {
        assert!(out.len() >= 4, "truncated reply length");
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert!(
            (1..=MAX_DATA_LEN as usize + 1024).contains(&len),
            "reply of {len} bytes"
        );
        assert!(out.len() >= 4 + len, "truncated reply");
        let mut frame = Bytes::copy_from_slice(&out[4..4 + len]);
        out = &out[4 + len..];
        let packet = Packet::try_from(&mut frame)
            .unwrap_or_else(|e| panic!("reply {n} does not decode: {e}"));
        assert!(
            !frame.has_remaining(),
            "reply {n} has {} bytes after its packet {packet:?}",
            frame.remaining()
        );
        if debug() {
            eprintln!("reply {n}: {packet:?}");
        }
        let request = *requests
            .get(n)
            .unwrap_or_else(|| panic!("reply {n} to {} requests: {packet:?}", requests.len()));
        let kind = request.first().copied().unwrap_or(0);
        match reply_id(&packet) {
            None => assert_eq!(kind, SSH_FXP_INIT, "VERSION for a request of type {kind}"),
            Some(id) => assert!(
                id == request_id(request) || (kind == SSH_FXP_INIT && id == 0),
                "reply {n} has id {id}, its request {}: {packet:?}",
                request_id(request)
            ),
        }
        match &packet {
            Packet::Data(d) => assert!(d.data.len() <= MAX_DATA_LEN as usize),
            Packet::Handle(h) => assert!(!h.handle.is_empty() && h.handle.len() <= 256),
            Packet::Name(name) if kind == SSH_FXP_REALPATH => {
                assert_eq!(name.files.len(), 1, "{packet:?}");
                let p = &name.files[0].filename;
                assert_eq!(
                    VirtualPath::resolve(p)
                        .ok()
                        .as_ref()
                        .map(VirtualPath::as_str),
                    Some(p.as_str()),
                    "REALPATH gave a path that is not normal: {p:?}"
                );
            }
            Packet::Name(name) if kind == SSH_FXP_READDIR => {
                assert!(name.files.len() <= 128);
                for f in &name.files {
                    let p = f.filename.as_str();
                    assert!(
                        !p.is_empty() && p != "." && p != ".." && !p.contains(['/', '\0']),
                        "READDIR gave the name {p:?}"
                    );
                }
            }
            _ => {}
        }
        n += 1;
    }
    if !broken {
        assert_eq!(n, requests.len(), "requests without a reply");
    }
}

fn set_up(dir: &Path) {
    for (path, text) in FILES {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for d in DIRS {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

fn user() -> Arc<User> {
    let read_only: PermissionSet = [Permission::List, Permission::Read].into_iter().collect();
    Arc::new(User {
        name: "alice".into(),
        password_hash: None,
        authorized_keys: vec![],
        home: "users/alice".into(),
        permissions: PathPermissions::new([
            ("/".to_string(), PermissionSet::ALL),
            ("/ro".to_string(), read_only),
        ])
        .unwrap(),
        allowed_networks: vec![],
    })
}

async fn session(dir: &Path, input: &[u8], lockstep: bool) -> (Vec<u8>, ActiveTransfers) {
    let storage = LocalBackend::open(&dir.join("storage")).unwrap();
    let home = storage
        .subtree(&StoragePath::parse("users/alice").unwrap())
        .await
        .unwrap();
    let remote: Arc<dyn Backend> = Arc::new(LocalBackend::open(&dir.join("remote")).unwrap());
    let tree = Tree::with_mounts(
        Arc::new(home),
        vec![Mount {
            at: VirtualPath::resolve("/mnt").unwrap(),
            backend: remote,
            base: StoragePath::parse("share").unwrap(),
        }],
    );
    let transfers = ActiveTransfers::default();
    let ctx = SessionContext {
        user: user(),
        tree,
        peer: SocketAddr::from(([127, 0, 0, 1], 2222)),
        transfers: transfers.clone(),
        idle_timeout: std::time::Duration::from_secs(600),
        budget: gateway::ssh::sftp::Budget::DEFAULT,
        notices: Default::default(),
        connection: None,
    };
    let (client, server) = tokio::io::duplex(4096);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let (replies_tx, mut replies_rx) = tokio::sync::watch::channel(0usize);
    let mut output = Vec::new();
    tokio::join!(
        async {
            // The SSH layer drops the stream after the session: EOF for the reader.
            drop(serve(server, ctx).await);
        },
        async {
            let mut sent = 0;
            if lockstep {
                // One request at a time, each sent once the previous one
                // has its reply (as a client that waits for its handles).
                for (i, frame) in frames(input).0.iter().enumerate() {
                    let whole = &input[sent..sent + 4 + frame.len()];
                    if to_server.write_all(whole).await.is_err() {
                        break;
                    }
                    sent += whole.len();
                    if replies_rx.wait_for(|&n| n > i).await.is_err() {
                        break;
                    }
                }
            }
            let _ = to_server.write_all(&input[sent..]).await;
            let _ = to_server.shutdown().await;
        },
        async {
            let mut chunk = vec![0u8; 8192];
            loop {
                let n = from_server.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                output.extend_from_slice(&chunk[..n]);
                replies_tx.send_replace(complete_replies(&output));
            }
            drop(replies_tx);
        },
    );
    (output, transfers)
}

fuzz_target!(|data: &[u8]| {
    let dir = base().join("run");
    // Left by a run that failed (the process then ends anyway).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    set_up(&dir);
    let before = snapshot(&dir);

    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let (output, transfers) = runtime().block_on(session(&dir, input, mode & 1 == 1));
    check_replies(input, &output);
    assert_eq!(
        transfers.count(),
        0,
        "transfers left counted after the session"
    );

    let after = snapshot(&dir);
    for (path, content) in &after {
        if !writable(path) {
            assert_eq!(
                before.get(path),
                Some(content),
                "{path:?} was created or changed outside the user's folders"
            );
        }
    }
    for (path, content) in &before {
        if !writable(path) {
            assert_eq!(
                after.get(path),
                Some(content),
                "{path:?} was removed or changed"
            );
        }
    }
    let siblings: Vec<_> = std::fs::read_dir(base())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        siblings,
        ["run"],
        "something was created next to the run's folder"
    );
    std::fs::remove_dir_all(&dir).unwrap();
});
