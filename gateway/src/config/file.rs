//! The config file's shape: plain serde structs that refuse unknown keys.
//! They are turned once, in [`super::validate`], into runtime settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use policy::Permission;
use serde::Deserialize;

use super::secrets::Secret;
use crate::sync::settings::{AfterCopy, SyncDirection};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Listening, storage and process settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Login limits.
    #[serde(default)]
    pub login: LoginSection,
    /// The users who may log in.
    #[serde(default)]
    pub users: Vec<UserSection>,
    /// Remote servers that folders can be mounted on.
    #[serde(default)]
    pub remotes: Vec<RemoteSection>,
    /// Copies between the gateway's storage and remotes.
    #[serde(default)]
    pub syncs: Vec<SyncSection>,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminSection,
    /// The S3-compatible endpoint for partner sites and S3 clients.
    #[serde(default)]
    pub s3: S3EndpointSection,
}

/// `[s3]`: the S3-compatible endpoint; off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3EndpointSection {
    /// The address to listen on (`0.0.0.0:9443`).
    pub listen: Option<SocketAddr>,
    /// PEM file with the TLS certificate chain; without one the endpoint
    /// speaks plain HTTP, which is allowed only on a loopback address.
    pub certificate: Option<PathBuf>,
    /// PEM file with the certificate's private key.
    pub private_key: Option<PathBuf>,
    /// A response the client stops reading for this long is abandoned and
    /// its connection closed.
    #[serde(default, with = "super::duration::option")]
    pub write_timeout: Option<Duration>,
    /// Authenticated requests a second per access key, sustained (twice
    /// that at once); 0: no limit.
    pub requests_per_second_per_key: Option<u32>,
}

/// `[metrics]`: where Prometheus scrapes (`/metrics`, `/healthz`,
/// `/readyz`); off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// The address to listen on (`127.0.0.1:9464`).
    pub listen: Option<SocketAddr>,
}

/// `[admin]`: the admin HTTP API and console; off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// The address to listen on (`127.0.0.1:9465`).
    pub listen: Option<SocketAddr>,
    /// PEM file with the TLS certificate chain; without one the API speaks
    /// plain HTTP, which is allowed only on a loopback address.
    pub certificate: Option<PathBuf>,
    /// PEM file with the certificate's private key.
    pub private_key: Option<PathBuf>,
    /// The API keys that may use it.
    #[serde(default)]
    pub keys: Vec<ApiKeySection>,
}

/// One `[[admin.keys]]` entry: a key is stored only as its hash.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// Who or what uses the key (shown in logs).
    pub name: String,
    /// `sha256:<64 hex digits>`, as `gateway admin new-key` prints it.
    pub hash: String,
    /// When the key stops working (RFC 3339, `2027-01-31T00:00:00Z`).
    pub expires: Option<String>,
    /// `read-only`, `operator` or `admin` (the default, what keys could
    /// do before scopes).
    pub scope: Option<String>,
}

/// One `[[syncs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Name used by the CLI and the history.
    pub name: String,
    /// Folder of the gateway's storage (`/outbound`).
    pub folder: String,
    /// A `[[remotes]]` name.
    pub remote: String,
    /// Path under the remote's root ("" = the root).
    #[serde(default)]
    pub remote_path: String,
    /// Which way files go.
    pub direction: SyncDirection,
    /// What happens to a source file after a verified copy.
    #[serde(default)]
    pub after_copy: AfterCopy,
    /// Run every so often (`15m`). Without it or `cron` the sync runs only
    /// on demand.
    #[serde(default, with = "super::duration::option")]
    pub every: Option<Duration>,
    /// Run at the minutes a five-field cron expression names
    /// (`*/5 * * * *`, `@daily`); not together with `every`.
    pub cron: Option<String>,
    /// The IANA time zone whose wall clock `cron` reads (default `UTC`);
    /// only with `cron`.
    pub time_zone: Option<String>,
    /// Globs on the path relative to the folder; a file is synced only if
    /// it matches one (empty: every file).
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs on the path relative to the folder; a matching file is never
    /// synced.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files modified more recently than this are left for a later run.
    #[serde(default, with = "super::duration::option")]
    pub settle: Option<Duration>,
    /// A run stops cleanly after this long (default 24 h).
    #[serde(default, with = "super::duration::option")]
    pub time_limit: Option<Duration>,
    /// Files copied at once (default 4, at most the remote's cap).
    pub parallel: Option<usize>,
    /// Remove folders left empty by `after_copy = "delete"`.
    #[serde(default)]
    pub delete_empty_folders: bool,
    /// A file written at the destination when a run finishes.
    pub trigger_file: Option<String>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Addresses the SFTP server listens on.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// The gateway's own storage folder.
    pub storage: Option<PathBuf>,
    /// Where the gateway keeps what it learns: a folder (the embedded
    /// store), or a `postgres://` URL shared by several nodes.
    pub state: Option<PathBuf>,
    /// With a `postgres://` state: the node's own folder (S3 multipart
    /// uploads in progress).
    pub local_state: Option<PathBuf>,
    /// `text` or `json` log lines.
    #[serde(default)]
    pub log_format: LogFormat,
    /// How long transfers in flight may run on after SIGTERM/SIGINT.
    #[serde(default = "default_grace", with = "super::duration")]
    pub shutdown_grace: Duration,
    /// A session with no traffic for this long is closed.
    #[serde(default = "default_idle", with = "super::duration")]
    pub idle_timeout: Duration,
    /// Source networks allowed to connect at all (empty: any).
    #[serde(default)]
    pub allowed_networks: Vec<IpNet>,
    /// Load balancers whose connections start with a PROXY protocol
    /// header (v1 or v2) naming the real client (empty: none).
    #[serde(default)]
    pub proxy_protocol_from: Vec<IpNet>,
    /// Source addresses every outbound connection binds to (empty: the system chooses).
    #[serde(default)]
    pub dedicated_ips: Vec<std::net::IpAddr>,
    /// Sessions open at once, over all users (0: no limit).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Sessions open at once per user (0: no limit).
    #[serde(default = "default_max_sessions_per_user")]
    pub max_sessions_per_user: usize,
    /// Key exchanges offered, most preferred first (default: russh's).
    pub kex_algorithms: Option<Vec<String>>,
    /// Ciphers offered (default: AES-GCM, ChaCha20-Poly1305, AES-CTR).
    pub ciphers: Option<Vec<String>>,
    /// MACs offered, for the ciphers that need one (default: russh's).
    pub macs: Option<Vec<String>>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            storage: None,
            state: None,
            local_state: None,
            log_format: LogFormat::default(),
            shutdown_grace: default_grace(),
            idle_timeout: default_idle(),
            allowed_networks: Vec::new(),
            proxy_protocol_from: Vec::new(),
            dedicated_ips: Vec::new(),
            max_sessions: default_max_sessions(),
            max_sessions_per_user: default_max_sessions_per_user(),
            kex_algorithms: None,
            ciphers: None,
            macs: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[login]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSection {
    /// Failed logins from one address (within `failure_window`) before it is banned; 0 disables.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The window in which failures are counted.
    #[serde(default = "default_window", with = "super::duration")]
    pub failure_window: Duration,
    /// How long a banned address is refused.
    #[serde(default = "default_ban", with = "super::duration")]
    pub ban_duration: Duration,
    /// Authentication attempts allowed on one connection.
    #[serde(default = "default_attempts")]
    pub max_auth_attempts: usize,
    /// A connection that has not logged in within this is closed.
    #[serde(default = "default_grace_time", with = "super::duration")]
    pub grace_time: Duration,
    /// Connections that have not logged in yet, at once (0: no limit).
    #[serde(default = "default_max_unauthenticated")]
    pub max_unauthenticated: usize,
    /// Of those, from one source address (0: no limit of its own).
    #[serde(default = "default_max_unauthenticated_per_address")]
    pub max_unauthenticated_per_address: usize,
    /// New connections a second from one address, sustained (0: no limit).
    #[serde(default = "default_connections_per_second_per_address")]
    pub connections_per_second_per_address: u32,
    /// New connections from one address at once, before that rate applies.
    #[serde(default = "default_connection_burst_per_address")]
    pub connection_burst_per_address: u32,
}

impl Default for LoginSection {
    fn default() -> Self {
        LoginSection {
            max_failures: default_max_failures(),
            failure_window: default_window(),
            ban_duration: default_ban(),
            max_auth_attempts: default_attempts(),
            grace_time: default_grace_time(),
            max_unauthenticated: default_max_unauthenticated(),
            max_unauthenticated_per_address: default_max_unauthenticated_per_address(),
            connections_per_second_per_address: default_connections_per_second_per_address(),
            connection_burst_per_address: default_connection_burst_per_address(),
        }
    }
}

/// One `[[users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: String,
    /// Argon2 PHC hash (`gateway user hash-password`).
    pub password_hash: Option<String>,
    /// Public keys in authorized_keys format.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// A file of authorized keys, one per line.
    pub authorized_keys_file: Option<PathBuf>,
    /// Folder in the storage that the user sees as `/` (default: the name).
    pub home: Option<String>,
    /// Source networks this user may log in from (empty: any).
    #[serde(default)]
    pub allowed_networks: Vec<IpNet>,
    /// Folder → permissions; absent means every permission everywhere.
    pub permissions: Option<BTreeMap<String, Vec<Permission>>>,
    /// Folders of the user's tree that pass through to remotes.
    #[serde(default)]
    pub mounts: Vec<MountSection>,
}

/// One `[[users.mounts]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSection {
    /// The folder in the user's tree (`/partner`).
    pub path: String,
    /// The remote's name.
    pub remote: String,
    /// The folder under the remote's root ("" = the root).
    #[serde(default)]
    pub remote_path: String,
}

/// Kinds of remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// An SFTP server.
    Sftp,
    /// An FTP or FTPS server.
    Ftp,
    /// A bucket on an S3-compatible server.
    S3,
}

impl RemoteKind {
    /// The name used in the config file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteKind::Sftp => "sftp",
            RemoteKind::Ftp => "ftp",
            RemoteKind::S3 => "s3",
        }
    }
}

/// `tls` of an FTP remote: whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FtpTlsMode {
    /// Plain FTP: passwords and files cross the network in clear.
    Never,
    /// Explicit TLS (AUTH TLS) when the server offers it, plain otherwise.
    IfAvailable,
    /// Explicit TLS (AUTH TLS), refusing servers without it.
    #[default]
    Require,
    /// Implicit TLS: TLS from the first byte (usually port 990).
    RequireImplicit,
}

/// `certificate` of an FTP remote: how its TLS certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CertificatePolicy {
    /// The chain must lead to a trusted root (system or `ca_file`) and
    /// name the host.
    #[default]
    RequireMatch,
    /// Any certificate is accepted (insecure; warned on every connect).
    AllowAny,
}

/// One `[[remotes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// Name used by mounts and the CLI.
    pub name: String,
    /// The protocol.
    pub kind: RemoteKind,
    /// Host name or address.
    #[serde(default)]
    pub host: String,
    /// TCP port (default 22 for SFTP, 21 for FTP, 990 for implicit FTPS).
    pub port: Option<u16>,
    /// Login name.
    #[serde(default)]
    pub username: String,
    /// Password for password authentication.
    pub password: Option<Secret>,
    /// A file holding the password (instead of `password`).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password (instead of `password`).
    pub password_env: Option<String>,
    /// Private key file for key authentication.
    pub private_key_file: Option<PathBuf>,
    /// An environment variable holding the private key's text (instead of
    /// `private_key_file`).
    pub private_key_env: Option<String>,
    /// Passphrase of an encrypted private key.
    pub private_key_passphrase: Option<Secret>,
    /// A file holding the passphrase (instead of `private_key_passphrase`).
    pub private_key_passphrase_file: Option<PathBuf>,
    /// An environment variable holding the passphrase (instead of
    /// `private_key_passphrase`).
    pub private_key_passphrase_env: Option<String>,
    /// The server's host key (`ssh-ed25519 AAAA...`, or a known_hosts line).
    pub host_key: Option<String>,
    /// Connect even if the host key does not match (insecure).
    #[serde(default)]
    pub allow_mismatched_host_key: bool,
    /// Most connections open at once (SFTP, FTP; default 25).
    pub max_connections: Option<usize>,
    /// Bind outbound connections to `server.dedicated_ips`.
    #[serde(default = "default_true")]
    pub use_dedicated_ips: bool,
    /// Folder on the remote that mounts are relative to.
    #[serde(default)]
    pub root: String,
    /// Limit for connecting and logging in.
    #[serde(default = "default_connect_timeout", with = "super::duration")]
    pub connect_timeout: Duration,
    /// How long work waits for a free connection.
    #[serde(default = "default_pool_wait", with = "super::duration")]
    pub pool_wait: Duration,
    /// How long an unused connection stays open.
    #[serde(default = "default_remote_idle", with = "super::duration")]
    pub idle_timeout: Duration,
    /// FTP: plain, explicit or implicit TLS (default `require`).
    pub tls: Option<FtpTlsMode>,
    /// FTP: how the server's TLS certificate is checked.
    pub certificate: Option<CertificatePolicy>,
    /// FTP, S3: PEM file of the certificate authorities to trust instead
    /// of the system's.
    pub ca_file: Option<PathBuf>,
    /// FTP: upload to a temporary name and rename on close.
    pub atomic_uploads: Option<bool>,
    /// SFTP: SSH handshakes in progress at once, at most (default 6).
    pub max_handshakes: Option<usize>,
    /// SFTP: legacy algorithms to offer after the modern ones
    /// (`diffie-hellman-group14-sha1`, `ssh-rsa`, `aes128-cbc`, `hmac-sha1`, ...).
    pub legacy_algorithms: Option<Vec<String>>,
    /// How long a request (SFTP), command or transfer (FTP) or HTTP
    /// request (S3) may stall.
    #[serde(default, with = "super::duration::option")]
    pub io_timeout: Option<Duration>,
    /// S3: the service URL (`https://s3.example.com`).
    pub endpoint: Option<String>,
    /// S3: the bucket.
    pub bucket: Option<String>,
    /// S3: the region (default `us-east-1`).
    pub region: Option<String>,
    /// S3: access key id.
    pub access_key_id: Option<String>,
    /// S3: secret access key.
    pub secret_access_key: Option<Secret>,
    /// S3: a file holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// S3: an environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// S3: `https://endpoint/bucket/key` (default) rather than
    /// `https://bucket.endpoint/key`.
    pub path_style: Option<bool>,
    /// S3: renaming a folder copies and deletes every object under it
    /// (not atomic); off by default, when such renames are refused.
    pub recursive_folder_rename: Option<bool>,
    /// S3: `mkdir` writes a zero-byte `name/` marker object (default); off
    /// for servers that store such a key as a file (`rclone serve s3`).
    pub folder_markers: Option<bool>,
    /// S3: 4 MiB chunks of a file read in order fetched ahead in parallel
    /// (default 4; 0: one streaming GET).
    pub read_ahead: Option<usize>,
}

fn default_true() -> bool {
    true
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_pool_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_remote_idle() -> Duration {
    Duration::from_secs(60)
}

fn default_max_sessions() -> usize {
    1000
}
fn default_max_sessions_per_user() -> usize {
    100
}
fn default_grace_time() -> Duration {
    Duration::from_secs(30)
}
fn default_max_unauthenticated_per_address() -> usize {
    // One address may open many connections at once (rclone's transfers
    // and checkers, an office behind NAT), but each logs in within a
    // second or so: 32 logging in together from one address is plenty,
    // and a flood from one address leaves the other 32 of the 64 places
    // (max_unauthenticated) to everyone else.
    32
}
fn default_connections_per_second_per_address() -> u32 {
    policy::ConnectionRateSettings::default().per_second as u32
}
fn default_connection_burst_per_address() -> u32 {
    policy::ConnectionRateSettings::default().burst
}
fn default_max_unauthenticated() -> usize {
    64
}
fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 2222))]
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_idle() -> Duration {
    Duration::from_secs(600)
}
fn default_max_failures() -> u32 {
    5
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_ban() -> Duration {
    Duration::from_secs(900)
}
fn default_attempts() -> usize {
    6
}
