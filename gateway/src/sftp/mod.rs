//! The inbound SFTP v3 server for one session.
//!
//! russh-sftp's own server loop awaits each request before reading the
//! next, which would make every read and write cost a full round trip to
//! a remote behind a mount. This loop decodes packets itself
//! (`russh_sftp::protocol::Packet`) and keeps up to [`MAX_IN_FLIGHT`]
//! requests running at once on the session's task. Replies go out in
//! request order: SFTP allows any order, but OpenSSH's `scp` and `sftp`
//! truncate a download at the first reply that arrives out of order.
//! Writes to one handle are applied in offset order by the handle itself
//! ([`handles::WriteHandle`]).

mod attrs;
pub mod error;
mod handles;
mod ops;
#[cfg(test)]
mod session_tests;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use policy::User;
use russh_sftp::protocol::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transfers::ActiveTransfers;
use crate::tree::Tree;

/// Largest packet accepted from a client (a 256 KiB write plus headers).
pub const MAX_PACKET_LEN: usize = 256 * 1024 + 1024;
/// Largest read or write payload we advertise (what sshd advertises).
pub const MAX_DATA_LEN: u32 = 261_120;
/// Requests of one session served at once.
pub const MAX_IN_FLIGHT: usize = 128;

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
}

/// Serves SFTP on `stream` until the client closes it, then hands the
/// stream back, so the SSH layer can end the channel properly.
pub async fn serve<S>(stream: S, ctx: SessionContext) -> Option<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let session = Arc::new(ops::Session::new(ctx));
    let (mut reader, writer) = tokio::io::split(stream);
    let (replies, outbox) = mpsc::channel::<Bytes>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_replies(writer, outbox));

    let mut input = BytesMut::with_capacity(MAX_PACKET_LEN);
    let mut in_flight = FuturesOrdered::new();
    let mut eof = false;
    'session: loop {
        // Start every request already received, up to the limit.
        while in_flight.len() < MAX_IN_FLIGHT {
            match next_frame(&mut input) {
                Ok(Some(frame)) => {
                    let session = session.clone();
                    in_flight.push_back(async move { session.handle_frame(frame).await });
                }
                Ok(None) => break,
                Err(reason) => {
                    tracing::warn!(peer = %session.peer(), "closing SFTP session: {reason}");
                    break 'session;
                }
            }
        }
        if eof && in_flight.is_empty() {
            break;
        }
        let can_read = !eof && in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            read = reader.read_buf(&mut input), if can_read => {
                match read {
                    Ok(0) | Err(_) => eof = true,
                    Ok(_) => {}
                }
            }
            Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(reply) = reply {
                    if replies.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(in_flight);
    session.end();
    drop(replies);
    let writer = writer_task.await.ok()?;
    Some(reader.unsplit(writer))
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

/// Writes encoded replies, flushing whenever no more are waiting; returns
/// the writer (not shut down: the SSH layer sends exit-status before EOF).
async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut outbox: mpsc::Receiver<Bytes>,
) -> W {
    'replies: while let Some(first) = outbox.recv().await {
        if writer.write_all(&first).await.is_err() {
            break;
        }
        while let Ok(more) = outbox.try_recv() {
            if writer.write_all(&more).await.is_err() {
                break 'replies;
            }
        }
        if writer.flush().await.is_err() {
            break;
        }
    }
    writer
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
