//! The gateway's own storage: a folder on the local file system.
//!
//! Every path is opened relative to a descriptor of the root folder with
//! `openat2(RESOLVE_BENEATH)`, so the kernel itself refuses any path or
//! symlink that would lead outside the root. New files are written under a
//! hidden temporary name and renamed into place on close, so an interrupted
//! upload never leaves a partial file under its final name.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};

use crate::backend::{
    Backend, Capabilities, DirEntry, EntryKind, FileReader, FileWriter, HashKind, ListStream,
    Metadata, RenameMode, SpaceInfo, WriteMode,
};
use crate::hash::Hasher;
use crate::{BackendError, ErrorKind, Result, StoragePath};

/// Names starting with this are uploads in progress; listings hide them.
pub const UPLOAD_PREFIX: &str = ".gw-upload-";

/// How many entries one listing page carries.
const LIST_PAGE: usize = 256;

/// How much of a file one read takes while computing its checksum.
const HASH_READ: usize = 1024 * 1024;

/// A folder of the local file system used as storage.
#[derive(Clone)]
pub struct LocalBackend {
    /// Descriptor of the root folder; every path is resolved beneath it.
    root: Arc<OwnedFd>,
    /// The root's path, for messages only.
    root_path: PathBuf,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("root", &self.root_path)
            .finish()
    }
}

impl LocalBackend {
    /// Opens (creating if needed) `root` as storage.
    pub fn open(root: &Path) -> Result<Self> {
        let shown = root.display().to_string();
        std::fs::create_dir_all(root)
            .map_err(|e| BackendError::from_io("open storage", &shown, e))?;
        let fd = rfs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BackendError::from_io("open storage", &shown, e.into()))?;
        Ok(LocalBackend {
            root: Arc::new(fd),
            root_path: root.to_path_buf(),
        })
    }

    /// A backend whose root is `path` of this one, for a user who must see
    /// only their home: symlinks are then contained by that folder too.
    pub async fn subtree(&self, path: &StoragePath) -> Result<LocalBackend> {
        let root = self.root.clone();
        let p = path.clone();
        let fd = blocking("open", path, move || {
            open_beneath(&root, &p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        })
        .await?;
        Ok(LocalBackend {
            root: Arc::new(fd),
            root_path: self.root_path.join(path.as_str()),
        })
    }

    /// The root folder on disk.
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }
}

/// Opens `path` beneath `root`; the kernel refuses anything resolving outside.
fn open_beneath(
    root: &OwnedFd,
    path: &StoragePath,
    flags: OFlags,
    mode: Mode,
) -> std::io::Result<OwnedFd> {
    let rel = if path.is_root() { "." } else { path.as_str() };
    Ok(rfs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Opens the folder containing `path` and returns it with the last name.
fn open_parent<'p>(root: &OwnedFd, path: &'p StoragePath) -> std::io::Result<(OwnedFd, &'p str)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc_einval()));
    };
    let fd = open_beneath(
        root,
        &parent,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )?;
    Ok((fd, name))
}

fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}

fn metadata_of(st: &rfs::Stat) -> Metadata {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        _ => EntryKind::Other,
    };
    let modified = if st.st_mtime >= 0 {
        Some(UNIX_EPOCH + Duration::new(st.st_mtime as u64, st.st_mtime_nsec as u32))
    } else {
        None
    };
    Metadata {
        kind,
        size: st.st_size as u64,
        modified,
        mode: Some(st.st_mode & 0o7777),
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T, F>(operation: &'static str, path: &StoragePath, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let shown = path.as_str().to_string();
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(BackendError::from_io(operation, shown, err)),
        Err(join) => Err(BackendError::new(
            ErrorKind::Other,
            operation,
            shown,
            "internal error while accessing storage",
        )
        .with_source(join)),
    }
}

fn root_error(operation: &'static str) -> BackendError {
    BackendError::new(
        ErrorKind::PermissionDenied,
        operation,
        "",
        "the root folder cannot be changed",
    )
}

/// A hidden name beside `path` for an upload in progress
/// (`.gw-upload-<random>-<name>`): listings of every backend hide it, and
/// renaming it onto `path` publishes the upload whole. Shared by the remote
/// backends and by callers that publish by renaming themselves (syncs).
pub fn hidden_upload_path(path: &StoragePath) -> Result<StoragePath> {
    let name = path.file_name().unwrap_or("file");
    let temp = format!(
        "{UPLOAD_PREFIX}{}-{}",
        random_suffix(),
        name.chars().take(64).collect::<String>()
    );
    path.parent().unwrap_or_default().child(&temp).map_err(|e| {
        BackendError::new(
            ErrorKind::InvalidPath,
            "write",
            path.as_str(),
            e.to_string(),
        )
    })
}

/// 16 random hex digits for temporary upload names (shared by the remote
/// backends, which use the same hidden-name scheme).
pub(crate) fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    // A failing system RNG only makes the name less unique; exclusive
    // creation still guarantees we never reuse someone else's file.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Backend for LocalBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_modified: true,
            truncate: true,
            resume_write: true,
            rename_replace: true,
            space_info: true,
            empty_dirs: true,
            atomic_replace: true,
        }
    }

    async fn stat(&self, path: &StoragePath) -> Result<Metadata> {
        let root = self.root.clone();
        let p = path.clone();
        blocking("stat", path, move || {
            let st = if p.is_root() {
                rfs::fstat(root.as_fd())?
            } else {
                let (dir, name) = open_parent(&root, &p)?;
                rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?
            };
            Ok(metadata_of(&st))
        })
        .await
    }

    async fn list(&self, path: &StoragePath) -> Result<ListStream> {
        let root = self.root.clone();
        let p = path.clone();
        let dir = blocking("list", path, move || {
            let fd = open_beneath(&root, &p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
            let dir = rfs::Dir::read_from(&fd)?;
            Ok((fd, dir))
        })
        .await?;
        let shown = path.clone();
        let pages = futures::stream::unfold(Some(dir), move |state| {
            let shown = shown.clone();
            async move {
                let (fd, mut dir) = state?;
                let page = blocking("list", &shown, move || {
                    let mut entries = Vec::with_capacity(LIST_PAGE);
                    let mut done = true;
                    for item in dir.by_ref() {
                        let item = item?;
                        let name = item.file_name().to_string_lossy().into_owned();
                        if name == "." || name == ".." || name.starts_with(UPLOAD_PREFIX) {
                            continue;
                        }
                        // An entry removed between readdir and stat is skipped.
                        let st = match rfs::statat(&fd, item.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                        {
                            Ok(st) => st,
                            Err(rustix::io::Errno::NOENT) => continue,
                            Err(e) => return Err(e.into()),
                        };
                        entries.push(DirEntry {
                            name,
                            metadata: metadata_of(&st),
                        });
                        if entries.len() == LIST_PAGE {
                            done = false;
                            break;
                        }
                    }
                    Ok((entries, done, fd, dir))
                })
                .await;
                match page {
                    Ok((entries, true, _, _)) if entries.is_empty() => None,
                    Ok((entries, true, _, _)) => Some((Ok(entries), None)),
                    Ok((entries, false, fd, dir)) => Some((Ok(entries), Some((fd, dir)))),
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        Ok(pages.boxed())
    }

    async fn open_read(&self, path: &StoragePath) -> Result<Box<dyn FileReader>> {
        let root = self.root.clone();
        let p = path.clone();
        let (fd, meta) = blocking("open", path, move || {
            let fd = open_beneath(&root, &p, OFlags::RDONLY, Mode::empty())?;
            let meta = metadata_of(&rfs::fstat(&fd)?);
            Ok((fd, meta))
        })
        .await?;
        match meta.kind {
            EntryKind::File => Ok(Box::new(LocalReader {
                fd: Arc::new(fd),
                path: path.clone(),
            })),
            EntryKind::Dir => Err(BackendError::new(
                ErrorKind::IsADirectory,
                "open",
                path.as_str(),
                "is a folder",
            )),
            EntryKind::Other => Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "open",
                path.as_str(),
                "not a regular file",
            )),
        }
    }

    async fn open_write(&self, path: &StoragePath, mode: WriteMode) -> Result<Box<dyn FileWriter>> {
        if path.is_root() {
            return Err(root_error("write"));
        }
        let root = self.root.clone();
        let p = path.clone();
        match mode {
            WriteMode::Replace { exclusive } => {
                let (dir, final_name, temp_name, fd) = blocking("write", path, move || {
                    let (dir, name) = open_parent(&root, &p)?;
                    match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                            return Err(rustix::io::Errno::ISDIR.into())
                        }
                        Ok(_) if exclusive => return Err(rustix::io::Errno::EXIST.into()),
                        Ok(_) | Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let temp = format!("{UPLOAD_PREFIX}{}", random_suffix());
                    let fd = rfs::openat(
                        &dir,
                        temp.as_str(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )?;
                    Ok((dir, name.to_string(), temp, fd))
                })
                .await?;
                Ok(Box::new(LocalWriter {
                    fd: Arc::new(fd),
                    path: path.clone(),
                    position: 0,
                    publish: Some(Publish {
                        dir: Arc::new(dir),
                        temp_name,
                        final_name,
                        exclusive,
                    }),
                }))
            }
            WriteMode::Resume { offset } => {
                let fd = blocking("write", path, move || {
                    open_beneath(&root, &p, OFlags::WRONLY, Mode::empty())
                })
                .await?;
                Ok(Box::new(LocalWriter {
                    fd: Arc::new(fd),
                    path: path.clone(),
                    position: offset,
                    publish: None,
                }))
            }
        }
    }

    async fn mkdir(&self, path: &StoragePath) -> Result<()> {
        if path.is_root() {
            return Err(BackendError::new(
                ErrorKind::AlreadyExists,
                "mkdir",
                "",
                "already exists",
            ));
        }
        let root = self.root.clone();
        let p = path.clone();
        blocking("mkdir", path, move || {
            let (dir, name) = open_parent(&root, &p)?;
            Ok(rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))?)
        })
        .await
    }

    async fn remove(&self, path: &StoragePath) -> Result<()> {
        if path.is_root() {
            return Err(root_error("remove"));
        }
        let root = self.root.clone();
        let p = path.clone();
        blocking("remove", path, move || {
            let (dir, name) = open_parent(&root, &p)?;
            let st = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(rustix::io::Errno::ISDIR.into());
            }
            Ok(rfs::unlinkat(&dir, name, AtFlags::empty())?)
        })
        .await
    }

    async fn rmdir(&self, path: &StoragePath) -> Result<()> {
        if path.is_root() {
            return Err(root_error("rmdir"));
        }
        let root = self.root.clone();
        let p = path.clone();
        blocking("rmdir", path, move || {
            let (dir, name) = open_parent(&root, &p)?;
            Ok(rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?)
        })
        .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath, mode: RenameMode) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(root_error("rename"));
        }
        let root = self.root.clone();
        let (f, t) = (from.clone(), to.clone());
        blocking("rename", from, move || {
            let (from_dir, from_name) = open_parent(&root, &f)?;
            let (to_dir, to_name) = open_parent(&root, &t)?;
            let flags = match mode {
                RenameMode::NoReplace => RenameFlags::NOREPLACE,
                RenameMode::Replace => RenameFlags::empty(),
            };
            Ok(rfs::renameat_with(
                &from_dir, from_name, &to_dir, to_name, flags,
            )?)
        })
        .await
    }

    async fn set_modified(&self, path: &StoragePath, modified: SystemTime) -> Result<()> {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        let root = self.root.clone();
        let p = path.clone();
        blocking("set modification time", path, move || {
            let times = rfs::Timestamps {
                last_access: rfs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rfs::UTIME_OMIT,
                },
                last_modification: rfs::Timespec {
                    tv_sec: since.as_secs() as i64,
                    tv_nsec: since.subsec_nanos().into(),
                },
            };
            if p.is_root() {
                let fd =
                    open_beneath(&root, &p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
                return Ok(rfs::futimens(&fd, &times)?);
            }
            let (dir, name) = open_parent(&root, &p)?;
            Ok(rfs::utimensat(
                &dir,
                name,
                &times,
                AtFlags::SYMLINK_NOFOLLOW,
            )?)
        })
        .await
    }

    async fn truncate(&self, path: &StoragePath, size: u64) -> Result<()> {
        let root = self.root.clone();
        let p = path.clone();
        blocking("truncate", path, move || {
            let fd = open_beneath(&root, &p, OFlags::WRONLY, Mode::empty())?;
            Ok(rfs::ftruncate(&fd, size)?)
        })
        .await
    }

    async fn space(&self, path: &StoragePath) -> Result<SpaceInfo> {
        let root = self.root.clone();
        blocking("space", path, move || {
            let fd = open_beneath(
                &root,
                &StoragePath::root(),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )?;
            let v = rfs::fstatvfs(&fd)?;
            Ok(SpaceInfo {
                block_size: v.f_frsize,
                blocks: v.f_blocks,
                blocks_free: v.f_bfree,
                blocks_available: v.f_bavail,
                files: v.f_files,
                files_free: v.f_ffree,
                name_max: v.f_namemax,
            })
        })
        .await
    }

    /// Reads the file through once in a blocking task. It is opened like
    /// any other path (beneath the root, so no link leads out of it) and
    /// without blocking, so a FIFO does not wait for a writer: anything but
    /// a regular file has no checksum.
    async fn checksum(&self, path: &StoragePath, kind: HashKind) -> Result<Option<String>> {
        let root = self.root.clone();
        let p = path.clone();
        blocking("checksum", path, move || {
            let fd = open_beneath(&root, &p, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
            match metadata_of(&rfs::fstat(&fd)?).kind {
                EntryKind::File => {}
                EntryKind::Dir => return Err(rustix::io::Errno::ISDIR.into()),
                EntryKind::Other => return Ok(None),
            }
            let mut hasher = Hasher::new(kind);
            let mut buf = vec![0u8; HASH_READ];
            loop {
                match rustix::io::read(&fd, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(Some(hasher.finish()))
        })
        .await
    }

    fn local_file(&self, path: &StoragePath) -> Option<PathBuf> {
        Some(self.root_path.join(path.as_str()))
    }
}

/// A file of the local storage open for reading.
struct LocalReader {
    fd: Arc<OwnedFd>,
    path: StoragePath,
}

#[async_trait]
impl FileReader for LocalReader {
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let fd = self.fd.clone();
        blocking("read", &self.path, move || {
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                let n = rustix::io::pread(&*fd, &mut buf[filled..], offset + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn metadata(&self) -> Result<Metadata> {
        let fd = self.fd.clone();
        blocking("stat", &self.path, move || {
            Ok(metadata_of(&rfs::fstat(&*fd)?))
        })
        .await
    }
}

/// Where a `Replace` write is published on close.
struct Publish {
    dir: Arc<OwnedFd>,
    temp_name: String,
    final_name: String,
    exclusive: bool,
}

/// A file of the local storage being written.
struct LocalWriter {
    fd: Arc<OwnedFd>,
    path: StoragePath,
    position: u64,
    /// Set for `Replace` writes until they are published or discarded.
    publish: Option<Publish>,
}

#[async_trait]
impl FileWriter for LocalWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let fd = self.fd.clone();
        let offset = self.position;
        let len = data.len() as u64;
        blocking("write", &self.path, move || {
            let mut done = 0;
            while done < data.len() {
                done += rustix::io::pwrite(&*fd, &data[done..], offset + done as u64)?;
            }
            Ok(())
        })
        .await?;
        self.position += len;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let Some(publish) = self.publish.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        blocking("close", &path, move || {
            let flags = if publish.exclusive {
                RenameFlags::NOREPLACE
            } else {
                RenameFlags::empty()
            };
            let result = rfs::renameat_with(
                &*publish.dir,
                publish.temp_name.as_str(),
                &*publish.dir,
                publish.final_name.as_str(),
                flags,
            );
            if result.is_err() {
                let _ = rfs::unlinkat(&*publish.dir, publish.temp_name.as_str(), AtFlags::empty());
            }
            Ok(result?)
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(publish) = self.publish.take() {
            let path = self.path.clone();
            blocking("abort", &path, move || {
                Ok(rfs::unlinkat(
                    &*publish.dir,
                    publish.temp_name.as_str(),
                    AtFlags::empty(),
                )?)
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // A writer dropped without close (client vanished): discard the upload.
        if let Some(publish) = self.publish.take() {
            let _ = rfs::unlinkat(&*publish.dir, publish.temp_name.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path()).unwrap();
        crate::conformance::run_all(&backend).await;
    }

    #[tokio::test]
    async fn symlinks_cannot_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../", dir.path().join("up")).unwrap();
        let backend = LocalBackend::open(dir.path()).unwrap();
        for p in ["escape/secret", "up/x"] {
            let path = StoragePath::parse(p).unwrap();
            let err = backend.open_read(&path).await.err().expect("must fail");
            assert_eq!(err.kind(), ErrorKind::InvalidPath, "{p}: {err}");
            let err = backend
                .open_write(&path, WriteMode::Replace { exclusive: false })
                .await
                .err()
                .expect("must fail");
            assert_eq!(err.kind(), ErrorKind::InvalidPath, "{p}: {err}");
        }
        let err = backend
            .list(&StoragePath::parse("escape").unwrap())
            .await
            .err()
            .expect("must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidPath);
        assert!(outside.path().join("secret").exists());
    }

    #[tokio::test]
    async fn a_subtree_contains_relative_links_to_its_siblings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("alice")).unwrap();
        std::fs::create_dir_all(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("bob/secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../bob", dir.path().join("alice/bob")).unwrap();
        let storage = LocalBackend::open(dir.path()).unwrap();
        let whole = StoragePath::parse("alice/bob/secret").unwrap();
        assert!(
            storage.open_read(&whole).await.is_ok(),
            "inside the storage root the link resolves"
        );
        let alice = storage
            .subtree(&StoragePath::parse("alice").unwrap())
            .await
            .unwrap();
        let err = alice
            .open_read(&StoragePath::parse("bob/secret").unwrap())
            .await
            .err()
            .expect("must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidPath);
    }

    #[tokio::test]
    async fn checksums_of_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), b"hello\n").unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let big: Vec<u8> = (0..3 * HASH_READ + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("sub/big"), &big).unwrap();
        let backend = LocalBackend::open(dir.path()).unwrap();
        let p = |s: &str| StoragePath::parse(s).unwrap();
        let sum = |path: &str, kind| {
            let backend = backend.clone();
            let path = p(path);
            async move { backend.checksum(&path, kind).await }
        };
        assert_eq!(
            sum("hello", HashKind::Md5).await.unwrap().as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184")
        );
        assert_eq!(
            sum("hello", HashKind::Crc32).await.unwrap().as_deref(),
            Some("363a3020")
        );
        assert_eq!(
            sum("empty", HashKind::Md5).await.unwrap().as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(
            sum("empty", HashKind::Crc32).await.unwrap().as_deref(),
            Some("00000000")
        );
        for kind in HashKind::ALL {
            assert_eq!(
                sum("sub/big", kind).await.unwrap(),
                Some(crate::hash::of_bytes(kind, &big)),
                "{kind:?}"
            );
        }
        let err = sum("missing", HashKind::Md5).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = sum("sub", HashKind::Md5).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IsADirectory, "{err}");
        let err = backend
            .checksum(&StoragePath::root(), HashKind::Crc32)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IsADirectory, "{err}");
    }

    #[tokio::test]
    async fn checksums_do_not_follow_links_out_of_the_root_or_wait_on_fifos() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("escape"))
            .unwrap();
        std::fs::write(dir.path().join("inside"), b"hello\n").unwrap();
        std::os::unix::fs::symlink("inside", dir.path().join("link")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let backend = LocalBackend::open(dir.path()).unwrap();
        let p = |s: &str| StoragePath::parse(s).unwrap();
        let err = backend
            .checksum(&p("escape"), HashKind::Md5)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidPath, "{err}");
        assert_eq!(
            backend
                .checksum(&p("link"), HashKind::Md5)
                .await
                .unwrap()
                .as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184"),
            "a link inside the root is followed"
        );
        let fifo = tokio::time::timeout(
            Duration::from_secs(5),
            backend.checksum(&p("fifo"), HashKind::Md5),
        )
        .await
        .expect("a FIFO must not block");
        assert_eq!(fifo.unwrap(), None);
    }

    #[tokio::test]
    async fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path()).unwrap();
        let path = StoragePath::parse("f").unwrap();
        let mut w = backend
            .open_write(&path, WriteMode::Replace { exclusive: false })
            .await
            .unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
