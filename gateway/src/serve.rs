//! `gateway serve`: prepares storage, state, host keys and users, then
//! accepts connections until SIGTERM/SIGINT, and shuts down gracefully.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

use anyhow::{Context, Result};
use backends::LocalBackend;
use policy::{Authenticator, LoginThrottle, PathPermissions, User};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Settings;
use crate::remotes::Remotes;
use crate::ssh::{self, Connection, Shared};
use crate::state::{self, RedbStore, StoredUser};
use crate::sync::run::SyncSides;
use crate::sync::scheduler;
use crate::transfers::ActiveTransfers;

/// Runs the gateway until it is told to stop.
pub async fn run(settings: Settings) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&settings.state)
        .with_context(|| {
            format!(
                "cannot create the state folder {}",
                settings.state.display()
            )
        })?;
    let storage = LocalBackend::open(&settings.storage).with_context(|| {
        format!(
            "cannot open the storage folder {}",
            settings.storage.display()
        )
    })?;

    let host_keys = certs::host_keys::load_or_generate(&settings.state.join("host_keys"))
        .context("cannot load or create the host keys")?;
    for key in &host_keys {
        let verb = if key.generated { "generated" } else { "loaded" };
        tracing::info!(
            "{verb} host key {} {}",
            key.key.algorithm(),
            key.fingerprint()
        );
    }

    let store =
        Arc::new(RedbStore::open(&settings.state).context("cannot open the state database")?);
    let remotes = Remotes::build(&settings, store.clone())?;
    let mut users = settings.users;
    let mut first_user_password = None;
    if users.is_empty() {
        let existing = state::stored_users(store.as_ref())?;
        if existing.is_empty() {
            let password = random_password();
            let stored = StoredUser {
                name: "admin".to_string(),
                password_hash: policy::hash_password(&password)
                    .context("cannot hash the first user's password")?,
                home: String::new(),
            };
            if state::create_user(store.as_ref(), &stored)? {
                first_user_password = Some(password);
            }
        }
        for stored in state::stored_users(store.as_ref())? {
            users.push(User {
                name: stored.name,
                password_hash: Some(stored.password_hash),
                authorized_keys: Vec::new(),
                home: stored.home,
                permissions: PathPermissions::full(),
                allowed_networks: Vec::new(),
            });
        }
    }
    for user in &users {
        let home = settings.storage.join(&user.home);
        std::fs::create_dir_all(&home).with_context(|| {
            format!(
                "cannot create {}'s home folder {}",
                user.name,
                home.display()
            )
        })?;
        // Mount points are folders of the home, so listings show them.
        for mount in settings.mounts.get(&user.name).into_iter().flatten() {
            let point = home.join(mount.path.as_str().trim_start_matches('/'));
            std::fs::create_dir_all(&point)
                .with_context(|| format!("cannot create the mount point {}", point.display()))?;
        }
    }

    crate::remotes::create_s3_mount_folders(&remotes, &settings.mounts);
    let sync_storage: Arc<dyn backends::Backend> =
        Arc::new(LocalBackend::open(&settings.storage).with_context(|| {
            format!(
                "cannot open the storage folder {}",
                settings.storage.display()
            )
        })?);
    let mut syncs = Vec::new();
    for sync in &settings.syncs {
        // Validation guarantees the remote exists.
        if let Some(remote) = remotes.get(&sync.remote) {
            syncs.push((
                sync.clone(),
                SyncSides {
                    gateway: sync_storage.clone(),
                    remote: remote.backend.clone(),
                    remote_folders_are_virtual: remote.settings.kind()
                        == crate::config::RemoteKind::S3,
                },
            ));
        }
    }
    let shared = Arc::new(Shared {
        authenticator: Authenticator::new(users, settings.allowed_networks.clone()),
        throttle: LoginThrottle::new(settings.throttle),
        storage,
        transfers: ActiveTransfers::default(),
        remotes,
        mounts: settings.mounts,
    });
    let config = Arc::new(ssh::ssh_config(
        host_keys.into_iter().map(|k| k.key).collect(),
        settings.idle_timeout,
        settings.max_auth_attempts,
    ));

    let mut listeners = Vec::new();
    for addr in &settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener
            .local_addr()
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("listening on {local}");
        listeners.push((listener, local));
    }
    if let (Some(password), Some((_, local))) = (first_user_password, listeners.first()) {
        print_first_user(&password, *local);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let store: Arc<dyn state::StateStore> = store;
    let schedulers = scheduler::start(syncs, store, stop_rx.clone());
    let mut acceptors = Vec::new();
    for (listener, _) in listeners {
        acceptors.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            config.clone(),
            stop_rx.clone(),
        )));
    }

    wait_for_signal().await?;
    let _ = stop_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    // Scheduled runs stop at once: unfinished copies are discarded (never
    // published) and their records say "interrupted".
    for s in schedulers {
        let _ = s.await;
    }
    let in_flight = shared.transfers.count();
    tracing::info!(
        "shutting down: no new connections; waiting up to {} for {in_flight} transfer(s) in flight",
        humantime::format_duration(settings.shutdown_grace)
    );
    if tokio::time::timeout(settings.shutdown_grace, shared.transfers.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            "grace period over: closing {} unfinished transfer(s)",
            shared.transfers.count()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => start_connection(socket, peer, &shared, &config),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

fn start_connection(
    socket: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    config: &Arc<russh::server::Config>,
) {
    let ip = peer.ip();
    if let Err(banned) = shared.throttle.check(ip) {
        tracing::info!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = %banned);
        return;
    }
    if !shared.authenticator.address_allowed(ip) {
        tracing::info!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = "address not allowed");
        return;
    }
    let _ = socket.set_nodelay(true);
    let handler = Connection::new(shared.clone(), peer);
    let config = config.clone();
    tokio::spawn(async move {
        match russh::server::run_stream(config, socket, handler).await {
            Ok(session) => {
                if let Err(e) = session.await {
                    tracing::debug!(addr = %ip, "connection ended: {e}");
                }
            }
            Err(e) => tracing::debug!(addr = %ip, "handshake failed: {e}"),
        }
    });
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    if getrandom::fill(&mut bytes).is_err() {
        // Without a system RNG no safe password can be made; the thread
        // RNG is seeded from the OS too, so use it as the fallback.
        use rand::RngExt;
        rand::rng().fill(&mut bytes);
    }
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn print_first_user(password: &str, local: SocketAddr) {
    let host = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    println!("First start: created user \"admin\".");
    println!("  password: {password}   (shown only this once)");
    println!("  log in with: sftp -P {} admin@{host}", local.port());
}
