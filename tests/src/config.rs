//! Config files: builders for users, mounts, remotes, syncs and the
//! admin API, written out as the gateway's TOML.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// Quotes a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", v.join(", "))
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Argon2 PHC hash (see [`hash_password`]).
    pub password_hash: Option<String>,
    /// OpenSSH public key lines.
    pub authorized_keys: Vec<String>,
    /// Path of an authorized_keys file.
    pub authorized_keys_file: Option<PathBuf>,
    /// Home folder under storage (default: the name).
    pub home: Option<String>,
    /// Source networks (CIDRs) the user may log in from.
    pub allowed_networks: Option<Vec<String>>,
    /// Folder -> permission words; empty = key absent (all permissions).
    pub permissions: Vec<(String, Vec<String>)>,
    /// `[[users.mounts]]`: folders of the tree served by a remote.
    pub mounts: Vec<MountConfig>,
}

impl UserConfig {
    /// A user with just a name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the password hash.
    pub fn password_hash(mut self, hash: &str) -> Self {
        self.password_hash = Some(hash.into());
        self
    }

    /// Adds an authorized public key line.
    pub fn key(mut self, pubkey_line: &str) -> Self {
        self.authorized_keys.push(pubkey_line.trim().into());
        self
    }

    /// Sets the home folder.
    pub fn home(mut self, home: &str) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Sets allowed source networks.
    pub fn allowed_networks(mut self, nets: &[&str]) -> Self {
        self.allowed_networks = Some(nets.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds one permission rule.
    pub fn perm(mut self, folder: &str, words: &[&str]) -> Self {
        self.permissions
            .push((folder.into(), words.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// Mounts folder `path` of the user's tree on `remote_path` (under the
    /// remote's root; "" = the root) of remote `remote`.
    pub fn mount(mut self, path: &str, remote: &str, remote_path: &str) -> Self {
        self.mounts.push(MountConfig {
            path: path.into(),
            remote: remote.into(),
            remote_path: remote_path.into(),
        });
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[users]]\n");
        s += &format!("name = {}\n", toml_str(&self.name));
        if let Some(h) = &self.password_hash {
            s += &format!("password_hash = {}\n", toml_str(h));
        }
        if !self.authorized_keys.is_empty() {
            s += &format!("authorized_keys = {}\n", toml_list(&self.authorized_keys));
        }
        if let Some(f) = &self.authorized_keys_file {
            s += &format!(
                "authorized_keys_file = {}\n",
                toml_str(&f.display().to_string())
            );
        }
        if let Some(h) = &self.home {
            s += &format!("home = {}\n", toml_str(h));
        }
        if let Some(n) = &self.allowed_networks {
            s += &format!("allowed_networks = {}\n", toml_list(n));
        }
        if !self.permissions.is_empty() {
            s += "[users.permissions]\n";
            for (folder, words) in &self.permissions {
                s += &format!("{} = {}\n", toml_str(folder), toml_list(words));
            }
        }
        for m in &self.mounts {
            s += "[[users.mounts]]\n";
            s += &format!("path = {}\n", toml_str(&m.path));
            s += &format!("remote = {}\n", toml_str(&m.remote));
            s += &format!("remote_path = {}\n", toml_str(&m.remote_path));
        }
        s
    }
}

/// One `[[users.mounts]]` entry.
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// Folder in the user's tree (`/partner`).
    pub path: String,
    /// Name of a `[[remotes]]` entry.
    pub remote: String,
    /// Path under the remote's root ("" = the root).
    pub remote_path: String,
}

/// One `[[remotes]]` entry; `None` fields are left out (gateway defaults).
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    /// Name the mounts refer to.
    pub name: String,
    /// `sftp`, `ftp` or `s3`.
    pub kind: String,
    /// Host name or address.
    pub host: String,
    /// Port (default 22 for SFTP, 21 for FTP, 990 for implicit FTPS).
    pub port: Option<u16>,
    /// Login name.
    pub username: String,
    /// Password.
    pub password: Option<String>,
    /// Private key file (OpenSSH, PEM, PuTTY ppk, ssh.com SSH2).
    pub private_key_file: Option<PathBuf>,
    /// Passphrase of the private key.
    pub private_key_passphrase: Option<String>,
    /// Pinned host key (`ssh-ed25519 AAAA...` or a known_hosts line).
    pub host_key: Option<String>,
    /// Connect even if the host key does not match (with a warning).
    pub allow_mismatched_host_key: Option<bool>,
    /// Pool cap (default 25).
    pub max_connections: Option<u32>,
    /// Connect from `[server] dedicated_ips` (default true).
    pub use_dedicated_ips: Option<bool>,
    /// Remote root folder.
    pub root: Option<String>,
    /// e.g. "10s".
    pub connect_timeout: Option<String>,
    /// How long work waits for a free pooled connection, e.g. "30s".
    pub pool_wait: Option<String>,
    /// Idle pooled connections are closed after this, e.g. "60s".
    pub idle_timeout: Option<String>,
    /// FTP: `never`, `if_available`, `require` (gateway default) or `require_implicit`.
    pub tls: Option<String>,
    /// FTP, S3: `require_match` (gateway default) or `allow_any`.
    pub certificate: Option<String>,
    /// FTP, S3: PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// FTP: upload to a temporary name and rename on close (gateway default false).
    pub atomic_uploads: Option<bool>,
    /// FTP, S3: how long a command, request or transfer may stall, e.g. "10s".
    pub io_timeout: Option<String>,
    /// S3: the endpoint URL (`http://127.0.0.1:PORT`).
    pub endpoint: Option<String>,
    /// S3: the bucket.
    pub bucket: Option<String>,
    /// S3: the signing region (gateway default `us-east-1`).
    pub region: Option<String>,
    /// S3: access key id.
    pub access_key_id: Option<String>,
    /// S3: secret access key.
    pub secret_access_key: Option<String>,
    /// S3: path-style URLs (gateway default true).
    pub path_style: Option<bool>,
    /// S3: rename folders key by key (gateway default false).
    pub recursive_folder_rename: Option<bool>,
    /// S3 `folder_markers`.
    pub folder_markers: Option<bool>,
    /// Extra raw `key = value` lines (values already TOML-encoded).
    pub extra: Vec<(String, String)>,
}

impl RemoteConfig {
    /// An `sftp` remote at `host:port` logging in as `username` (no credentials yet).
    pub fn sftp(name: &str, host: &str, port: u16, username: &str) -> Self {
        Self {
            name: name.into(),
            kind: "sftp".into(),
            host: host.into(),
            port: Some(port),
            username: username.into(),
            ..Default::default()
        }
    }

    /// An `ftp` remote at `host:port` logging in as `username` (no password
    /// yet; TLS and certificate settings left to the gateway's defaults:
    /// `tls = "require"`, `certificate = "require_match"`).
    pub fn ftp(name: &str, host: &str, port: u16, username: &str) -> Self {
        Self {
            name: name.into(),
            kind: "ftp".into(),
            host: host.into(),
            port: Some(port),
            username: username.into(),
            ..Default::default()
        }
    }

    /// An `s3` remote: `bucket` on the server at `endpoint` (an
    /// `http://` or `https://` URL) with these credentials; region,
    /// path style and the rest left to the gateway's defaults. Its TOML
    /// has no `host`, `port`, `username` or `password` (the gateway
    /// refuses them for S3 remotes); `max_connections` when set.
    pub fn s3(
        name: &str,
        endpoint: &str,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Self {
        Self {
            name: name.into(),
            kind: "s3".into(),
            endpoint: Some(endpoint.into()),
            bucket: Some(bucket.into()),
            access_key_id: Some(access_key_id.into()),
            secret_access_key: Some(secret_access_key.into()),
            ..Default::default()
        }
    }

    /// S3: sets `region`.
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.into());
        self
    }

    /// S3: sets `path_style`.
    pub fn path_style(mut self, yes: bool) -> Self {
        self.path_style = Some(yes);
        self
    }

    /// S3: sets `folder_markers`.
    pub fn folder_markers(mut self, yes: bool) -> Self {
        self.folder_markers = Some(yes);
        self
    }

    /// S3: sets `recursive_folder_rename`.
    pub fn recursive_folder_rename(mut self, yes: bool) -> Self {
        self.recursive_folder_rename = Some(yes);
        self
    }

    /// FTP: sets `tls` (`never`, `if_available`, `require`, `require_implicit`).
    pub fn tls(mut self, mode: &str) -> Self {
        self.tls = Some(mode.into());
        self
    }

    /// FTP, S3: sets `certificate` (`require_match` or `allow_any`).
    pub fn certificate(mut self, check: &str) -> Self {
        self.certificate = Some(check.into());
        self
    }

    /// FTP, S3: sets `ca_file`.
    pub fn ca_file(mut self, path: &Path) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// FTP: sets `atomic_uploads`.
    pub fn atomic_uploads(mut self, yes: bool) -> Self {
        self.atomic_uploads = Some(yes);
        self
    }

    /// FTP, S3: sets `io_timeout` (e.g. "10s").
    pub fn io_timeout(mut self, timeout: &str) -> Self {
        self.io_timeout = Some(timeout.into());
        self
    }

    /// Sets the password.
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.into());
        self
    }

    /// Removes the password.
    pub fn no_password(mut self) -> Self {
        self.password = None;
        self
    }

    /// Sets the private key file (and optionally its passphrase).
    pub fn key(mut self, file: &Path, passphrase: Option<&str>) -> Self {
        self.private_key_file = Some(file.into());
        self.private_key_passphrase = passphrase.map(str::to_owned);
        self
    }

    /// Sets the remote root folder.
    pub fn root(mut self, root: &Path) -> Self {
        self.root = Some(root.display().to_string());
        self
    }

    /// Pins a host key.
    pub fn host_key(mut self, key: &str) -> Self {
        self.host_key = Some(key.into());
        self
    }

    /// Sets `max_connections`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[remotes]]\n");
        s += &format!("name = {}\n", toml_str(&self.name));
        s += &format!("kind = {}\n", toml_str(&self.kind));
        let opt = |s: &mut String, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                *s += &format!("{k} = {}\n", toml_str(v));
            }
        };
        // The gateway refuses keys of another protocol: an S3 remote has
        // no host, port, login or connection limit.
        let s3 = self.kind == "s3";
        if !s3 {
            s += &format!("host = {}\n", toml_str(&self.host));
            if let Some(p) = self.port {
                s += &format!("port = {p}\n");
            }
            s += &format!("username = {}\n", toml_str(&self.username));
            opt(&mut s, "password", &self.password);
        }
        opt(
            &mut s,
            "private_key_file",
            &self
                .private_key_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        opt(
            &mut s,
            "private_key_passphrase",
            &self.private_key_passphrase,
        );
        opt(&mut s, "host_key", &self.host_key);
        if let Some(b) = self.allow_mismatched_host_key {
            s += &format!("allow_mismatched_host_key = {b}\n");
        }
        if let Some(n) = self.max_connections {
            s += &format!("max_connections = {n}\n");
        }
        if let Some(b) = self.use_dedicated_ips {
            s += &format!("use_dedicated_ips = {b}\n");
        }
        opt(&mut s, "root", &self.root);
        opt(&mut s, "connect_timeout", &self.connect_timeout);
        opt(&mut s, "pool_wait", &self.pool_wait);
        opt(&mut s, "idle_timeout", &self.idle_timeout);
        opt(&mut s, "tls", &self.tls);
        opt(&mut s, "certificate", &self.certificate);
        opt(
            &mut s,
            "ca_file",
            &self.ca_file.as_ref().map(|p| p.display().to_string()),
        );
        if let Some(b) = self.atomic_uploads {
            s += &format!("atomic_uploads = {b}\n");
        }
        opt(&mut s, "io_timeout", &self.io_timeout);
        opt(&mut s, "endpoint", &self.endpoint);
        opt(&mut s, "bucket", &self.bucket);
        opt(&mut s, "region", &self.region);
        opt(&mut s, "access_key_id", &self.access_key_id);
        opt(&mut s, "secret_access_key", &self.secret_access_key);
        if let Some(b) = self.path_style {
            s += &format!("path_style = {b}\n");
        }
        if let Some(b) = self.folder_markers {
            s += &format!("folder_markers = {b}\n");
        }
        if let Some(b) = self.recursive_folder_rename {
            s += &format!("recursive_folder_rename = {b}\n");
        }
        for (k, v) in &self.extra {
            s += &format!("{k} = {v}\n");
        }
        s
    }
}

/// One `[[syncs]]` entry; `None` fields and empty lists are left out
/// (gateway defaults).
#[derive(Debug, Clone, Default)]
pub struct SyncConfig {
    /// Name used by `gateway sync run NAME` and the history.
    pub name: String,
    /// Folder of the gateway's storage (`/outbound`).
    pub folder: String,
    /// A `[[remotes]]` name.
    pub remote: String,
    /// Path under the remote's root ("" = the root).
    pub remote_path: String,
    /// `push`, `pull` or `two_way`.
    pub direction: String,
    /// `keep` or `delete`.
    pub after_copy: Option<String>,
    /// e.g. "0s" (gateway default "30s").
    pub settle: Option<String>,
    /// e.g. "10m" (gateway default "24h").
    pub time_limit: Option<String>,
    /// Files copied at once (gateway default 4).
    pub parallel: Option<u32>,
    /// Remove folders left empty by deletes.
    pub delete_empty_folders: Option<bool>,
    /// A plain file name written at the destination when a run finishes.
    pub trigger_file: Option<String>,
    /// Interval schedule, e.g. "2s".
    pub every: Option<String>,
    /// Cron schedule (5 fields).
    pub cron: Option<String>,
    /// Time zone of `cron`.
    pub time_zone: Option<String>,
    /// Globs a synced file must match one of.
    pub include: Vec<String>,
    /// Globs a synced file must match none of.
    pub exclude: Vec<String>,
    /// Extra raw `key = value` lines (values already TOML-encoded).
    pub extra: Vec<(String, String)>,
}

impl SyncConfig {
    /// A sync of storage folder `folder` with `remote_path` of `remote`,
    /// `direction` = `push`, `pull` or `two_way`; everything else the
    /// gateway's defaults.
    pub fn new(name: &str, folder: &str, remote: &str, remote_path: &str, direction: &str) -> Self {
        Self {
            name: name.into(),
            folder: folder.into(),
            remote: remote.into(),
            remote_path: remote_path.into(),
            direction: direction.into(),
            ..Default::default()
        }
    }

    /// Sets `after_copy` (`keep` or `delete`).
    pub fn after_copy(mut self, what: &str) -> Self {
        self.after_copy = Some(what.into());
        self
    }

    /// Sets `settle` (e.g. "0s").
    pub fn settle(mut self, d: &str) -> Self {
        self.settle = Some(d.into());
        self
    }

    /// Sets `time_limit`.
    pub fn time_limit(mut self, d: &str) -> Self {
        self.time_limit = Some(d.into());
        self
    }

    /// Sets `parallel`.
    pub fn parallel(mut self, n: u32) -> Self {
        self.parallel = Some(n);
        self
    }

    /// Sets `delete_empty_folders`.
    pub fn delete_empty_folders(mut self, yes: bool) -> Self {
        self.delete_empty_folders = Some(yes);
        self
    }

    /// Sets `trigger_file`.
    pub fn trigger_file(mut self, name: &str) -> Self {
        self.trigger_file = Some(name.into());
        self
    }

    /// Sets `every` (e.g. "2s").
    pub fn every(mut self, d: &str) -> Self {
        self.every = Some(d.into());
        self
    }

    /// Sets `cron` and, optionally, `time_zone`.
    pub fn cron(mut self, spec: &str, time_zone: Option<&str>) -> Self {
        self.cron = Some(spec.into());
        self.time_zone = time_zone.map(str::to_owned);
        self
    }

    /// Adds an `include` glob.
    pub fn include(mut self, glob: &str) -> Self {
        self.include.push(glob.into());
        self
    }

    /// Adds an `exclude` glob.
    pub fn exclude(mut self, glob: &str) -> Self {
        self.exclude.push(glob.into());
        self
    }

    /// The TOML text of this entry.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[[syncs]]\n");
        let opt = |s: &mut String, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                *s += &format!("{k} = {}\n", toml_str(v));
            }
        };
        s += &format!("name = {}\n", toml_str(&self.name));
        s += &format!("folder = {}\n", toml_str(&self.folder));
        s += &format!("remote = {}\n", toml_str(&self.remote));
        s += &format!("remote_path = {}\n", toml_str(&self.remote_path));
        s += &format!("direction = {}\n", toml_str(&self.direction));
        opt(&mut s, "after_copy", &self.after_copy);
        opt(&mut s, "settle", &self.settle);
        opt(&mut s, "time_limit", &self.time_limit);
        if let Some(n) = self.parallel {
            s += &format!("parallel = {n}\n");
        }
        if let Some(b) = self.delete_empty_folders {
            s += &format!("delete_empty_folders = {b}\n");
        }
        opt(&mut s, "trigger_file", &self.trigger_file);
        opt(&mut s, "every", &self.every);
        opt(&mut s, "cron", &self.cron);
        opt(&mut s, "time_zone", &self.time_zone);
        if !self.include.is_empty() {
            s += &format!("include = {}\n", toml_list(&self.include));
        }
        if !self.exclude.is_empty() {
            s += &format!("exclude = {}\n", toml_list(&self.exclude));
        }
        for (k, v) in &self.extra {
            s += &format!("{k} = {v}\n");
        }
        s
    }
}

/// A whole gateway config file.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `[server] listen` entries.
    pub listen: Vec<String>,
    /// `[server] storage`.
    pub storage: PathBuf,
    /// `[server] state`.
    pub state: PathBuf,
    /// `[server] log_format`.
    pub log_format: String,
    /// `[server] shutdown_grace`.
    pub shutdown_grace: String,
    /// Optional `[login]` section: (max_failures, failure_window, ban_duration).
    pub login: Option<(u32, String, String)>,
    /// Users.
    pub users: Vec<UserConfig>,
    /// `[server] dedicated_ips` (left out when `None`).
    pub dedicated_ips: Option<Vec<String>>,
    /// `[[remotes]]` entries.
    pub remotes: Vec<RemoteConfig>,
    /// `[[syncs]]` entries.
    pub syncs: Vec<SyncConfig>,
    /// The `[admin]` section (left out when `None`).
    pub admin: Option<AdminConfig>,
    /// `[metrics] listen` (left out when `None`).
    pub metrics_listen: Option<String>,
    /// `[s3] listen` (the S3 endpoint, plain HTTP on loopback), when set.
    pub s3_listen: Option<String>,
    /// Extra `key = value` lines of `[server]` (session limits, idle_timeout).
    pub server_extra: Vec<String>,
    /// Extra `key = value` lines of `[login]` (grace_time, max_unauthenticated).
    pub login_extra: Vec<String>,
}

/// One `[[admin.keys]]` entry.
#[derive(Debug, Clone)]
pub struct AdminKeyConfig {
    /// `name`.
    pub name: String,
    /// `hash`: `sha256:<64 hex>`.
    pub hash: String,
    /// `expires` (RFC 3339), if any.
    pub expires: Option<String>,
    /// `scope` (`read-only`, `operator`, `admin`); none: the default.
    pub scope: Option<String>,
}

impl AdminKeyConfig {
    /// An entry for the key `key` (its SHA-256 computed here).
    pub fn for_key(name: &str, key: &str, expires: Option<&str>) -> Self {
        Self {
            name: name.into(),
            hash: format!("sha256:{}", sha256_hex(key.as_bytes())),
            expires: expires.map(str::to_string),
            scope: None,
        }
    }

    /// The same with `scope`.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// The `[admin]` section: the admin API's address and keys.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// `listen`, e.g. `127.0.0.1:0`.
    pub listen: String,
    /// `[[admin.keys]]`.
    pub keys: Vec<AdminKeyConfig>,
    /// `certificate` and `private_key` (PEM files), for TLS.
    pub tls: Option<(String, String)>,
}

impl AdminConfig {
    /// The TOML text of the section.
    pub fn to_toml(&self) -> String {
        let mut s = format!("[admin]\nlisten = {}\n", toml_str(&self.listen));
        if let Some((cert, key)) = &self.tls {
            s += &format!(
                "certificate = {}\nprivate_key = {}\n",
                toml_str(cert),
                toml_str(key)
            );
        }
        for k in &self.keys {
            s += &format!(
                "\n[[admin.keys]]\nname = {}\nhash = {}\n",
                toml_str(&k.name),
                toml_str(&k.hash)
            );
            if let Some(e) = &k.expires {
                s += &format!("expires = {}\n", toml_str(e));
            }
            if let Some(scope) = &k.scope {
                s += &format!("scope = {}\n", toml_str(scope));
            }
        }
        s
    }
}

/// SHA-256 of `data` in lower-case hex, by `sha256sum` (coreutils).
pub fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning sha256sum");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .expect("writing to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(hex.len(), 64, "sha256sum printed {text:?}");
    hex
}

impl GatewayConfig {
    /// A config listening on 127.0.0.1:0 with the given storage and state dirs.
    pub fn new(storage: &Path, state: &Path) -> Self {
        Self {
            listen: vec!["127.0.0.1:0".into()],
            storage: storage.into(),
            state: state.into(),
            log_format: "text".into(),
            shutdown_grace: "10s".into(),
            login: None,
            users: vec![],
            dedicated_ips: None,
            remotes: vec![],
            syncs: vec![],
            admin: None,
            metrics_listen: None,
            s3_listen: None,
            server_extra: vec![],
            login_extra: vec![],
        }
    }

    /// Turns the admin API on at `listen` with `keys`.
    pub fn admin(mut self, listen: &str, keys: Vec<AdminKeyConfig>) -> Self {
        self.admin = Some(AdminConfig {
            listen: listen.into(),
            keys,
            tls: None,
        });
        self
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("[server]\n");
        s += &format!("listen = {}\n", toml_list(&self.listen));
        s += &format!(
            "storage = {}\n",
            toml_str(&self.storage.display().to_string())
        );
        s += &format!("state = {}\n", toml_str(&self.state.display().to_string()));
        s += &format!("log_format = {}\n", toml_str(&self.log_format));
        s += &format!("shutdown_grace = {}\n", toml_str(&self.shutdown_grace));
        if let Some(ips) = &self.dedicated_ips {
            s += &format!("dedicated_ips = {}\n", toml_list(ips));
        }
        for line in &self.server_extra {
            s += line;
            s += "\n";
        }
        if let Some((max, window, ban)) = &self.login {
            s += &format!(
                "\n[login]\nmax_failures = {max}\nfailure_window = {}\nban_duration = {}\n",
                toml_str(window),
                toml_str(ban)
            );
        } else if !self.login_extra.is_empty() {
            s += "\n[login]\n";
        }
        for line in &self.login_extra {
            s += line;
            s += "\n";
        }
        if let Some(listen) = &self.metrics_listen {
            s += &format!("\n[metrics]\nlisten = {}\n", toml_str(listen));
        }
        if let Some(listen) = &self.s3_listen {
            s += &format!("\n[s3]\nlisten = {}\n", toml_str(listen));
        }
        if let Some(admin) = &self.admin {
            s += "\n";
            s += &admin.to_toml();
        }
        for r in &self.remotes {
            s += "\n";
            s += &r.to_toml();
        }
        for u in &self.users {
            s += "\n";
            s += &u.to_toml();
        }
        for y in &self.syncs {
            s += "\n";
            s += &y.to_toml();
        }
        s
    }

    /// Writes the TOML to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        fs::write(path, self.to_toml()).with_context(|| format!("writing {}", path.display()))
    }
}
