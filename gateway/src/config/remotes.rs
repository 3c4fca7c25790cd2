//! `[[remotes]]`: validated into [`RemoteSettings`] (with the settings of
//! its protocol), every problem named with its file, line and key.

use super::*;

/// A validated remote server.
#[derive(Clone, PartialEq)]
pub struct RemoteSettings {
    /// Name used by mounts and the CLI.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login name.
    pub username: String,
    /// Password, if configured (inline, from a file or from the environment).
    pub password: Option<Secret>,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Bind to the dedicated IPs.
    pub use_dedicated_ips: bool,
    /// Remote root folder.
    pub root: String,
    /// Connect and login limit.
    pub connect_timeout: Duration,
    /// How long work waits for a connection.
    pub pool_wait: Duration,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// What only one protocol has.
    pub protocol: ProtocolSettings,
}

impl RemoteSettings {
    /// The protocol.
    pub fn kind(&self) -> RemoteKind {
        match self.protocol {
            ProtocolSettings::Sftp(_) => RemoteKind::Sftp,
            ProtocolSettings::Ftp(_) => RemoteKind::Ftp,
            ProtocolSettings::S3(_) => RemoteKind::S3,
        }
    }
}

/// The settings of one protocol.
#[derive(Clone, PartialEq)]
pub enum ProtocolSettings {
    /// An SFTP server.
    Sftp(SftpRemoteSettings),
    /// An FTP or FTPS server.
    Ftp(FtpRemoteSettings),
    /// A bucket on an S3-compatible server.
    S3(S3RemoteSettings),
}

/// What only S3 remotes have.
#[derive(Clone, PartialEq)]
pub struct S3RemoteSettings {
    /// Service URL.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Path-style addressing.
    pub path_style: bool,
    /// How an https endpoint's certificate is checked.
    pub certificate: CertificatePolicy,
    /// Certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// How long a request may stall.
    pub io_timeout: Duration,
    /// Folder renames copy and delete every object under the folder.
    pub recursive_folder_rename: bool,
    /// `mkdir` writes a folder marker object (off: folders are implicit).
    pub folder_markers: bool,
    /// 4 MiB chunks fetched ahead of a file read in order (0: one GET).
    pub read_ahead: usize,
}

impl fmt::Debug for S3RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3RemoteSettings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// What only SFTP remotes have.
#[derive(Clone, PartialEq)]
pub struct SftpRemoteSettings {
    /// Private key, if configured (already decrypted).
    pub private_key: Option<Arc<russh::keys::PrivateKey>>,
    /// The configured host key, if any.
    pub host_key: Option<russh::keys::PublicKey>,
    /// Connect despite a host key mismatch (insecure).
    pub allow_mismatched_host_key: bool,
    /// How long one SFTP request may wait for its answer.
    pub io_timeout: Duration,
    /// Handshake limit and legacy algorithms.
    pub ssh: backends::sftp::SshOptions,
    /// Upload to a hidden name and rename on close (default); `false`
    /// writes to the final name (servers that refuse renames).
    pub atomic_uploads: bool,
}

/// What only FTP remotes have.
#[derive(Debug, Clone, PartialEq)]
pub struct FtpRemoteSettings {
    /// Plain, explicit or implicit TLS.
    pub tls: FtpTlsMode,
    /// How the server's certificate is checked.
    pub certificate: CertificatePolicy,
    /// Certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Upload to a temporary name and rename on close.
    pub atomic_uploads: bool,
    /// How long a command or data transfer may stall.
    pub io_timeout: Duration,
}

impl fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach logs.
        let mut d = f.debug_struct("RemoteSettings");
        d.field("name", &self.name)
            .field("kind", &self.kind())
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("max_connections", &self.max_connections);
        match &self.protocol {
            ProtocolSettings::Sftp(s) => d.field(
                "private_key",
                &s.private_key.as_ref().map(|_| secrets::REDACTED),
            ),
            ProtocolSettings::Ftp(f) => d.field("ftp", f),
            ProtocolSettings::S3(s) => d.field("s3", s),
        };
        d.finish_non_exhaustive()
    }
}

/// Parses a host key given as `type base64 [comment]` or as a known_hosts
/// line (`host type base64 [comment]`).
pub fn parse_host_key(line: &str) -> Result<russh::keys::PublicKey, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let start = words
        .iter()
        .position(|w| {
            w.starts_with("ssh-")
                || w.starts_with("ecdsa-")
                || w.starts_with("sk-")
                || w.starts_with("rsa-")
        })
        .ok_or_else(|| {
            "expected a host key such as `ssh-ed25519 AAAA...` or a known_hosts line".to_string()
        })?;
    let key = words[start..]
        .iter()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    russh::keys::PublicKey::from_openssh(&key).map_err(|e| format!("not a valid host key: {e}"))
}

/// Reads a private key file for a remote.
pub fn load_private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<russh::keys::PrivateKey, String> {
    certs::private_keys::load_private_key_file(path, passphrase).map_err(|e| e.to_string())
}

pub(super) fn validate_remotes(
    sections: Vec<file::RemoteSection>,
    base: Option<&Path>,
    secrets: &mut secrets::SecretReader<'_>,
    r: &mut Reporter<'_>,
) -> Vec<RemoteSettings> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, rs) in sections.into_iter().enumerate() {
        let at = |k: &str| format!("remotes[{i}].{k}");
        if rs.name.is_empty() || rs.name.contains(|c: char| c.is_whitespace() || c == '/') {
            r.at_key(
                &at("name"),
                "a remote name must be non-empty, without spaces or `/`",
            );
        }
        if !names.insert(rs.name.clone()) {
            r.at_key(
                &at("name"),
                format!("remote `{}` is declared twice", rs.name),
            );
        }
        let kind = rs.kind;
        // Keys of another protocol are mistakes worth naming.
        for (key, set, kinds) in protocol_keys(&rs) {
            if set && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                r.at_key(
                    &at(key),
                    format!(
                        "`{key}` applies only to {} remotes; remote `{}` is kind = \"{}\"",
                        names.join(" and "),
                        rs.name,
                        kind.as_str()
                    ),
                );
            }
        }
        if kind != RemoteKind::S3 {
            if rs.host.trim().is_empty() {
                r.at_key(&at("host"), "the host is empty");
            }
            if rs.username.is_empty() {
                r.at_key(&at("username"), "the username is empty");
            }
        }
        if rs.max_connections == Some(0) {
            r.at_key(&at("max_connections"), "must be at least 1");
        }
        let ca_file = rs.ca_file.clone().map(|f| resolve(base, f));
        if let Some(f) = &ca_file {
            if let Err(e) = std::fs::metadata(f) {
                r.at_key(
                    &at("ca_file"),
                    format!("cannot read {}: {}", f.display(), describe_io(&e)),
                );
            }
        }
        let io_timeout = rs.io_timeout.unwrap_or(Duration::from_secs(60));
        let password = match kind {
            RemoteKind::S3 => secrets::Supplied::Absent,
            _ => secrets.secret(
                r,
                &at,
                "password",
                rs.password.as_ref(),
                rs.password_file.as_ref(),
                rs.password_env.as_deref(),
            ),
        };
        let protocol = match kind {
            RemoteKind::Sftp => {
                sftp_protocol(&rs, password.is_absent(), io_timeout, secrets, &at, r)
            }
            RemoteKind::Ftp => {
                if password.is_absent() {
                    r.at_key(
                        &at("name"),
                        format!(
                            "remote `{}` needs a password (`password`, `password_file` or `password_env`)",
                            rs.name
                        ),
                    );
                }
                ProtocolSettings::Ftp(FtpRemoteSettings {
                    tls: rs.tls.unwrap_or_default(),
                    certificate: rs.certificate.unwrap_or_default(),
                    ca_file,
                    atomic_uploads: rs.atomic_uploads.unwrap_or(false),
                    io_timeout,
                })
            }
            RemoteKind::S3 => s3_protocol(&rs, ca_file, io_timeout, secrets, &at, r),
        };
        let default_port = match &protocol {
            ProtocolSettings::Sftp(_) => 22,
            ProtocolSettings::Ftp(f) if f.tls == FtpTlsMode::RequireImplicit => 990,
            ProtocolSettings::Ftp(_) => 21,
            ProtocolSettings::S3(_) => 0,
        };
        out.push(RemoteSettings {
            name: rs.name,
            host: rs.host,
            port: rs.port.unwrap_or(default_port),
            username: rs.username,
            password: password.value(),
            // S3: requests in flight at once (each on its own connection).
            max_connections: rs
                .max_connections
                .unwrap_or(match protocol {
                    ProtocolSettings::S3(_) => backends::s3::DEFAULT_MAX_REQUESTS,
                    _ => 25,
                })
                .max(1),
            use_dedicated_ips: rs.use_dedicated_ips,
            root: rs.root,
            connect_timeout: rs.connect_timeout,
            pool_wait: rs.pool_wait,
            idle_timeout: rs.idle_timeout,
            protocol,
        });
    }
    out
}

/// Every protocol-specific key of a remote: its name, whether it is set,
/// and the kinds of remote it applies to.
pub(super) fn protocol_keys(
    rs: &file::RemoteSection,
) -> Vec<(&'static str, bool, &'static [RemoteKind])> {
    use RemoteKind::{Ftp, Sftp, S3};
    vec![
        ("host", !rs.host.is_empty(), &[Sftp, Ftp]),
        ("port", rs.port.is_some(), &[Sftp, Ftp]),
        ("username", !rs.username.is_empty(), &[Sftp, Ftp]),
        ("password", rs.password.is_some(), &[Sftp, Ftp]),
        ("password_file", rs.password_file.is_some(), &[Sftp, Ftp]),
        ("password_env", rs.password_env.is_some(), &[Sftp, Ftp]),
        (
            "max_connections",
            rs.max_connections.is_some(),
            &[Sftp, Ftp, S3],
        ),
        ("host_key", rs.host_key.is_some(), &[Sftp]),
        ("max_handshakes", rs.max_handshakes.is_some(), &[Sftp]),
        ("legacy_algorithms", rs.legacy_algorithms.is_some(), &[Sftp]),
        (
            "allow_mismatched_host_key",
            rs.allow_mismatched_host_key,
            &[Sftp],
        ),
        ("private_key_file", rs.private_key_file.is_some(), &[Sftp]),
        ("private_key_env", rs.private_key_env.is_some(), &[Sftp]),
        (
            "private_key_passphrase",
            rs.private_key_passphrase.is_some(),
            &[Sftp],
        ),
        (
            "private_key_passphrase_file",
            rs.private_key_passphrase_file.is_some(),
            &[Sftp],
        ),
        (
            "private_key_passphrase_env",
            rs.private_key_passphrase_env.is_some(),
            &[Sftp],
        ),
        ("tls", rs.tls.is_some(), &[Ftp]),
        ("atomic_uploads", rs.atomic_uploads.is_some(), &[Sftp, Ftp]),
        ("certificate", rs.certificate.is_some(), &[Ftp, S3]),
        ("ca_file", rs.ca_file.is_some(), &[Ftp, S3]),
        ("io_timeout", rs.io_timeout.is_some(), &[Sftp, Ftp, S3]),
        ("endpoint", rs.endpoint.is_some(), &[S3]),
        ("bucket", rs.bucket.is_some(), &[S3]),
        ("region", rs.region.is_some(), &[S3]),
        ("access_key_id", rs.access_key_id.is_some(), &[S3]),
        ("secret_access_key", rs.secret_access_key.is_some(), &[S3]),
        (
            "secret_access_key_file",
            rs.secret_access_key_file.is_some(),
            &[S3],
        ),
        (
            "secret_access_key_env",
            rs.secret_access_key_env.is_some(),
            &[S3],
        ),
        ("path_style", rs.path_style.is_some(), &[S3]),
        (
            "recursive_folder_rename",
            rs.recursive_folder_rename.is_some(),
            &[S3],
        ),
        ("folder_markers", rs.folder_markers.is_some(), &[S3]),
        ("read_ahead", rs.read_ahead.is_some(), &[S3]),
    ]
}

/// The S3-only part of a remote: endpoint, bucket and credentials.
pub(super) fn s3_protocol(
    rs: &file::RemoteSection,
    ca_file: Option<PathBuf>,
    io_timeout: Duration,
    secrets: &mut secrets::SecretReader<'_>,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> ProtocolSettings {
    let mut required = |key: &str, value: &Option<String>| -> String {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => {
                r.at_key(&at(key), format!("S3 remote `{}` needs `{key}`", rs.name));
                String::new()
            }
        }
    };
    let endpoint = required("endpoint", &rs.endpoint);
    let bucket = required("bucket", &rs.bucket);
    let access_key_id = required("access_key_id", &rs.access_key_id);
    let secret_access_key = match secrets.secret(
        r,
        at,
        "secret_access_key",
        rs.secret_access_key.as_ref(),
        rs.secret_access_key_file.as_ref(),
        rs.secret_access_key_env.as_deref(),
    ) {
        secrets::Supplied::Value(v) if !v.expose().trim().is_empty() => {
            Secret::new(v.expose().trim())
        }
        secrets::Supplied::Invalid => Secret::new(""),
        _ => {
            r.at_key(
                &at("secret_access_key"),
                format!(
                    "S3 remote `{}` needs `secret_access_key` (or `secret_access_key_file`, `secret_access_key_env`)",
                    rs.name
                ),
            );
            Secret::new("")
        }
    };
    let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
    if endpoint_has_userinfo(&endpoint) {
        // Never quoted: the part before `@` is a credential.
        r.at_key(
            &at("endpoint"),
            "must not carry credentials (`user:password@`): give them as `access_key_id` and `secret_access_key`",
        );
    } else if !endpoint.is_empty() && !is_url {
        r.at_key(
            &at("endpoint"),
            format!("`{endpoint}` is not a URL: it must start with https:// (or http://)"),
        );
    }
    ProtocolSettings::S3(S3RemoteSettings {
        endpoint,
        bucket,
        region: rs
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "us-east-1".to_string()),
        access_key_id,
        secret_access_key,
        path_style: rs.path_style.unwrap_or(true),
        certificate: rs.certificate.unwrap_or_default(),
        ca_file,
        io_timeout,
        recursive_folder_rename: rs.recursive_folder_rename.unwrap_or(false),
        folder_markers: rs.folder_markers.unwrap_or(true),
        read_ahead: rs.read_ahead.unwrap_or(backends::s3::DEFAULT_READ_AHEAD),
    })
}

/// Whether an endpoint URL has a `user:password@` part before its host.
pub(super) fn endpoint_has_userinfo(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

/// The SFTP-only part of a remote: its key and host key. `no_password`:
/// the remote has no password, so it needs a key.
pub(super) fn sftp_protocol(
    rs: &file::RemoteSection,
    no_password: bool,
    io_timeout: Duration,
    secrets: &mut secrets::SecretReader<'_>,
    at: &dyn Fn(&str) -> String,
    r: &mut Reporter<'_>,
) -> ProtocolSettings {
    let host_key = match rs.host_key.as_deref().map(parse_host_key) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            r.at_key(&at("host_key"), e);
            None
        }
        None => None,
    };
    let passphrase = secrets
        .secret(
            r,
            at,
            "private_key_passphrase",
            rs.private_key_passphrase.as_ref(),
            rs.private_key_passphrase_file.as_ref(),
            rs.private_key_passphrase_env.as_deref(),
        )
        .value();
    let passphrase = passphrase.as_ref().map(Secret::expose);
    let private_key = match (&rs.private_key_file, &rs.private_key_env) {
        (Some(_), Some(_)) => {
            r.at_key(
                &at("private_key_env"),
                "`private_key_file` and `private_key_env` are alternatives: give only one",
            );
            None
        }
        (Some(file), None) => {
            let file = secrets.resolve_path(file);
            secrets.remember(&file, &at("private_key_file"));
            match load_private_key(&file, passphrase) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    r.at_key(&at("private_key_file"), e);
                    None
                }
            }
        }
        (None, Some(name)) => {
            let key = at("private_key_env");
            secrets.env_text(r, &key, name).and_then(|text| {
                let text = Secret::new(text);
                match certs::private_keys::parse_private_key(text.expose(), passphrase) {
                    Ok(k) => Some(Arc::new(k)),
                    Err(e) => {
                        r.at_key(&key, format!("the environment variable `{name}`: {e}"));
                        None
                    }
                }
            })
        }
        (None, None) => None,
    };
    if no_password && rs.private_key_file.is_none() && rs.private_key_env.is_none() {
        r.at_key(
            &at("name"),
            format!(
                "remote `{}` needs a password or a private key (`password`, `password_file`, `password_env`, `private_key_file` or `private_key_env`)",
                rs.name
            ),
        );
    }
    let mut ssh = backends::sftp::SshOptions::default();
    match rs.max_handshakes {
        Some(0) => r.at_key(&at("max_handshakes"), "must be at least 1"),
        Some(n) => ssh.max_handshakes = n,
        None => {}
    }
    for name in rs.legacy_algorithms.iter().flatten() {
        match backends::sftp::LegacyAlgorithm::parse(name) {
            Ok(a) if !ssh.legacy.contains(&a) => ssh.legacy.push(a),
            Ok(_) => {}
            Err(e) => r.at_key(&at("legacy_algorithms"), e),
        }
    }
    ProtocolSettings::Sftp(SftpRemoteSettings {
        private_key,
        host_key,
        allow_mismatched_host_key: rs.allow_mismatched_host_key,
        io_timeout,
        ssh,
        atomic_uploads: rs.atomic_uploads.unwrap_or(true),
    })
}
