//! `gateway serve`: prepares storage, state, host keys and users, then
//! accepts connections until SIGTERM/SIGINT, and shuts down gracefully.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use backends::LocalBackend;
use ipnet::IpNet;
use policy::LoginThrottle;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Settings;
use crate::core::Shared;
use crate::proxy_protocol::{self, ProxiedAddress, ProxyHeaderError};
use crate::remotes::Remotes;
use crate::running::{self, Running};
use crate::ssh::Connection;
use crate::state::{self, StoredUser};
use crate::sync::scheduler;

/// Runs the gateway until it is told to stop.
pub async fn run(settings: Settings) -> Result<()> {
    let storage = LocalBackend::open(&settings.storage).with_context(|| {
        format!(
            "cannot open the storage folder {}",
            settings.storage.display()
        )
    })?;

    let (store, shared_store) = crate::cluster::open_state_shared(&settings)?;
    let host_keys = match &shared_store {
        Some(_) => crate::cluster::host_keys::load_or_share(
            store.as_ref(),
            &settings.state.join("host_keys"),
        ),
        None => certs::host_keys::load_or_generate(&settings.state.join("host_keys"))
            .map_err(anyhow::Error::from),
    }
    .context("cannot load or create the host keys")?;
    for key in &host_keys {
        let verb = if key.generated { "generated" } else { "loaded" };
        tracing::info!(
            "{verb} host key {} {}",
            key.key.algorithm(),
            key.fingerprint()
        );
    }

    if crate::cluster::start_slots(&settings, shared_store.as_ref()).is_some() {
        tracing::info!(
            node = store.node_id().unwrap_or_default(),
            "state shared with the cluster's nodes in {}; remotes' connection limits hold across them",
            settings
                .state_database
                .as_ref()
                .map(|d| d.shown())
                .unwrap_or_default()
        );
    }
    // The recorder comes before the remotes: their pools and connectors
    // register their metric handles when they are built.
    // The admin API reads the same figures back (connect failures, bytes
    // per remote), so it needs the recorder too.
    let recorder = if settings.ops.metrics_listen.is_some() || settings.ops.admin_listen.is_some() {
        Some(crate::telemetry::install_recorder()?)
    } else {
        None
    };
    let remotes = Arc::new(Remotes::build(&settings, store.clone())?);
    let mut first_user_password = None;
    if settings.users.is_empty() && state::stored_users(store.as_ref())?.is_empty() {
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
    for user in running::users_of(&settings, store.as_ref())? {
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
    let sync_storage = running::sync_storage(&settings)?;
    let host_keys: Vec<russh::keys::PrivateKey> = host_keys.into_iter().map(|k| k.key).collect();
    let throttle = LoginThrottle::new(settings.throttle);
    let listen = settings.listen.clone();
    let ops = settings.ops.clone();
    let s3_endpoint = settings.s3_endpoint.clone();
    let state_dir = settings.state.clone();
    let state_database = settings.state_database.clone();
    let shutdown_grace = settings.shutdown_grace;
    let settings = Arc::new(settings);
    let table = running::sync_table(&settings, &remotes, &sync_storage);
    let live = running::live_config(settings, remotes, &host_keys, store.as_ref())?;
    let checksums = Arc::new(crate::core::checksums::Checksums::new(store.clone()));
    let shared = Arc::new(Shared::new(live, throttle, storage, checksums));

    let mut listeners = Vec::new();
    for addr in &listen {
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

    crate::core::memory::spawn_trim_after_load(shared.transfers.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (syncs_tx, syncs_rx) = watch::channel(table);
    let scheduler = tokio::spawn(scheduler::supervise(
        syncs_rx,
        store.clone(),
        stop_rx.clone(),
    ));
    let running = Arc::new(
        Running::new(
            shared.clone(),
            store.clone(),
            host_keys,
            sync_storage,
            syncs_tx,
            stop_rx.clone(),
        )
        .with_figures(recorder.clone()),
    );
    let mut endpoints = Vec::new();
    let ready = crate::ops_endpoint::readiness(store.clone(), listeners.len());
    if let (Some(addr), Some(recorder)) = (ops.metrics_listen, recorder) {
        let recorder = recorder.with_refresh(crate::telemetry::state_gauges::refresh(
            shared.clone(),
            store.clone(),
        ));
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
        tracing::info!(
            "metrics on http://{}/metrics",
            listener.local_addr().unwrap_or(addr)
        );
        endpoints.push(tokio::spawn(crate::ops_endpoint::serve_metrics(
            listener,
            recorder,
            ready.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(addr) = ops.admin_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?;
        if running.api_keys.is_empty() {
            tracing::warn!(
                "the admin API has no keys ([[admin.keys]]): every request will be refused"
            );
        }
        if let Some(exporter) = running.figures.clone() {
            let sampler = running.clone();
            let stop = stop_rx.clone();
            tokio::spawn(async move { sampler.throughput.run(exporter, stop).await });
        }
        let tls = match &ops.admin_tls {
            Some((cert, key)) => Some(crate::server_tls::tls_acceptor(cert, key, "admin")?),
            None => None,
        };
        endpoints.push(tokio::spawn(crate::admin::serve_admin(
            listener,
            tls,
            running.clone(),
            running.api_keys.clone(),
            ready.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(s3) = &s3_endpoint {
        let (listener, tls, uploads) =
            crate::s3::bind(s3, &state_dir, state_database.as_ref()).await?;
        endpoints.push(tokio::spawn(crate::s3::serve_s3(
            listener,
            tls,
            uploads,
            s3.clone(),
            shared.clone(),
            store.clone(),
            stop_rx.clone(),
        )));
    }
    let mut acceptors = Vec::new();
    for (listener, _) in listeners {
        acceptors.push(tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    tokio::spawn(reload_on_sighup(running.clone()));

    wait_for_signal().await?;
    let _ = stop_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    // Scheduled runs stop at once: unfinished copies are discarded (never
    // published) and their records say "interrupted".
    let _ = scheduler.await;
    for e in endpoints {
        let _ = e.await;
    }
    let in_flight = shared.transfers.count();
    tracing::info!(
        "shutting down: no new connections; waiting up to {} for {in_flight} transfer(s) in flight",
        humantime::format_duration(shutdown_grace)
    );
    if tokio::time::timeout(shutdown_grace, shared.transfers.wait_idle())
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => accept_connection(socket, peer, &shared),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// The longest a trusted load balancer may take to send its PROXY header
/// (at most `login.grace_time`): a load balancer sends it as soon as it
/// has connected.
const PROXY_HEADER_WAIT: Duration = Duration::from_secs(5);

/// A new connection: from a load balancer in `server.proxy_protocol_from`
/// it must start with a PROXY protocol header, read on its own task, and
/// the client the header names becomes the connection's address; any
/// other connection starts at once (a header from it is never honoured).
fn accept_connection(socket: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let live = shared.live();
    let trusted = &live.settings.proxy_protocol_from;
    if !trusted.is_empty() && address_in(trusted, peer.ip()) {
        let wait = live.settings.limits.grace_time.min(PROXY_HEADER_WAIT);
        tokio::spawn(start_proxied_connection(socket, peer, shared.clone(), wait));
    } else {
        start_connection(socket, peer, shared);
    }
}

/// Whether `ip` (or the IPv4 address it maps) is in one of `networks`.
fn address_in(networks: &[IpNet], ip: IpAddr) -> bool {
    let canonical = ip.to_canonical();
    networks
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&canonical))
}

/// Reads the PROXY header of a connection from the load balancer `proxy`,
/// then serves it as a connection from the client the header names.
async fn start_proxied_connection(
    mut socket: TcpStream,
    proxy: SocketAddr,
    shared: Arc<Shared>,
    wait: Duration,
) {
    let header = tokio::time::timeout(wait, proxy_protocol::read_header(&mut socket)).await;
    let problem = match header {
        Ok(Ok(header)) => {
            let client = header.client_or(proxy);
            match header {
                ProxiedAddress::Proxied { .. } => {
                    tracing::debug!(proxy = %proxy, client = %client, "PROXY header read");
                }
                ProxiedAddress::Local => {
                    tracing::debug!(proxy = %proxy, "PROXY header LOCAL: the load balancer's own connection");
                }
                ProxiedAddress::Unknown => {
                    tracing::info!("the load balancer {proxy} does not say who the client is (v1 UNKNOWN, or v2 for other than TCP over IPv4/IPv6): its own address is used");
                }
            }
            start_connection(socket, client, &shared);
            return;
        }
        Ok(Err(ProxyHeaderError::Truncated(0))) => {
            // Connected and closed without a byte: a plain TCP health
            // check, which a direct connection does too.
            tracing::debug!(proxy = %proxy, "the load balancer closed a connection before sending anything");
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "no PROXY protocol header within {}",
            humantime::format_duration(wait)
        ),
    };
    // Dropping the socket closes it. The load balancer is not throttled
    // for it: banning it would refuse every client behind it.
    tracing::warn!("closed a connection from the load balancer {proxy} (server.proxy_protocol_from): {problem}");
    tracing::info!(target: "audit", addr = %proxy.ip(), op = "connect", result = "refused", reason = %format!("PROXY header: {problem}"));
    metrics::counter!("gateway_sessions_refused_total", "reason" => "proxy_header").increment(1);
}

/// Closes a connection refused before the SSH version exchange, after one
/// text line saying why (RFC 4253 4.2 allows lines before the version:
/// `nc` shows it, `ssh -v` too). No key exchange, so a flood costs no
/// crypto.
fn refuse_before_banner(socket: TcpStream, why: String) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut socket = socket;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            socket.write_all(format!("gateway: {why}\r\n").as_bytes()),
        )
        .await;
        let _ = socket.shutdown().await;
    });
}

fn start_connection(socket: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let ip = peer.ip();
    if let Err(banned) = shared.throttle.check(ip) {
        tracing::info!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = %banned);
        return;
    }
    if let Err(over) = shared.connection_rate.admit(ip, std::time::Instant::now()) {
        // Before the version exchange, so a flood costs no key exchange
        // (DHEat); one text line says why to a person trying by hand.
        tracing::debug!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = %over);
        metrics::counter!("gateway_sessions_refused_total", "reason" => "connection_rate")
            .increment(1);
        refuse_before_banner(socket, over.to_string());
        return;
    }
    let live = shared.live();
    if !live.authenticator.address_allowed(ip) {
        tracing::info!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = "address not allowed");
        return;
    }
    let limits = live.settings.limits;
    let session = match shared.sessions.connect(peer, &limits) {
        Ok(s) => s,
        Err(refusal) => {
            tracing::info!(target: "audit", addr = %ip, op = "connect", result = "refused", reason = %refusal);
            metrics::counter!("gateway_sessions_refused_total", "reason" => refusal.reason())
                .increment(1);
            refuse_before_banner(socket, refusal.to_string());
            return;
        }
    };
    let _ = socket.set_nodelay(true);
    let (logged_in_tx, mut logged_in) = watch::channel(false);
    let handler = Connection::new(shared.clone(), peer, session, logged_in_tx);
    let config = live.ssh_config.clone();
    let shared_for_grace = shared.clone();
    tokio::spawn(async move {
        let connection = async {
            match russh::server::run_stream(config, socket, handler).await {
                Ok(session) => match session.await {
                    Ok(()) => {}
                    Err(russh::Error::InactivityTimeout) => {
                        tracing::info!(target: "audit", addr = %ip, op = "disconnect", result = "closed", reason = "idle timeout");
                        metrics::counter!("gateway_sessions_refused_total", "reason" => "idle_timeout")
                            .increment(1);
                    }
                    Err(e) => tracing::debug!(addr = %ip, "connection ended: {e}"),
                },
                Err(e) => tracing::debug!(addr = %ip, "handshake failed: {e}"),
            }
        };
        // A connection that has not logged in within the grace time is
        // closed (dropping it closes the socket).
        let grace = async {
            let logged_in = async move {
                // Either way (logged in, or the connection ended and its
                // sender is gone) the grace timer has nothing more to do.
                let _ = logged_in.wait_for(|l| *l).await;
            };
            if tokio::time::timeout(limits.grace_time, logged_in)
                .await
                .is_ok()
            {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = connection => {}
            () = grace => {
                tracing::info!(target: "audit", addr = %ip, op = "login", result = "refused", reason = "login grace time over");
                metrics::counter!("gateway_sessions_refused_total", "reason" => "grace_time").increment(1);
                // Connecting and never logging in counts as a failed login,
                // so an address that keeps doing it is banned.
                if shared_for_grace.throttle.record_failure(ip) {
                    metrics::counter!("gateway_throttled_addresses_total").increment(1);
                    tracing::warn!(addr = %ip, "too many connections that never logged in: address banned");
                }
            }
        }
    });
}

/// Reloads the config on every SIGHUP.
async fn reload_on_sighup(running: Arc<Running>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch for SIGHUP (reload): {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the config");
        if let Err(e) = crate::admin::control::Control::reload(running.as_ref()).await {
            match e {
                crate::admin::control::ControlError::InvalidConfig(problems) => {
                    for p in problems {
                        tracing::error!("reload refused, the running config stays: {p}");
                    }
                }
                other => tracing::error!("reload refused, the running config stays: {other}"),
            }
        }
    }
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
