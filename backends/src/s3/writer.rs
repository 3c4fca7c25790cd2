//! An object being written. Data collects in a buffer of one part; when
//! more arrives than a part holds, the full part is sent as a part of a
//! multipart upload (started then), with at most [`PARTS_IN_FLIGHT`]
//! parts being sent while the next one fills. Closing sends the rest and
//! completes the upload, or, for a file smaller than one part, sends it in
//! one PUT. The object appears only then. A failed, aborted or dropped
//! upload is aborted on the server (AbortMultipartUpload), so its parts do
//! not linger; when the server cannot be reached at that moment, the
//! abort is remembered (`pending`) and done after the next request that
//! reaches it. A part that failed to send fails the next write.
//!
//! A 2xx answer to the PUT or CompleteMultipartUpload that the SDK cannot
//! read (moto's CompleteMultipartUpload) is checked with HEAD (size, the
//! ETag S3 computes from the part ETags, the `mtime` metadata) before the
//! upload is called failed or aborted (see `answers`).

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Buf, Bytes, BytesMut};
use tokio::task::JoinSet;

use super::answers::{self, Expected};
use super::mtime::{self, MTIME_KEY};
use super::objects::Bucket;
use super::PARTS_IN_FLIGHT;
use crate::backend::FileWriter;
use crate::{BackendError, ErrorKind, Result, StoragePath};

/// Most parts one multipart upload may have.
const MAX_PARTS: i32 = 10_000;

/// An upload in progress.
pub struct S3Writer {
    bucket: Arc<Bucket>,
    path: StoragePath,
    key: String,
    /// The part being filled (at most one part).
    buffer: BytesMut,
    position: u64,
    /// The multipart upload, once a full part was sent.
    upload: Option<Upload>,
    /// Closed, aborted or failed: nothing more is accepted.
    ended: bool,
}

struct Upload {
    id: String,
    /// The `mtime` metadata it was started with.
    mtime: String,
    next_part: i32,
    parts: Vec<CompletedPart>,
    sending: JoinSet<Result<CompletedPart>>,
}

impl S3Writer {
    /// A writer of `path`; nothing is sent before a part is full or close.
    pub fn new(bucket: Arc<Bucket>, path: StoragePath) -> Self {
        let key = bucket.keys.object(&path);
        S3Writer {
            bucket,
            path,
            key,
            buffer: BytesMut::new(),
            position: 0,
            upload: None,
            ended: false,
        }
    }

    fn err(&self, kind: ErrorKind, message: impl std::fmt::Display) -> BackendError {
        self.bucket
            .info
            .error(kind, "write", self.path.as_str(), message)
    }

    /// Keeps the results of parts that finished sending; the first part
    /// that failed is an error now, not once more parts were queued
    /// behind it.
    fn reap(&mut self) -> Result<()> {
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        while let Some(done) = upload.sending.try_join_next() {
            keep(upload, &self.bucket, &self.path, done)?;
        }
        Ok(())
    }

    /// Sends one full part, starting the multipart upload first if needed.
    async fn send_part(&mut self, part: Bytes) -> Result<()> {
        self.reap()?;
        if self.upload.is_none() {
            self.upload = Some(self.start().await?);
        }
        if self
            .upload
            .as_ref()
            .is_some_and(|u| u.next_part > MAX_PARTS)
        {
            let part_size = self.bucket.part_size as u64;
            return Err(self.err(
                ErrorKind::NoSpace,
                format!(
                    "the file is too large: an upload has at most {MAX_PARTS} parts of {} MiB ({} GiB)",
                    part_size >> 20,
                    (part_size * MAX_PARTS as u64) >> 30
                ),
            ));
        }
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        while upload.sending.len() >= PARTS_IN_FLIGHT {
            collect_one(upload, &self.bucket, &self.path).await?;
        }
        let number = upload.next_part;
        upload.next_part += 1;
        let request = self
            .bucket
            .client
            .upload_part()
            .bucket(&self.bucket.info.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .part_number(number)
            .content_length(part.len() as i64)
            .body(ByteStream::from(part));
        let bucket = self.bucket.clone();
        let path = self.path.clone();
        upload.sending.spawn(async move {
            let out = request
                .send()
                .await
                .map_err(|e| bucket.info.sdk("write", path.as_str(), e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        });
        Ok(())
    }

    async fn start(&self) -> Result<Upload> {
        let mtime = mtime::format(SystemTime::now());
        let result = self
            .bucket
            .client
            .create_multipart_upload()
            .bucket(&self.bucket.info.bucket)
            .key(&self.key)
            .metadata(MTIME_KEY, &mtime)
            .send()
            .await;
        let id = self
            .bucket
            .upload_id(result, &self.key, "write", &self.path)?;
        Ok(Upload {
            id,
            mtime,
            next_part: 1,
            parts: Vec::new(),
            sending: JoinSet::new(),
        })
    }

    /// Sends the whole file in one PUT.
    async fn put_whole(&mut self) -> Result<()> {
        let data = std::mem::take(&mut self.buffer).freeze();
        let mtime = mtime::format(SystemTime::now());
        let result = self
            .bucket
            .client
            .put_object()
            .bucket(&self.bucket.info.bucket)
            .key(&self.key)
            .content_length(data.len() as i64)
            .metadata(MTIME_KEY, &mtime)
            .body(ByteStream::from(data.clone()))
            .send()
            .await;
        let Some(answer) = answers::sort_out(result, &self.bucket, "write", &self.path)? else {
            return Ok(());
        };
        let expected = Expected {
            size: data.len() as u64,
            etag: Some(answers::plain_etag(&data)),
            mtime: Some(mtime),
        };
        self.bucket
            .confirm(
                "PutObject",
                &self.key,
                &expected,
                &answer,
                "write",
                &self.path,
            )
            .await
    }

    /// Sends the last part, waits for all, and completes the upload.
    async fn finish_upload(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer).freeze();
            self.send_part(last).await?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        while !upload.sending.is_empty() {
            collect_one(upload, &self.bucket, &self.path).await?;
        }
        let mut parts = std::mem::take(&mut upload.parts);
        parts.sort_by_key(|p| p.part_number());
        let expected = Expected {
            size: self.position,
            etag: answers::multipart_etag(parts.iter().map(|p| p.e_tag())),
            mtime: Some(upload.mtime.clone()),
        };
        let result = self
            .bucket
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket.info.bucket)
            .key(&self.key)
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Some(answer) = answers::sort_out(result, &self.bucket, "write", &self.path)? {
            // The upload stays set when this fails, so it is aborted.
            self.bucket
                .confirm(
                    "CompleteMultipartUpload",
                    &self.key,
                    &expected,
                    &answer,
                    "write",
                    &self.path,
                )
                .await?;
        }
        self.upload = None;
        Ok(())
    }

    /// Stops sending parts and aborts the multipart upload, if any.
    async fn discard(&mut self) {
        self.ended = true;
        self.buffer = BytesMut::new();
        if let Some(mut upload) = self.upload.take() {
            upload.sending.shutdown().await;
            self.bucket.abort_upload(&self.key, &upload.id).await;
        }
    }

    /// Ends the upload after `err`: aborts it and returns `err`.
    async fn fail(&mut self, err: BackendError) -> BackendError {
        self.discard().await;
        err
    }
}

/// Waits for one part being sent and keeps its result.
async fn collect_one(upload: &mut Upload, bucket: &Bucket, path: &StoragePath) -> Result<()> {
    match upload.sending.join_next().await {
        Some(done) => keep(upload, bucket, path, done),
        None => Ok(()),
    }
}

/// Keeps the result of one part that finished sending.
fn keep(
    upload: &mut Upload,
    bucket: &Bucket,
    path: &StoragePath,
    done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
) -> Result<()> {
    match done {
        Ok(Ok(part)) => {
            upload.parts.push(part);
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(join) => Err(bucket.info.error(
            ErrorKind::Other,
            "write",
            path.as_str(),
            format!("sending a part failed: {join}"),
        )),
    }
}

#[async_trait::async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        if self.ended {
            return Err(self.err(ErrorKind::ConnectionLost, "the upload was already ended"));
        }
        if let Err(e) = self.reap() {
            return Err(self.fail(e).await);
        }
        let part_size = self.bucket.part_size;
        let len = data.len() as u64;
        while !data.is_empty() {
            // A full part is sent only once more data arrives, so a file of
            // exactly one part still goes in one PUT.
            if self.buffer.len() >= part_size {
                let full = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(part_size));
                if let Err(e) = self.send_part(full.freeze()).await {
                    return Err(self.fail(e).await);
                }
            }
            let n = (part_size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..n]);
            data.advance(n);
        }
        self.position += len;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if self.ended {
            return Err(self.err(ErrorKind::ConnectionLost, "the upload was already ended"));
        }
        let result = if self.upload.is_none() {
            self.put_whole().await
        } else {
            self.finish_upload().await
        };
        match result {
            Ok(()) => {
                self.ended = true;
                self.bucket.retry_pending_aborts();
                Ok(())
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let bucket = self.bucket.clone();
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    upload.sending.shutdown().await;
                    bucket.abort_upload(&key, &upload.id).await;
                });
            }
            Err(_) => tracing::warn!(
                remote = %bucket.info.name,
                key,
                "an upload was dropped outside the runtime; its parts stay until the bucket's lifecycle rules remove them"
            ),
        }
    }
}
