//! The state store of a cluster: the embedded store's tables in one
//! PostgreSQL table (`gw_state`), so every node sees what any node learned.
//!
//! [`StateStore`] is synchronous (callers block briefly, as they do on the
//! embedded store's fsync), so the store owns a thread with a small tokio
//! runtime and one session, and answers requests over a channel. A broken
//! session is opened again on the next request; while the database cannot
//! be reached every request fails at once with the reason (the connect
//! timeout is paid once per `RETRY_AFTER`, not by every caller).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::pg::{self, Database};
use super::slots::PgSlots;
use crate::state::{StateError, StateStore, Table};

/// How long after a failed connection attempt requests fail without
/// trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How recently a node must have written its heartbeat to count as alive.
pub const NODE_ALIVE_WITHIN: Duration = Duration::from_secs(10);

enum Op {
    Get(Table, String),
    Put(Table, String, Vec<u8>),
    PutIfAbsent(Table, String, Vec<u8>),
    List(Table),
    Delete(Table, String),
    NodeAlive(String),
}

enum Answer {
    Value(Option<Vec<u8>>),
    Done(bool),
    Entries(Vec<(String, Vec<u8>)>),
    Alive(bool),
}

struct Request {
    op: Op,
    reply: mpsc::SyncSender<Result<Answer, String>>,
}

/// The PostgreSQL state store.
pub struct PgStore {
    requests: mpsc::Sender<Request>,
    database: String,
    node: String,
    slots: std::sync::OnceLock<PgSlots>,
}

impl PgStore {
    /// Connects to `database`, brings its schema up to date and starts
    /// the store's thread. Fails when the database cannot be reached.
    pub fn open(database: &Database, node: String) -> Result<Self, StateError> {
        let shown = database.shown().to_string();
        let fail = |message: String| StateError::Shared {
            database: shown.clone(),
            message,
        };
        let (requests, incoming) = mpsc::channel::<Request>();
        let (opened_tx, opened) = mpsc::sync_channel::<Result<(), String>>(1);
        let database_for_thread = database.clone();
        let node_for_thread = node.clone();
        // The thread has its own runtime, so the store can be opened and
        // used from inside the gateway's runtime as well as outside it.
        std::thread::Builder::new()
            .name("state-db".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            opened_tx.send(Err(format!("cannot start the store's thread: {e}")));
                        return;
                    }
                };
                let session = runtime.block_on(async {
                    let mut session = Session::open(&database_for_thread).await?;
                    pg::migrate(&mut session.client).await?;
                    Ok::<_, String>(session)
                });
                match session {
                    Ok(session) => {
                        let _ = opened_tx.send(Ok(()));
                        serve(
                            runtime,
                            database_for_thread,
                            node_for_thread,
                            Some(session),
                            incoming,
                        );
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| fail(format!("cannot start the store's thread: {e}")))?;
        opened
            .recv()
            .map_err(|_| fail("the store's thread stopped while opening".into()))?
            .map_err(fail)?;
        Ok(PgStore {
            requests,
            database: shown,
            node,
            slots: std::sync::OnceLock::new(),
        })
    }

    /// Starts this node's lock session and heartbeat (see
    /// [`super::slots`]); remotes built afterwards share their caps with
    /// the other nodes. Call once, inside the runtime, from `serve`.
    pub fn start_slots(&self, database: &Database, host: String) -> PgSlots {
        self.slots
            .get_or_init(|| PgSlots::start(database.clone(), self.node.clone(), host))
            .clone()
    }

    fn ask(&self, op: Op) -> Result<Answer, StateError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let fail = |message: String| StateError::Shared {
            database: self.database.clone(),
            message,
        };
        self.requests
            .send(Request { op, reply })
            .map_err(|_| fail("the store's thread has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| fail("the store's thread has stopped".into()))?
            .map_err(fail)
    }
}

fn unexpected() -> StateError {
    StateError::Corrupt {
        table: "gw_state",
        message: "the store answered another request".into(),
    }
}

impl StateStore for PgStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self.ask(Op::Get(table, key.into()))? {
            Answer::Value(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), StateError> {
        match self.ask(Op::Put(table, key.into(), value.to_vec()))? {
            Answer::Done(_) => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn put_if_absent(&self, table: Table, key: &str, value: &[u8]) -> Result<bool, StateError> {
        match self.ask(Op::PutIfAbsent(table, key.into(), value.to_vec()))? {
            Answer::Done(stored) => Ok(stored),
            _ => Err(unexpected()),
        }
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        match self.ask(Op::List(table))? {
            Answer::Entries(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    fn delete(&self, table: Table, key: &str) -> Result<bool, StateError> {
        match self.ask(Op::Delete(table, key.into()))? {
            Answer::Done(was) => Ok(was),
            _ => Err(unexpected()),
        }
    }

    fn node_id(&self) -> Option<&str> {
        Some(&self.node)
    }

    fn slot_gate(&self) -> Option<std::sync::Arc<dyn backends::slots::SlotGate>> {
        self.slots.get().map(|s| {
            std::sync::Arc::new(s.clone()) as std::sync::Arc<dyn backends::slots::SlotGate>
        })
    }

    fn node_alive(&self, node: &str) -> Result<Option<bool>, StateError> {
        match self.ask(Op::NodeAlive(node.into()))? {
            Answer::Alive(alive) => Ok(Some(alive)),
            _ => Err(unexpected()),
        }
    }
}

/// One open session of the store's thread.
struct Session {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn open(database: &Database) -> Result<Session, String> {
        let (client, connection) = database.connect().await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("state database session ended: {}", pg::describe(&e));
            }
        });
        Ok(Session { client, driver })
    }

    fn is_open(&self) -> bool {
        !self.client.is_closed() && !self.driver.is_finished()
    }
}

/// The store's thread: answers requests until every [`PgStore`] handle
/// is gone.
fn serve(
    runtime: tokio::runtime::Runtime,
    database: Database,
    node: String,
    mut session: Option<Session>,
    incoming: mpsc::Receiver<Request>,
) {
    let mut last_failure: Option<(Instant, String)> = None;
    // A process that took a sync lock (`gateway sync run` too, which has
    // no lock session) writes heartbeats from then on, so other nodes see
    // that its run is alive.
    let mut beating = false;
    let mut last_beat = Instant::now();
    loop {
        let beat_due = beating && last_beat.elapsed() >= super::slots::HEARTBEAT_EVERY;
        if beat_due {
            last_beat = Instant::now();
            beat_now(&runtime, session.as_ref(), &node);
        }
        let wait = super::slots::HEARTBEAT_EVERY.saturating_sub(last_beat.elapsed());
        let request = match incoming.recv_timeout(wait.max(Duration::from_millis(10))) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if !beating
            && matches!(
                &request.op,
                Op::Put(Table::SyncLocks, ..) | Op::PutIfAbsent(Table::SyncLocks, ..)
            )
        {
            beating = true;
            // Beat before the lock is taken, so no other node ever sees
            // the lock without a heartbeat of its holder.
            beat_now(&runtime, session.as_ref(), &node);
            last_beat = Instant::now();
        }
        let answer = runtime.block_on(async {
            if !session.as_ref().is_some_and(Session::is_open) {
                if let Some((at, why)) = &last_failure {
                    if at.elapsed() < RETRY_AFTER {
                        return Err(format!("unreachable: {why}"));
                    }
                }
                match Session::open(&database).await {
                    Ok(s) => {
                        if last_failure.take().is_some() {
                            tracing::info!("state database {} reachable again", database.shown());
                        }
                        session = Some(s);
                    }
                    Err(why) => {
                        last_failure = Some((Instant::now(), why.clone()));
                        return Err(format!("unreachable: {why}"));
                    }
                }
            }
            let Some(open) = session.as_ref() else {
                return Err("no session".to_string());
            };
            match tokio::time::timeout(pg::STATEMENT_TIMEOUT, execute(&open.client, &request.op))
                .await
            {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => {
                    if open.client.is_closed() {
                        session = None;
                    }
                    Err(pg::describe(&e))
                }
                Err(_) => {
                    session = None;
                    Err(format!(
                        "no answer within {}s",
                        pg::STATEMENT_TIMEOUT.as_secs()
                    ))
                }
            }
        });
        let _ = request.reply.send(answer);
    }
}

/// Writes a heartbeat now, if the session is open.
fn beat_now(runtime: &tokio::runtime::Runtime, session: Option<&Session>, node: &str) {
    if let Some(open) = session.filter(|s| s.is_open()) {
        // The timer must be made inside the runtime.
        let _ = runtime.block_on(async {
            tokio::time::timeout(pg::STATEMENT_TIMEOUT, heartbeat(&open.client, node)).await
        });
    }
}

/// Marks `node` alive (its row is created if needed; the lock session,
/// when the process has one, keeps its own columns up to date).
async fn heartbeat(client: &Client, node: &str) -> Result<(), tokio_postgres::Error> {
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let host = super::host_name();
    client
        .execute(
            "INSERT INTO gw_nodes (node, host, pid, started, seen)
             VALUES ($1, $2, $3, now(), now())
             ON CONFLICT (node) DO UPDATE SET seen = now()",
            &[&node, &host, &pid],
        )
        .await?;
    Ok(())
}

async fn execute(client: &Client, op: &Op) -> Result<Answer, tokio_postgres::Error> {
    Ok(match op {
        Op::Get(table, key) => Answer::Value(
            client
                .query_opt(
                    "SELECT value FROM gw_state WHERE tbl = $1 AND key = $2",
                    &[&table.name(), key],
                )
                .await?
                .map(|row| row.get(0)),
        ),
        Op::Put(table, key, value) => {
            client
                .execute(
                    "INSERT INTO gw_state (tbl, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&table.name(), key, value],
                )
                .await?;
            Answer::Done(true)
        }
        Op::PutIfAbsent(table, key, value) => Answer::Done(
            client
                .execute(
                    "INSERT INTO gw_state (tbl, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tbl, key) DO NOTHING",
                    &[&table.name(), key, value],
                )
                .await?
                == 1,
        ),
        Op::List(table) => Answer::Entries(
            client
                .query(
                    "SELECT key, value FROM gw_state WHERE tbl = $1 ORDER BY key",
                    &[&table.name()],
                )
                .await?
                .into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
        ),
        Op::Delete(table, key) => Answer::Done(
            client
                .execute(
                    "DELETE FROM gw_state WHERE tbl = $1 AND key = $2",
                    &[&table.name(), key],
                )
                .await?
                == 1,
        ),
        Op::NodeAlive(node) => {
            let within = NODE_ALIVE_WITHIN.as_secs_f64();
            Answer::Alive(
                client
                    .query_opt(
                        "SELECT seen > now() - make_interval(secs => $2) FROM gw_nodes WHERE node = $1",
                        &[node, &within],
                    )
                    .await?
                    .is_some_and(|row| row.get::<_, bool>(0)),
            )
        }
    })
}
