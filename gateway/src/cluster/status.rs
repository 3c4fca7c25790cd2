//! What `gateway cluster status` shows: the nodes that wrote a heartbeat
//! recently and, per remote, the connection slots each node holds (read
//! from PostgreSQL's own lock table, so it is what the database enforces,
//! not what nodes believe).

use std::time::Duration;

use serde::Serialize;

use super::pg::{self, Database};

/// A node as the database saw it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's id (`host-pid-random`).
    pub node: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// Seconds since its last heartbeat.
    pub seen_secs_ago: f64,
    /// Whether the heartbeat is recent enough to count as alive.
    pub alive: bool,
}

/// Slots of one remote held by one node.
#[derive(Debug, Clone, Serialize)]
pub struct SlotsHeld {
    /// The remote's name.
    pub remote: String,
    /// The node holding them (`None`: a session no node claims, such as
    /// one whose node is being cut off).
    pub node: Option<String>,
    /// How many.
    pub slots: i64,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The database, without its password.
    pub database: String,
    /// Nodes seen in the last hour, most recent first.
    pub nodes: Vec<NodeStatus>,
    /// Slots held, by remote then node.
    pub slots: Vec<SlotsHeld>,
}

/// Reads the cluster's status from `database`.
pub async fn read(database: &Database) -> Result<ClusterStatus, String> {
    let (client, connection) = database.connect().await?;
    let driver = tokio::spawn(connection);
    let fail = |e: tokio_postgres::Error| pg::describe(&e);
    let alive_within = super::store::NODE_ALIVE_WITHIN.as_secs_f64();
    let nodes = client
        .query(
            "SELECT node, host, pid, extract(epoch FROM now() - seen)::float8,
                    seen > now() - make_interval(secs => $1)
             FROM gw_nodes WHERE seen > now() - interval '1 hour' ORDER BY seen DESC, node",
            &[&alive_within],
        )
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| NodeStatus {
            node: r.get(0),
            host: r.get(1),
            pid: r.get(2),
            seen_secs_ago: r.get(3),
            alive: r.get(4),
        })
        .collect();
    let slots = client
        .query(
            "SELECT r.name, n.node, count(*)
             FROM pg_locks l
             JOIN gw_remote_ids r ON r.id::oid = l.classid
             LEFT JOIN gw_nodes n ON n.lock_pid = l.pid
             WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| SlotsHeld {
            remote: r.get(0),
            node: r.get(1),
            slots: r.get(2),
        })
        .collect();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    Ok(ClusterStatus {
        database: database.shown().to_string(),
        nodes,
        slots,
    })
}

/// The status as text for a terminal.
pub fn render(status: &ClusterStatus, caps: &[(String, usize)]) -> String {
    let mut out = format!("state database: {}\n\nnodes:\n", status.database);
    if status.nodes.is_empty() {
        out.push_str("  (none seen in the last hour)\n");
    }
    for n in &status.nodes {
        out.push_str(&format!(
            "  {:<40} {:<6} host {} pid {}, last heartbeat {:.1}s ago\n",
            n.node,
            if n.alive { "alive" } else { "gone" },
            n.host,
            n.pid,
            n.seen_secs_ago
        ));
    }
    out.push_str("\nconnection slots held:\n");
    if status.slots.is_empty() {
        out.push_str("  (none)\n");
    }
    let mut last_remote = None;
    for s in &status.slots {
        if last_remote != Some(&s.remote) {
            let total: i64 = status
                .slots
                .iter()
                .filter(|o| o.remote == s.remote)
                .map(|o| o.slots)
                .sum();
            let cap = caps
                .iter()
                .find(|(name, _)| *name == s.remote)
                .map_or(String::new(), |(_, c)| format!(" of {c}"));
            out.push_str(&format!("  {}: {total}{cap}\n", s.remote));
            last_remote = Some(&s.remote);
        }
        out.push_str(&format!(
            "    {:<40} {}\n",
            s.node.as_deref().unwrap_or("(a session of no known node)"),
            s.slots
        ));
    }
    out
}
