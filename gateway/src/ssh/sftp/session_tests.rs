//! Session-level tests of the packet loop over an in-memory stream.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use backends::{
    Backend, Capabilities, EntryKind, FileReader, FileWriter, ListStream, Metadata, RenameMode,
    Result, StoragePath, WriteMode,
};
use bytes::Bytes;
use policy::{PathPermissions, User};
use russh_sftp::protocol::{FileAttributes, Init, Open, OpenFlags, Packet, Read, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Barrier;

use super::{serve, SessionContext};
use crate::core::transfers::ActiveTransfers;
use crate::core::tree::Tree;

/// A backend whose reads only complete once `n` of them are in flight at
/// the same time: a session that serves requests one by one deadlocks.
#[derive(Debug)]
struct RendezvousBackend {
    barrier: Arc<Barrier>,
}

struct RendezvousReader {
    barrier: Arc<Barrier>,
}

#[async_trait]
impl FileReader for RendezvousReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.barrier.wait().await;
        Ok(Bytes::from(vec![(offset / 1000) as u8; len.min(1000)]))
    }
    async fn metadata(&self) -> Result<Metadata> {
        Ok(meta())
    }
}

fn meta() -> Metadata {
    Metadata {
        kind: EntryKind::File,
        size: 1 << 20,
        modified: None,
        mode: None,
    }
}

fn unused(path: &StoragePath) -> backends::BackendError {
    backends::backend::unsupported("test", path)
}

#[async_trait]
impl Backend for RendezvousBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_modified: false,
            truncate: false,
            resume_write: false,
            rename_replace: false,
            space_info: false,
            empty_dirs: true,
            atomic_replace: true,
        }
    }
    async fn stat(&self, _: &StoragePath) -> Result<Metadata> {
        Ok(meta())
    }
    async fn list(&self, p: &StoragePath) -> Result<ListStream> {
        Err(unused(p))
    }
    async fn open_read(&self, _: &StoragePath) -> Result<Box<dyn FileReader>> {
        Ok(Box::new(RendezvousReader {
            barrier: self.barrier.clone(),
        }))
    }
    async fn open_write(&self, p: &StoragePath, _: WriteMode) -> Result<Box<dyn FileWriter>> {
        Err(unused(p))
    }
    async fn mkdir(&self, p: &StoragePath) -> Result<()> {
        Err(unused(p))
    }
    async fn remove(&self, p: &StoragePath) -> Result<()> {
        Err(unused(p))
    }
    async fn rmdir(&self, p: &StoragePath) -> Result<()> {
        Err(unused(p))
    }
    async fn rename(&self, p: &StoragePath, _: &StoragePath, _: RenameMode) -> Result<()> {
        Err(unused(p))
    }
}

fn start(backend: Arc<dyn Backend>) -> DuplexStream {
    start_with(backend, 1 << 20, ActiveTransfers::default()).0
}

/// A session over an in-memory pipe of `pipe` bytes each way (a small
/// pipe is a client that stops adjusting its window once it is full);
/// returns the client's end and the session's task.
fn start_with(
    backend: Arc<dyn Backend>,
    pipe: usize,
    transfers: ActiveTransfers,
) -> (DuplexStream, tokio::task::JoinHandle<&'static str>) {
    let (client, server) = tokio::io::duplex(pipe);
    let user = Arc::new(User {
        name: "t".into(),
        password_hash: None,
        authorized_keys: vec![],
        home: String::new(),
        permissions: PathPermissions::full(),
        allowed_networks: vec![],
    });
    let ctx = SessionContext {
        user,
        tree: Tree::single(backend, StoragePath::root()),
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        transfers,
        idle_timeout: std::time::Duration::from_secs(600),
        budget: super::Budget::DEFAULT,
        notices: Default::default(),
        connection: None,
        activity: Default::default(),
    };
    let task = tokio::spawn(async move {
        match serve(server, ctx).await {
            super::Ended::Finished(_) => "finished",
            super::Ended::ClientGone => "client gone",
            super::Ended::Stalled => "stalled",
            super::Ended::ProtocolError(_) => "protocol error",
        }
    });
    (client, task)
}

async fn send(client: &mut DuplexStream, packet: Packet) {
    let bytes = Bytes::try_from(packet).unwrap();
    client.write_all(&bytes).await.unwrap();
}

async fn receive(client: &mut DuplexStream) -> Packet {
    let len = client.read_u32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    client.read_exact(&mut buf).await.unwrap();
    Packet::try_from(&mut Bytes::from(buf)).unwrap()
}

async fn open(client: &mut DuplexStream, name: &str, flags: OpenFlags) -> String {
    send(
        client,
        Packet::Init(Init {
            version: 3,
            extensions: Default::default(),
        }),
    )
    .await;
    assert!(matches!(receive(client).await, Packet::Version(_)));
    send(
        client,
        Packet::Open(Open {
            id: 1,
            filename: name.into(),
            pflags: flags,
            attrs: FileAttributes::default(),
        }),
    )
    .await;
    match receive(client).await {
        Packet::Handle(h) => h.handle,
        other => panic!("open failed: {other:?}"),
    }
}

#[tokio::test]
async fn reads_of_one_session_run_concurrently() {
    const N: usize = 16;
    let backend = Arc::new(RendezvousBackend {
        barrier: Arc::new(Barrier::new(N)),
    });
    let mut client = start(backend);
    let handle = open(&mut client, "/f", OpenFlags::READ).await;
    for i in 0..N {
        let read = Read {
            id: 100 + i as u32,
            handle: handle.clone(),
            offset: i as u64 * 1000,
            len: 1000,
        };
        send(&mut client, Packet::Read(read)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..N {
        let reply = tokio::time::timeout(std::time::Duration::from_secs(10), receive(&mut client))
            .await
            .expect("reads were served one at a time (deadlock)");
        match reply {
            Packet::Data(d) => {
                assert_eq!(
                    d.data[0] as u32,
                    d.id - 100,
                    "reply carries its own offset's data"
                );
                seen.push(d.id);
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }

    assert_eq!(
        seen,
        (100..100 + N as u32).collect::<Vec<_>>(),
        "replies in request order"
    );
}

#[tokio::test]
async fn out_of_order_writes_land_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
    let mut client = start(backend);
    let handle = open(
        &mut client,
        "/up.bin",
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
    )
    .await;
    let chunk = |i: u64| vec![i as u8; 4096];
    // Offsets sent in a scrambled order; the file must still be in order.
    let order = [3u64, 0, 2, 1, 7, 5, 4, 6];
    for (n, i) in order.iter().enumerate() {
        let write = Write {
            id: 10 + n as u32,
            handle: handle.clone(),
            offset: i * 4096,
            data: chunk(*i),
        };
        send(&mut client, Packet::Write(write)).await;
    }
    for _ in 0..order.len() {
        match receive(&mut client).await {
            Packet::Status(s) => {
                assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Ok, "{s:?}")
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    send(
        &mut client,
        Packet::Close(russh_sftp::protocol::Close { id: 99, handle }),
    )
    .await;
    match receive(&mut client).await {
        Packet::Status(s) => {
            assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Ok, "{s:?}")
        }
        other => panic!("unexpected reply {other:?}"),
    }
    let written = std::fs::read(dir.path().join("up.bin")).unwrap();
    let expected: Vec<u8> = (0..8).flat_map(chunk).collect();
    assert!(written == expected, "file content is not in offset order");
}

#[tokio::test]
async fn a_gap_at_close_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
    let mut client = start(backend);
    let handle = open(
        &mut client,
        "/gap.bin",
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
    )
    .await;
    let write = Write {
        id: 5,
        handle: handle.clone(),
        offset: 4096,
        data: vec![1; 10],
    };
    send(&mut client, Packet::Write(write)).await;
    assert!(matches!(receive(&mut client).await, Packet::Status(_)));
    send(
        &mut client,
        Packet::Close(russh_sftp::protocol::Close { id: 6, handle }),
    )
    .await;
    match receive(&mut client).await {
        Packet::Status(s) => {
            assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Failure);
            assert!(
                s.error_message.contains("incomplete"),
                "{}",
                s.error_message
            );
        }
        other => panic!("unexpected reply {other:?}"),
    }
    assert!(!dir.path().join("gap.bin").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file left"
    );
}

/// A WRITE far beyond the end (10 GiB ahead) is refused at once with a
/// reason, and so is the close: nothing is saved.
#[tokio::test]
async fn a_write_far_beyond_the_end_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
    let mut client = start(backend);
    let handle = open(
        &mut client,
        "/far.bin",
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
    )
    .await;
    let write = |id, offset| Write {
        id,
        handle: handle.clone(),
        offset,
        data: vec![1; 10],
    };
    send(&mut client, Packet::Write(write(5, 0))).await;
    match receive(&mut client).await {
        Packet::Status(s) => assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Ok),
        other => panic!("unexpected reply {other:?}"),
    }
    // Within the hold-back window: held, answered OK.
    send(&mut client, Packet::Write(write(6, 1 << 20))).await;
    match receive(&mut client).await {
        Packet::Status(s) => assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Ok),
        other => panic!("unexpected reply {other:?}"),
    }
    send(&mut client, Packet::Write(write(7, 10 << 30))).await;
    match receive(&mut client).await {
        Packet::Status(s) => {
            assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Failure);
            assert!(
                s.error_message.contains("beyond the data written so far")
                    && s.error_message.contains("cannot have holes"),
                "{}",
                s.error_message
            );
        }
        other => panic!("unexpected reply {other:?}"),
    }
    send(
        &mut client,
        Packet::Close(russh_sftp::protocol::Close {
            id: 8,
            handle: handle.clone(),
        }),
    )
    .await;
    match receive(&mut client).await {
        Packet::Status(s) => {
            assert_eq!(s.status_code, russh_sftp::protocol::StatusCode::Failure);
        }
        other => panic!("unexpected reply {other:?}"),
    }
    assert!(!dir.path().join("far.bin").exists());
}

/// A local backend holding `/big.bin` of `len` bytes whose every 4-byte
/// word is its own offset, so any reply can be checked on its own.
fn local_with_big_file(len: usize) -> (tempfile::TempDir, Arc<dyn Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..len / 4)
        .flat_map(|i| (i as u32 * 4).to_be_bytes())
        .collect();
    std::fs::write(dir.path().join("big.bin"), data).unwrap();
    let backend = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
    (dir, backend)
}

fn read_request(handle: &str, id: u32, offset: u64, len: u32) -> Bytes {
    Bytes::try_from(Packet::Read(Read {
        id,
        handle: handle.to_string(),
        offset,
        len,
    }))
    .unwrap()
}

/// 10,000 reads sent at once by a client that reads nothing back until it
/// has sent them all (its window, the 64 KiB pipe, is full long before):
/// the session must keep reading requests while its replies wait, then
/// serve every one in order once the client reads.
#[tokio::test]
async fn ten_thousand_reads_from_a_client_that_stops_reading_then_resumes() {
    const READS: u32 = 10_000;
    const LEN: u32 = 32 * 1024;
    let (_dir, backend) = local_with_big_file(16 << 20);
    let (mut client, session) = start_with(backend, 64 * 1024, ActiveTransfers::default());
    let handle = open(&mut client, "/big.bin", OpenFlags::READ).await;
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let mut requests = Vec::new();
    for i in 0..READS {
        // Offsets wrap around the file: every read is a full one.
        let offset = (i as u64 * LEN as u64) % (16 << 20);
        requests.extend_from_slice(&read_request(&handle, 1000 + i, offset, LEN));
    }
    // Before the fix the session stopped reading at 128 requests in flight
    // while their replies waited for this client: this write never ended.
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        to_server.write_all(&requests),
    )
    .await
    .expect("the session stopped reading requests while its replies waited")
    .unwrap();
    for i in 0..READS {
        let len = tokio::time::timeout(std::time::Duration::from_secs(20), from_server.read_u32())
            .await
            .expect("a reply never came")
            .unwrap();
        let mut buf = vec![0u8; len as usize];
        from_server.read_exact(&mut buf).await.unwrap();
        match Packet::try_from(&mut Bytes::from(buf)).unwrap() {
            Packet::Data(d) => {
                assert_eq!(d.id, 1000 + i, "replies in request order");
                assert_eq!(d.data.len(), LEN as usize);
                let offset = (i as u64 * LEN as u64) % (16 << 20);
                assert_eq!(&d.data[..4], &(offset as u32).to_be_bytes(), "read {i}");
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    drop(to_server);
    drop(from_server);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), session)
        .await
        .expect("the session did not end after the client left")
        .unwrap();
    assert_eq!(ended, "finished");
}

/// A client that disconnects with 500 reads and an unfinished upload in
/// flight: the session ends within the grace period, every handle is
/// dropped (no transfer left counted) and the upload is not published.
#[tokio::test]
async fn a_client_that_leaves_with_500_requests_in_flight_frees_everything() {
    let (dir, backend) = local_with_big_file(16 << 20);
    let transfers = ActiveTransfers::default();
    let (mut client, session) = start_with(backend, 64 * 1024, transfers.clone());
    let read = open(&mut client, "/big.bin", OpenFlags::READ).await;
    send(
        &mut client,
        Packet::Open(Open {
            id: 2,
            filename: "/partial.bin".into(),
            pflags: OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            attrs: FileAttributes::default(),
        }),
    )
    .await;
    let write = match receive(&mut client).await {
        Packet::Handle(h) => h.handle,
        other => panic!("open for writing failed: {other:?}"),
    };
    send(
        &mut client,
        Packet::Write(Write {
            id: 3,
            handle: write,
            offset: 0,
            data: vec![7; 4096],
        }),
    )
    .await;
    assert_eq!(transfers.count(), 2);
    let mut requests = Vec::new();
    for i in 0..500u32 {
        requests.extend_from_slice(&read_request(&read, 10 + i, i as u64 * 32768, 32768));
    }
    client.write_all(&requests).await.unwrap();
    drop(client);
    let started = std::time::Instant::now();
    tokio::time::timeout(
        super::EOF_GRACE + std::time::Duration::from_secs(5),
        session,
    )
    .await
    .expect("the session outlived its client")
    .unwrap();
    assert!(started.elapsed() <= super::EOF_GRACE + std::time::Duration::from_secs(2));
    assert_eq!(transfers.count(), 0, "handles left open");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["big.bin".to_string()],
        "an upload was published or left behind"
    );
}

/// Writes sent far faster than the storage takes them keep the session's
/// queue of unstarted requests bounded: the session stops reading at its
/// input limit and resumes, and the file arrives whole.
#[tokio::test]
async fn a_flood_of_writes_is_taken_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(backends::LocalBackend::open(dir.path()).unwrap());
    let (mut client, session) = start_with(backend, 256 * 1024, ActiveTransfers::default());
    let handle = open(
        &mut client,
        "/flood.bin",
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
    )
    .await;
    let (mut from_server, mut to_server) = tokio::io::split(client);
    const CHUNK: usize = 255 * 1024;
    const WRITES: usize = 256; // 64 MiB
    let reader = tokio::spawn(async move {
        for i in 0..WRITES {
            let len = from_server.read_u32().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            from_server.read_exact(&mut buf).await.unwrap();
            match Packet::try_from(&mut Bytes::from(buf)).unwrap() {
                Packet::Status(s) => assert_eq!(
                    s.status_code,
                    russh_sftp::protocol::StatusCode::Ok,
                    "write {i}: {s:?}"
                ),
                other => panic!("unexpected reply {other:?}"),
            }
        }
        from_server
    });
    for i in 0..WRITES {
        let packet = Bytes::try_from(Packet::Write(Write {
            id: 100 + i as u32,
            handle: handle.clone(),
            offset: (i * CHUNK) as u64,
            data: vec![i as u8; CHUNK],
        }))
        .unwrap();
        to_server.write_all(&packet).await.unwrap();
    }
    let mut from_server = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("writes were not all answered")
        .unwrap();
    let close =
        Bytes::try_from(Packet::Close(russh_sftp::protocol::Close { id: 9, handle })).unwrap();
    to_server.write_all(&close).await.unwrap();
    let len = from_server.read_u32().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    from_server.read_exact(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::try_from(&mut Bytes::from(buf)).unwrap(),
        Packet::Status(s) if s.status_code == russh_sftp::protocol::StatusCode::Ok
    ));
    let written = std::fs::read(dir.path().join("flood.bin")).unwrap();
    assert_eq!(written.len(), WRITES * CHUNK);
    assert!(written
        .chunks(CHUNK)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    drop(to_server);
    drop(from_server);
    assert_eq!(session.await.unwrap(), "finished");
}
