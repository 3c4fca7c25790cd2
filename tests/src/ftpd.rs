//! Real FTP servers (vsftpd, pure-ftpd, ProFTPD) on loopback as the remotes of FTP tests.
//!
//! Every [`FtpServer`] runs its own server process in the foreground with its
//! own temp dir (config, certificates, log, and the root folder the login user
//! sees as `/`). The login is the shared system account
//! [`TEST_USER`](crate::sshd::TEST_USER) / [`TEST_PASSWORD`](crate::sshd::TEST_PASSWORD)
//! (created by `scripts/test.sh`); each instance chroots it into its own empty
//! [`FtpServer::root`] folder, owned by that user.
//!
//! # Ports
//! Each instance claims a block of [`PORT_BLOCK`] consecutive ports in
//! `[PORT_RANGE_START, PORT_RANGE_END)` — below Linux's ephemeral range
//! (32768–60999), so no client socket of any test can sit on them. The claim
//! is an `flock` on `$TMPDIR/gw-e2e-ftp-ports/<base>.lock` held for the
//! lifetime of the [`FtpServer`] (released by the kernel even if the test
//! process dies), and every port of the block is probed with a bind before
//! use. The first port of the block is the control port, the other
//! `PORT_BLOCK - 1` are the passive (data) port range. Parallel tests
//! (nextest runs one process per test) therefore never share ports, and
//! [`FtpServer::stop`] / [`FtpServer::start_again`] keep the same ports.
//!
//! # Binaries
//! - vsftpd: `/usr/sbin/vsftpd` (Debian package `vsftpd`).
//! - pure-ftpd: Debian's pure-ftpd conflicts with vsftpd, so `scripts/test.sh`
//!   only extracts the packages `pure-ftpd` and `pure-ftpd-common` into
//!   `target/peers/pure-ftpd` and exports [`PURE_FTPD_ENV`] (`GW_PURE_FTPD`)
//!   = the absolute path of `usr/sbin/pure-ftpd` there. Without the variable
//!   the harness looks in that default folder (so `cargo nextest run` by hand
//!   works after one run of `scripts/test.sh`); if it is missing, starting a
//!   pure-ftpd server fails with a message saying to run `scripts/test.sh`.
//! - ProFTPD 1.3.8: conflicts with both as a package too; `scripts/test.sh`
//!   extracts `proftpd-core` and `proftpd-mod-crypto` (mod_tls) into
//!   `target/peers/proftpd` and exports [`PROFTPD_ENV`] (`GW_PROFTPD`), found
//!   the same way. Its config is generated ([`FtpServer::dir`]`/proftpd.conf`);
//!   mod_tls keeps its default of requiring TLS session reuse on data
//!   connections unless [`FtpServerOptions::require_ssl_reuse`] is false.
//!
//! # Certificates
//! Each instance makes (with `openssl`, EC P-256, in well under a second) a
//! test CA ([`FtpServer::ca_file`]), a server certificate signed by it for
//! `IP:127.0.0.1, DNS:localhost` ([`CertChoice::Good`]), one signed by the
//! same CA for `DNS:wrong.example` only ([`CertChoice::WrongHost`]) and a
//! self-signed one for 127.0.0.1 from no known CA ([`CertChoice::UnknownCa`]).
//!
//! Dropping an [`FtpServer`] kills the server and every per-session process
//! it started.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use backends::dial::SourceAddresses;
use backends::ftp::{CertificateCheck, FtpSettings, FtpTls};

use crate::direct::pool_settings;
pub use crate::peers::process_alive;
pub use crate::peers::{established_in_range, ConnectionSampler, SamplerReport, TcpConn};
use crate::peers::{server_processes, PortClaim};
use crate::run_with_timeout;
use crate::sshd::{chown_to_test_user, listening_on_port, test_user_ids, TEST_PASSWORD, TEST_USER};

/// Absolute path of vsftpd (Debian package `vsftpd`, installed by `scripts/test.sh`).
pub const VSFTPD_BIN: &str = "/usr/sbin/vsftpd";

/// Environment variable holding the absolute path of the extracted
/// `pure-ftpd` binary (exported by `scripts/test.sh`).
pub const PURE_FTPD_ENV: &str = "GW_PURE_FTPD";

/// Where `scripts/test.sh` extracts pure-ftpd, relative to the cargo target dir.
pub const PURE_FTPD_DEFAULT_DIR: &str = "peers/pure-ftpd";

/// Environment variable holding the absolute path of the extracted
/// `proftpd` binary (exported by `scripts/test.sh`).
pub const PROFTPD_ENV: &str = "GW_PROFTPD";

/// Where `scripts/test.sh` extracts ProFTPD, relative to the cargo target dir.
pub const PROFTPD_DEFAULT_DIR: &str = "peers/proftpd";

/// First port of the range the per-instance port blocks are taken from.
pub const PORT_RANGE_START: u16 = 20000;

/// End (exclusive) of that range: the start of Linux's default ephemeral range.
pub const PORT_RANGE_END: u16 = 32768;

/// Ports per instance: 1 control port + `PORT_BLOCK - 1` passive ports.
/// (pure-ftpd caps its client count at half the passive ports: 31 here.)
pub const PORT_BLOCK: u16 = 64;

/// How long to wait for a freshly started server to listen.
pub const FTPD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpServerKind {
    /// vsftpd 3.0.3 (Debian 12).
    Vsftpd,
    /// pure-ftpd 1.0.50 (Debian 12), extracted from its package.
    PureFtpd,
    /// ProFTPD 1.3.8 (Debian 12) with mod_tls, extracted from its packages.
    ProFtpd,
}

/// TLS mode of the control port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpServerTls {
    /// Plain FTP only (`AUTH TLS` is refused).
    None,
    /// Explicit FTPS (`AUTH TLS` on the plain port). `required`: logins and
    /// data connections without TLS are refused (vsftpd
    /// `force_local_logins_ssl` + `force_local_data_ssl`; pure-ftpd `-Y 3`);
    /// otherwise both plain and TLS sessions are accepted (pure-ftpd `-Y 1`).
    Explicit {
        /// Refuse sessions and data connections without TLS.
        required: bool,
    },
    /// Implicit FTPS: TLS from the first byte on the control port
    /// (`ftps://`). vsftpd only (`implicit_ssl=YES`): Debian's pure-ftpd is
    /// built without it, and [`FtpServer::start`] says so.
    Implicit,
}

/// Which certificate the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertChoice {
    /// Signed by the test CA for `IP:127.0.0.1, DNS:localhost`.
    Good,
    /// Signed by the test CA for `DNS:wrong.example` only.
    WrongHost,
    /// Self-signed for `IP:127.0.0.1, DNS:localhost`: no known CA.
    UnknownCa,
}

impl CertChoice {
    fn stem(self) -> &'static str {
        match self {
            CertChoice::Good => "server",
            CertChoice::WrongHost => "wrong-host",
            CertChoice::UnknownCa => "unknown-ca",
        }
    }
}

/// Options for [`FtpServer::start`]. Start from [`FtpServerOptions::vsftpd`]
/// or [`FtpServerOptions::pure_ftpd`] and set fields or use the builders.
#[derive(Debug, Clone)]
pub struct FtpServerOptions {
    /// The server program.
    pub kind: FtpServerKind,
    /// TLS mode (default none).
    pub tls: FtpServerTls,
    /// Certificate presented when TLS is on (default [`CertChoice::Good`]).
    pub cert: CertChoice,
    /// vsftpd `require_ssl_reuse` (default true, vsftpd's own default): data
    /// connections must resume the control connection's TLS session, else
    /// `522 SSL connection failed: session reuse required`. pure-ftpd has no
    /// such check; ignored there.
    pub require_ssl_reuse: bool,
    /// Maximum simultaneous clients (vsftpd `max_clients`, pure-ftpd `-c` and
    /// `-C`). None: vsftpd's default (2000) / pure-ftpd 31 (its cap: half the
    /// passive ports).
    pub max_clients: Option<u32>,
    /// Caps the server's TLS at 1.2 (an `OPENSSL_CONF` with
    /// `MaxProtocol = TLSv1.2` in the server's environment). Default false:
    /// TLS 1.3 is negotiated when the client offers it. Beware: vsftpd 3.0.3
    /// over TLS 1.3 fails about half of the uploads larger than ~100 KB
    /// (`426 Failure reading network stream.` after 114688 bytes; seen with
    /// curl/OpenSSL), while listings, downloads and small uploads work; over
    /// TLS 1.2 all work. pure-ftpd is fine with TLS 1.3.
    pub max_tls12: bool,
    /// Extra settings: for vsftpd, config lines (`key=value`) appended to
    /// the generated config; for pure-ftpd, extra command-line arguments.
    pub extra: Vec<String>,
}

impl FtpServerOptions {
    /// Plain FTP with the given server and the defaults above.
    pub fn new(kind: FtpServerKind) -> Self {
        Self {
            kind,
            tls: FtpServerTls::None,
            cert: CertChoice::Good,
            require_ssl_reuse: true,
            max_clients: None,
            max_tls12: false,
            extra: vec![],
        }
    }

    /// `new(FtpServerKind::Vsftpd)`.
    pub fn vsftpd() -> Self {
        Self::new(FtpServerKind::Vsftpd)
    }

    /// `new(FtpServerKind::PureFtpd)`.
    pub fn pure_ftpd() -> Self {
        Self::new(FtpServerKind::PureFtpd)
    }

    /// `new(FtpServerKind::ProFtpd)`.
    pub fn proftpd() -> Self {
        Self::new(FtpServerKind::ProFtpd)
    }

    /// Sets [`FtpServerOptions::tls`].
    pub fn tls(mut self, tls: FtpServerTls) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`FtpServerOptions::cert`].
    pub fn cert(mut self, cert: CertChoice) -> Self {
        self.cert = cert;
        self
    }

    /// Sets [`FtpServerOptions::require_ssl_reuse`].
    pub fn require_ssl_reuse(mut self, yes: bool) -> Self {
        self.require_ssl_reuse = yes;
        self
    }

    /// Sets [`FtpServerOptions::max_clients`].
    pub fn max_clients(mut self, n: u32) -> Self {
        self.max_clients = Some(n);
        self
    }

    /// Sets [`FtpServerOptions::max_tls12`].
    pub fn max_tls12(mut self, yes: bool) -> Self {
        self.max_tls12 = yes;
        self
    }

    /// Appends one [`FtpServerOptions::extra`] entry.
    pub fn extra(mut self, item: &str) -> Self {
        self.extra.push(item.to_string());
        self
    }
}

impl Default for FtpServerOptions {
    fn default() -> Self {
        Self::vsftpd()
    }
}

/// A port block claimed for one instance (see the module docs).
#[derive(Debug)]
struct PortBlock(PortClaim);

impl PortBlock {
    fn claim() -> Result<PortBlock> {
        PortClaim::claim("ftp", PORT_RANGE_START..PORT_RANGE_END, PORT_BLOCK).map(PortBlock)
    }

    fn control(&self) -> u16 {
        self.0.base
    }

    fn passive(&self) -> RangeInclusive<u16> {
        self.0.base + 1..=self.0.base + PORT_BLOCK - 1
    }
}

/// The pure-ftpd binary: `$GW_PURE_FTPD`, else `<target>/peers/pure-ftpd/usr/sbin/pure-ftpd`.
pub fn pure_ftpd_bin() -> Result<PathBuf> {
    crate::peers::peer_binary(
        PURE_FTPD_ENV,
        &format!("{PURE_FTPD_DEFAULT_DIR}/usr/sbin/pure-ftpd"),
        "extracts the pure-ftpd and pure-ftpd-common packages into target/peers/pure-ftpd (apt-get download; dpkg -x: they conflict with vsftpd, so they are not installed)",
    )
}

/// The ProFTPD binary: `$GW_PROFTPD`, else `<target>/peers/proftpd/usr/sbin/proftpd`.
pub fn proftpd_bin() -> Result<PathBuf> {
    crate::peers::peer_binary(
        PROFTPD_ENV,
        &format!("{PROFTPD_DEFAULT_DIR}/usr/sbin/proftpd"),
        "extracts the proftpd-core and proftpd-mod-crypto packages into target/peers/proftpd (apt-get download; dpkg -x: they conflict with vsftpd, so they are not installed)",
    )
}

/// `pure-pw` from the same extracted tree as `pure-ftpd` (`usr/bin/pure-pw`).
fn pure_pw_bin(pure_ftpd: &Path) -> Result<PathBuf> {
    let usr = pure_ftpd
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("{} has no usr/ parent", pure_ftpd.display()))?;
    let p = usr.join("bin/pure-pw");
    if !p.is_file() {
        bail!(
            "{} not found (it comes from the pure-ftpd-common package): run scripts/test.sh",
            p.display()
        );
    }
    Ok(p)
}

/// Runs a command (60 s limit) and fails with its output unless it succeeds.
fn run_ok(cmd: Command, what: &str) -> Result<String> {
    let out = run_with_timeout(cmd, Duration::from_secs(60))?;
    if !out.success() {
        bail!("{what} failed:\n{out}");
    }
    Ok(out.stdout)
}

/// Makes the test CA and the three server certificates in `dir`.
pub fn make_certs(dir: &Path) -> Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let p = |n: &str| dir.join(n);
    let mut ca = Command::new("openssl");
    ca.args(["req", "-x509"])
        .args(ec)
        .args(["-days", "3650", "-subj", "/CN=gw-e2e test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem"));
    run_ok(ca, "openssl req (test CA)")?;
    for (stem, cn, san) in [
        ("server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost"),
        ("wrong-host", "wrong.example", "DNS:wrong.example"),
    ] {
        let mut req = Command::new("openssl");
        req.arg("req")
            .args(ec)
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(p(&format!("{stem}.key")))
            .arg("-out")
            .arg(p(&format!("{stem}.csr")));
        run_ok(req, "openssl req (server key)")?;
        let ext = p(&format!("{stem}.ext"));
        fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
            ),
        )?;
        let mut sign = Command::new("openssl");
        sign.args(["x509", "-req", "-days", "3650", "-set_serial"])
            .arg(if stem == "server" { "2" } else { "3" })
            .arg("-in")
            .arg(p(&format!("{stem}.csr")))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(p(&format!("{stem}.pem")));
        run_ok(sign, "openssl x509 -req (sign server cert)")?;
    }
    let mut unknown = Command::new("openssl");
    unknown
        .args(["req", "-x509"])
        .args(ec)
        .args(["-days", "3650", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(p("unknown-ca.key"))
        .arg("-out")
        .arg(p("unknown-ca.pem"));
    run_ok(unknown, "openssl req (self-signed cert)")?;
    Ok(())
}

/// A running (or stopped) FTP server on 127.0.0.1 (see the module docs).
pub struct FtpServer {
    dir: tempfile::TempDir,
    ports: PortBlock,
    opts: FtpServerOptions,
    bin: PathBuf,
    child: Option<Child>,
}

/// pure-ftpd keeps a status file `/var/run/pure-ftpd/client-%08u` (pid) per
/// session (for pure-ftpwho) and removes it when the session ends normally;
/// a killed session leaves it behind. Removes those of dead processes.
fn remove_stale_pure_ftpd_status_files() {
    let Ok(rd) = fs::read_dir(PURE_FTPD_RUN_DIR) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("client-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// pure-ftpd's run-time folder (per-session status files).
pub const PURE_FTPD_RUN_DIR: &str = "/var/run/pure-ftpd";

impl FtpServer {
    /// Claims a port block, makes the temp dir, root folder and certificates,
    /// starts the server and waits until it listens.
    pub fn start(opts: FtpServerOptions) -> Result<FtpServer> {
        test_user_ids()?;
        let bin = match opts.kind {
            FtpServerKind::Vsftpd => {
                if !Path::new(VSFTPD_BIN).is_file() {
                    bail!("{VSFTPD_BIN} not found: install vsftpd (scripts/test.sh does)");
                }
                PathBuf::from(VSFTPD_BIN)
            }
            FtpServerKind::PureFtpd => {
                if opts.tls == FtpServerTls::Implicit {
                    bail!(
                        "pure-ftpd (Debian's 1.0.50) is built without implicit TLS; \
                         use FtpServerKind::Vsftpd for FtpServerTls::Implicit"
                    );
                }
                pure_ftpd_bin()?
            }
            FtpServerKind::ProFtpd => proftpd_bin()?,
        };
        let ports = PortBlock::claim()?;
        let dir = tempfile::Builder::new().prefix("gw-e2e-ftpd-").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let root = dir.path().join("root");
        fs::create_dir(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        chown_to_test_user(&root)?;
        let certs = dir.path().join("certs");
        fs::create_dir(&certs)?;
        make_certs(&certs)?;
        fs::write(
            dir.path().join("openssl-tls12.cnf"),
            "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n\
             [ssl_sect]\nsystem_default = system_default_sect\n\
             [system_default_sect]\nMaxProtocol = TLSv1.2\n",
        )?;
        match opts.kind {
            FtpServerKind::Vsftpd => {
                // vsftpd's pre-login process chroots here: empty, root-owned, 555.
                let empty = dir.path().join("empty");
                fs::create_dir(&empty)?;
                fs::set_permissions(&empty, fs::Permissions::from_mode(0o555))?;
                fs::write(dir.path().join("user_list"), format!("{TEST_USER}\n"))?;
            }
            FtpServerKind::PureFtpd => {
                // pure-ftpd keeps per-session status files here (pure-ftpwho).
                fs::create_dir_all(PURE_FTPD_RUN_DIR)
                    .with_context(|| format!("mkdir -p {PURE_FTPD_RUN_DIR}"))?;
                Self::make_pure_db(dir.path(), &bin, &root)?;
            }
            FtpServerKind::ProFtpd => {}
        }
        let mut server = FtpServer {
            dir,
            ports,
            opts,
            bin,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// pure-ftpd's virtual user [`TEST_USER`] (a puredb file made with
    /// `pure-pw mkdb`) mapped to the system user's uid/gid and chrooted
    /// (`/./`) into `root`. The hash is SHA-512 crypt (`openssl passwd -6`):
    /// `pure-pw useradd`'s argon2id costs ~2.5 s per login.
    fn make_pure_db(dir: &Path, pure_ftpd: &Path, root: &Path) -> Result<()> {
        let (uid, gid) = test_user_ids()?;
        let mut h = Command::new("openssl");
        h.args(["passwd", "-6", TEST_PASSWORD]);
        let hash = run_ok(h, "openssl passwd -6")?.trim().to_string();
        if !hash.starts_with("$6$") {
            bail!("openssl passwd -6 printed {hash:?}");
        }
        let passwd = dir.join("pureftpd.passwd");
        fs::write(
            &passwd,
            format!(
                "{TEST_USER}:{hash}:{uid}:{gid}::{}/./::::::::::::\n",
                root.display()
            ),
        )?;
        let mut mk = Command::new(pure_pw_bin(pure_ftpd)?);
        mk.arg("mkdb")
            .arg(dir.join("pureftpd.pdb"))
            .arg("-f")
            .arg(&passwd);
        run_ok(mk, "pure-pw mkdb")?;
        Ok(())
    }

    /// The kind of server.
    pub fn kind(&self) -> FtpServerKind {
        self.opts.kind
    }

    /// The options it was started with.
    pub fn options(&self) -> &FtpServerOptions {
        &self.opts
    }

    /// The temp dir of this server (config, certs, logs, root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control port (kept across [`FtpServer::stop`] / [`FtpServer::start_again`]).
    pub fn port(&self) -> u16 {
        self.ports.control()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port())
    }

    /// The passive (data) port range the server answers PASV/EPSV with.
    pub fn passive_ports(&self) -> RangeInclusive<u16> {
        self.ports.passive()
    }

    /// The folder the login user sees as `/` (owned by [`TEST_USER`], mode 755).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Writes `data` to `<root>/<rel>` (creating parent folders) and makes
    /// the new folders and the file owned by [`TEST_USER`], so that the server
    /// can overwrite it as well as read, rename and delete it (a file the test
    /// writes as root is read-only to the server). Returns the path on disk.
    pub fn write_file(&self, rel: &str, data: &[u8]) -> Result<PathBuf> {
        let path = self.root().join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            self.create_dir(&parent.strip_prefix(self.root())?.to_string_lossy())?;
        }
        fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        chown_to_test_user(&path)?;
        Ok(path)
    }

    /// Creates `<root>/<rel>` and its missing parents (mode 755), owned by
    /// [`TEST_USER`]. Returns the path on disk.
    pub fn create_dir(&self, rel: &str) -> Result<PathBuf> {
        let root = self.root();
        let mut path = root.clone();
        for part in Path::new(rel.trim_start_matches('/')).components() {
            path.push(part);
            if !path.is_dir() {
                fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                chown_to_test_user(&path)?;
            }
        }
        Ok(path)
    }

    /// The login name ([`TEST_USER`]).
    pub fn user(&self) -> &'static str {
        TEST_USER
    }

    /// The password ([`TEST_PASSWORD`]).
    pub fn password(&self) -> &'static str {
        TEST_PASSWORD
    }

    /// A `[[remotes]]` entry named `name` for this server: its login, TLS
    /// matching the server (`never`; `require` or `require_implicit`
    /// trusting its test CA), `connect_timeout = "10s"`, `io_timeout = "30s"`.
    pub fn remote_config(&self, name: &str) -> crate::RemoteConfig {
        let r = crate::RemoteConfig::ftp(name, "127.0.0.1", self.port(), self.user())
            .password(self.password())
            .io_timeout("30s");
        let mut r = match self.opts.tls {
            FtpServerTls::None => r.tls("never"),
            FtpServerTls::Explicit { .. } => r.tls("require").ca_file(&self.ca_file()),
            FtpServerTls::Implicit => r.tls("require_implicit").ca_file(&self.ca_file()),
        };
        r.connect_timeout = Some("10s".into());
        r
    }

    /// Settings for an [`FtpBackend`](backends::ftp::FtpBackend) built
    /// directly (no gateway) on this server: remote `name`, its login,
    /// plain FTP (`tls` never, any certificate), the root folder, the
    /// system's source addresses, atomic uploads, 20 s to connect, 30 s
    /// per exchange, a pool of at most 2 connections. Change the fields a
    /// test needs otherwise (`FtpSettings { tls, ..backend_settings(n) }`).
    pub fn backend_settings(&self, name: &str) -> FtpSettings {
        FtpSettings {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: self.port(),
            username: self.user().into(),
            password: self.password().into(),
            tls: FtpTls::Never,
            certificate: CertificateCheck::AllowAny,
            root: String::new(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(20),
            io_timeout: Duration::from_secs(30),
            atomic_uploads: true,
            pool: pool_settings(2),
        }
    }

    /// `ftp://127.0.0.1:PORT/<path>` (`ftps://` for implicit TLS); `path`
    /// without a leading slash is relative to the root.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.opts.tls == FtpServerTls::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        format!(
            "{scheme}://127.0.0.1:{}/{}",
            self.port(),
            path.trim_start_matches('/')
        )
    }

    /// The test CA's certificate (PEM): what a client must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    /// The certificate file (PEM) of `choice`.
    pub fn cert_file_of(&self, choice: CertChoice) -> PathBuf {
        self.dir.path().join(format!("certs/{}.pem", choice.stem()))
    }

    /// The certificate the server presents ([`FtpServerOptions::cert`]).
    pub fn cert_file(&self) -> PathBuf {
        self.cert_file_of(self.opts.cert)
    }

    fn key_file(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("certs/{}.key", self.opts.cert.stem()))
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("vsftpd.conf")
    }

    /// The server's own log file: vsftpd's `vsftpd_log_file` (every
    /// connection, FTP command and response, transfer, with the client's
    /// address); pure-ftpd's `-O clf:` transfer log (one line per transfer,
    /// client address first; pure-ftpd logs nothing else but to syslog).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(match self.opts.kind {
            FtpServerKind::Vsftpd => "vsftpd.log",
            FtpServerKind::PureFtpd => "pure-ftpd.clf.log",
            FtpServerKind::ProFtpd => "proftpd.xfer.log",
        })
    }

    /// ProFTPD's mod_tls log (`TLSLog`): handshakes, protocol versions and
    /// whether each data connection reused the control connection's session.
    pub fn tls_log_path(&self) -> PathBuf {
        self.dir.path().join("proftpd.tls.log")
    }

    /// ProFTPD's `SystemLog`.
    fn system_log_path(&self) -> PathBuf {
        self.dir.path().join("proftpd.system.log")
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("server.out")
    }

    /// The server's log ([`FtpServer::log_path`]) followed by anything it
    /// wrote to stdout/stderr (every run of this instance appends).
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.log_path()).unwrap_or_default();
        if self.opts.kind == FtpServerKind::ProFtpd {
            for (what, path) in [
                ("TLS log", self.tls_log_path()),
                ("system log", self.system_log_path()),
            ] {
                s += &format!("\n--- ProFTPD {what} ---\n");
                s += &fs::read_to_string(path).unwrap_or_default();
            }
        }
        let out = fs::read_to_string(self.output_path()).unwrap_or_default();
        if !out.trim().is_empty() {
            s += "\n--- server stdout/stderr ---\n";
            s += &out;
        }
        s
    }

    /// The client IP addresses the log names: vsftpd's `CONNECT: Client "IP"`
    /// lines (one per control connection); pure-ftpd's transfer lines.
    pub fn log_client_ips(&self) -> BTreeSet<IpAddr> {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        match self.opts.kind {
            FtpServerKind::Vsftpd => {
                let re = regex::Regex::new(r#"CONNECT: Client "([^"]+)""#).expect("regex");
                log.lines()
                    .filter_map(|l| re.captures(l).and_then(|c| c[1].parse().ok()))
                    .collect()
            }
            FtpServerKind::PureFtpd => log
                .lines()
                .filter_map(|l| l.split_whitespace().next().and_then(|w| w.parse().ok()))
                .collect(),
            // xferlog: "Mon Dec  7 03:48:34 2026 0 127.0.0.2 100000 /path b _ i r user ftp 0 * c"
            FtpServerKind::ProFtpd => log
                .lines()
                .filter_map(|l| l.split_whitespace().nth(6).and_then(|w| w.parse().ok()))
                .collect(),
        }
    }

    /// Number of control connections the log shows (vsftpd only: `CONNECT:` lines).
    pub fn log_connect_count(&self) -> usize {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("] CONNECT: Client "))
            .count()
    }

    /// The config / command line and log, for failure messages.
    pub fn logs(&self) -> String {
        let setup = match self.opts.kind {
            FtpServerKind::Vsftpd => fs::read_to_string(self.config_path()).unwrap_or_default(),
            FtpServerKind::PureFtpd => format!("{:?}", self.pure_ftpd_args()),
            FtpServerKind::ProFtpd => {
                fs::read_to_string(self.proftpd_config_path()).unwrap_or_default()
            }
        };
        format!(
            "{:?} on 127.0.0.1:{} (passive {:?}, {})\n--- setup ---\n{}\n--- log ---\n{}\n----------------",
            self.opts.kind,
            self.port(),
            self.passive_ports(),
            self.dir.path().display(),
            setup.trim_end(),
            self.log()
        )
    }

    fn vsftpd_config(&self) -> String {
        let d = self.dir.path();
        let o = &self.opts;
        let yn = |b: bool| if b { "YES" } else { "NO" };
        let mut lines = vec![
            "listen=YES".to_string(),
            "listen_ipv6=NO".into(),
            "listen_address=127.0.0.1".into(),
            format!("listen_port={}", self.port()),
            "background=NO".into(),
            "seccomp_sandbox=NO".into(),
            "anonymous_enable=NO".into(),
            "local_enable=YES".into(),
            "write_enable=YES".into(),
            "local_umask=022".into(),
            "pasv_enable=YES".into(),
            "pasv_address=127.0.0.1".into(),
            format!("pasv_min_port={}", self.passive_ports().start()),
            format!("pasv_max_port={}", self.passive_ports().end()),
            "port_enable=YES".into(),
            "connect_from_port_20=NO".into(),
            format!("secure_chroot_dir={}", d.join("empty").display()),
            "userlist_enable=YES".into(),
            "userlist_deny=NO".into(),
            format!("userlist_file={}", d.join("user_list").display()),
            "chroot_local_user=YES".into(),
            "allow_writeable_chroot=YES".into(),
            format!("local_root={}", self.root().display()),
            "pam_service_name=vsftpd".into(),
            "dirmessage_enable=NO".into(),
            "xferlog_enable=YES".into(),
            "xferlog_std_format=NO".into(),
            "log_ftp_protocol=YES".into(),
            format!("vsftpd_log_file={}", self.log_path().display()),
        ];
        if let Some(n) = o.max_clients {
            lines.push(format!("max_clients={n}"));
        }
        match o.tls {
            FtpServerTls::None => lines.push("ssl_enable=NO".into()),
            FtpServerTls::Explicit { .. } | FtpServerTls::Implicit => {
                let required = match o.tls {
                    FtpServerTls::Explicit { required } => required,
                    _ => true,
                };
                lines.extend([
                    "ssl_enable=YES".to_string(),
                    format!("implicit_ssl={}", yn(o.tls == FtpServerTls::Implicit)),
                    format!("rsa_cert_file={}", self.cert_file().display()),
                    format!("rsa_private_key_file={}", self.key_file().display()),
                    // vsftpd 3.0.3's default list is DES-CBC3-SHA only, which
                    // OpenSSL 3 refuses (and which an EC key cannot use).
                    "ssl_ciphers=HIGH".into(),
                    format!("force_local_logins_ssl={}", yn(required)),
                    format!("force_local_data_ssl={}", yn(required)),
                    format!("require_ssl_reuse={}", yn(o.require_ssl_reuse)),
                    "debug_ssl=YES".into(),
                ]);
            }
        }
        lines.extend(o.extra.iter().cloned());
        lines.join("\n") + "\n"
    }

    fn proftpd_config_path(&self) -> PathBuf {
        self.dir.path().join("proftpd.conf")
    }

    /// ProFTPD's config: standalone on the control port, the test user
    /// (system account, password through mod_auth_unix) chrooted into the
    /// root folder; mod_tls as [`FtpServerOptions::tls`] says, with its
    /// defaults otherwise (session reuse required on data connections).
    fn proftpd_config(&self) -> Result<String> {
        let d = self.dir.path();
        let o = &self.opts;
        let usr = self
            .bin
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| anyhow!("{} has no usr/ parent", self.bin.display()))?;
        let passive = self.passive_ports();
        let mut lines = vec![
            "ServerType standalone".to_string(),
            "ServerName \"gw-e2e ProFTPD\"".into(),
            "DefaultServer on".into(),
            "DefaultAddress 127.0.0.1".into(),
            "SocketBindTight on".into(),
            "UseIPv6 off".into(),
            format!("Port {}", self.port()),
            format!("PassivePorts {} {}", passive.start(), passive.end()),
            format!("User {TEST_USER}"),
            format!("Group {TEST_USER}"),
            "Umask 022".into(),
            format!("MaxInstances {}", o.max_clients.unwrap_or(60)),
            format!("DefaultRoot {}", self.root().display()),
            "RequireValidShell off".into(),
            "UseFtpUsers off".into(),
            "AuthOrder mod_auth_unix.c".into(),
            "WtmpLog off".into(),
            "UseReverseDNS off".into(),
            "DelayTable none".into(),
            format!("PidFile {}", d.join("proftpd.pid").display()),
            format!("ScoreboardFile {}", d.join("proftpd.scoreboard").display()),
            format!("SystemLog {}", self.system_log_path().display()),
            format!("TransferLog {}", self.log_path().display()),
            format!("ModulePath {}", usr.join("lib/proftpd").display()),
            "AllowOverwrite on".into(),
            "AllowStoreRestart on".into(),
            "AllowRetrieveRestart on".into(),
        ];
        if o.tls != FtpServerTls::None {
            let required = match o.tls {
                FtpServerTls::Explicit { required } => required,
                _ => true,
            };
            let mut options = vec![];
            if o.tls == FtpServerTls::Implicit {
                options.push("UseImplicitSSL");
            }
            if !o.require_ssl_reuse {
                options.push("NoSessionReuseRequired");
            }
            lines.extend([
                "LoadModule mod_tls.c".to_string(),
                "TLSEngine on".into(),
                format!("TLSLog {}", self.tls_log_path().display()),
                format!(
                    "TLSProtocol {}",
                    if o.max_tls12 {
                        "TLSv1.2"
                    } else {
                        "TLSv1.2 TLSv1.3"
                    }
                ),
                format!("TLSRequired {}", if required { "on" } else { "off" }),
                format!("TLSECCertificateFile {}", self.cert_file().display()),
                format!("TLSECCertificateKeyFile {}", self.key_file().display()),
                "TLSVerifyClient off".into(),
            ]);
            if !options.is_empty() {
                lines.push(format!("TLSOptions {}", options.join(" ")));
            }
        }
        lines.extend(o.extra.iter().cloned());
        Ok(lines.join("\n") + "\n")
    }

    fn pure_ftpd_args(&self) -> Vec<String> {
        let d = self.dir.path();
        let o = &self.opts;
        let passive = self.passive_ports();
        // pure-ftpd caps -c at half the passive ports anyway.
        let max = o
            .max_clients
            .unwrap_or(u32::from(PORT_BLOCK - 1) / 2)
            .to_string();
        let mut a: Vec<String> = vec![
            "-S".into(),
            format!("127.0.0.1,{}", self.port()),
            "-4".into(),
            "-l".into(),
            format!("puredb:{}", d.join("pureftpd.pdb").display()),
            "-E".into(), // no anonymous
            "-A".into(), // chroot everyone
            "-H".into(), // no reverse DNS (and IPs in the log)
            "-u".into(),
            "1".into(), // min uid (the test user is a system account)
            "-U".into(),
            "133:022".into(),
            "-p".into(),
            format!("{}:{}", passive.start(), passive.end()),
            "-P".into(),
            "127.0.0.1".into(),
            "-c".into(),
            max.clone(),
            "-C".into(),
            max,
            "-O".into(),
            format!("clf:{}", self.log_path().display()),
            "-f".into(),
            "none".into(), // no syslog
        ];
        let tls_mode = match o.tls {
            FtpServerTls::None => None,
            FtpServerTls::Explicit { required: false } => Some("1"),
            // 3: refuse sessions without TLS and cleartext data channels too.
            FtpServerTls::Explicit { required: true } | FtpServerTls::Implicit => Some("3"),
        };
        if let Some(mode) = tls_mode {
            a.extend([
                "-Y".into(),
                mode.into(),
                "-2".into(),
                format!(
                    "{},{}",
                    self.cert_file().display(),
                    self.key_file().display()
                ),
            ]);
        }
        a.extend(o.extra.iter().cloned());
        a
    }

    /// Writes the config, starts the server in the foreground (own process
    /// group, stdout+stderr to a file) and waits until the control port listens
    /// (checked with `ss`, without connecting: vsftpd would log a connect).
    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        match self.opts.kind {
            FtpServerKind::Vsftpd => {
                fs::write(self.config_path(), self.vsftpd_config())?;
                cmd.arg(self.config_path());
            }
            FtpServerKind::PureFtpd => {
                cmd.args(self.pure_ftpd_args());
            }
            FtpServerKind::ProFtpd => {
                fs::write(self.proftpd_config_path(), self.proftpd_config()?)?;
                // -n: in the foreground; -q: no start-up banner on stderr.
                cmd.arg("-n")
                    .arg("-q")
                    .arg("-c")
                    .arg(self.proftpd_config_path());
            }
        }
        if self.opts.max_tls12 {
            cmd.env("OPENSSL_CONF", self.dir.path().join("openssl-tls12.cnf"));
        }
        let what = format!("{:?}", self.opts.kind);
        let child = crate::peers::spawn_server(
            &mut cmd,
            &self.output_path(),
            self.port(),
            FTPD_START_TIMEOUT,
            &what,
        )
        .map_err(|e| {
            anyhow!(
                "{e:#} (pure-ftpd logs its errors only to syslog: check its arguments)\n{}",
                self.logs()
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// The pids of the server and every per-session process it started right now.
    pub fn pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return vec![];
        };
        let pid = child.id();
        let mut all = vec![pid];
        all.extend(server_processes(pid, &mut BTreeSet::new()));
        all
    }

    /// Kills the server and every session process (like a crash: open control
    /// and data connections are cut), then waits until nothing listens on the
    /// control port and no connection to it or the passive range is left.
    /// Ports, root folder and certificates are kept.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!(
                "{:?} on port {} is not running",
                self.opts.kind,
                self.port()
            );
        };
        let pid = child.id();
        // Freeze the listener first so that no new session starts, then kill the sessions.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        let mut sessions = BTreeSet::new();
        let mut quiet_rounds = 0;
        for _ in 0..100 {
            let procs = server_processes(pid, &mut sessions);
            for &d in &procs {
                // SAFETY: kill(2) on a process this server started.
                unsafe { libc::kill(d as libc::pid_t, libc::SIGKILL) };
            }
            // Whatever stayed in the server's process group (it is the leader).
            // SAFETY: kill(2) on the process group we created for the server.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            quiet_rounds = if procs.is_empty() {
                quiet_rounds + 1
            } else {
                0
            };
            if quiet_rounds >= 2 {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        if self.opts.kind == FtpServerKind::PureFtpd {
            remove_stale_pure_ftpd_status_files();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.connections()?;
            if !listening_on_port(self.port())? && left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "port {} still listens or has connections 5 s after killing the server: {left:?}",
                    self.port()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the server again after [`FtpServer::stop`]: same ports, root,
    /// certificates and log file.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!(
                "{:?} on port {} is already running",
                self.opts.kind,
                self.port()
            );
        }
        self.spawn()
    }

    /// [`FtpServer::stop`] then [`FtpServer::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.start_again()
    }

    /// Stops the server, switches the certificate it presents and starts it
    /// again on the same port.
    pub fn restart_with_cert(&mut self, cert: CertChoice) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.opts.cert = cert;
        self.start_again()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Established connections to the control port right now (peer = the
    /// client's source address and port).
    pub fn control_connections(&self) -> Result<Vec<TcpConn>> {
        established_in_range(self.port()..=self.port())
    }

    /// Established data connections to the passive range right now
    /// (passive mode only: active-mode data connections, which the server
    /// opens to the client, are not on that range).
    pub fn data_connections(&self) -> Result<Vec<TcpConn>> {
        established_in_range(self.passive_ports())
    }

    /// Both: every established connection to this server right now.
    pub fn connections(&self) -> Result<Vec<TcpConn>> {
        established_in_range(self.port()..=*self.passive_ports().end())
    }

    /// Starts sampling the control connections every 20 ms.
    pub fn control_sampler(&self) -> ConnectionSampler {
        ConnectionSampler::start(self.port()..=self.port())
    }

    /// ProFTPD speaking SFTP (`mod_sftp`, not FTP) on its port, password
    /// login, with an RSA host key made here (mod_sftp wants PEM and mode
    /// 0600); returns the server and its host key.
    pub fn start_mod_sftp() -> Result<(FtpServer, russh::keys::PublicKey)> {
        let keys = tempfile::Builder::new()
            .prefix("gw-proftpd-sftp-")
            .tempdir()
            .context("temp dir for mod_sftp's host key")?
            .keep();
        let key = keys.join("host_rsa");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
            .arg(&key)
            .output()
            .context("running ssh-keygen")?;
        if !out.status.success() {
            bail!("ssh-keygen: {out:?}");
        }
        let public = fs::read_to_string(key.with_extension("pub"))?;
        let public = russh::keys::PublicKey::from_openssh(public.trim())
            .context("reading mod_sftp's host key")?;
        let server = FtpServer::start(
            FtpServerOptions::proftpd()
                .extra("LoadModule mod_sftp.c")
                .extra("SFTPEngine on")
                .extra(&format!("SFTPLog {}", keys.join("sftp.log").display()))
                .extra(&format!("SFTPHostKey {}", key.display()))
                .extra("SFTPAuthMethods password"),
        )?;
        Ok((server, public))
    }

    /// Starts sampling the data connections (passive range) every 20 ms.
    pub fn data_sampler(&self) -> ConnectionSampler {
        ConnectionSampler::start(self.passive_ports())
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("stopping {:?}: {e:#}", self.opts.kind);
            }
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
