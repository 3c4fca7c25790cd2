//! Cluster-wide connection slots on PostgreSQL advisory locks, and the
//! node's heartbeat.
//!
//! Slot `s` of a remote is the session-level advisory lock (remote id,
//! `s`), `s` below the remote's `max_connections`. Each node keeps one
//! session (the "lock session") that holds all of its slots; a node that
//! dies closes its socket and PostgreSQL drops its locks at once (a node
//! cut off by the network, after the TCP keepalives: about 11 s). Taking
//! a slot is one statement (`gw_take_slot`), giving it back another, so a
//! connection to a remote costs two round trips to PostgreSQL on top of
//! its own set-up.
//!
//! Waiting: a node that finds every slot taken says so on the channel
//! `gw_slot_wanted` and waits for `gw_slot_freed` (or polls every
//! 500 ms). A node told that another waits gives a connection back when it
//! holds more than its share (the cap divided by the nodes asking), and
//! lets the other node try first for a moment, so no node starves.
//!
//! When the lock session breaks (PostgreSQL stopped or unreachable) the
//! node cannot know which slots are free, so it refuses new connections
//! with a clear error; connections open keep working. Once the session is
//! back it takes its open connections' slots again, and grants new ones
//! only after [`RECOVERY_GRACE`], when the other nodes have done the same.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backends::slots::{SlotGate, SlotLease};
use backends::{BackendError, ErrorKind};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Client};

use super::pg::{self, Database};

/// How often a node writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// After the lock session is back, how long the node only takes back its
/// own slots before granting new ones.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(3);

/// How often the lock session is tried again while it is broken.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// How long a waiting node polls between attempts when no slot-freed
/// notice arrives.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// How long a node that was asked for a slot lets the other node try first.
const HOLD_OFF: Duration = Duration::from_millis(300);

/// How long a want notice counts when sharing out the cap.
const WANT_FRESH: Duration = Duration::from_secs(2);

/// Whether the lock session works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not connected yet.
    Starting,
    /// Working.
    Up,
    /// Broken: new slots are refused for this reason.
    Down(String),
}

enum Command {
    Take {
        remote: String,
        max: usize,
        reply: oneshot::Sender<Result<Option<(i32, i32)>, String>>,
    },
    Release {
        remote: String,
        remote_id: i32,
        slot: i32,
    },
    Want {
        remote: String,
    },
    /// The node is done (a command-line tool): forget its heartbeat row
    /// and end the lock session, which gives back any slot left.
    Leave {
        reply: oneshot::Sender<()>,
    },
}

struct Shared {
    node: String,
    commands: mpsc::UnboundedSender<Command>,
    /// Grows at each slot-freed notice (any remote).
    freed: watch::Sender<u64>,
    /// Per remote: grows when this node should give a connection back.
    demand: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Per remote: until when this node lets other nodes try first.
    hold_off: Mutex<HashMap<String, Instant>>,
    health: watch::Sender<Health>,
}

/// The cluster's slots (a [`SlotGate`] for every pool of this node).
#[derive(Clone)]
pub struct PgSlots {
    shared: Arc<Shared>,
}

impl PgSlots {
    /// Starts the lock session and heartbeat of node `node` (in the
    /// background: the session is retried until it works).
    pub fn start(database: Database, node: String, host: String) -> PgSlots {
        let (commands, incoming) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node,
            commands,
            freed: watch::Sender::new(0),
            demand: Mutex::new(HashMap::new()),
            hold_off: Mutex::new(HashMap::new()),
            health: watch::Sender::new(Health::Starting),
        });
        tokio::spawn(supervise(database, host, shared.clone(), incoming));
        PgSlots { shared }
    }

    /// Whether the lock session works now.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// Ends a short-lived node (`gateway remote test` in a cluster): its
    /// row leaves `gw_nodes`, so `cluster status` does not list a gone
    /// node for the next hour, and its session closes.
    pub async fn leave(&self) {
        let (reply, done) = oneshot::channel();
        if self.shared.commands.send(Command::Leave { reply }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
    }
}

/// A slot held; given back when dropped.
struct Held {
    remote: String,
    remote_id: i32,
    slot: i32,
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Release {
            remote: std::mem::take(&mut self.remote),
            remote_id: self.remote_id,
            slot: self.slot,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl SlotGate for PgSlots {
    async fn acquire(
        &self,
        remote: &str,
        max: usize,
        wait: Duration,
    ) -> backends::Result<SlotLease> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + wait;
        let mut freed = shared.freed.subscribe();
        loop {
            let hold = lock(&shared.hold_off).get(remote).copied();
            if let Some(until) = hold.filter(|u| *u > Instant::now()) {
                let until = tokio::time::Instant::from_std(until).min(deadline);
                tokio::time::sleep_until(until).await;
            }
            let (reply, answer) = oneshot::channel();
            let _ = shared.commands.send(Command::Take {
                remote: remote.to_string(),
                max,
                reply,
            });
            let taken = answer
                .await
                .unwrap_or_else(|_| Err("the lock session has stopped".to_string()));
            match taken {
                Ok(Some((remote_id, slot))) => {
                    return Ok(SlotLease::new(Held {
                        remote: remote.to_string(),
                        remote_id,
                        slot,
                        commands: shared.commands.clone(),
                    }))
                }
                Ok(None) => {}
                Err(why) => {
                    let message = format!(
                        "no connection to remote `{remote}` can be opened: the cluster's state database cannot say which of its {max} connection slots are free ({why}); new connections are refused until it can, so the limit is never exceeded"
                    );
                    tracing::warn!(remote, "{message}");
                    return Err(BackendError::new(ErrorKind::Other, "connect", "", message));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::new(
                    ErrorKind::Timeout,
                    "connect",
                    "",
                    format!(
                        "all {max} connections to remote `{remote}` are busy across the cluster; waited {}s",
                        wait.as_secs()
                    ),
                ));
            }
            let _ = shared.commands.send(Command::Want {
                remote: remote.to_string(),
            });
            freed.borrow_and_update();
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + POLL_EVERY),
                freed.changed(),
            )
            .await;
        }
    }

    fn demand(&self, remote: &str) -> watch::Receiver<u64> {
        lock(&self.shared.demand)
            .entry(remote.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }
}

/// What the lock session's task keeps between sessions.
#[derive(Default)]
struct Book {
    /// Remote ids by name (stable: stored in `gw_remote_ids`).
    ids: HashMap<String, i32>,
    /// The slots this node holds, by remote id.
    held: HashMap<i32, BTreeSet<i32>>,
    /// The cap last asked for, by remote name (to share it out).
    caps: HashMap<String, usize>,
    /// Other nodes' recent want notices: remote → node → when.
    wanted: HashMap<String, HashMap<String, Instant>>,
    /// When this node last said it wants a slot of a remote.
    said_want: HashMap<String, Instant>,
}

/// Keeps the lock session open (reconnecting while it is broken) and
/// answers the gate's commands.
async fn supervise(
    database: Database,
    host: String,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut book = Book::default();
    let mut was_down = false;
    loop {
        let why = match Session::open(&database, &host, &shared, &mut book, was_down).await {
            Ok(mut session) => {
                if was_down {
                    tracing::info!(
                        "state database {} reachable again: connection slots are granted again in {}s",
                        database.shown(),
                        RECOVERY_GRACE.as_secs()
                    );
                }
                shared.health.send_replace(Health::Up);
                let why = session.serve(&shared, &mut book, &mut commands).await;
                match why {
                    None => return,
                    Some(why) => why,
                }
            }
            Err(why) => why,
        };
        if !was_down || !matches!(*shared.health.borrow(), Health::Down(_)) {
            tracing::error!(
                "state database {}: {why}; new connections to remotes are refused until it is back",
                database.shown()
            );
        }
        was_down = true;
        shared.health.send_replace(Health::Down(why.clone()));
        // Until the next attempt, answer at once: refused.
        let retry = tokio::time::sleep(RECONNECT_EVERY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Take { reply, .. }) => {
                        let _ = reply.send(Err(format!("unreachable: {why}")));
                    }
                    // The server dropped the lock with the session.
                    Some(Command::Release { remote_id, slot, .. }) => book.release(remote_id, slot),
                    Some(Command::Want { .. }) => {}
                    Some(Command::Leave { reply }) => {
                        let _ = reply.send(());
                        return;
                    }
                },
            }
        }
    }
}

impl Book {
    fn release(&mut self, remote_id: i32, slot: i32) {
        if let Some(set) = self.held.get_mut(&remote_id) {
            set.remove(&slot);
        }
    }

    fn held_of(&self, remote: &str) -> usize {
        self.ids
            .get(remote)
            .and_then(|id| self.held.get(id))
            .map_or(0, BTreeSet::len)
    }
}

struct Session {
    client: Client,
    notices: mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    closed: oneshot::Receiver<String>,
    /// New slots are granted from then on.
    grant_from: Instant,
}

impl Session {
    async fn open(
        database: &Database,
        host: &str,
        shared: &Shared,
        book: &mut Book,
        after_outage: bool,
    ) -> Result<Session, String> {
        let (client, mut connection) = database.connect().await?;
        let (notice_tx, notices) = mpsc::unbounded_channel();
        let (closed_tx, closed) = oneshot::channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let why = loop {
                match messages.next().await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let _ = notice_tx.send(n);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break pg::describe(&e),
                    None => break "the server closed the session".to_string(),
                }
            };
            let _ = closed_tx.send(why);
        });
        let fail = |e: tokio_postgres::Error| pg::describe(&e);
        client
            .batch_execute("LISTEN gw_slot_freed; LISTEN gw_slot_wanted")
            .await
            .map_err(fail)?;
        heartbeat(&client, &shared.node, host).await.map_err(fail)?;
        // Take back the slots of the connections still open.
        for (remote_id, slots) in &book.held {
            for slot in slots {
                let row = client
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[remote_id, slot])
                    .await
                    .map_err(fail)?;
                if !row.get::<_, bool>(0) {
                    tracing::warn!(
                        "slot {slot} of remote id {remote_id} was taken by another node while the state database was unreachable; the remote may see one connection more until one closes"
                    );
                }
            }
        }
        let grant_from = if after_outage {
            Instant::now() + RECOVERY_GRACE
        } else {
            Instant::now()
        };
        Ok(Session {
            client,
            notices,
            closed,
            grant_from,
        })
    }

    /// Answers commands until the session breaks (`Some(why)`) or the
    /// gate is gone (`None`).
    async fn serve(
        &mut self,
        shared: &Shared,
        book: &mut Book,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<String> {
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        beat.tick().await;
        loop {
            let result = tokio::select! {
                why = &mut self.closed => return Some(why.unwrap_or_else(|_| "the session ended".into())),
                cmd = commands.recv() => match cmd {
                    None => return None,
                    Some(Command::Leave { reply }) => {
                        let _ = self
                            .client
                            .execute("DELETE FROM gw_nodes WHERE node = $1", &[&shared.node])
                            .await;
                        let _ = reply.send(());
                        return None;
                    }
                    Some(cmd) => self.command(shared, book, cmd).await,
                },
                Some(notice) = self.notices.recv() => {
                    self.notice(shared, book, &notice);
                    Ok(())
                }
                _ = beat.tick() => heartbeat(&self.client, &shared.node, "").await,
            };
            if let Err(e) = result {
                return Some(pg::describe(&e));
            }
        }
    }

    async fn command(
        &mut self,
        shared: &Shared,
        book: &mut Book,
        cmd: Command,
    ) -> Result<(), tokio_postgres::Error> {
        match cmd {
            Command::Take { remote, max, reply } => {
                if Instant::now() < self.grant_from {
                    let _ = reply.send(Err(
                        "it was unreachable a moment ago and the nodes are taking back their slots"
                            .to_string(),
                    ));
                    return Ok(());
                }
                book.caps.insert(remote.clone(), max);
                let result = self.take(book, &remote, max).await;
                let failed = result.as_ref().err().map(pg::describe);
                // The asker may have stopped waiting (it got a connection
                // another way): a slot taken for it is given back at once.
                if let Err(Ok(Some((remote_id, slot)))) =
                    reply.send(result.map_err(|e| pg::describe(&e)))
                {
                    Box::pin(self.command(
                        shared,
                        book,
                        Command::Release {
                            remote: remote.clone(),
                            remote_id,
                            slot,
                        },
                    ))
                    .await?;
                }
                if let Some(why) = failed {
                    tracing::debug!("taking a slot of {remote}: {why}");
                }
            }
            Command::Release {
                remote,
                remote_id,
                slot,
            } => {
                book.release(remote_id, slot);
                self.client
                    .query_one(
                        "SELECT pg_advisory_unlock($1, $2), pg_notify('gw_slot_freed', $3)",
                        &[&remote_id, &slot, &remote],
                    )
                    .await?;
            }
            // Handled by `serve` before it gets here.
            Command::Leave { reply } => {
                let _ = reply.send(());
            }
            Command::Want { remote } => {
                let now = Instant::now();
                let recent = book
                    .said_want
                    .get(&remote)
                    .is_some_and(|t| now.duration_since(*t) < POLL_EVERY / 2);
                if !recent {
                    book.said_want.insert(remote.clone(), now);
                    let payload = format!("{}\t{remote}", shared.node);
                    self.client
                        .query_one("SELECT pg_notify('gw_slot_wanted', $1)", &[&payload])
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn take(
        &mut self,
        book: &mut Book,
        remote: &str,
        max: usize,
    ) -> Result<Option<(i32, i32)>, tokio_postgres::Error> {
        let remote_id = match book.ids.get(remote) {
            Some(id) => *id,
            None => {
                let row = self
                    .client
                    .query_opt(
                        "WITH new AS (
                             INSERT INTO gw_remote_ids (name) VALUES ($1)
                             ON CONFLICT (name) DO NOTHING RETURNING id)
                         SELECT id FROM new UNION ALL
                         SELECT id FROM gw_remote_ids WHERE name = $1 LIMIT 1",
                        &[&remote],
                    )
                    .await?;
                let row = match row {
                    Some(row) => row,
                    // Another node inserted it after this statement's
                    // snapshot was taken: it is there now.
                    None => {
                        self.client
                            .query_one("SELECT id FROM gw_remote_ids WHERE name = $1", &[&remote])
                            .await?
                    }
                };
                let id: i32 = row.get(0);
                book.ids.insert(remote.to_string(), id);
                id
            }
        };
        let held: Vec<i32> = book
            .held
            .get(&remote_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let cap = i32::try_from(max).unwrap_or(i32::MAX);
        let row = self
            .client
            .query_one(
                "SELECT gw_take_slot($1, $2, $3)",
                &[&remote_id, &cap, &held],
            )
            .await?;
        let slot: Option<i32> = row.get(0);
        Ok(slot.map(|s| {
            book.held.entry(remote_id).or_default().insert(s);
            (remote_id, s)
        }))
    }

    /// Another node freed a slot, or waits for one.
    fn notice(&self, shared: &Shared, book: &mut Book, notice: &tokio_postgres::Notification) {
        match notice.channel() {
            "gw_slot_freed" => {
                shared.freed.send_modify(|n| *n += 1);
            }
            "gw_slot_wanted" => {
                let Some((node, remote)) = notice.payload().split_once('\t') else {
                    return;
                };
                if node == shared.node {
                    return;
                }
                let now = Instant::now();
                let asking = book.wanted.entry(remote.to_string()).or_default();
                asking.insert(node.to_string(), now);
                asking.retain(|_, t| now.duration_since(*t) < WANT_FRESH);
                let others = asking.len();
                let Some(cap) = book.caps.get(remote).copied() else {
                    return;
                };
                let share = cap.div_ceil(others + 1);
                if book.held_of(remote) > share {
                    lock(&shared.hold_off).insert(remote.to_string(), now + HOLD_OFF);
                    if let Some(demand) = lock(&shared.demand).get(remote) {
                        demand.send_modify(|n| *n += 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Writes this node's heartbeat (and the lock session's server process,
/// which `gateway cluster status` matches to the locks it holds). `host`
/// is written when not empty.
async fn heartbeat(client: &Client, node: &str, host: &str) -> Result<(), tokio_postgres::Error> {
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO gw_nodes (node, host, pid, started, seen, lock_pid)
             VALUES ($1, $2, $3, now(), now(), pg_backend_pid())
             ON CONFLICT (node) DO UPDATE SET seen = now(), lock_pid = pg_backend_pid(),
                 host = CASE WHEN $2 = '' THEN gw_nodes.host ELSE $2 END",
            &[&node, &host, &pid],
        )
        .await?;
    // Nodes gone for a day are forgotten.
    client
        .execute(
            "DELETE FROM gw_nodes WHERE seen < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(())
}
