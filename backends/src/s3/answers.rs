//! Write answers the SDK cannot read, and what they mean.
//!
//! aws-sdk-s3 reads a 2xx answer in two ways that matter here:
//! - A body whose root element is `Error` is an error with the server's
//!   code, whatever the status. AWS documents such "200 with an error"
//!   answers for CompleteMultipartUpload, CopyObject and UploadPartCopy
//!   (the server sends 200 at once and fails later). [`RemoteInfo::sdk`]
//!   reports them as errors and says the error came inside a 2xx.
//! - A body it cannot parse at all (moto 5.x answers CompleteMultipartUpload
//!   with the root `CompleteMultipartUploadResponse`, where AWS documents
//!   `CompleteMultipartUploadResult`) is an error without a code. That is
//!   no failure: the server said yes in words the SDK does not know.
//!   [`unreadable`] recognises it. Where the outcome can be checked (the
//!   object a CompleteMultipartUpload or CopyObject should have made), it
//!   is checked with HEAD before the write is called failed or its upload
//!   aborted ([`Bucket::confirm`]); [`judge`] decides. Where it cannot (a
//!   CreateMultipartUpload or UploadPartCopy answer carries the upload id
//!   or part ETag only in the body), the write fails with a message naming
//!   the body's root element; except that the upload id of a
//!   CreateMultipartUpload answer is read from the body's `UploadId`
//!   element when the SDK cannot read it (`rclone serve s3` answers with
//!   the root `InitiateMultipartUpload`, AWS documents
//!   `InitiateMultipartUploadResult`), after checking its `Key`.
//!
//! PutObject, UploadPart, DeleteObject and AbortMultipartUpload answers
//! carry everything in headers: the SDK does not read their bodies, so
//! only an `Error` body can change their outcome.
//!
//! [`RemoteInfo::sdk`]: super::error::RemoteInfo::sdk

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_multipart_upload::{
    CreateMultipartUploadError, CreateMultipartUploadOutput,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use md5::{Digest, Md5};

use super::mtime::{self, MTIME_KEY};
use super::objects::{Bucket, ObjectInfo};
use crate::{BackendError, ErrorKind, Result, StoragePath};

/// How much of an unreadable body goes into logs and messages.
const BODY_SHOWN: usize = 300;

/// Two `mtime` metadata values closer than this are the same time (a
/// server may store it with less precision than the gateway writes).
const MTIME_TOLERANCE: Duration = Duration::from_secs(1);

/// A 2xx answer whose body the SDK could not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The HTTP status.
    pub status: u16,
    /// The body's root element, when it is XML at all.
    pub root: Option<String>,
    /// The start of the body (lossy UTF-8, at most [`BODY_SHOWN`] bytes).
    pub body: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} with a body the S3 client cannot read",
            self.status
        )?;
        match &self.root {
            Some(root) => write!(f, " (root element `{root}`)"),
            None if self.body.is_empty() => write!(f, " (empty)"),
            None => write!(f, " (not XML)"),
        }
    }
}

/// The unreadable 2xx behind `err`, if that is what it is: a service error
/// without an error code on a 2xx answer whose body is not an `Error`
/// document.
pub fn unreadable<E>(err: &SdkError<E, HttpResponse>) -> Option<Unreadable>
where
    E: ProvideErrorMetadata,
{
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    if service.err().code().is_some() {
        return None;
    }
    let raw = service.raw();
    classify_answer(
        raw.status().as_u16(),
        raw.body().bytes().unwrap_or_default(),
    )
}

/// [`unreadable`] on the status and body alone.
pub fn classify_answer(status: u16, body: &[u8]) -> Option<Unreadable> {
    if !(200..300).contains(&status) {
        return None;
    }
    let root = root_element(body);
    if root.as_deref() == Some("Error") {
        return None;
    }
    let shown = &body[..body.len().min(BODY_SHOWN)];
    Some(Unreadable {
        status,
        root,
        body: String::from_utf8_lossy(shown).trim().to_string(),
    })
}

/// The name of an XML document's root element (prefix included), after
/// the declaration, comments, processing instructions and a DOCTYPE.
pub fn root_element(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        let after = rest.strip_prefix('<')?;
        if let Some(inner) = after.strip_prefix("!--") {
            rest = &inner[inner.find("-->")? + 3..];
        } else if after.starts_with('?') || after.starts_with('!') {
            rest = &after[after.find('>')? + 1..];
        } else {
            let end = after
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(after.len());
            let name = &after[..end];
            return (!name.is_empty()).then(|| name.to_string());
        }
    }
}

/// The text of the first `<tag>…</tag>` element in `body`, XML escapes
/// undone (`&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#N;` `&#xN;`).
pub fn element_text(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    let raw = &text[start..end];
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail.find(';')?;
        let entity = &tail[..end];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32)?,
        };
        out.push(ch);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The upload id in an unreadable CreateMultipartUpload answer for `key`:
/// its `UploadId`, when its `Key` (if any) is `key`.
pub fn upload_id_in(body: &[u8], key: &str) -> Option<String> {
    if element_text(body, "Key").is_some_and(|k| k != key) {
        return None;
    }
    element_text(body, "UploadId").filter(|id| !id.trim().is_empty())
}

/// An ETag without quotes, in lowercase.
pub fn normalize_etag(etag: &str) -> String {
    let etag = etag.trim();
    etag.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag)
        .to_ascii_lowercase()
}

/// The 16 bytes of a 32-hex-digit MD5 ETag.
fn md5_bytes(etag: &str) -> Option<[u8; 16]> {
    let hex = normalize_etag(etag);
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The ETag S3 gives an object completed from parts with these ETags (in
/// part order): the MD5 of the parts' MD5s, a dash and the number of
/// parts. `None` when a part's ETag is not an MD5 (SSE-KMS, some servers).
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let mut md5 = Md5::new();
    let mut n = 0usize;
    for etag in part_etags {
        md5.update(md5_bytes(etag?)?);
        n += 1;
    }
    (n > 0).then(|| format!("{}-{n}", crate::hash::hex(&md5.finalize())))
}

/// The MD5 ETag of a single-part object with this content.
pub fn plain_etag(data: &[u8]) -> String {
    crate::hash::hex(&Md5::digest(data))
}

/// What a write should have left on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The object's size.
    pub size: u64,
    /// Its ETag as S3 computes it (normalized), when known.
    pub etag: Option<String>,
    /// The `mtime` metadata the write set.
    pub mtime: Option<String>,
}

/// What HEAD shows of the object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its size.
    pub size: u64,
    /// Its ETag, when the server gives one.
    pub etag: Option<String>,
    /// Its `mtime` metadata, when the server keeps user metadata.
    pub mtime: Option<String>,
}

impl Seen {
    /// What HEAD told.
    pub fn from_info(info: &ObjectInfo) -> Self {
        Seen {
            size: info.size,
            etag: info.etag.clone(),
            mtime: info.metadata.get(MTIME_KEY).cloned(),
        }
    }
}

/// Whether the write happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The object is the one written; how that was seen.
    Written(String),
    /// It is not; why.
    NotWritten(String),
}

/// Whether an ETag is a multipart one (`...-N`).
fn is_multipart(etag: &str) -> bool {
    etag.rsplit_once('-')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Decides from HEAD (`None`: no such object) whether a write whose answer
/// could not be read happened. Any comparable difference means no: the
/// size, an ETag of the same form (both multipart or both plain; a server
/// that gives a multipart object a plain ETag cannot be compared), the
/// `mtime` metadata (within [`MTIME_TOLERANCE`]). Otherwise a matching
/// ETag or `mtime` means yes, and where the server gives neither, the size
/// alone does (said so in the verdict).
pub fn judge(expected: &Expected, seen: Option<&Seen>) -> Verdict {
    let Some(seen) = seen else {
        return Verdict::NotWritten("the object does not exist".into());
    };
    if seen.size != expected.size {
        return Verdict::NotWritten(format!(
            "the object has {} bytes, not the {} written",
            seen.size, expected.size
        ));
    }
    let mut matched = vec!["size"];
    if let (Some(want), Some(got)) = (&expected.etag, &seen.etag) {
        let (want, got) = (normalize_etag(want), normalize_etag(got));
        if is_multipart(&want) == is_multipart(&got) {
            if want != got {
                return Verdict::NotWritten(format!(
                    "the object's ETag is {got}, not {want} (another object)"
                ));
            }
            matched.push("ETag");
        }
    }
    if let (Some(want), Some(got)) = (&expected.mtime, &seen.mtime) {
        let same = match (mtime::parse(want), mtime::parse(got)) {
            (Some(a), Some(b)) => {
                a.duration_since(b).unwrap_or_else(|e| e.duration()) < MTIME_TOLERANCE
            }
            _ => want.trim() == got.trim(),
        };
        if !same {
            return Verdict::NotWritten(format!(
                "the object's mtime metadata is {got}, not {want} (another write's)"
            ));
        }
        matched.push("mtime metadata");
    }
    if matched.len() == 1 {
        return Verdict::Written(
            "its size matches (the server gives no comparable ETag or metadata)".into(),
        );
    }
    Verdict::Written(format!("{} match", matched.join(" and ")))
}

impl Bucket {
    /// After `answer` (an unreadable 2xx to the write `request` of `key`),
    /// checks with HEAD whether the object is what `expected` says: `Ok`
    /// when it is (logged at WARN, the server answers oddly), else the
    /// error that the write failed, saying why and what the server sent.
    pub async fn confirm(
        &self,
        request: &'static str,
        key: &str,
        expected: &Expected,
        answer: &Unreadable,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<()> {
        let seen = match self.head(key, op, path).await {
            Ok(info) => info.as_ref().map(Seen::from_info),
            Err(e) => {
                return Err(self.info.error(
                    e.kind(),
                    op,
                    path.as_str(),
                    format!(
                        "the server answered {request} with {answer}, and checking the object failed: {}",
                        e.message()
                    ),
                ))
            }
        };
        match judge(expected, seen.as_ref()) {
            Verdict::Written(how) => {
                tracing::warn!(
                    remote = %self.info.name,
                    key,
                    body = %answer.body,
                    "the server answered {request} with {answer}; HEAD shows the object written ({how}): taken as done"
                );
                Ok(())
            }
            Verdict::NotWritten(why) => {
                tracing::warn!(
                    remote = %self.info.name,
                    key,
                    body = %answer.body,
                    "the server answered {request} with {answer}, and {why}: the write failed"
                );
                Err(self.info.error(
                    ErrorKind::Other,
                    op,
                    path.as_str(),
                    format!("the server answered {request} with {answer}, and {why}"),
                ))
            }
        }
    }
}

impl Bucket {
    /// The upload id of a CreateMultipartUpload of `key`, read from the
    /// body when the SDK could not read the answer (see the module docs).
    pub fn upload_id(
        &self,
        result: std::result::Result<
            CreateMultipartUploadOutput,
            SdkError<CreateMultipartUploadError, HttpResponse>,
        >,
        key: &str,
        op: &'static str,
        path: &StoragePath,
    ) -> Result<String> {
        let err = match result {
            Ok(out) => {
                return out.upload_id().map(str::to_string).ok_or_else(|| {
                    self.info.error(
                        ErrorKind::Other,
                        op,
                        path.as_str(),
                        "the server started a multipart upload without an upload id",
                    )
                })
            }
            Err(e) => e,
        };
        let Some(answer) = unreadable(&err) else {
            return Err(self.info.sdk(op, path.as_str(), err));
        };
        let body = err
            .raw_response()
            .and_then(|r| r.body().bytes())
            .unwrap_or_default();
        match upload_id_in(body, key) {
            Some(id) => {
                tracing::debug!(
                    remote = %self.info.name,
                    key,
                    "the server answered CreateMultipartUpload with {answer}; its UploadId element is used"
                );
                Ok(id)
            }
            None => Err(self.info.error(
                ErrorKind::Other,
                op,
                path.as_str(),
                format!(
                    "the server answered CreateMultipartUpload with {answer}, without an upload id for this key: {}",
                    answer.body
                ),
            )),
        }
    }
}

/// Turns the result of a write whose outcome [`Bucket::confirm`] can check
/// into `Ok`, `Err(Some(unreadable answer))` to check, or the error.
pub fn sort_out<T, E>(
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    bucket: &Bucket,
    op: &'static str,
    path: &StoragePath,
) -> std::result::Result<Option<Unreadable>, BackendError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(None),
        Err(e) => match unreadable(&e) {
            Some(answer) => Ok(Some(answer)),
            None => Err(bucket.info.sdk(op, path.as_str(), e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// moto 5.2.1's answer to CompleteMultipartUpload, as sent.
    pub const MOTO_COMPLETE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CompleteMultipartUploadResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://bkt3.s3.amazonaws.com/k</Location><Bucket>bkt3</Bucket><Key>k</Key><ETag>\"9796c8a482330829a9e013d968a09458-2\"</ETag></CompleteMultipartUploadResponse>";

    #[test]
    fn an_upload_id_is_read_from_a_body_the_sdk_cannot_read() {
        // rclone serve s3 1.75's answer to CreateMultipartUpload.
        let rclone = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUpload>\n  <Bucket>gw-test</Bucket>\n  <Key>d/a &amp; b</Key>\n  <UploadId>4525fb02-5c2b-425b-9f22-8d00969acf6c</UploadId>\n</InitiateMultipartUpload>";
        let answer = classify_answer(200, rclone).unwrap();
        assert_eq!(answer.root.as_deref(), Some("InitiateMultipartUpload"));
        assert_eq!(
            upload_id_in(rclone, "d/a & b").as_deref(),
            Some("4525fb02-5c2b-425b-9f22-8d00969acf6c")
        );
        assert_eq!(upload_id_in(rclone, "other"), None, "another key's upload");
        assert_eq!(upload_id_in(b"<X><UploadId> </UploadId></X>", "k"), None);
        assert_eq!(
            upload_id_in(b"<X><UploadId>u1</UploadId></X>", "k").as_deref(),
            Some("u1")
        );
        assert_eq!(
            element_text(b"<ETag>&#34;abc&#x22;</ETag>", "ETag").as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(element_text(b"<ETag>&bogus;</ETag>", "ETag"), None);
    }

    #[test]
    fn root_elements() {
        assert_eq!(
            root_element(MOTO_COMPLETE.as_bytes()).as_deref(),
            Some("CompleteMultipartUploadResponse")
        );
        assert_eq!(
            root_element(b"<!-- hi --><?pi x?>\n <Error><Code>X</Code></Error>").as_deref(),
            Some("Error")
        );
        assert_eq!(root_element(b"<a:Root/>").as_deref(), Some("a:Root"));
        assert_eq!(root_element(b""), None);
        assert_eq!(root_element(b"OK"), None);
        assert_eq!(root_element(b"<?xml version=\"1.0\"?>"), None);
        assert_eq!(root_element(&[0xff, 0xfe]), None);
    }

    #[test]
    fn which_answers_are_unreadable_successes() {
        let moto = classify_answer(200, MOTO_COMPLETE.as_bytes()).unwrap();
        assert_eq!(
            moto.root.as_deref(),
            Some("CompleteMultipartUploadResponse")
        );
        assert_eq!(
            moto.to_string(),
            "HTTP 200 with a body the S3 client cannot read (root element `CompleteMultipartUploadResponse`)"
        );
        // An error document inside a 200 is an error, not an odd success.
        let error = b"<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code></Error>";
        assert_eq!(classify_answer(200, error), None);
        // Non-2xx answers are errors whatever their body.
        assert_eq!(classify_answer(500, MOTO_COMPLETE.as_bytes()), None);
        assert_eq!(classify_answer(404, b""), None);
        assert_eq!(
            classify_answer(200, b"").unwrap().to_string(),
            "HTTP 200 with a body the S3 client cannot read (empty)"
        );
        let long = "x".repeat(5000);
        let shown = classify_answer(204, long.as_bytes()).unwrap();
        assert_eq!(shown.body.len(), BODY_SHOWN);
        assert!(shown.to_string().ends_with("(not XML)"));
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts of 5 MiB of zeros and "hello\n": checked against moto
        // and s3s-fs (and AWS's documented rule).
        let zeros = vec![0u8; 5 * 1024 * 1024];
        let p1 = format!("\"{}\"", plain_etag(&zeros));
        let p2 = plain_etag(b"hello\n").to_ascii_uppercase();
        assert_eq!(p2, "B1946AC92492D2347C6235B4D2611184");
        let mut both = md5_bytes(&p1).unwrap().to_vec();
        both.extend(md5_bytes(&p2).unwrap());
        let want = format!("{}-2", plain_etag(&both));
        assert_eq!(
            multipart_etag([Some(p1.as_str()), Some(p2.as_str())]).as_deref(),
            Some(want.as_str())
        );
        assert_eq!(multipart_etag([Some(p1.as_str()), None]), None);
        assert_eq!(multipart_etag([Some("\"abc\"")]), None);
        assert_eq!(multipart_etag(std::iter::empty()), None);
    }

    fn expected() -> Expected {
        Expected {
            size: 20 << 20,
            etag: Some("\"9796c8a482330829a9e013d968a09458-3\"".into()),
            mtime: Some("1700000000.123456789".into()),
        }
    }

    fn seen() -> Seen {
        Seen {
            size: 20 << 20,
            etag: Some("\"9796C8A482330829A9E013D968A09458-3\"".into()),
            mtime: Some("1700000000.123456789".into()),
        }
    }

    fn written(v: Verdict) -> String {
        match v {
            Verdict::Written(how) => how,
            Verdict::NotWritten(why) => panic!("not written: {why}"),
        }
    }

    fn not_written(v: Verdict) -> String {
        match v {
            Verdict::Written(how) => panic!("written: {how}"),
            Verdict::NotWritten(why) => why,
        }
    }

    #[test]
    fn a_complete_object_is_taken_as_written() {
        let how = written(judge(&expected(), Some(&seen())));
        assert_eq!(how, "size and ETag and mtime metadata match");
        // A server that keeps no metadata: size and ETag.
        let s = Seen {
            mtime: None,
            ..seen()
        };
        assert_eq!(written(judge(&expected(), Some(&s))), "size and ETag match");
        // A server that gives a multipart object a plain ETag (or none):
        // size and mtime.
        for etag in [Some("\"0123456789abcdef0123456789abcdef\"".into()), None] {
            let s = Seen { etag, ..seen() };
            assert_eq!(
                written(judge(&expected(), Some(&s))),
                "size and mtime metadata match"
            );
        }
        // mtime stored with less precision.
        let s = Seen {
            mtime: Some("1700000000".into()),
            ..seen()
        };
        written(judge(&expected(), Some(&s)));
        // Nothing to compare but the size.
        let s = Seen {
            size: 20 << 20,
            etag: None,
            mtime: None,
        };
        assert!(written(judge(&expected(), Some(&s))).contains("size matches"));
    }

    #[test]
    fn anything_else_is_a_failed_write() {
        assert_eq!(
            not_written(judge(&expected(), None)),
            "the object does not exist"
        );
        let s = Seen { size: 5, ..seen() };
        assert!(not_written(judge(&expected(), Some(&s))).contains("has 5 bytes"));
        // An older multipart object of the same size.
        let s = Seen {
            etag: Some("\"00000000000000000000000000000000-3\"".into()),
            ..seen()
        };
        assert!(not_written(judge(&expected(), Some(&s))).contains("another object"));
        // A copy onto itself (new mtime) that did not happen: same ETag,
        // the old time.
        let s = Seen {
            mtime: Some("1600000000".into()),
            ..seen()
        };
        assert!(not_written(judge(&expected(), Some(&s))).contains("another write"));
        // A single-part write whose ETag differs.
        let e = Expected {
            size: 6,
            etag: Some(plain_etag(b"hello\n")),
            mtime: None,
        };
        let s = Seen {
            size: 6,
            etag: Some(format!("\"{}\"", plain_etag(b"HELLO\n"))),
            mtime: None,
        };
        assert!(not_written(judge(&e, Some(&s))).contains("another object"));
        let s = Seen {
            etag: Some(format!("\"{}\"", plain_etag(b"hello\n"))),
            ..s
        };
        assert_eq!(written(judge(&e, Some(&s))), "size and ETag match");
    }
}
