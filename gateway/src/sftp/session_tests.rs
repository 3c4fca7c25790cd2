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
use crate::transfers::ActiveTransfers;
use crate::tree::Tree;

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
    let (client, server) = tokio::io::duplex(1 << 20);
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
        transfers: ActiveTransfers::default(),
    };
    tokio::spawn(serve(server, ctx));
    client
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
