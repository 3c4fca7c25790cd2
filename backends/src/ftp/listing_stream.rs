//! A started listing as a stream of pages: lines are read from the data
//! connection and parsed as they come, so a huge folder is never held in
//! memory at once. The connection stays checked out until the listing
//! ends; a listing dropped early aborts its transfer in the background.

use std::time::SystemTime;

use futures::Stream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::backend::FtpBackend;
use super::commands::{ListFormat, Listing};
use super::connector::FtpConnector;
use super::error::FtpError;
use super::listing::{parse_list_line, parse_mlsd_line};
use super::stream::MaybeTls;
use crate::backend::DirEntry;
use crate::local::UPLOAD_PREFIX;
use crate::pool::Pooled;
use crate::{Result, StoragePath};

/// Entries per page.
const PAGE: usize = 256;
/// Longest listing line accepted.
const MAX_LINE: u64 = 64 * 1024;

struct Pages {
    backend: FtpBackend,
    conn: Option<Pooled<FtpConnector>>,
    data: Option<BufReader<MaybeTls>>,
    format: ListFormat,
    path: StoragePath,
    now: SystemTime,
}

/// The pages of a started listing.
pub fn list_pages(
    backend: FtpBackend,
    conn: Pooled<FtpConnector>,
    path: StoragePath,
    listing: Listing,
) -> impl Stream<Item = Result<Vec<DirEntry>>> + Send + 'static {
    let pages = Pages {
        backend,
        conn: Some(conn),
        data: listing.data.map(BufReader::new),
        format: listing.format,
        path,
        now: SystemTime::now(),
    };
    futures::stream::unfold(pages, |mut pages| async move {
        let page = pages.next_page().await?;
        Some((page, pages))
    })
}

impl Pages {
    /// The next page, or `None` once the listing is complete.
    async fn next_page(&mut self) -> Option<Result<Vec<DirEntry>>> {
        let data = self.data.as_mut()?;
        self.conn.as_ref()?;
        let timeout = self.backend.settings().io_timeout;
        let mut entries = Vec::new();
        let mut line = Vec::new();
        while entries.len() < PAGE {
            line.clear();
            let read = tokio::time::timeout(
                timeout,
                (&mut *data).take(MAX_LINE).read_until(b'\n', &mut line),
            )
            .await;
            let n = match read {
                Ok(Ok(n)) => n,
                // TLS ended without close_notify: the final reply decides.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => return Some(Err(self.fail(FtpError::Io(e)).await)),
                Err(_) => {
                    let e = FtpError::Timeout("listing", timeout.as_secs());
                    return Some(Err(self.fail(e).await));
                }
            };
            if n == 0 {
                return match self.finish().await {
                    Ok(()) if entries.is_empty() => None,
                    Ok(()) => Some(Ok(entries)),
                    Err(e) => Some(Err(e)),
                };
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let entry = match self.format {
                ListFormat::Mlsd => parse_mlsd_line(text),
                ListFormat::List => parse_list_line(text, self.now),
            };
            if let Some(entry) = entry.filter(|e| !e.name.starts_with(UPLOAD_PREFIX)) {
                entries.push(entry);
            }
        }
        Some(Ok(entries))
    }

    /// The data connection ended: take the transfer's final reply.
    async fn finish(&mut self) -> Result<()> {
        self.data = None;
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let result = conn.lock().await.finish_transfer().await;
        result.map_err(|e| {
            let err = self.backend.err(e, "list", &self.path);
            if err.is_temporary() {
                conn.mark_broken();
            }
            err
        })
    }

    async fn fail(&mut self, e: FtpError) -> crate::BackendError {
        self.data = None;
        if let Some(mut conn) = self.conn.take() {
            conn.lock().await.mark_broken();
            conn.mark_broken();
        }
        self.backend.err(e, "list", &self.path)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        let (Some(data), Some(mut conn)) = (self.data.take(), self.conn.take()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let result = conn
                        .lock()
                        .await
                        .abort_transfer(Some(data.into_inner()))
                        .await;
                    if result.is_err() {
                        conn.mark_broken();
                    }
                });
            }
            Err(_) => conn.mark_broken(),
        }
    }
}
