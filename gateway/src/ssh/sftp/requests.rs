//! The SFTP requests: each one resolves its path once, checks the user's
//! permission, calls the storage, and writes one audit line.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use backends::{EntryKind, RenameMode, WriteMode};
use bytes::{Buf, Bytes};
use futures::StreamExt;
use policy::Permission;
use russh_sftp::extensions::{LimitsExtension, Statvfs, StatvfsExtension};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, FileAttributes, Handle as HandleReply, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};

use super::attrs::{attributes, listing_entry, system_time};
use super::error::{remote_status, to_status, RequestError};
use super::handles::{
    DirHandle, DirListing, Handle, HandleTable, ReadHandle, WriteHandle, WriteState,
};
use super::{encode, SessionContext, MAX_DATA_LEN, MAX_PACKET_LEN};
use crate::core::tree::VirtualPath;

/// Entries sent in one READDIR reply at most.
const NAMES_PER_REPLY: usize = 128;

/// One SFTP session's state, shared by its requests in flight.
pub struct Session {
    ctx: SessionContext,
    handles: HandleTable,
    initialized: AtomicBool,
}

type Reply = Result<Packet, RequestError>;

impl Session {
    /// A session for an authenticated user.
    pub fn new(ctx: SessionContext) -> Self {
        Session {
            ctx,
            handles: HandleTable::default(),
            initialized: AtomicBool::new(false),
        }
    }

    /// Session end: drops every open handle (unfinished uploads are
    /// discarded, never published).
    pub fn end(&self) {
        for handle in self.handles.clear() {
            match handle {
                Handle::Write(w) => self.audit("upload", &w.path, "aborted: session ended", None),
                Handle::Read(r) => self.audit(
                    "download",
                    &r.path,
                    "ok",
                    Some(r.bytes.load(Ordering::Relaxed)),
                ),
                Handle::Dir(_) => {}
            }
        }
        tracing::info!(target: "audit", user = %self.ctx.user.name, addr = %self.ctx.peer.ip(), op = "session-end", "session ended");
    }

    /// Decodes one packet, serves it, and returns the encoded reply.
    pub async fn handle_frame(&self, mut frame: Bytes) -> Option<Bytes> {
        let id = request_id(&frame);
        let packet = match Packet::try_from(&mut frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(peer = %self.ctx.peer, "undecodable SFTP packet: {e}");
                return encode(status(
                    id,
                    StatusCode::BadMessage,
                    "malformed or unknown request",
                ));
            }
        };
        let reply = match packet {
            Packet::Init(init) => {
                if self.initialized.swap(true, Ordering::SeqCst) {
                    return encode(status(0, StatusCode::BadMessage, "duplicate INIT"));
                }
                tracing::debug!(version = init.version, "SFTP init");
                return encode(Packet::Version(version()));
            }
            _ if !self.initialized.load(Ordering::SeqCst) => {
                return encode(status(id, StatusCode::BadMessage, "INIT must come first"));
            }
            Packet::RealPath(p) => self.realpath(p.id, &p.path),
            Packet::Stat(p) => self.stat(p.id, &p.path).await,
            Packet::Lstat(p) => self.stat(p.id, &p.path).await,
            Packet::Fstat(p) => self.fstat(p.id, &p.handle).await,
            Packet::OpenDir(p) => self.opendir(p.id, &p.path).await,
            Packet::ReadDir(p) => self.readdir(p.id, &p.handle).await,
            Packet::Open(p) => self.open(p.id, &p.filename, p.pflags, &p.attrs).await,
            Packet::Read(p) => self.read(p.id, &p.handle, p.offset, p.len).await,
            Packet::Write(p) => self.write(p.id, &p.handle, p.offset, p.data).await,
            Packet::Close(p) => self.close(p.id, &p.handle).await,
            Packet::Remove(p) => self.remove(p.id, &p.filename).await,
            Packet::MkDir(p) => self.mkdir(p.id, &p.path).await,
            Packet::RmDir(p) => self.rmdir(p.id, &p.path).await,
            Packet::Rename(p) => {
                self.rename(p.id, &p.oldpath, &p.newpath, RenameMode::NoReplace)
                    .await
            }
            Packet::SetStat(p) => self.setstat(p.id, &p.path, &p.attrs).await,
            Packet::FSetStat(p) => self.fsetstat(p.id, &p.handle, &p.attrs).await,
            Packet::ReadLink(_) | Packet::Symlink(_) => {
                Err(RequestError::Unsupported("symbolic links"))
            }
            Packet::Extended(p) => self.extended(p.id, &p.request, p.data).await,
            _ => Err(RequestError::Failure("not a request".to_string())),
        };
        encode(match reply {
            Ok(packet) => packet,
            Err(err) => {
                let (code, message) = to_status(&err);
                if let RequestError::Backend { source, .. } = &err {
                    if let Some((_, why)) = remote_status(source) {
                        self.ctx.notices.tell(&why);
                    }
                }
                tracing::debug!(peer = %self.ctx.peer, user = %self.ctx.user.name, "request failed: {err}");
                status(id, code, &message)
            }
        })
    }

    fn resolve(&self, client_path: &str) -> Result<VirtualPath, RequestError> {
        Ok(VirtualPath::resolve(client_path)?)
    }

    fn require(&self, path: &VirtualPath, permission: Permission) -> Result<(), RequestError> {
        if self.ctx.user.permissions.allows(path.as_str(), permission) {
            Ok(())
        } else {
            Err(RequestError::Denied {
                path: path.clone(),
                permission,
            })
        }
    }

    /// One audit line: who did what to which path, and how it ended.
    fn audit(&self, op: &str, path: &VirtualPath, result: &str, bytes: Option<u64>) {
        tracing::info!(
            target: "audit",
            user = %self.ctx.user.name,
            addr = %self.ctx.peer.ip(),
            op,
            path = %path,
            result,
            bytes = bytes.unwrap_or(0),
        );
    }

    fn audited<T>(
        &self,
        op: &str,
        path: &VirtualPath,
        result: Result<T, RequestError>,
    ) -> Result<T, RequestError> {
        match &result {
            Ok(_) => self.audit(op, path, "ok", None),
            Err(e) => self.audit(op, path, e.outcome(), None),
        }
        result
    }

    fn realpath(&self, id: u32, path: &str) -> Reply {
        let resolved = self.resolve(path)?;
        Ok(Packet::Name(Name {
            id,
            files: vec![russh_sftp::protocol::File::dummy(resolved.as_str())],
        }))
    }

    async fn stat(&self, id: u32, path: &str) -> Reply {
        let path = self.resolve(path)?;
        if !path.is_root() {
            self.require(&path.parent(), Permission::List)?;
        }
        let loc = self.ctx.tree.locate(&path);
        let meta = loc
            .backend
            .stat(&loc.path)
            .await
            .map_err(|e| RequestError::backend(&path, e))?;
        Ok(Packet::Attrs(Attrs {
            id,
            attrs: attributes(&meta),
        }))
    }

    async fn fstat(&self, id: u32, handle: &str) -> Reply {
        let meta = match self.handles.get(handle)? {
            Handle::Read(r) => r
                .reader
                .metadata()
                .await
                .map_err(|e| RequestError::backend(&r.path, e))?,
            Handle::Write(w) => {
                // The file may not be published yet: report what was written.
                let st = w.state.lock().await;
                let size = st.writer.as_ref().map(|w| w.position()).unwrap_or(0);
                backends::Metadata {
                    kind: EntryKind::File,
                    size,
                    modified: None,
                    mode: None,
                }
            }
            Handle::Dir(d) => {
                let loc = self.ctx.tree.locate(&d.path);
                loc.backend
                    .stat(&loc.path)
                    .await
                    .map_err(|e| RequestError::backend(&d.path, e))?
            }
        };
        Ok(Packet::Attrs(Attrs {
            id,
            attrs: attributes(&meta),
        }))
    }

    async fn opendir(&self, id: u32, path: &str) -> Reply {
        let path = self.resolve(path)?;
        let result = async {
            self.require(&path, Permission::List)?;
            let loc = self.ctx.tree.locate(&path);
            let pages = loc
                .backend
                .list(&loc.path)
                .await
                .map_err(|e| RequestError::backend(&path, e))?;
            self.handles.insert(Handle::Dir(Arc::new(DirHandle {
                path: path.clone(),
                listing: tokio::sync::Mutex::new(DirListing {
                    pages: Some(pages),
                    buffered: VecDeque::new(),
                }),
            })))
        }
        .await;
        let handle = self.audited("list", &path, result)?;
        Ok(Packet::Handle(HandleReply { id, handle }))
    }

    async fn readdir(&self, id: u32, handle: &str) -> Reply {
        let Handle::Dir(dir) = self.handles.get(handle)? else {
            return Err(RequestError::BadHandle);
        };
        let mut listing = dir.listing.lock().await;
        while listing.buffered.is_empty() {
            let Some(pages) = listing.pages.as_mut() else {
                break;
            };
            match pages.next().await {
                Some(Ok(page)) => listing.buffered.extend(page),
                Some(Err(e)) => {
                    listing.pages = None;
                    return Err(RequestError::backend(&dir.path, e));
                }
                None => listing.pages = None,
            }
        }
        if listing.buffered.is_empty() {
            return Ok(status(id, StatusCode::Eof, "end of folder"));
        }
        let n = listing.buffered.len().min(NAMES_PER_REPLY);
        let files = listing
            .buffered
            .drain(..n)
            .map(|e| listing_entry(&e))
            .collect();
        Ok(Packet::Name(Name { id, files }))
    }

    async fn open(
        &self,
        id: u32,
        filename: &str,
        flags: OpenFlags,
        _attrs: &FileAttributes,
    ) -> Reply {
        let path = self.resolve(filename)?;
        let writing = flags.intersects(
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        );
        let loc = self.ctx.tree.locate(&path);
        // Shown while the open waits (a full pool on a remote).
        let opening = self.ctx.activity.begin(format!("opening {path}"));
        if !writing {
            let result = async {
                self.require(&path, Permission::Read)?;
                loc.backend
                    .open_read(&loc.path)
                    .await
                    .map_err(|e| RequestError::backend(&path, e))
            }
            .await;
            let reader = self.audited("open-read", &path, result)?;
            let doing = self.ctx.activity.begin(format!("downloading {path}"));
            drop(opening);
            let handle = self.handles.insert(Handle::Read(Arc::new(ReadHandle {
                path,
                reader,
                bytes: AtomicU64::new(0),
                _transfer: self.ctx.transfers.begin(),
                _doing: doing,
            })))?;
            return Ok(Packet::Handle(HandleReply { id, handle }));
        }
        let result = async {
            self.require(&path, Permission::Write)?;
            if flags.contains(OpenFlags::TRUNCATE) {
                // A whole new file (what `put` asks for): the backend checks
                // for a folder or, with EXCLUDE, an existing file; skipping
                // our own stat saves a round trip to a remote per upload.
                let exclusive = flags.contains(OpenFlags::EXCLUDE);
                return loc
                    .backend
                    .open_write(&loc.path, WriteMode::Replace { exclusive })
                    .await
                    .map(Some)
                    .map_err(|e| RequestError::backend(&path, e));
            }
            let existing = match loc.backend.stat(&loc.path).await {
                Ok(meta) => Some(meta),
                Err(e) if e.kind() == backends::ErrorKind::NotFound => None,
                Err(e) => return Err(RequestError::backend(&path, e)),
            };
            if existing.as_ref().is_some_and(|m| m.is_dir()) {
                return Err(RequestError::backend(
                    &path,
                    backends::BackendError::new(
                        backends::ErrorKind::IsADirectory,
                        "open",
                        "",
                        "is a folder",
                    ),
                ));
            }
            let exclusive = flags.contains(OpenFlags::EXCLUDE);
            let writer = match existing {
                None if !flags.contains(OpenFlags::CREATE) => {
                    return Err(RequestError::backend(
                        &path,
                        backends::BackendError::new(
                            backends::ErrorKind::NotFound,
                            "open",
                            "",
                            "no such file",
                        ),
                    ))
                }
                Some(_) if exclusive => {
                    return Err(RequestError::backend(
                        &path,
                        backends::BackendError::new(
                            backends::ErrorKind::AlreadyExists,
                            "open",
                            "",
                            "already exists",
                        ),
                    ))
                }
                None => Some(WriteMode::Replace { exclusive }),
                Some(_) if flags.contains(OpenFlags::TRUNCATE) => {
                    Some(WriteMode::Replace { exclusive: false })
                }
                Some(meta) if flags.contains(OpenFlags::APPEND) => {
                    Some(WriteMode::Resume { offset: meta.size })
                }
                Some(_) => None,
            };
            match writer {
                Some(mode) => loc
                    .backend
                    .open_write(&loc.path, mode)
                    .await
                    .map(Some)
                    .map_err(|e| RequestError::backend(&path, e)),
                None => Ok(None),
            }
        }
        .await;
        let writer = self.audited("open-write", &path, result)?;
        let doing = self.ctx.activity.begin(format!("uploading {path}"));
        drop(opening);
        let handle = self.handles.insert(Handle::Write(Arc::new(WriteHandle {
            path,
            location: loc,
            _doing: doing,
            state: tokio::sync::Mutex::new(WriteState::new(writer)),
            _transfer: self.ctx.transfers.begin(),
        })))?;
        Ok(Packet::Handle(HandleReply { id, handle }))
    }

    async fn read(&self, id: u32, handle: &str, offset: u64, len: u32) -> Reply {
        let Handle::Read(r) = self.handles.get(handle)? else {
            return Err(RequestError::BadHandle);
        };
        let len = len.min(MAX_DATA_LEN) as usize;
        let data = r
            .reader
            .read_at(offset, len)
            .await
            .map_err(|e| RequestError::backend(&r.path, e))?;
        if data.is_empty() {
            return Ok(status(id, StatusCode::Eof, "end of file"));
        }
        r.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.ctx.activity.sent(data.len() as u64);
        Ok(Packet::Data(Data {
            id,
            // Zero-copy when the reader handed over the only reference.
            data: Vec::from(data),
        }))
    }

    async fn write(&self, id: u32, handle: &str, offset: u64, data: Vec<u8>) -> Reply {
        let Handle::Write(w) = self.handles.get(handle)? else {
            return Err(RequestError::BadHandle);
        };
        self.ctx.activity.received(data.len() as u64);
        w.write(offset, Bytes::from(data)).await?;
        Ok(ok(id))
    }

    async fn close(&self, id: u32, handle: &str) -> Reply {
        match self.handles.remove(handle)? {
            Handle::Dir(_) => Ok(ok(id)),
            Handle::Read(r) => {
                self.audit(
                    "download",
                    &r.path,
                    "ok",
                    Some(r.bytes.load(Ordering::Relaxed)),
                );
                Ok(ok(id))
            }
            Handle::Write(w) => {
                let result = self.finish_upload(&w).await;
                let bytes = w.state.lock().await.bytes;
                match &result {
                    Ok(()) => self.audit("upload", &w.path, "ok", Some(bytes)),
                    Err(e) => {
                        self.audit("upload", &w.path, e.outcome(), Some(bytes));
                        tracing::warn!(user = %self.ctx.user.name, addr = %self.ctx.peer.ip(), "upload of {} not saved: {e}", w.path);
                        // OpenSSH's sftp shows a failed close as a bare
                        // "Failure": say what became of the upload.
                        let (_, message) = to_status(e);
                        self.ctx
                            .notices
                            .tell(&format!("upload not saved: {message}"));
                    }
                }
                result.map(|()| ok(id))
            }
        }
    }

    /// Publishes an upload, then applies the times and size asked for
    /// while it was open.
    async fn finish_upload(&self, w: &WriteHandle) -> Result<(), RequestError> {
        let mut st = w.state.lock().await;
        let writer = st.writer.take();
        if let Some(reason) = st.failed.clone() {
            if let Some(writer) = writer {
                let _ = writer.abort().await;
            }
            return Err(RequestError::Failure(reason));
        }
        if let Some((&gap, _)) = st.pending.iter().next() {
            if let Some(writer) = writer {
                let at = writer.position();
                let _ = writer.abort().await;
                return Err(RequestError::Failure(format!(
                    "{}: upload incomplete: no data for offset {at} (next data at {gap}); nothing was saved",
                    w.path
                )));
            }
        }
        if let Some(writer) = writer {
            writer
                .close()
                .await
                .map_err(|e| RequestError::backend(&w.path, e))?;
        }
        let loc = &w.location;
        if let Some(size) = st.size.take() {
            loc.backend
                .truncate(&loc.path, size)
                .await
                .map_err(|e| RequestError::backend(&w.path, e))?;
        }
        if let Some(mtime) = st.modified.take() {
            loc.backend
                .set_modified(&loc.path, system_time(mtime))
                .await
                .map_err(|e| RequestError::backend(&w.path, e))?;
        }
        Ok(())
    }

    async fn remove(&self, id: u32, filename: &str) -> Reply {
        let path = self.resolve(filename)?;
        let result = async {
            self.require(&path, Permission::Delete)?;
            let loc = self.ctx.tree.locate(&path);
            loc.backend
                .remove(&loc.path)
                .await
                .map_err(|e| RequestError::backend(&path, e))
        }
        .await;
        self.audited("remove", &path, result).map(|()| ok(id))
    }

    async fn mkdir(&self, id: u32, path: &str) -> Reply {
        let path = self.resolve(path)?;
        let result = async {
            self.require(&path, Permission::Mkdir)?;
            let loc = self.ctx.tree.locate(&path);
            loc.backend
                .mkdir(&loc.path)
                .await
                .map_err(|e| RequestError::backend(&path, e))
        }
        .await;
        self.audited("mkdir", &path, result).map(|()| ok(id))
    }

    async fn rmdir(&self, id: u32, path: &str) -> Reply {
        let path = self.resolve(path)?;
        let result = async {
            self.require(&path, Permission::Delete)?;
            if path.is_root() {
                return Err(RequestError::Denied {
                    path: path.clone(),
                    permission: Permission::Delete,
                });
            }
            let loc = self.ctx.tree.locate(&path);
            if self.ctx.tree.locate(&path.parent()).mount != loc.mount {
                // A mount point: removing it would remove the mounted
                // folder on the remote, which the user does not own.
                return Err(RequestError::Denied {
                    path: path.clone(),
                    permission: Permission::Delete,
                });
            }
            loc.backend
                .rmdir(&loc.path)
                .await
                .map_err(|e| RequestError::backend(&path, e))
        }
        .await;
        self.audited("rmdir", &path, result).map(|()| ok(id))
    }

    async fn rename(&self, id: u32, from: &str, to: &str, mode: RenameMode) -> Reply {
        let from = self.resolve(from)?;
        let to = self.resolve(to)?;
        let result = async {
            self.require(&from, Permission::Rename)?;
            self.require(&to, Permission::Rename)?;
            if from.is_root() || to.is_root() {
                return Err(RequestError::Denied {
                    path: VirtualPath::root(),
                    permission: Permission::Rename,
                });
            }
            let (a, b) = (self.ctx.tree.locate(&from), self.ctx.tree.locate(&to));
            if a.mount != b.mount {
                return Err(RequestError::Failure(format!(
                    "{from} and {to} are on different storages; copy instead"
                )));
            }
            a.backend
                .rename(&a.path, &b.path, mode)
                .await
                .map_err(|e| RequestError::backend(&from, e))
        }
        .await;
        self.audited("rename", &from, result).map(|()| {
            tracing::info!(target: "audit", user = %self.ctx.user.name, addr = %self.ctx.peer.ip(), op = "rename-to", path = %to, result = "ok");
            ok(id)
        })
    }

    async fn setstat(&self, id: u32, path: &str, attrs: &FileAttributes) -> Reply {
        let path = self.resolve(path)?;
        let result = async {
            if attrs.size.is_none() && attrs.mtime.is_none() {
                // Owners and modes are not kept by the gateway: accept and ignore.
                return Ok(());
            }
            self.require(&path, Permission::Write)?;
            let loc = self.ctx.tree.locate(&path);
            if let Some(size) = attrs.size {
                loc.backend
                    .truncate(&loc.path, size)
                    .await
                    .map_err(|e| RequestError::backend(&path, e))?;
            }
            if let Some(mtime) = attrs.mtime {
                loc.backend
                    .set_modified(&loc.path, system_time(mtime))
                    .await
                    .map_err(|e| RequestError::backend(&path, e))?;
            }
            Ok(())
        }
        .await;
        self.audited("setstat", &path, result).map(|()| ok(id))
    }

    async fn fsetstat(&self, id: u32, handle: &str, attrs: &FileAttributes) -> Reply {
        match self.handles.get(handle)? {
            Handle::Write(w) => {
                // Applied when the upload is published, after its last byte.
                let mut st = w.state.lock().await;
                if let Some(mtime) = attrs.mtime {
                    st.modified = Some(mtime);
                }
                if let Some(size) = attrs.size {
                    let written = st.writer.as_ref().map(|w| w.position()).unwrap_or(0);
                    if size != written {
                        st.size = Some(size);
                    }
                }
                Ok(ok(id))
            }
            Handle::Read(r) => {
                let path = r.path.to_string();
                self.setstat(id, &path, attrs).await
            }
            Handle::Dir(d) => {
                let path = d.path.to_string();
                self.setstat(id, &path, attrs).await
            }
        }
    }

    async fn extended(&self, id: u32, request: &str, data: Vec<u8>) -> Reply {
        let mut data = Bytes::from(data);
        match request {
            "posix-rename@openssh.com" => {
                let from = take_string(&mut data)?;
                let to = take_string(&mut data)?;
                self.rename(id, &from, &to, RenameMode::Replace).await
            }
            "statvfs@openssh.com" => {
                let req: StatvfsExtension = russh_sftp::de::from_bytes(&mut data)
                    .map_err(|_| RequestError::Failure("malformed statvfs request".to_string()))?;
                let path = self.resolve(&req.path)?;
                self.require(&path, Permission::List)?;
                let loc = self.ctx.tree.locate(&path);
                let s = loc
                    .backend
                    .space(&loc.path)
                    .await
                    .map_err(|e| RequestError::backend(&path, e))?;
                let reply = Statvfs {
                    block_size: s.block_size,
                    fragment_size: s.block_size,
                    blocks: s.blocks,
                    blocks_free: s.blocks_free,
                    blocks_avail: s.blocks_available,
                    inodes: s.files,
                    inodes_free: s.files_free,
                    inodes_avail: s.files_free,
                    fs_id: 0,
                    flags: 0,
                    name_max: s.name_max,
                };
                extended_reply(id, &reply)
            }
            "limits@openssh.com" => extended_reply(
                id,
                &LimitsExtension {
                    max_packet_len: MAX_PACKET_LEN as u64,
                    max_read_len: MAX_DATA_LEN.into(),
                    max_write_len: MAX_DATA_LEN.into(),
                    max_open_handles: super::handles::MAX_HANDLES as u64,
                },
            ),
            _ => Err(RequestError::Unsupported("this extension")),
        }
    }
}

/// The VERSION reply with the extensions this server implements.
fn version() -> Version {
    let mut extensions = HashMap::new();
    extensions.insert("posix-rename@openssh.com".to_string(), "1".to_string());
    extensions.insert("statvfs@openssh.com".to_string(), "2".to_string());
    extensions.insert("limits@openssh.com".to_string(), "1".to_string());
    Version {
        version: russh_sftp::protocol::VERSION,
        extensions,
    }
}

fn extended_reply<T: serde::Serialize>(id: u32, value: &T) -> Reply {
    let data = russh_sftp::ser::to_bytes(value)
        .map_err(|e| RequestError::Failure(format!("cannot encode reply: {e}")))?;
    Ok(Packet::ExtendedReply(ExtendedReply {
        id,
        data: data.to_vec(),
    }))
}

/// Reads one SSH string (u32 length + UTF-8 bytes).
fn take_string(data: &mut Bytes) -> Result<String, RequestError> {
    let bad = || RequestError::Failure("malformed extended request".to_string());
    if data.remaining() < 4 {
        return Err(bad());
    }
    let len = data.get_u32() as usize;
    if data.remaining() < len {
        return Err(bad());
    }
    String::from_utf8(data.split_to(len).to_vec()).map_err(|_| bad())
}

/// The request id of an undecoded packet (after the type byte), if any.
fn request_id(frame: &[u8]) -> u32 {
    match frame.get(1..5) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn status(id: u32, code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message.to_string(),
        language_tag: "en-US".to_string(),
    })
}

fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "Success")
}
