//! File operations in FTP terms on one control connection: facts about a
//! path (MLST, or SIZE/MDTM/CWD), starting a listing (MLSD, or LIST), and
//! the one-command operations. Classifying failures in storage terms is
//! the backend's job.

use std::time::SystemTime;

use super::control::Control;
use super::error::FtpError;
use super::listing::{parse_list_line, parse_mlsx, Facts};
use super::stream::MaybeTls;
use super::time;
use crate::backend::{EntryKind, Metadata};
use crate::ErrorKind;

/// How the lines of a listing are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// RFC 3659 MLSD facts.
    Mlsd,
    /// `LIST` output (Unix or DOS style).
    List,
}

/// A started listing; `None` data means the server said at once that the
/// folder is empty.
pub struct Listing {
    /// The data connection carrying the lines.
    pub data: Option<MaybeTls>,
    /// How to read them.
    pub format: ListFormat,
}

fn dir_metadata() -> Metadata {
    Metadata {
        kind: EntryKind::Dir,
        size: 0,
        modified: None,
        mode: None,
    }
}

/// Whether a refusal only means "no such file" (as opposed to a broken
/// connection or a denied permission).
fn is_missing(e: &FtpError) -> bool {
    e.code().is_some() && e.kind() == ErrorKind::NotFound
}

impl Control {
    /// Metadata of `remote`, or `None` if it does not exist.
    pub async fn stat(&mut self, remote: &str) -> Result<Option<Metadata>, FtpError> {
        if self.features().mlst {
            return match self.expect_code(&format!("MLST {remote}"), 250).await {
                Ok(reply) => {
                    let facts = reply
                        .body()
                        .iter()
                        .find_map(|line| parse_mlsx(line.trim_start()).map(|(f, _)| f));
                    match facts {
                        Some(Facts::Entry(m)) => Ok(Some(m)),
                        Some(Facts::SelfOrParent) => Ok(Some(dir_metadata())),
                        None => Err(FtpError::Protocol(format!(
                            "unreadable MLST reply for {remote}"
                        ))),
                    }
                }
                Err(e) if is_missing(&e) => Ok(None),
                Err(e) => Err(e),
            };
        }
        match self.expect_code(&format!("SIZE {remote}"), 213).await {
            Ok(reply) => {
                let size =
                    reply.text().trim().parse().map_err(|_| {
                        FtpError::Protocol(format!("unreadable SIZE reply `{reply}`"))
                    })?;
                let modified = if self.features().mdtm {
                    self.modified(remote).await?
                } else {
                    None
                };
                return Ok(Some(Metadata {
                    kind: EntryKind::File,
                    size,
                    modified,
                    mode: None,
                }));
            }
            Err(e) if matches!(e.code(), Some(500 | 502)) => {
                return self.stat_by_listing(remote).await;
            }
            Err(e)
                if e.code().is_none()
                    || e.kind().is_temporary()
                    || e.kind() == ErrorKind::PermissionDenied =>
            {
                return Err(e)
            }
            Err(_) => {}
        }
        // Not a file: a folder if we can change into it.
        match self.expect_code(&format!("CWD {remote}"), 250).await {
            Ok(_) => Ok(Some(dir_metadata())),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The modification time from MDTM, if the server tells it.
    async fn modified(&mut self, remote: &str) -> Result<Option<SystemTime>, FtpError> {
        match self.expect_code(&format!("MDTM {remote}"), 213).await {
            Ok(reply) => Ok(time::parse_time_val(reply.text().trim())),
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// For servers without SIZE and MLST: a folder if CWD works, otherwise
    /// the entry of the parent's listing.
    async fn stat_by_listing(&mut self, remote: &str) -> Result<Option<Metadata>, FtpError> {
        match self.expect_code(&format!("CWD {remote}"), 250).await {
            Ok(_) => return Ok(Some(dir_metadata())),
            Err(e) if e.code().is_none() => return Err(e),
            Err(_) => {}
        }
        let (parent, name) = match remote.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((parent, name)) => (parent, name),
            None => return Ok(None),
        };
        let listing = match self.start_listing(parent, ListFormat::List).await {
            Ok(l) => l,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(mut data) = listing.data else {
            return Ok(None);
        };
        let mut text = Vec::new();
        let read = tokio::time::timeout(
            self.io_timeout(),
            tokio::io::AsyncReadExt::read_to_end(&mut data, &mut text),
        )
        .await;
        drop(data);
        match read {
            Ok(Ok(_)) => self.finish_transfer().await?,
            Ok(Err(e)) => {
                self.mark_broken();
                return Err(FtpError::Io(e));
            }
            Err(_) => {
                self.mark_broken();
                return Err(FtpError::Timeout("listing", self.io_timeout().as_secs()));
            }
        }
        let now = SystemTime::now();
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| parse_list_line(l, now))
            .find(|e| e.name == name)
            .map(|e| e.metadata))
    }

    /// Changes into `remote` and starts listing it: MLSD where offered (or
    /// asked for), else `LIST -a` (so hidden files show), else plain LIST.
    pub async fn start_listing(
        &mut self,
        remote: &str,
        prefer: ListFormat,
    ) -> Result<Listing, FtpError> {
        self.expect_code(&format!("CWD {remote}"), 250).await?;
        if prefer == ListFormat::Mlsd && self.features().mlst {
            let data = self.start_transfer("MLSD", None).await?;
            return Ok(Listing {
                data: Some(data),
                format: ListFormat::Mlsd,
            });
        }
        let refusal = match self.start_transfer("LIST -a", None).await {
            Ok(data) => {
                return Ok(Listing {
                    data: Some(data),
                    format: ListFormat::List,
                })
            }
            Err(e) if e.code().is_some_and(|c| c >= 450 && c != 421 && c != 425) => e,
            Err(e) => return Err(e),
        };
        tracing::debug!("LIST -a refused ({refusal}); trying plain LIST");
        match self.start_transfer("LIST", None).await {
            Ok(data) => Ok(Listing {
                data: Some(data),
                format: ListFormat::List,
            }),
            // Some servers refuse to list an empty folder ("No files found").
            Err(e) if matches!(e.code(), Some(450 | 550)) => Ok(Listing {
                data: None,
                format: ListFormat::List,
            }),
            Err(e) => Err(e),
        }
    }

    /// Creates a folder.
    pub async fn make_dir(&mut self, remote: &str) -> Result<(), FtpError> {
        self.expect_success(&format!("MKD {remote}"))
            .await
            .map(drop)
    }

    /// Removes a file.
    pub async fn delete(&mut self, remote: &str) -> Result<(), FtpError> {
        self.expect_success(&format!("DELE {remote}"))
            .await
            .map(drop)
    }

    /// Removes an empty folder.
    pub async fn remove_dir(&mut self, remote: &str) -> Result<(), FtpError> {
        self.expect_success(&format!("RMD {remote}"))
            .await
            .map(drop)
    }

    /// Renames `from` to `to` (RNFR, RNTO).
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), FtpError> {
        self.expect_code(&format!("RNFR {from}"), 350).await?;
        self.expect_success(&format!("RNTO {to}")).await.map(drop)
    }

    /// Sets a file's modification time (MFMT).
    pub async fn set_modified(&mut self, remote: &str, when: SystemTime) -> Result<(), FtpError> {
        let stamp = time::format_time_val(when);
        self.expect_success(&format!("MFMT {stamp} {remote}"))
            .await
            .map(drop)
    }
}
