//! AsyncSSH's SFTP server (PyPI) as a remote, a second SFTP server
//! implementation next to OpenSSH's (issue 20): the backend conformance
//! suite; a mount through the real gateway with OpenSSH's `sftp` as the
//! client (64 MiB up and down checked on the server's disk, rename, mkdir,
//! rmdir, remove, kept mtimes, a name with spaces and non-ASCII); a push
//! and a pull sync.

use std::fs;
use std::time::Duration;

use backends::sftp::SftpBackend;
use e2e::asyncssh_sftpd::AsyncSshServer;
use e2e::direct::runtime;
use e2e::sshd::{MOUNT, REMOTE};
use e2e::sync::{scenarios, RemoteKind};
use e2e::*;

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
    let logs = || m.logs_with(&server.logs());
    let src = m.env.path("big.bin");
    write_random_file(&src, 64 << 20).unwrap();
    let odd = m.env.path("odd.txt");
    fs::write(&odd, b"spaces and accents").unwrap();
    // A fixed old mtime that `put -p` must carry.
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    e2e::sync::set_mtime(&odd, old).unwrap();
    let back = m.env.path("back.bin");
    let batch = format!(
        "put {src} {MOUNT}/big.bin\n\
         get {MOUNT}/big.bin {back}\n\
         mkdir {MOUNT}/folder\n\
         put -p {odd} \"{MOUNT}/folder/naïve café.txt\"\n\
         rename {MOUNT}/big.bin {MOUNT}/folder/moved.bin\n\
         ls -l {MOUNT}/folder\n",
        src = p(&src),
        back = p(&back),
        odd = p(&odd),
    );
    let out = m.client().sftp(&batch).unwrap();
    assert_ok(
        &out,
        &format!("operations through the AsyncSSH mount\n{}", logs()),
    );
    assert_same_large_file(&src, &server.root().join("folder/moved.bin"));
    assert_same_large_file(&src, &back);
    let odd_remote = server.root().join("folder/naïve café.txt");
    assert_eq!(fs::read(&odd_remote).unwrap(), b"spaces and accents");
    let mtime = fs::metadata(&odd_remote).unwrap().modified().unwrap();
    assert_eq!(mtime, old, "put -p did not keep the mtime on the server");
    assert!(
        !server.root().join("big.bin").exists(),
        "renamed file still there"
    );

    let out = m
        .client()
        .sftp(&format!(
            "rm {MOUNT}/folder/moved.bin\nrm \"{MOUNT}/folder/naïve café.txt\"\nrmdir {MOUNT}/folder\n"
        ))
        .unwrap();
    assert_ok(
        &out,
        &format!("rm and rmdir through the AsyncSSH mount\n{}", logs()),
    );
    assert!(!server.root().join("folder").exists(), "{}", logs());
}

#[test]
fn asyncssh_push_with_keep() {
    scenarios::push(RemoteKind::AsyncSsh, false);
}

#[test]
fn asyncssh_pull_with_delete() {
    scenarios::pull(RemoteKind::AsyncSsh, true);
}
