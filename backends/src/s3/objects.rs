//! Single-object requests in file-system terms: what is at a path (a
//! file, a folder with or without a marker, or nothing), folder markers,
//! deletes and server-side copies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    ServerSideEncryption, StorageClass,
};
use futures::{StreamExt, TryStreamExt};

use super::answers::{self, Expected};
use super::connector::Connector;
use super::error::RemoteInfo;
use super::keys::{copy_source, Keys};
use super::mtime::{self, MTIME_KEY};
use super::pending::{PendingAborts, Retried};
use crate::backend::{EntryKind, HashKind, Metadata};
use crate::{Result, StoragePath};

/// Content type of the zero-byte object that marks a folder.
pub const FOLDER_CONTENT_TYPE: &str = "application/x-directory";
/// Largest object one CopyObject can copy; above, parts are copied.
const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// Size of one UploadPartCopy range.
const COPY_PART: u64 = 1024 * 1024 * 1024;
/// UploadPartCopy requests of one copy at once.
const COPY_PARTS_IN_FLIGHT: usize = 4;

/// One bucket as the backend uses it.
pub struct Bucket {
    /// The SDK client.
    pub client: aws_sdk_s3::Client,
    /// The connector under it (for the last local address).
    pub connector: Connector,
    /// The HTTP client under the SDK (its request slots).
    pub http: super::http::GatewayHttp,
    /// Names for messages.
    pub info: RemoteInfo,
    /// The key layout.
    pub keys: Keys,
    /// The signing region.
    pub region: String,
    /// Multipart-upload part size.
    pub part_size: usize,
    /// Whether folders may be renamed key by key.
    pub recursive_folder_rename: bool,
    /// Whether `mkdir` writes folder markers.
    pub folder_markers: bool,
    /// Chunks fetched ahead of sequential reads.
    pub read_ahead: usize,
    /// Multipart uploads to abort once the server answers again.
    pub pending: PendingAborts,
}

/// Headers an object keeps when its metadata is replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// Storage class, when not the standard one.
    pub storage_class: Option<StorageClass>,
}

/// What HEAD tells about an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The `mtime` metadata, else `LastModified`.
    pub modified: Option<SystemTime>,
    /// The entity tag, to read one version consistently.
    pub etag: Option<String>,
    /// User metadata (names without `x-amz-meta-`).
    pub metadata: HashMap<String, String>,
    /// Content headers.
    pub headers: ContentHeaders,
    /// The MD5 of the content, when the ETag is one: a single-part upload
    /// (a multipart ETag ends in `-N`) stored without SSE-KMS or SSE-C
    /// (whose ETags are not MD5s). Lowercase hex.
    pub md5: Option<String>,
    /// The full-object CRC-32 the server keeps for the object (lowercase
    /// hex), when the HEAD asked for checksums and there is one; a
    /// composite checksum of a multipart upload (`...-N`) is not one.
    pub crc32: Option<String>,
}

impl ObjectInfo {
    fn from_head(key: &str, out: &HeadObjectOutput) -> Self {
        let metadata = out.metadata().cloned().unwrap_or_default();
        let last_modified = out
            .last_modified()
            .and_then(|d| SystemTime::try_from(*d).ok());
        ObjectInfo {
            key: key.to_string(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            modified: metadata
                .get(MTIME_KEY)
                .and_then(|v| mtime::parse(v))
                .or(last_modified),
            etag: out.e_tag().map(str::to_string),
            headers: ContentHeaders {
                content_type: out.content_type().map(str::to_string),
                content_encoding: out.content_encoding().map(str::to_string),
                content_disposition: out.content_disposition().map(str::to_string),
                content_language: out.content_language().map(str::to_string),
                cache_control: out.cache_control().map(str::to_string),
                storage_class: out
                    .storage_class()
                    .filter(|c| **c != StorageClass::Standard)
                    .cloned(),
            },
            metadata,
            md5: md5_of_etag(out),
            crc32: full_object_crc32(out),
        }
    }

    /// The object's checksum of `kind`, if the server told it.
    pub fn checksum(&self, kind: HashKind) -> Option<String> {
        match kind {
            HashKind::Md5 => self.md5.clone(),
            HashKind::Crc32 => self.crc32.clone(),
        }
    }

    /// The object as a file's metadata.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: EntryKind::File,
            size: self.size,
            modified: self.modified,
            mode: None,
        }
    }
}

/// The MD5 an ETag stands for: only a plain (or SSE-S3) object's ETag of
/// exactly 32 hex digits (quotes stripped) is its content's MD5.
fn md5_of_etag(out: &HeadObjectOutput) -> Option<String> {
    let plain = matches!(
        out.server_side_encryption(),
        None | Some(ServerSideEncryption::Aes256)
    ) && out.sse_customer_algorithm().is_none();
    if !plain {
        return None;
    }
    let etag = out.e_tag()?.trim();
    let etag = etag
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag);
    crate::hash::normalize(HashKind::Md5, etag)
}

/// `x-amz-checksum-crc32` (base64 of the big-endian value) as hex, unless
/// it is a composite checksum of parts.
fn full_object_crc32(out: &HeadObjectOutput) -> Option<String> {
    let value = out.checksum_crc32()?.trim();
    if out.checksum_type() == Some(&ChecksumType::Composite) || value.contains('-') {
        return None;
    }
    let bytes: [u8; 4] = aws_smithy_types::base64::decode(value)
        .ok()?
        .try_into()
        .ok()?;
    Some(format!("{:08x}", u32::from_be_bytes(bytes)))
}

/// What a folder lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Whether the folder has a marker object (else only entries inside).
    pub marker: bool,
    /// The marker's time.
    pub modified: Option<SystemTime>,
}

impl FolderInfo {
    /// The folder's metadata.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: EntryKind::Dir,
            size: 0,
            modified: self.modified,
            mode: None,
        }
    }
}

/// What is at a path.
#[derive(Debug, Clone)]
pub enum Found {
    /// An object.
    File(Box<ObjectInfo>),
    /// A folder.
    Dir(FolderInfo),
}

impl Found {
    /// Its metadata.
    pub fn metadata(&self) -> Metadata {
        match self {
            Found::File(f) => f.metadata(),
            Found::Dir(d) => d.metadata(),
        }
    }
}

impl Bucket {
    /// What is at `path`: the object `key` (HEAD), else a folder (marker or
    /// entries under `key/`), else nothing.
    ///
    /// The first HEAD is not retried: a server error on it (s3s-fs answers
    /// 500 for a key that is a folder on its disk) sends the lookup to the
    /// folder check first, and only if there is no folder is the HEAD
    /// repeated with retries, so a real server error is still reported.
    pub async fn lookup(&self, path: &StoragePath, op: &'static str) -> Result<Option<Found>> {
        self.lookup_with(path, op, false).await
    }

    /// [`Bucket::lookup`]; with `checksums`, HEAD asks for the checksums
    /// the server keeps (`x-amz-checksum-mode: ENABLED`), which fill
    /// [`ObjectInfo::crc32`].
    pub async fn lookup_with(
        &self,
        path: &StoragePath,
        op: &'static str,
        checksums: bool,
    ) -> Result<Option<Found>> {
        if path.is_root() {
            return Ok(Some(Found::Dir(FolderInfo {
                marker: false,
                modified: None,
            })));
        }
        let key = self.keys.object(path);
        let quick = self
            .client
            .head_object()
            .bucket(&self.info.bucket)
            .key(&key)
            .set_checksum_mode(checksums.then_some(ChecksumMode::Enabled))
            .customize()
            .config_override(aws_sdk_s3::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await;
        let file = match quick {
            Ok(out) => {
                return Ok(Some(Found::File(Box::new(ObjectInfo::from_head(
                    &key, &out,
                )))))
            }
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => None,
                Some(status) if status >= 500 => {
                    if let Some(folder) = self.folder(path, op).await? {
                        return Ok(Some(Found::Dir(folder)));
                    }
                    return match self.head_with(&key, op, path, checksums).await {
                        Ok(file) => Ok(file.map(|f| Found::File(Box::new(f)))),
                        // Some servers (s3s-fs) answer HEAD on a folder with
                        // an error, and a folder whose first object is still
                        // being written lists empty: look once more before
                        // reporting the error.
                        Err(e) => match self.folder(path, op).await? {
                            Some(folder) => Ok(Some(Found::Dir(folder))),
                            None => Err(e),
                        },
                    };
                }
                Some(_) => return Err(self.info.sdk(op, path.as_str(), e)),
                // A connection that broke is worth the retries; a timeout is final.
                None => {
                    let err = self.info.sdk(op, path.as_str(), e);
                    if err.kind() != crate::ErrorKind::ConnectionLost {
                        return Err(err);
                    }
                    self.head_with(&key, op, path, checksums).await?
                }
            },
        };
        match file {
            Some(info) => Ok(Some(Found::File(Box::new(info)))),
            None => Ok(self.folder(path, op).await?.map(Found::Dir)),
        }
    }

    /// HEAD of `key` with retries; `None` when it does not exist.
    pub async fn head(
        &self,
        key: &str,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Option<ObjectInfo>> {
        self.head_with(key, op, path, false).await
    }

    /// [`Bucket::head`], asking for stored checksums with `checksums`.
    async fn head_with(
        &self,
        key: &str,
        op: &'static str,
        path: &StoragePath,
        checksums: bool,
    ) -> Result<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.info.bucket)
            .key(key)
            .set_checksum_mode(checksums.then_some(ChecksumMode::Enabled))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo::from_head(key, &out))),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(self.info.sdk(op, path.as_str(), e)),
        }
    }

    /// Whether the folder `path` exists: its marker or any key under it.
    pub async fn folder(&self, path: &StoragePath, op: &'static str) -> Result<Option<FolderInfo>> {
        if path.is_root() {
            return Ok(Some(FolderInfo {
                marker: false,
                modified: None,
            }));
        }
        let prefix = self.keys.folder(path);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.info.bucket)
            .prefix(&prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.info.sdk(op, path.as_str(), e))?;
        // The marker, when there is one, sorts before everything under it.
        Ok(out.contents().first().map(|first| {
            let marker = first.key() == Some(prefix.as_str());
            FolderInfo {
                marker,
                modified: first
                    .last_modified()
                    .filter(|_| marker)
                    .and_then(|d| SystemTime::try_from(*d).ok()),
            }
        }))
    }

    /// Up to `max` keys under the folder `path` (its marker included).
    pub async fn keys_under(
        &self,
        path: &StoragePath,
        max: i32,
        op: &'static str,
    ) -> Result<Vec<String>> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.info.bucket)
            .prefix(self.keys.folder(path))
            .max_keys(max)
            .send()
            .await
            .map_err(|e| self.info.sdk(op, path.as_str(), e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    /// Every key under `prefix` with its size, page by page.
    pub async fn all_under(
        &self,
        prefix: &str,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.info.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.info.sdk(op, path.as_str(), e))?;
            out.extend(page.contents().iter().filter_map(|o| {
                let size = o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                o.key().map(|k| (k.to_string(), size))
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Writes the zero-byte marker of the folder `path`.
    pub async fn put_marker(&self, path: &StoragePath, op: &'static str) -> Result<()> {
        let key = self.keys.folder(path);
        let mtime = mtime::format(SystemTime::now());
        let result = self
            .client
            .put_object()
            .bucket(&self.info.bucket)
            .key(&key)
            .content_type(FOLDER_CONTENT_TYPE)
            .content_length(0)
            .metadata(MTIME_KEY, &mtime)
            .body(ByteStream::from_static(b""))
            .send()
            .await;
        let Some(answer) = answers::sort_out(result, self, op, path)? else {
            return Ok(());
        };
        let expected = Expected {
            size: 0,
            etag: Some(answers::plain_etag(b"")),
            mtime: Some(mtime),
        };
        self.confirm("PutObject", &key, &expected, &answer, op, path)
            .await
    }

    /// Deletes `key` (S3 answers success for a missing key too).
    pub async fn delete(&self, key: &str, op: &'static str, path: &StoragePath) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.info.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.info.sdk(op, path.as_str(), e))?;
        Ok(())
    }

    /// Copies `src` to `dst_key` on the server. With `metadata`, the copy
    /// gets it (and `src`'s content headers) instead of `src`'s metadata,
    /// which also lets an object be copied onto itself. Objects above
    /// 5 GiB are copied in parts.
    pub async fn copy(
        &self,
        src: &ObjectInfo,
        dst_key: &str,
        metadata: Option<HashMap<String, String>>,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<()> {
        if src.size > MAX_SINGLE_COPY {
            let metadata = metadata.unwrap_or_else(|| src.metadata.clone());
            return self.copy_in_parts(src, dst_key, metadata, op, path).await;
        }
        // What the copy should look like: the source's size, its ETag if
        // that is an MD5 (a copy keeps it), the new or copied `mtime`.
        let expected = Expected {
            size: src.size,
            etag: src.md5.clone(),
            mtime: metadata
                .as_ref()
                .unwrap_or(&src.metadata)
                .get(MTIME_KEY)
                .cloned(),
        };
        let mut request = self
            .client
            .copy_object()
            .bucket(&self.info.bucket)
            .key(dst_key)
            .copy_source(copy_source(&self.info.bucket, &src.key));
        if let Some(metadata) = metadata {
            let h = &src.headers;
            request = request
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(metadata))
                .set_content_type(h.content_type.clone())
                .set_content_encoding(h.content_encoding.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_cache_control(h.cache_control.clone())
                .set_storage_class(h.storage_class.clone());
        } else if let Some(class) = &src.headers.storage_class {
            request = request.storage_class(class.clone());
        }
        let result = request.send().await;
        let Some(answer) = answers::sort_out(result, self, op, path)? else {
            return Ok(());
        };
        self.confirm("CopyObject", dst_key, &expected, &answer, op, path)
            .await
    }

    async fn copy_in_parts(
        &self,
        src: &ObjectInfo,
        dst_key: &str,
        metadata: HashMap<String, String>,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<()> {
        let h = &src.headers;
        let mtime = metadata.get(MTIME_KEY).cloned();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.info.bucket)
            .key(dst_key)
            .set_metadata(Some(metadata))
            .set_content_type(h.content_type.clone())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
            .set_storage_class(h.storage_class.clone())
            .send()
            .await;
        let upload_id = self.upload_id(created, dst_key, op, path)?;
        let source = copy_source(&self.info.bucket, &src.key);
        let ranges: Vec<(i32, u64, u64)> = (0..src.size)
            .step_by(usize::try_from(COPY_PART).unwrap_or(usize::MAX))
            .zip(1..)
            .map(|(start, n)| (n, start, (start + COPY_PART).min(src.size) - 1))
            .collect();
        let parts: Result<Vec<CompletedPart>> = futures::stream::iter(ranges)
            .map(|(n, first, last)| {
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.info.bucket)
                    .key(dst_key)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={first}-{last}"));
                async move {
                    let out = request
                        .send()
                        .await
                        .map_err(|e| self.info.sdk(op, path.as_str(), e))?;
                    let etag = out.copy_part_result().and_then(|r| r.e_tag());
                    Ok(CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(etag.map(str::to_string))
                        .build())
                }
            })
            .buffered(COPY_PARTS_IN_FLIGHT)
            .try_collect()
            .await;
        let completed = match parts {
            Ok(parts) => {
                let expected = Expected {
                    size: src.size,
                    etag: answers::multipart_etag(parts.iter().map(|p| p.e_tag())),
                    mtime: mtime.clone(),
                };
                let result = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.info.bucket)
                    .key(dst_key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match answers::sort_out(result, self, op, path) {
                    Ok(None) => Ok(()),
                    Ok(Some(answer)) => {
                        let check = "CompleteMultipartUpload";
                        self.confirm(check, dst_key, &expected, &answer, op, path)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if completed.is_err() {
            self.abort_upload(dst_key, &upload_id).await;
        }
        completed
    }

    /// Aborts a multipart upload, logging (not returning) a failure. When
    /// the server cannot be reached now, the abort is remembered and
    /// retried after the next request that works
    /// ([`Bucket::retry_pending_aborts`]).
    pub async fn abort_upload(&self, key: &str, upload_id: &str) {
        match self.try_abort(key, upload_id).await {
            (Retried::Aborted | Retried::Gone, _) => {}
            (Retried::Unreachable, why) => self.pending.remember(key, upload_id, &why),
            (Retried::Refused, why) => tracing::warn!(
                remote = %self.info.name,
                key,
                upload_id,
                "could not abort a multipart upload ({why}); its parts stay until the bucket's lifecycle rules remove them"
            ),
        }
    }

    /// One AbortMultipartUpload, and what came of it with the reason.
    async fn try_abort(&self, key: &str, upload_id: &str) -> (Retried, String) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.info.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        let Err(e) = result else {
            return (Retried::Aborted, String::new());
        };
        let status = e.raw_response().map(|r| r.status().as_u16());
        let err = self.info.sdk("abort upload", key, e);
        let why = err.message().to_string();
        let outcome = if err.kind() == crate::ErrorKind::NotFound {
            Retried::Gone
        } else if err.is_temporary() || status.is_none_or(|s| s >= 500) {
            // No answer at all (down, unreachable, cannot bind), or the
            // server failing: worth trying again later.
            Retried::Unreachable
        } else {
            Retried::Refused
        };
        (outcome, why)
    }

    /// Aborts the remembered multipart uploads in the background, one run
    /// at a time; call after a request that reached the server. A run
    /// stops at the first abort that cannot reach the server (the rest
    /// wait for the next call).
    pub fn retry_pending_aborts(self: &Arc<Self>) {
        if !self.pending.start_run() {
            return;
        }
        /// Ends the run however the task ends.
        struct Running(Arc<Bucket>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.pending.finish_run();
            }
        }
        let running = Running(self.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let bucket = &running.0;
            for (key, upload_id) in bucket.pending.list() {
                let (outcome, why) = bucket.try_abort(&key, &upload_id).await;
                bucket.pending.settle(&key, &upload_id, outcome, &why);
                if outcome == Retried::Unreachable {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> aws_sdk_s3::operation::head_object::builders::HeadObjectOutputBuilder {
        HeadObjectOutput::builder()
    }

    #[test]
    fn only_a_single_part_unencrypted_etag_is_an_md5() {
        let md5 = |out: HeadObjectOutput| md5_of_etag(&out);
        let etag = "\"B1946AC92492D2347C6235B4D2611184\"";
        assert_eq!(
            md5(head().e_tag(etag).build()).as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184")
        );
        assert_eq!(
            md5(head()
                .e_tag("b1946ac92492d2347c6235b4d2611184")
                .server_side_encryption(ServerSideEncryption::Aes256)
                .build())
            .as_deref(),
            Some("b1946ac92492d2347c6235b4d2611184"),
            "no quotes, SSE-S3"
        );
        assert_eq!(
            md5(head()
                .e_tag("\"b1946ac92492d2347c6235b4d2611184-3\"")
                .build()),
            None,
            "multipart"
        );
        assert_eq!(
            md5(head()
                .e_tag(etag)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .build()),
            None
        );
        assert_eq!(
            md5(head().e_tag(etag).sse_customer_algorithm("AES256").build()),
            None
        );
        assert_eq!(md5(head().build()), None);
        assert_eq!(md5(head().e_tag("\"abc\"").build()), None);
    }

    #[test]
    fn a_full_object_crc32_is_read_from_base64() {
        let crc = |out: HeadObjectOutput| full_object_crc32(&out);
        // CRC-32 of "hello\n" is 0x363a3020: bytes 36 3a 30 20 → "NjowIA==".
        assert_eq!(
            crc(head().checksum_crc32("NjowIA==").build()).as_deref(),
            Some("363a3020")
        );
        assert_eq!(
            crc(head()
                .checksum_crc32("AAAAAA==")
                .checksum_type(ChecksumType::FullObject)
                .build())
            .as_deref(),
            Some("00000000")
        );
        assert_eq!(crc(head().checksum_crc32("NjowIA==-2").build()), None);
        assert_eq!(
            crc(head()
                .checksum_crc32("NjowIA==")
                .checksum_type(ChecksumType::Composite)
                .build()),
            None
        );
        assert_eq!(crc(head().checksum_crc32("not base64!").build()), None);
        assert_eq!(
            crc(head().checksum_crc32("NjowIDA=").build()),
            None,
            "5 bytes"
        );
        assert_eq!(crc(head().build()), None);
    }
}
