//! The backend conformance suite (`backends::conformance`) against a real
//! OpenSSH sshd: the SFTP backend passes every case the local one does.

use std::time::Duration;

use backends::sftp::{SftpBackend, SftpSettings};
use e2e::direct::{pool_settings, runtime, upload_leftovers};
use e2e::sshd::Sshd;

#[test]
fn remote_sftp_backend_passes_the_conformance_suite() {
    let sshd = Sshd::start_default().unwrap();
    let root = sshd.remote_dir("conformance").unwrap();
    runtime().block_on(async {
        let backend = SftpBackend::new(SftpSettings {
            pool: pool_settings(4),
            ssh: Default::default(),
            atomic_uploads: true,
            ..sshd.backend_settings("conformance", &root.display().to_string())
        });
        backends::conformance::run_all(&backend).await;
        // Every operation returned its connection: nothing is in use.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = backend.pool_stats();
        assert_eq!(
            stats.open, stats.idle,
            "connections still checked out after the suite: {stats:?}"
        );
        assert!(stats.open <= 4, "{stats:?}");
    });
    // The hidden upload files never remain on the remote.
    let leftovers = upload_leftovers(&root);
    assert!(
        leftovers.is_empty(),
        "temporary upload files left on the remote: {leftovers:?}"
    );
}
