//! The S3 operations on a user's tree: the one bucket `default` is the
//! user's `/`, with their mounts and permissions, as over SFTP.
//!
//! What the client is told mirrors SFTP's rules: a path the user may not
//! see (no `list` on its folder, no `read` on a file) answers `NoSuchKey`,
//! exactly like a missing one; an operation the user may not do on a path
//! they can see answers `AccessDenied`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use backends::{BackendError, EntryKind, ErrorKind, FileReader, Metadata, WriteMode};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use policy::{Permission, User};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::keys::KeyBook;
use super::listing::{self, Folders, Item};
use super::paths::KeyTarget;
use super::streams::{body_stream, download_stream};
use super::uploads::{self, UploadInfo, Uploads};
use super::wire::{
    check_bucket, content_md5_hex, internal_error, key_target, metadata_mtime, mtime_metadata,
    no_such_key, parse_copy_range, parse_mtime, storage_error, timestamp, url_encode, version_etag,
    EMPTY_MD5, MTIME_KEY,
};
use crate::core::checksums::{Algorithm, ChecksumHasher};
use crate::core::tree::{Location, Tree, VirtualPath};
use crate::core::Shared;

/// The only bucket.
pub use super::wire::BUCKET;
/// Content type of a folder marker.
const FOLDER_TYPE: &str = "application/x-directory";

/// The client's address, put into each request's extensions by the HTTP
/// layer, for allow-lists and audit lines.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The S3 operations.
pub struct Endpoint {
    shared: Arc<Shared>,
    keys: KeyBook,
    uploads: Uploads,
}

/// Who sent a request, and the tree they see.
struct Caller {
    user: Arc<User>,
    tree: Tree,
    addr: String,
}

impl Caller {
    fn may(&self, path: &VirtualPath, permission: Permission) -> bool {
        self.user.permissions.allows(path.as_str(), permission)
    }

    /// Whether the user can see `path` at all: `list` on its folder.
    fn sees(&self, path: &VirtualPath) -> bool {
        path.is_root() || self.may(&path.parent(), Permission::List)
    }

    fn require(&self, path: &VirtualPath, permission: Permission) -> S3Result<()> {
        if self.may(path, permission) {
            Ok(())
        } else {
            Err(s3_error!(
                AccessDenied,
                "user {} may not {permission} {path}",
                self.user.name
            ))
        }
    }

    fn audit(&self, op: &str, path: &VirtualPath, result: &str, bytes: u64) {
        tracing::info!(
            target: "audit",
            user = %self.user.name,
            addr = %self.addr,
            protocol = "s3",
            op,
            path = %path,
            result,
            bytes,
        );
    }

    fn audited<T>(
        &self,
        op: &str,
        path: &VirtualPath,
        result: S3Result<T>,
        bytes: u64,
    ) -> S3Result<T> {
        match &result {
            Ok(_) => self.audit(op, path, "ok", bytes),
            Err(e) => self.audit(op, path, e.code().as_str(), bytes),
        }
        result
    }
}

/// A listing source over the caller's tree, hiding what they may not list.
struct CallerFolders<'a>(&'a Caller);

#[async_trait::async_trait]
impl Folders for CallerFolders<'_> {
    type Error = S3Error;

    async fn entries(
        &self,
        folder: &VirtualPath,
    ) -> Result<Option<Vec<backends::DirEntry>>, S3Error> {
        if !self.0.may(folder, Permission::List) {
            return Ok(None);
        }
        let loc = self.0.tree.locate(folder);
        let pages = match loc.backend.list(&loc.path).await {
            Ok(p) => p,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None)
            }
            Err(e) => return Err(storage_error(folder, e)),
        };
        let pages: Vec<Vec<backends::DirEntry>> = pages
            .try_collect()
            .await
            .map_err(|e| storage_error(folder, e))?;
        Ok(Some(pages.into_iter().flatten().collect()))
    }
}

impl Endpoint {
    /// The operations over `shared`'s users and trees, with `keys` naming
    /// the user of each request and `uploads` holding multipart uploads.
    pub fn new(shared: Arc<Shared>, keys: KeyBook, uploads: Uploads) -> Self {
        Endpoint {
            shared,
            keys,
            uploads,
        }
    }

    /// The user behind a (signed) request, and their tree.
    async fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Caller> {
        let Some(credentials) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "requests must be signed"));
        };
        let keys = self.keys.clone();
        let id = credentials.access_key.clone();
        let key = tokio::task::spawn_blocking(move || keys.find(&id))
            .await
            .map_err(|e| internal_error(format!("key lookup failed: {e}")))?
            .map_err(|e| internal_error(format!("the key store cannot be read: {e}")))?
            .ok_or_else(|| s3_error!(InvalidAccessKeyId, "the access key was revoked"))?;
        let live = self.shared.live();
        let Some(user) = live.authenticator.user(&key.user) else {
            return Err(s3_error!(
                InvalidAccessKeyId,
                "the access key's user no longer exists"
            ));
        };
        let peer = req.extensions.get::<PeerAddr>().map(|p| p.0);
        if let Some(peer) = peer {
            if !live.authenticator.address_allowed(peer.ip()) || !user.allows_address(peer.ip()) {
                tracing::info!(target: "audit", user = %user.name, addr = %peer.ip(), protocol = "s3", op = "login", result = "address not allowed");
                return Err(s3_error!(
                    AccessDenied,
                    "requests from this address are not allowed"
                ));
            }
        }
        let tree = self
            .shared
            .tree_for(&user)
            .await
            .map_err(|e| internal_error(format!("{e}")))?;
        Ok(Caller {
            user,
            tree,
            addr: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        })
    }

    /// Stats a path the caller can see; `NoSuchKey` otherwise.
    async fn visible(&self, caller: &Caller, path: &VirtualPath) -> S3Result<(Location, Metadata)> {
        if !caller.sees(path) {
            return Err(no_such_key(path));
        }
        let loc = caller.tree.locate(path);
        let meta = loc
            .backend
            .stat(&loc.path)
            .await
            .map_err(|e| storage_error(path, e))?;
        Ok((loc, meta))
    }

    /// Creates `folder` and any missing folders above it.
    async fn make_folders(&self, caller: &Caller, folder: &VirtualPath) -> S3Result<()> {
        let mut missing = Vec::new();
        let mut cur = folder.clone();
        while !cur.is_root() {
            let loc = caller.tree.locate(&cur);
            match loc.backend.stat(&loc.path).await {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "{cur} is a file, so it cannot hold other keys"
                    ))
                }
                Err(e) if e.kind() == ErrorKind::NotFound => missing.push(cur.clone()),
                Err(e) => return Err(storage_error(&cur, e)),
            }
            cur = cur.parent();
        }
        for dir in missing.into_iter().rev() {
            caller.require(&dir, Permission::Mkdir)?;
            let loc = caller.tree.locate(&dir);
            match loc.backend.mkdir(&loc.path).await {
                Ok(()) => caller.audit("mkdir", &dir, "ok", 0),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(storage_error(&dir, e)),
            }
        }
        Ok(())
    }

    /// Writes `body` to `path` (replacing it only once complete), checks
    /// its length and MD5 when the client gave them, sets its time, and
    /// returns the MD5 and size.
    async fn write_file<S>(
        &self,
        caller: &Caller,
        path: &VirtualPath,
        mut body: S,
        expect_len: Option<u64>,
        expect_md5: Option<String>,
        mtime: Option<SystemTime>,
    ) -> S3Result<(String, u64)>
    where
        S: Stream<Item = Result<Bytes, String>> + Send + Unpin,
    {
        caller.require(path, Permission::Write)?;
        self.make_folders(caller, &path.parent()).await?;
        let _transfer = self.shared.transfers.begin();
        let loc = caller.tree.locate(path);
        let mut writer = loc
            .backend
            .open_write(&loc.path, WriteMode::Replace { exclusive: false })
            .await
            .map_err(|e| storage_error(path, e))?;
        let mut md5 = ChecksumHasher::new(Algorithm::Md5);
        let mut size = 0u64;
        let written: S3Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
                md5.update(&chunk);
                size += chunk.len() as u64;
                writer
                    .write(chunk)
                    .await
                    .map_err(|e| storage_error(path, e))?;
            }
            Ok(())
        }
        .await;
        let hex = md5.finish();
        let problem = match written {
            Err(e) => Some(e),
            Ok(()) if expect_len.is_some_and(|n| n != size) => Some(s3_error!(
                IncompleteBody,
                "received {size} bytes of {}",
                expect_len.unwrap_or(0)
            )),
            Ok(()) if expect_md5.as_ref().is_some_and(|m| *m != hex) => Some(s3_error!(
                BadDigest,
                "the Content-MD5 you specified did not match what we received"
            )),
            Ok(()) => None,
        };
        if let Some(problem) = problem {
            let _ = writer.abort().await;
            return Err(problem);
        }
        writer.close().await.map_err(|e| storage_error(path, e))?;
        if let Some(t) = mtime {
            if loc.backend.capabilities().set_modified {
                if let Err(e) = loc.backend.set_modified(&loc.path, t).await {
                    tracing::warn!(path = %path, "cannot set the modification time: {e}");
                }
            }
        }
        // The MD5 was computed on the way in: keep it, so HEAD and GET can
        // give it as the ETag (and `md5sum` over SSH need not read the file).
        if loc.backend.local_file(&loc.path).is_some() {
            if let Ok(meta) = loc.backend.stat(&loc.path).await {
                let checksums = self.shared.checksums.clone();
                let (loc, hex) = (loc.clone(), hex.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    checksums.remember(&loc, &meta, Algorithm::Md5, &hex)
                })
                .await;
            }
        }
        Ok((hex, size))
    }

    /// The ETag of a file as listed: a stand-in that follows its size
    /// and time (a listing cannot afford a lookup per object).
    fn etag(&self, meta: &Metadata) -> ETag {
        ETag::Strong(version_etag(meta))
    }

    /// The ETag of one file: its MD5 when one is known for its current
    /// size and time (computed on upload or by `md5sum`), else the
    /// stand-in.
    async fn etag_of(&self, loc: &Location, meta: &Metadata) -> ETag {
        if loc.backend.local_file(&loc.path).is_none() {
            return self.etag(meta);
        }
        let checksums = self.shared.checksums.clone();
        let (l, m) = (loc.clone(), meta.clone());
        match tokio::task::spawn_blocking(move || checksums.cached(&l, &m, Algorithm::Md5)).await {
            Ok(Some(md5)) => ETag::Strong(md5),
            _ => self.etag(meta),
        }
    }

    async fn caller_for_bucket<T>(&self, req: &S3Request<T>, bucket: &str) -> S3Result<Caller> {
        let caller = self.caller(req).await?;
        check_bucket(bucket)?;
        Ok(caller)
    }
}

#[async_trait::async_trait]
impl s3s::S3 for Endpoint {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.caller(&req).await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(vec![Bucket {
                name: Some(BUCKET.to_string()),
                creation_date: Some(Timestamp::from(UNIX_EPOCH)),
                bucket_region: None,
            }]),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.caller_for_bucket(&req, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.caller_for_bucket(&req, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.caller(&req).await?;
        if req.input.bucket == BUCKET {
            Err(s3_error!(BucketAlreadyOwnedByYou))
        } else {
            Err(s3_error!(
                AccessDenied,
                "this endpoint has one bucket, `{BUCKET}`; no other can be created"
            ))
        }
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        let delimited = match input.delimiter.as_deref() {
            None | Some("") => false,
            Some("/") => true,
            Some(other) => {
                return Err(s3_error!(
                    NotImplemented,
                    "only `/` is supported as a delimiter, not `{other}`"
                ))
            }
        };
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(t), Some(s)) => Some(if t >= s { t } else { s }),
            (t, s) => t.or(s),
        };
        let page =
            listing::list(&CallerFolders(&caller), &prefix, delimited, after, max_keys).await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let encode = |k: &str| if url { url_encode(k) } else { k.to_string() };
        let next = page
            .truncated
            .then(|| page.items.last().map(|i| i.key().to_string()))
            .flatten();
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        for item in &page.items {
            match item {
                Item::Object {
                    key,
                    size,
                    modified,
                } => {
                    let meta = Metadata {
                        kind: EntryKind::File,
                        size: *size,
                        modified: *modified,
                        mode: None,
                    };
                    contents.push(Object {
                        key: Some(encode(key)),
                        size: Some(*size as i64),
                        last_modified: timestamp(*modified).or(Some(Timestamp::from(UNIX_EPOCH))),
                        e_tag: Some(if key.ends_with('/') {
                            ETag::Strong(EMPTY_MD5.to_string())
                        } else {
                            self.etag(&meta)
                        }),
                        storage_class: Some(ObjectStorageClass::from_static(
                            ObjectStorageClass::STANDARD,
                        )),
                        ..Default::default()
                    });
                }
                Item::Prefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(encode(p)),
                }),
            }
        }
        let root = VirtualPath::root();
        caller.audit("list", &root, "ok", 0);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(BUCKET.to_string()),
            prefix: input.prefix.map(|p| encode(&p)),
            delimiter: input.delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(page.items.len() as i32),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            start_after: input.start_after.map(|s| encode(&s)),
            encoding_type: input.encoding_type,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }

    /// No object has tags; the AWS CLI asks before any multipart copy
    /// (`aws s3 cp s3://… s3://…` over 8 MiB) and fails on an error.
    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let KeyTarget::File(path) = key_target(&req.input.key)? else {
            return Ok(S3Response::new(GetObjectTaggingOutput::default()));
        };
        self.readable_file(&caller, &path).await?;
        Ok(S3Response::new(GetObjectTaggingOutput::default()))
    }

    /// ListObjects (v1), what rclone's `provider = Other` uses: the v2
    /// listing with `marker` as its start, and `NextMarker` the last key.
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let url = req
            .input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let marker = req.input.marker.clone();
        let v2 = self
            .list_objects_v2(req.map_input(Into::into))
            .await?
            .output;
        Ok(S3Response::new(ListObjectsOutput {
            name: v2.name,
            prefix: v2.prefix,
            marker: marker.map(|m| if url { url_encode(&m) } else { m }),
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            next_marker: v2
                .next_continuation_token
                .map(|k| if url { url_encode(&k) } else { k }),
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: v2.delimiter,
            encoding_type: v2.encoding_type,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let target = key_target(&req.input.key)?;
        let path = target.path().clone();
        let (loc, meta) = self.visible(&caller, &path).await?;
        let output = match (&target, meta.kind) {
            (KeyTarget::Folder(_), EntryKind::Dir) => HeadObjectOutput {
                content_length: Some(0),
                content_type: Some(FOLDER_TYPE.parse().map_err(|_| s3_error!(InternalError))?),
                e_tag: Some(ETag::Strong(EMPTY_MD5.to_string())),
                last_modified: timestamp(meta.modified),
                ..Default::default()
            },
            (KeyTarget::File(_), EntryKind::File) => HeadObjectOutput {
                content_length: Some(meta.size as i64),
                e_tag: Some(self.etag_of(&loc, &meta).await),
                last_modified: timestamp(meta.modified),
                metadata: mtime_metadata(meta.modified),
                ..Default::default()
            },
            _ => return Err(no_such_key(&path)),
        };
        Ok(S3Response::new(output))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let target = key_target(&req.input.key)?;
        let path = target.path().clone();
        let result = async {
            let (loc, meta) = self.visible(&caller, &path).await?;
            match (&target, meta.kind) {
                (KeyTarget::Folder(_), EntryKind::Dir) => {
                    return Ok(GetObjectOutput {
                        content_length: Some(0),
                        body: Some(StreamingBlob::from(s3s::Body::empty())),
                        content_type: Some(
                            FOLDER_TYPE.parse().map_err(|_| s3_error!(InternalError))?,
                        ),
                        e_tag: Some(ETag::Strong(EMPTY_MD5.to_string())),
                        last_modified: timestamp(meta.modified),
                        ..Default::default()
                    })
                }
                (KeyTarget::File(_), EntryKind::File) => {}
                _ => return Err(no_such_key(&path)),
            }
            if !caller.may(&path, Permission::Read) {
                return Err(no_such_key(&path));
            }
            let (range, content_range) = match &req.input.range {
                None => (0..meta.size, None),
                Some(r) => {
                    let range = r.check(meta.size)?;
                    let content_range = format!(
                        "bytes {}-{}/{}",
                        range.start,
                        range.end.saturating_sub(1),
                        meta.size
                    );
                    (range, Some(content_range))
                }
            };
            let reader: Arc<dyn FileReader> = Arc::from(
                loc.backend
                    .open_read(&loc.path)
                    .await
                    .map_err(|e| storage_error(&path, e))?,
            );
            let length = range.end - range.start;
            let etag = self.etag_of(&loc, &meta).await;
            let transfer = self.shared.transfers.begin();
            let stream = download_stream(reader, range, path.clone()).inspect(move |_| {
                let _ = &transfer;
            });
            Ok(GetObjectOutput {
                body: Some(StreamingBlob::wrap(stream)),
                content_length: Some(length as i64),
                content_range,
                accept_ranges: Some("bytes".to_string()),
                e_tag: Some(etag),
                last_modified: timestamp(meta.modified),
                metadata: mtime_metadata(meta.modified),
                ..Default::default()
            })
        }
        .await;
        let bytes = result
            .as_ref()
            .ok()
            .and_then(|o| o.content_length)
            .unwrap_or(0) as u64;
        let output = caller.audited("download", &path, result, bytes)?;
        Ok(S3Response::new(output))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        let target = key_target(&input.key)?;
        match target {
            KeyTarget::Folder(path) => {
                let result = async {
                    let mut body = body_stream(input.body);
                    while let Some(chunk) = body.next().await {
                        if !chunk
                            .map_err(|e| s3_error!(IncompleteBody, "{e}"))?
                            .is_empty()
                        {
                            return Err(s3_error!(
                                InvalidArgument,
                                "a key ending in `/` is a folder and cannot hold data"
                            ));
                        }
                    }
                    if !path.is_root() {
                        caller.require(&path, Permission::Mkdir)?;
                    }
                    self.make_folders(&caller, &path).await
                }
                .await;
                caller.audited("mkdir", &path, result, 0)?;
                Ok(S3Response::new(PutObjectOutput {
                    e_tag: Some(ETag::Strong(EMPTY_MD5.to_string())),
                    ..Default::default()
                }))
            }
            KeyTarget::File(path) => {
                let expect_md5 = input
                    .content_md5
                    .as_deref()
                    .map(content_md5_hex)
                    .transpose()?;
                let mtime = metadata_mtime(input.metadata.as_ref());
                let result = self
                    .write_file(
                        &caller,
                        &path,
                        body_stream(input.body),
                        input.content_length.map(|n| n.max(0) as u64),
                        expect_md5,
                        mtime,
                    )
                    .await;
                let bytes = result.as_ref().map(|r| r.1).unwrap_or(0);
                let (md5, _) = caller.audited("upload", &path, result, bytes)?;
                Ok(S3Response::new(PutObjectOutput {
                    e_tag: Some(ETag::Strong(md5)),
                    ..Default::default()
                }))
            }
        }
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        self.delete_key(&caller, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in req.input.delete.objects {
            match self.delete_key(&caller, &object.key).await {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => errors.push(s3s::dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(object.key),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        let src = self.copy_source(&input.copy_source)?;
        let KeyTarget::File(dst) = key_target(&input.key)? else {
            return Err(s3_error!(
                InvalidArgument,
                "cannot copy onto a folder marker"
            ));
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let result = async {
            let (src_loc, src_meta) = self.readable_file(&caller, &src).await?;
            let mtime = if replace {
                metadata_mtime(input.metadata.as_ref())
            } else {
                src_meta.modified
            };
            if src == dst {
                // A copy onto itself changes only metadata: here, the time.
                if !replace {
                    return Err(s3_error!(
                        InvalidRequest,
                        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."
                    ));
                }
                caller.require(&dst, Permission::Write)?;
                if let Some(t) = mtime {
                    src_loc
                        .backend
                        .set_modified(&src_loc.path, t)
                        .await
                        .map_err(|e| storage_error(&dst, e))?;
                }
                let meta = src_loc
                    .backend
                    .stat(&src_loc.path)
                    .await
                    .map_err(|e| storage_error(&dst, e))?;
                return Ok((self.etag(&meta), meta.modified));
            }
            let reader: Arc<dyn FileReader> = Arc::from(
                src_loc
                    .backend
                    .open_read(&src_loc.path)
                    .await
                    .map_err(|e| storage_error(&src, e))?,
            );
            let body = download_stream(reader, 0..src_meta.size, src.clone())
                .map_err(|e| e.to_string());
            let (md5, _) = self
                .write_file(&caller, &dst, Box::pin(body), Some(src_meta.size), None, mtime)
                .await?;
            Ok((ETag::Strong(md5), mtime.or(Some(SystemTime::now()))))
        }
        .await;
        let (etag, modified) = caller.audited("copy", &dst, result, 0)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag),
                last_modified: timestamp(modified),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let KeyTarget::File(path) = key_target(&req.input.key)? else {
            return Err(s3_error!(
                InvalidArgument,
                "a folder marker cannot be uploaded in parts"
            ));
        };
        caller.require(&path, Permission::Write)?;
        let info = UploadInfo {
            user: caller.user.name.clone(),
            key: req.input.key.clone(),
            created: uploads::created_now(),
            mtime: req
                .input
                .metadata
                .as_ref()
                .and_then(|m| m.get(MTIME_KEY).cloned()),
        };
        let id = self
            .uploads
            .create(&info)
            .await
            .map_err(|e| internal_error(format!("cannot start the upload: {e}")))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(BUCKET.to_string()),
            key: Some(req.input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        self.own_upload(&caller, &input.upload_id, &input.key)
            .await?;
        if !(1..=uploads::MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to 10000"
            ));
        }
        let expect_md5 = input
            .content_md5
            .as_deref()
            .map(content_md5_hex)
            .transpose()?;
        let part = self
            .uploads
            .write_part(&input.upload_id, input.part_number, body_stream(input.body))
            .await
            .map_err(|e| match e {
                uploads::PartError::Body(m) => s3_error!(IncompleteBody, "{m}"),
                uploads::PartError::Io(e) => internal_error(format!("{e}")),
            })?;
        let bad_length = input
            .content_length
            .is_some_and(|n| n.max(0) as u64 != part.size);
        let bad_md5 = expect_md5.is_some_and(|m| m != part.md5);
        if bad_length || bad_md5 {
            self.uploads.discard_part(&input.upload_id, &part).await;
            return Err(if bad_length {
                s3_error!(
                    IncompleteBody,
                    "the part is shorter than its Content-Length"
                )
            } else {
                s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                )
            });
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.md5)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        self.own_upload(&caller, &input.upload_id, &input.key)
            .await?;
        if !(1..=uploads::MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to 10000"
            ));
        }
        let src = self.copy_source(&input.copy_source)?;
        let (src_loc, src_meta) = self.readable_file(&caller, &src).await?;
        let range = match input.copy_source_range.as_deref() {
            None => 0..src_meta.size,
            Some(text) => parse_copy_range(text, src_meta.size)?,
        };
        let reader: Arc<dyn FileReader> = Arc::from(
            src_loc
                .backend
                .open_read(&src_loc.path)
                .await
                .map_err(|e| storage_error(&src, e))?,
        );
        let body = Box::pin(download_stream(reader, range, src.clone()).map_err(|e| e.to_string()));
        let part = self
            .uploads
            .write_part(&input.upload_id, input.part_number, body)
            .await
            .map_err(|e| match e {
                uploads::PartError::Body(m) => storage_error(
                    &src,
                    BackendError::new(ErrorKind::Other, "read", src.as_str(), m),
                ),
                uploads::PartError::Io(e) => internal_error(format!("{e}")),
            })?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(part.md5)),
                last_modified: Some(Timestamp::from(part.modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        self.own_upload(&caller, &input.upload_id, &input.key)
            .await?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
        let mut parts: Vec<_> = self
            .uploads
            .parts(&input.upload_id)
            .await
            .map_err(|e| internal_error(format!("{e}")))?
            .into_iter()
            .filter(|p| p.number > marker)
            .collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|p| p.number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(BUCKET.to_string()),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number),
                        size: Some(p.size as i64),
                        e_tag: Some(ETag::Strong(p.md5)),
                        last_modified: Some(Timestamp::from(p.modified)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        self.own_upload(&caller, &req.input.upload_id, &req.input.key)
            .await?;
        self.uploads
            .remove(&req.input.upload_id)
            .await
            .map_err(|e| internal_error(format!("{e}")))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let caller = self.caller_for_bucket(&req, &req.input.bucket).await?;
        let input = req.input;
        let info = self
            .own_upload(&caller, &input.upload_id, &input.key)
            .await?;
        let KeyTarget::File(path) = key_target(&input.key)? else {
            return Err(s3_error!(InvalidArgument, "not a file key"));
        };
        let stored = self
            .uploads
            .parts(&input.upload_id)
            .await
            .map_err(|e| internal_error(format!("{e}")))?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "the upload names no parts"));
        }
        let mut chosen = Vec::new();
        let mut last = 0;
        for p in &requested {
            let number = p.part_number.unwrap_or(0);
            if number <= last {
                return Err(s3_error!(InvalidPartOrder));
            }
            last = number;
            let Some(part) = stored.iter().find(|s| s.number == number) else {
                return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
            };
            let etag_ok = match &p.e_tag {
                Some(e) => e.value().trim_matches('"') == part.md5,
                None => true,
            };
            if !etag_ok {
                return Err(s3_error!(
                    InvalidPart,
                    "part {number}'s ETag does not match"
                ));
            }
            chosen.push(part.clone());
        }
        let etag = uploads::multipart_etag(&chosen);
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        let mtime = info.mtime.as_deref().and_then(parse_mtime);
        let body = self.uploads.read_parts(&input.upload_id, &chosen);
        let result = self
            .write_file(&caller, &path, body, Some(total), None, mtime)
            .await;
        caller.audited("upload", &path, result, total)?;
        if let Err(e) = self.uploads.remove(&input.upload_id).await {
            tracing::warn!("cannot remove the finished upload {}: {e}", input.upload_id);
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(BUCKET.to_string()),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }
}

impl Endpoint {
    /// The upload `id` if it belongs to the caller and `key`; `NoSuchUpload`
    /// otherwise (another user's upload does not exist for this one).
    async fn own_upload(&self, caller: &Caller, id: &str, key: &str) -> S3Result<UploadInfo> {
        match self.uploads.info(id).await {
            Ok(Some(info)) if info.user == caller.user.name && info.key == key => Ok(info),
            Ok(_) => Err(s3_error!(NoSuchUpload)),
            Err(e) => Err(internal_error(format!("{e}"))),
        }
    }

    /// The file a copy reads from (in the one bucket).
    fn copy_source(&self, source: &CopySource) -> S3Result<VirtualPath> {
        let (bucket, key) = match source {
            CopySource::Bucket { bucket, key, .. } => (bucket, key),
            _ => return Err(s3_error!(NotImplemented, "only bucket/key copy sources")),
        };
        check_bucket(bucket)?;
        match key_target(key)? {
            KeyTarget::File(p) => Ok(p),
            KeyTarget::Folder(_) => Err(s3_error!(
                InvalidArgument,
                "a folder marker cannot be copied"
            )),
        }
    }

    /// A file the caller may read; `NoSuchKey` for anything else.
    async fn readable_file(
        &self,
        caller: &Caller,
        path: &VirtualPath,
    ) -> S3Result<(Location, Metadata)> {
        let (loc, meta) = self.visible(caller, path).await?;
        if meta.kind != EntryKind::File || !caller.may(path, Permission::Read) {
            return Err(no_such_key(path));
        }
        Ok((loc, meta))
    }

    /// Deletes the object `key`: a file, or an empty folder by its marker.
    /// Deleting what does not exist succeeds, as on S3; deleting a
    /// folder's marker while the folder has files leaves it in place, as
    /// the folder still exists through them.
    async fn delete_key(&self, caller: &Caller, key: &str) -> S3Result<()> {
        let target = key_target(key)?;
        let path = target.path().clone();
        if path.is_root() {
            return Ok(());
        }
        let result = async {
            if !caller.sees(&path) {
                return Ok(());
            }
            caller.require(&path, Permission::Delete)?;
            let loc = caller.tree.locate(&path);
            let outcome = match target {
                KeyTarget::File(_) => loc.backend.remove(&loc.path).await,
                KeyTarget::Folder(_) => {
                    if caller.tree.locate(&path.parent()).mount != loc.mount {
                        // A mount point: removing it would remove the
                        // mounted folder on the remote.
                        return Ok(());
                    }
                    loc.backend.rmdir(&loc.path).await
                }
            };
            match outcome {
                Ok(()) => Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::NotFound
                            | ErrorKind::DirectoryNotEmpty
                            | ErrorKind::IsADirectory
                            | ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(storage_error(&path, e)),
            }
        }
        .await;
        caller.audited("delete", &path, result, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mtime_metadata_round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000);
        let m = mtime_metadata(Some(t)).unwrap();
        assert_eq!(metadata_mtime(Some(&m)), Some(t));
        let mut bad = s3s::dto::Metadata::new();
        bad.insert(MTIME_KEY.into(), "yesterday".into());
        assert_eq!(metadata_mtime(Some(&bad)), None);
        bad.insert(MTIME_KEY.into(), "-5".into());
        assert_eq!(metadata_mtime(Some(&bad)), None);
    }

    #[test]
    fn copy_ranges_stay_within_the_source() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(parse_copy_range("bytes=5-5", 10).unwrap(), 5..6);
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("bytes=6-5", 10).is_err());
        assert!(parse_copy_range("0-5", 10).is_err());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_encodes_the_rest() {
        assert_eq!(url_encode("a b/c+d/ü"), "a%20b/c%2Bd/%C3%BC");
    }

    #[test]
    fn content_md5_is_checked_for_shape() {
        assert_eq!(
            content_md5_hex("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(),
            EMPTY_MD5
        );
        assert!(content_md5_hex("nonsense!").is_err());
        assert!(content_md5_hex("AAAA").is_err());
    }

    #[test]
    fn version_etags_are_not_md5s_and_follow_changes() {
        let meta = |size| Metadata {
            kind: EntryKind::File,
            size,
            modified: Some(UNIX_EPOCH + Duration::from_secs(5)),
            mode: None,
        };
        let a = version_etag(&meta(1));
        assert!(a.ends_with("-1"));
        assert_ne!(a, version_etag(&meta(2)));
        assert_eq!(a, version_etag(&meta(1)));
    }
}
