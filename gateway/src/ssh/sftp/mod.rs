//! The inbound SFTP v3 server for one session.
//!
//! russh-sftp's own server loop awaits each request before reading the
//! next, which would make every read and write cost a full round trip to
//! a remote behind a mount. This loop decodes packets itself
//! (`russh_sftp::protocol::Packet`) and keeps up to
//! [`Budget::max_in_flight`] requests running at once on the session's
//! task. Replies go out in request order: SFTP allows any order, but
//! OpenSSH's `scp` and `sftp` truncate a download at the first reply that
//! arrives out of order. Writes to one handle are applied in offset order
//! by the handle itself (`handles::WriteHandle`).
//!
//! The loop keeps reading its channel whatever runs (see [`flow`] for why
//! stopping would deadlock), and ends the session when the client has
//! gone (end of input, then at most [`EOF_GRACE`] to finish) or nothing
//! has moved for the server's `idle_timeout` while work is outstanding.

mod attrs;
pub mod error;
pub mod flow;
mod handles;
pub mod notices;
mod requests;
#[cfg(test)]
mod session_tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use policy::User;
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::transfers::ActiveTransfers;
use crate::core::tree::Tree;
pub use flow::Budget;
use flow::{request_cost, Outbox};

/// Largest packet accepted from a client (a 256 KiB write plus headers).
pub const MAX_PACKET_LEN: usize = 256 * 1024 + 1024;
/// Largest read or write payload we advertise (what sshd advertises).
pub const MAX_DATA_LEN: u32 = 261_120;
/// How long a session whose client ended its input may take to finish
/// the requests it had sent and write their replies.
pub const EOF_GRACE: Duration = Duration::from_secs(5);
/// How often the loop looks for a stalled session.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// Everything a session knows about who is connected and what they see.
pub struct SessionContext {
    /// The logged-in user.
    pub user: Arc<User>,
    /// The user's tree.
    pub tree: Tree,
    /// The client's address.
    pub peer: SocketAddr,
    /// The gateway-wide count of transfers in flight.
    pub transfers: ActiveTransfers,
    /// A session with work outstanding that moves nothing (no request
    /// read, no reply finished, no byte written) for this long is ended.
    pub idle_timeout: Duration,
    /// Its memory limits.
    pub budget: Budget,
    /// Where reasons a person must see are written (the channel's stderr).
    pub notices: notices::Notices,
    /// Closes when the client's SSH connection has ended (`None`: no
    /// connection to watch). A channel's stream shows the end of a
    /// connection only as end of input, like a client that merely sent EOF.
    pub connection: Option<tokio::sync::watch::Receiver<()>>,
    /// The session's figures for the admin API: bytes each way and the
    /// transfers open now.
    pub activity: Arc<crate::core::activity::Activity>,
}

/// How a session ended.
pub enum Ended<S> {
    /// The client ended its input and every reply was written: the stream
    /// is handed back so the SSH layer can end the channel properly.
    Finished(S),
    /// The client went away with work in flight; that work was dropped
    /// (uploads not finished are discarded).
    ClientGone,
    /// Nothing moved for `idle_timeout` with work outstanding (a client
    /// that stopped reading its replies or adjusting its window).
    Stalled,
    /// The client sent something that is not SFTP; the session was closed.
    ProtocolError(String),
}

/// Serves SFTP on `stream` until the client closes it or goes away.
pub async fn serve<S>(stream: S, ctx: SessionContext) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let budget = ctx.budget;
    let idle_timeout = ctx.idle_timeout;
    let mut connection = ctx.connection.clone();
    let session = Arc::new(requests::Session::new(ctx));
    let (mut reader, writer) = tokio::io::split(stream);
    let outbox = Arc::new(Outbox::default());
    let (replies, queue) = mpsc::unbounded_channel::<Bytes>();
    let mut writer_task = tokio::spawn(write_replies(writer, queue, outbox.clone()));

    let mut input = BytesMut::with_capacity(64 * 1024);
    // Requests received and not started, with their expected cost.
    let mut waiting: VecDeque<(Bytes, usize)> = VecDeque::new();
    let mut waiting_bytes = 0usize;
    let mut in_flight = FuturesOrdered::new();
    let mut in_flight_cost = 0usize;
    let mut eof_at: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let mut written_seen = 0u64;
    let mut stall_check = tokio::time::interval(STALL_CHECK);
    stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let ended = 'session: loop {
        // Start waiting requests while the budget allows.
        while in_flight.len() < budget.max_in_flight {
            let Some((_, cost)) = waiting.front() else {
                break;
            };
            let cost = *cost;
            let idle = in_flight.is_empty() && outbox.queued() == 0;
            if in_flight_cost + outbox.queued() + cost > budget.work_limit && !idle {
                break;
            }
            let Some((frame, _)) = waiting.pop_front() else {
                break;
            };
            waiting_bytes -= frame.len();
            in_flight_cost += cost;
            let session = session.clone();
            in_flight.push_back(async move { (session.handle_frame(frame).await, cost) });
        }
        let outstanding = !waiting.is_empty() || !in_flight.is_empty() || outbox.queued() > 0;
        if eof_at.is_some() && !outstanding {
            break 'session None;
        }
        let can_read = eof_at.is_none() && waiting_bytes < budget.input_limit;
        let blocked_on_output = !waiting.is_empty() && in_flight.len() < budget.max_in_flight;
        if input.capacity() - input.len() < 32 * 1024 {
            input.reserve(64 * 1024);
        }
        tokio::select! {
            read = reader.read_buf(&mut input), if can_read => {
                match read {
                    Ok(0) | Err(_) => eof_at = Some(Instant::now()),
                    Ok(_) => {
                        last_progress = Instant::now();
                        loop {
                            match next_frame(&mut input) {
                                Ok(Some(frame)) => {
                                    let cost = request_cost(&frame);
                                    waiting_bytes += frame.len();
                                    waiting.push_back((frame, cost));
                                }
                                Ok(None) => break,
                                Err(reason) => break 'session Some(Ended::ProtocolError(reason)),
                            }
                        }
                    }
                }
            }
            Some((reply, cost)) = in_flight.next(), if !in_flight.is_empty() => {
                in_flight_cost -= cost;
                last_progress = Instant::now();
                if let Some(reply) = reply {
                    outbox.queue(reply.len());
                    if replies.send(reply).is_err() {
                        // The writer stopped: the channel is gone.
                        break 'session Some(Ended::ClientGone);
                    }
                }
            }
            _ = outbox.wait_drained(), if blocked_on_output => {}
            _ = &mut writer_task => break 'session Some(Ended::ClientGone),
            _ = connection_ended(&mut connection) => {
                if outstanding {
                    break 'session Some(Ended::ClientGone);
                }
                connection = None;
            }
            _ = stall_check.tick() => {
                let written = outbox.total_written();
                if written != written_seen {
                    written_seen = written;
                    last_progress = Instant::now();
                }
                if let Some(at) = eof_at {
                    if at.elapsed() >= EOF_GRACE {
                        break 'session Some(Ended::ClientGone);
                    }
                } else if outstanding && last_progress.elapsed() >= idle_timeout {
                    break 'session Some(Ended::Stalled);
                }
            }
        }
    };
    drop(in_flight);
    session.end();
    drop(replies);
    if let Some(ended) = ended {
        writer_task.abort();
        return ended;
    }
    // Every reply is queued: let the writer finish within what is left of
    // the grace period.
    let left = EOF_GRACE.saturating_sub(eof_at.map(|at| at.elapsed()).unwrap_or_default());
    match tokio::time::timeout(left, &mut writer_task).await {
        Ok(Ok(Some(writer))) => Ended::Finished(reader.unsplit(writer)),
        Ok(_) => Ended::ClientGone,
        Err(_) => {
            writer_task.abort();
            Ended::ClientGone
        }
    }
}

/// Resolves once the watched connection has ended; never without one.
async fn connection_ended(connection: &mut Option<tokio::sync::watch::Receiver<()>>) {
    match connection {
        // Nothing is ever sent: `changed` returns only when the sender,
        // held by the connection, is dropped.
        Some(watch) => while watch.changed().await.is_ok() {},
        None => std::future::pending().await,
    }
}

/// Takes one whole packet (without its length) off the front of `input`.
fn next_frame(input: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if input.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
    if len > MAX_PACKET_LEN {
        return Err(format!(
            "packet of {len} bytes exceeds the limit of {MAX_PACKET_LEN}"
        ));
    }
    if len == 0 {
        return Err("empty packet".to_string());
    }
    if input.len() < 4 + len {
        input.reserve(4 + len - input.len());
        return Ok(None);
    }
    input.advance(4);
    Ok(Some(input.split_to(len).freeze()))
}

/// Writes encoded replies, flushing whenever no more are waiting, and
/// counts what it wrote in `outbox`; returns the writer (not shut down:
/// the SSH layer sends exit-status before EOF), or `None` once writing
/// failed (the channel is gone).
async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    outbox: Arc<Outbox>,
) -> Option<W> {
    while let Some(first) = queue.recv().await {
        writer.write_all(&first).await.ok()?;
        outbox.written(first.len());
        while let Ok(more) = queue.try_recv() {
            writer.write_all(&more).await.ok()?;
            outbox.written(more.len());
        }
        writer.flush().await.ok()?;
    }
    Some(writer)
}

/// Encodes a reply packet.
fn encode(packet: Packet) -> Option<Bytes> {
    match Bytes::try_from(packet) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!("cannot encode an SFTP reply: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_wait_for_more() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(next_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&[3]);
        assert_eq!(next_frame(&mut buf).unwrap().unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(next_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&[0, 0xff, 0xff, 0xff]);
        assert!(next_frame(&mut buf).is_err());
    }
}
