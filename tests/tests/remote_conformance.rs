//! The backend conformance suite (`backends::conformance`) against a real
//! OpenSSH sshd: the SFTP backend passes every case the local one does.

use std::sync::Arc;
use std::time::Duration;

use backends::dial::SourceAddresses;
use backends::pool::PoolSettings;
use backends::sftp::{HostKeyPolicy, SftpBackend, SftpSettings};
use backends::{BackendError, ErrorKind};
use e2e::sshd::{Sshd, TEST_PASSWORD, TEST_USER};
use russh::keys::PublicKey;

/// Accepts exactly the key the test's sshd was started with.
#[derive(Debug)]
struct ExactKey(PublicKey);

impl HostKeyPolicy for ExactKey {
    fn check_enabled(&self) -> backends::Result<()> {
        Ok(())
    }
    fn verify(&self, presented: &PublicKey) -> backends::Result<()> {
        if presented.key_data() == self.0.key_data() {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "connect",
                "",
                "unexpected host key",
            ))
        }
    }
}

#[test]
fn remote_sftp_backend_passes_the_conformance_suite() {
    let sshd = Sshd::start_default().unwrap();
    let root = sshd.remote_dir("conformance").unwrap();
    let host_key = PublicKey::from_openssh(sshd.host_key_line().trim()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = SftpBackend::new(SftpSettings {
            name: "conformance".into(),
            host: "127.0.0.1".into(),
            port: sshd.port(),
            username: TEST_USER.into(),
            password: Some(TEST_PASSWORD.into()),
            private_key: None,
            root: root.display().to_string(),
            sources: SourceAddresses::system(),
            connect_timeout: Duration::from_secs(20),
            host_keys: Arc::new(ExactKey(host_key)),
            pool: PoolSettings {
                max: 4,
                wait: Duration::from_secs(30),
                idle: Duration::from_secs(30),
            },
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
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.contains(".gw-upload-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary upload files left on the remote: {leftovers:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}
