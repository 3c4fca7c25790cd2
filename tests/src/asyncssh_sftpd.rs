//! AsyncSSH's SFTP server (PyPI `asyncssh`) as a remote: started by a test
//! on a free loopback port from `tests/servers/asyncssh_sftp_server.py`,
//! one user with a password, confined to a folder of the test's own, and
//! stopped when dropped. A second, independent SFTP server implementation
//! next to OpenSSH's.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::RemoteConfig;

/// The login the server accepts.
pub const USER: &str = "acme";
/// Its password.
pub const PASSWORD: &str = "asyncssh-Pass-42";

/// A running AsyncSSH SFTP server.
pub struct AsyncSshServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AsyncSshServer {
    /// Starts the server on a free port; its root is `root()`.
    pub fn start() -> Result<AsyncSshServer> {
        let dir = tempfile::Builder::new().prefix("gw-asyncssh-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("root"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("servers/asyncssh_sftp_server.py");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path().join("root"))
            .arg(port.to_string())
            .arg(USER)
            .arg(PASSWORD)
            .arg(dir.path().join("host_key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting python3 with the AsyncSSH server")?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (ready, listening) = mpsc::channel();
        let stdout = child.stdout.take().context("server stdout")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if line.starts_with("listening on") {
                    let _ = ready.send(());
                }
                out_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&(line + "\n"));
            }
        });
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                err_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&(line + "\n"));
            }
        });
        let mut server = AsyncSshServer {
            dir,
            port,
            child,
            log,
        };
        if listening.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = server.child.kill();
            bail!(
                "the AsyncSSH server did not start (is asyncssh installed? `python3 -m pip install asyncssh`):\n{}",
                server.logs()
            );
        }
        Ok(server)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the user sees as `/`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// What the server printed, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- AsyncSSH server ---\n{}",
            self.log.lock().unwrap_or_else(|p| p.into_inner())
        )
    }

    /// A `[[remotes]]` entry for this server (password login, root `/`).
    pub fn remote_config(&self, name: &str) -> RemoteConfig {
        RemoteConfig::sftp(name, "127.0.0.1", self.port, USER).password(PASSWORD)
    }

    /// Settings for an SFTP backend built directly on this server,
    /// accepting only its host key.
    pub fn backend_settings(&self, name: &str) -> Result<backends::sftp::SftpSettings> {
        Ok(backends::sftp::SftpSettings {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: self.port,
            username: USER.into(),
            password: Some(PASSWORD.into()),
            private_key: None,
            root: String::new(),
            sources: backends::dial::SourceAddresses::system(),
            connect_timeout: Duration::from_secs(20),
            io_timeout: backends::sftp::DEFAULT_IO_TIMEOUT,
            host_keys: std::sync::Arc::new(crate::sshd::ExactKey(self.host_key()?)),
            pool: crate::direct::pool_settings(2),
            ssh: Default::default(),
            atomic_uploads: true,
        })
    }

    /// The server's host key (the public half of the key it was given).
    pub fn host_key(&self) -> Result<russh::keys::PublicKey> {
        let text = std::fs::read_to_string(self.dir.path().join("host_key"))?;
        let key = russh::keys::PrivateKey::from_openssh(&text).context("the server's host key")?;
        Ok(key.public_key().clone())
    }
}

impl Drop for AsyncSshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
