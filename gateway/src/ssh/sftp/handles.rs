//! Open handles of one SFTP session: files being read, files being
//! written (with out-of-order writes put back in offset order), and
//! folder listings being paged through.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use backends::{DirEntry, FileReader, FileWriter, ListStream, WriteMode};
use bytes::Bytes;

use super::error::RequestError;
use crate::core::transfers::TransferGuard;
use crate::core::tree::{Location, VirtualPath};

/// Most handles one session may hold open.
pub const MAX_HANDLES: usize = 256;
/// Most bytes of writes held back waiting for an earlier offset.
pub const MAX_PENDING_WRITE_BYTES: usize = 32 * 1024 * 1024;

/// One open handle.
#[derive(Clone)]
pub enum Handle {
    /// A file open for reading.
    Read(Arc<ReadHandle>),
    /// A file open for writing.
    Write(Arc<WriteHandle>),
    /// A folder being listed.
    Dir(Arc<DirHandle>),
}

/// A file open for reading.
pub struct ReadHandle {
    /// The path as the user sees it.
    pub path: VirtualPath,
    /// The backend's reader.
    pub reader: Box<dyn FileReader>,
    /// Bytes sent so far (for the audit line at close).
    pub bytes: AtomicU64,
    /// Keeps the transfer counted while open.
    pub _transfer: TransferGuard,
    /// Shows the transfer in the session's activity while it is open.
    pub _doing: crate::core::activity::Doing,
}

/// A file open for writing.
pub struct WriteHandle {
    /// The path as the user sees it.
    pub path: VirtualPath,
    /// Where it is stored.
    pub location: Location,
    /// Writer state; writes to one handle are applied one at a time.
    pub state: tokio::sync::Mutex<WriteState>,
    /// Keeps the transfer counted while open.
    pub _transfer: TransferGuard,
    /// Shows the transfer in the session's activity while it is open.
    pub _doing: crate::core::activity::Doing,
}

/// The changing part of a write handle.
pub struct WriteState {
    /// The backend's writer, opened at open time or on the first write.
    pub writer: Option<Box<dyn FileWriter>>,
    /// How to open the writer lazily (resume at the first write's offset).
    pub lazy: bool,
    /// Writes that arrived ahead of the current position, by offset.
    pub pending: BTreeMap<u64, Bytes>,
    /// Their total size.
    pub pending_bytes: usize,
    /// Set once a write failed; later writes and the close report it.
    pub failed: Option<String>,
    /// Modification time to set after close (from FSETSTAT).
    pub modified: Option<u32>,
    /// Size to truncate to after close (from FSETSTAT).
    pub size: Option<u64>,
    /// Bytes written so far.
    pub bytes: u64,
}

impl WriteState {
    /// A state whose writer is already open (`Some`), or is opened on the
    /// first write, resuming at that write's offset (`None`).
    pub fn new(writer: Option<Box<dyn FileWriter>>) -> Self {
        WriteState {
            lazy: writer.is_none(),
            writer,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            failed: None,
            modified: None,
            size: None,
            bytes: 0,
        }
    }
}

impl WriteHandle {
    /// Applies a write at `offset`, holding it back if it arrived early.
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), RequestError> {
        let mut st = self.state.lock().await;
        if let Some(reason) = &st.failed {
            return Err(RequestError::Failure(reason.clone()));
        }
        if st.writer.is_none() && st.lazy {
            let opened = self
                .location
                .backend
                .open_write(&self.location.path, WriteMode::Resume { offset })
                .await;
            match opened {
                Ok(w) => st.writer = Some(w),
                Err(e) => return Err(RequestError::backend(&self.path, e)),
            }
        }
        let position = match &st.writer {
            Some(w) => w.position(),
            None => return Err(RequestError::BadHandle),
        };
        if offset > position {
            // Writes in flight from any client fit in the hold-back window;
            // one further ahead leaves a hole no later write can fill
            // (uploads are streamed): refuse it now, not at close, where
            // some clients (paramiko) do not report a failure.
            let ahead = offset - position;
            if ahead > MAX_PENDING_WRITE_BYTES as u64 {
                let msg = format!(
                    "{}: a write at offset {offset} is {ahead} bytes beyond the data written so far \
                     ({position} bytes); uploads are streamed, so a file cannot have holes \
                     (writes may arrive at most {} MiB ahead)",
                    self.path,
                    MAX_PENDING_WRITE_BYTES >> 20
                );
                st.failed = Some(msg.clone());
                return Err(RequestError::Failure(msg));
            }
            if st.pending_bytes + data.len() > MAX_PENDING_WRITE_BYTES {
                let msg = format!("{}: writes arrive too far out of order", self.path);
                st.failed = Some(msg.clone());
                return Err(RequestError::Failure(msg));
            }
            st.pending_bytes += data.len();
            st.pending.insert(offset, data);
            return Ok(());
        }
        if offset < position {
            let msg = format!(
                "{}: rewriting bytes already written (offset {offset}, at {position}) is not supported",
                self.path
            );
            return Err(RequestError::Failure(msg));
        }
        self.apply(&mut st, data).await?;
        // Drain writes that were waiting for this one.
        loop {
            let position = st.writer.as_ref().map(|w| w.position()).unwrap_or(0);
            let Some(entry) = st.pending.first_entry() else {
                break;
            };
            if *entry.key() != position {
                break;
            }
            let data = entry.remove();
            st.pending_bytes -= data.len();
            self.apply(&mut st, data).await?;
        }
        Ok(())
    }

    async fn apply(&self, st: &mut WriteState, data: Bytes) -> Result<(), RequestError> {
        let len = data.len() as u64;
        let Some(writer) = st.writer.as_mut() else {
            return Err(RequestError::BadHandle);
        };
        if let Err(e) = writer.write(data).await {
            st.failed = Some(format!(
                "{}: write failed earlier: {}",
                self.path,
                e.message()
            ));
            return Err(RequestError::backend(&self.path, e));
        }
        st.bytes += len;
        Ok(())
    }
}

/// A folder being listed.
pub struct DirHandle {
    /// The path as the user sees it.
    pub path: VirtualPath,
    /// The listing, consumed page by page.
    pub listing: tokio::sync::Mutex<DirListing>,
}

/// The state of a listing.
pub struct DirListing {
    /// The backend's page stream; `None` once exhausted.
    pub pages: Option<ListStream>,
    /// Entries fetched but not yet sent.
    pub buffered: VecDeque<DirEntry>,
}

/// The handle table of one session.
#[derive(Default)]
pub struct HandleTable {
    handles: Mutex<HashMap<String, Handle>>,
    next: AtomicU64,
}

impl HandleTable {
    /// Stores `handle` and returns its id, or fails if too many are open.
    pub fn insert(&self, handle: Handle) -> Result<String, RequestError> {
        let mut map = self.lock();
        if map.len() >= MAX_HANDLES {
            return Err(RequestError::Failure(format!(
                "too many open files and folders (at most {MAX_HANDLES})"
            )));
        }
        let id = format!("h{}", self.next.fetch_add(1, Ordering::Relaxed));
        map.insert(id.clone(), handle);
        Ok(id)
    }

    /// The handle with `id`.
    pub fn get(&self, id: &str) -> Result<Handle, RequestError> {
        self.lock().get(id).cloned().ok_or(RequestError::BadHandle)
    }

    /// Removes and returns the handle with `id`.
    pub fn remove(&self, id: &str) -> Result<Handle, RequestError> {
        self.lock().remove(id).ok_or(RequestError::BadHandle)
    }

    /// Removes every handle (session end); writers left open are aborted
    /// when their last reference drops.
    pub fn clear(&self) -> Vec<Handle> {
        self.lock().drain().map(|(_, h)| h).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        // A panic while holding this lock cannot leave the map half-changed.
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }
}
