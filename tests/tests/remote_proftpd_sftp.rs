//! ProFTPD 1.3.8's `mod_sftp` (Debian 12) as an SFTP remote: a
//! third SFTP server implementation, with its own extensions (no
//! `limits@openssh.com`, no exec for checksums): the backend conformance
//! suite, then a mount through the real gateway with OpenSSH's `sftp` (64
//! MiB up and down checked on its disk, rename, mkdir, rmdir, remove, kept
//! mtimes, a name with spaces and accents), and a push and a pull sync.

use std::time::Duration;

use backends::sftp::{SftpBackend, SftpSettings};
use e2e::direct::{pool_settings, runtime, upload_leftovers};
use e2e::ftpd::FtpServer;
use e2e::sshd::{ExactKey, MOUNT, REMOTE, TEST_PASSWORD, TEST_USER};
use e2e::sync::{scenarios, RemoteKind};
use e2e::*;

/// ProFTPD speaking SFTP (see [`FtpServer::start_mod_sftp`]).
fn start() -> (FtpServer, russh::keys::PublicKey) {
    FtpServer::start_mod_sftp().expect("starting ProFTPD's mod_sftp")
}

fn settings(server: &FtpServer, key: russh::keys::PublicKey) -> SftpSettings {
    SftpSettings {
        name: "proftpd-sftp".into(),
        host: "127.0.0.1".into(),
        port: server.port(),
        username: TEST_USER.into(),
        password: Some(TEST_PASSWORD.into()),
        private_key: None,
        root: String::new(),
        sources: backends::dial::SourceAddresses::system(),
        connect_timeout: Duration::from_secs(20),
        io_timeout: backends::sftp::DEFAULT_IO_TIMEOUT,
        host_keys: std::sync::Arc::new(ExactKey(key)),
        pool: pool_settings(2),
        ssh: Default::default(),
        atomic_uploads: true,
    }
}

#[test]
fn proftpd_mod_sftp_passes_the_conformance_suite() {
    let (server, key) = start();
    runtime().block_on(async {
        let backend = SftpBackend::new(settings(&server, key));
        backends::conformance::run_all(&backend).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = backend.pool_stats();
        assert_eq!(stats.open, stats.idle, "{stats:?}");
    });
    let leftovers = upload_leftovers(&server.root());
    assert!(leftovers.is_empty(), "{leftovers:?}\n{}", server.logs());
}

#[test]
fn a_mount_on_proftpd_mod_sftp_serves_every_operation() {
    let (server, _key) = start();
    let remote =
        RemoteConfig::sftp(REMOTE, "127.0.0.1", server.port(), TEST_USER).password(TEST_PASSWORD);
    let mut m = e2e::mount::MountedGateway::new(remote, MOUNT).unwrap();
    m.start_gateway().unwrap();
    e2e::mount::every_operation(&m, &server.root(), &|| server.logs());
}

#[test]
fn proftpd_mod_sftp_push_with_keep() {
    scenarios::push(RemoteKind::ProftpdSftp, false);
}

#[test]
fn proftpd_mod_sftp_pull_with_delete() {
    scenarios::pull(RemoteKind::ProftpdSftp, true);
}
