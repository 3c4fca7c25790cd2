//! File operations in FTP terms on one control connection: facts about a
//! path (MLST, or SIZE/MDTM/CWD), starting a listing (MLSD, or LIST), and
//! the one-command operations. Classifying failures in storage terms is
//! the backend's job.

use std::time::{Duration, SystemTime};

use super::control::Control;
use super::error::FtpError;
use super::features::HashCommand;
use super::listing::{parse_list_line, parse_mlsx, Facts};
use super::stream::MaybeTls;
use super::time;
use crate::backend::{EntryKind, HashKind, Metadata};
use crate::ErrorKind;

/// The slowest hashing a server is given time for (bytes per second), on
/// top of the I/O timeout, when it is asked for a file's checksum.
const HASH_MIN_RATE: u64 = 16 * 1024 * 1024;

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

    /// The checksum of `kind` of the file `remote` (`size` bytes) as the
    /// server computes it: `HASH` (selecting the algorithm with `OPTS
    /// HASH` first when needed) or `XMD5`/`XCRC`. `None` when the server
    /// has no such command, refuses to select the algorithm, or answers
    /// something unreadable; a refusal of the hash command itself is an
    /// error, for the caller to classify.
    pub async fn checksum(
        &mut self,
        remote: &str,
        kind: HashKind,
        size: u64,
    ) -> Result<Option<String>, FtpError> {
        let limit = self.io_timeout() + Duration::from_secs(size / HASH_MIN_RATE);
        let Some(command) = self.features().hash_command(kind) else {
            return Ok(None);
        };
        let command = match command {
            HashCommand::Hash(name) if self.hash_selected() != Some(name) => {
                let reply = self.command(&format!("OPTS HASH {name}")).await?;
                if reply.is_success() {
                    self.set_hash_selected(name);
                    command
                } else {
                    tracing::debug!("OPTS HASH {name} refused: {reply}");
                    // The older command, where the server has it too.
                    match (kind, self.features()) {
                        (HashKind::Md5, f) if f.xmd5 => HashCommand::Single("XMD5"),
                        (HashKind::Crc32, f) if f.xcrc => HashCommand::Single("XCRC"),
                        _ => return Ok(None),
                    }
                }
            }
            other => other,
        };
        let reply = match command {
            HashCommand::Hash(_) => {
                self.command_within(&format!("HASH {remote}"), limit)
                    .await?
            }
            // Their argument is not always the whole rest of the line
            // (`XCRC <file> [<start> <end>]`): a name with blanks could
            // hash another file.
            HashCommand::Single(_) if remote.contains(char::is_whitespace) => return Ok(None),
            HashCommand::Single(verb) => {
                self.command_within(&format!("{verb} {remote}"), limit)
                    .await?
            }
        };
        if !reply.is_success() {
            return Err(FtpError::Reply {
                command: command.verb().to_string(),
                reply,
            });
        }
        let sum = match command {
            HashCommand::Hash(name) => parse_hash_reply(reply.text(), name, kind),
            HashCommand::Single(_) => parse_single_hash_reply(reply.text(), kind),
        };
        if sum.is_none() {
            tracing::debug!("unreadable {} reply `{reply}`", command.verb());
        }
        Ok(sum)
    }

    /// Sets a file's modification time (MFMT).
    pub async fn set_modified(&mut self, remote: &str, when: SystemTime) -> Result<(), FtpError> {
        let stamp = time::format_time_val(when);
        self.expect_success(&format!("MFMT {stamp} {remote}"))
            .await
            .map(drop)
    }
}

/// `text` as a checksum of `kind`; a CRC-32 may come without its leading
/// zeros.
fn hash_value(kind: HashKind, text: &str) -> Option<String> {
    let text = match kind {
        HashKind::Crc32 if (1..8).contains(&text.len()) => format!("{text:0>8}"),
        _ => text.to_string(),
    };
    crate::hash::normalize(kind, &text)
}

/// The checksum in a HASH reply's text: `<algorithm> <start>-<end> <hex>
/// <path>`, for algorithm `name` over the whole file (from byte 0).
fn parse_hash_reply(text: &str, name: &str, kind: HashKind) -> Option<String> {
    let mut words = text.split_whitespace();
    let algorithm = words.next()?;
    let range = words.next()?;
    let hex = words.next()?;
    if !algorithm.eq_ignore_ascii_case(name) || !range.starts_with("0-") {
        return None;
    }
    hash_value(kind, hex)
}

/// The checksum in an XMD5 or XCRC reply's text: usually just the hex,
/// sometimes followed (or, rarely, preceded) by the path.
fn parse_single_hash_reply(text: &str, kind: HashKind) -> Option<String> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    hash_value(kind, first).or_else(|| hash_value(kind, words.last()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "b1946ac92492d2347c6235b4d2611184";

    #[test]
    fn hash_replies() {
        let md5 = |t: &str| parse_hash_reply(t, "MD5", HashKind::Md5);
        assert_eq!(
            md5(&format!("MD5 0-6 {} /home/x/a b", MD5.to_uppercase())).as_deref(),
            Some(MD5)
        );
        assert_eq!(md5(&format!("md5 0-6 {MD5} f")).as_deref(), Some(MD5));
        assert_eq!(
            md5(&format!("SHA-1 0-6 {MD5} f")),
            None,
            "another algorithm"
        );
        assert_eq!(md5(&format!("MD5 2-6 {MD5} f")), None, "part of the file");
        assert_eq!(md5("MD5 0-6 xyz f"), None);
        assert_eq!(md5("MD5"), None);
        let crc = |t: &str| parse_hash_reply(t, "CRC32", HashKind::Crc32);
        assert_eq!(crc("CRC32 0-6 363A3020 /f").as_deref(), Some("363a3020"));
        assert_eq!(crc("CRC32 0-0 0 /empty").as_deref(), Some("00000000"));
        assert_eq!(crc("CRC32 0-6 1363a3020 /f"), None);
    }

    #[test]
    fn single_hash_replies() {
        let md5 = |t: &str| parse_single_hash_reply(t, HashKind::Md5);
        assert_eq!(md5(MD5).as_deref(), Some(MD5));
        assert_eq!(md5(&format!("{MD5} /home/x/f")).as_deref(), Some(MD5));
        assert_eq!(md5(&format!("\"/home/x/f\" {MD5}")).as_deref(), Some(MD5));
        assert_eq!(md5("File not found"), None);
        assert_eq!(md5(""), None);
        let crc = |t: &str| parse_single_hash_reply(t, HashKind::Crc32);
        assert_eq!(crc("363A3020").as_deref(), Some("363a3020"));
        assert_eq!(crc("5A3020").as_deref(), Some("005a3020"));
        assert_eq!(crc(MD5), None);
    }
}
