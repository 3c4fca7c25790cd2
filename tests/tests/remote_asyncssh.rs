//! AsyncSSH's SFTP server (PyPI) as a remote, a second SFTP server
//! implementation next to OpenSSH's: the backend conformance
//! suite; a mount through the real gateway with OpenSSH's `sftp` as the
//! client (64 MiB up and down checked on the server's disk, rename, mkdir,
//! rmdir, remove, kept mtimes, a name with spaces and non-ASCII); a push
//! and a pull sync.

use std::time::Duration;

use backends::sftp::SftpBackend;
use e2e::asyncssh_sftpd::AsyncSshServer;
use e2e::direct::runtime;
use e2e::sshd::{MOUNT, REMOTE};
use e2e::sync::{scenarios, RemoteKind};

#[test]
fn asyncssh_server_passes_the_conformance_suite() {
    let server = AsyncSshServer::start().unwrap();
    runtime().block_on(async {
        let backend = SftpBackend::new(server.backend_settings("asyncssh").unwrap());
        backends::conformance::run_all(&backend).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = backend.pool_stats();
        assert_eq!(stats.open, stats.idle, "{stats:?}");
    });
    let leftovers = e2e::direct::upload_leftovers(&server.root());
    assert!(leftovers.is_empty(), "{leftovers:?}\n{}", server.logs());
}

#[test]
fn a_mount_on_asyncssh_serves_every_operation() {
    let server = AsyncSshServer::start().unwrap();
    let mut m = e2e::mount::MountedGateway::new(server.remote_config(REMOTE), MOUNT).unwrap();
    m.start_gateway().unwrap();
    e2e::mount::every_operation(&m, &server.root(), &|| server.logs());
}

#[test]
fn asyncssh_push_with_keep() {
    scenarios::push(RemoteKind::AsyncSsh, false);
}

#[test]
fn asyncssh_pull_with_delete() {
    scenarios::pull(RemoteKind::AsyncSsh, true);
}
