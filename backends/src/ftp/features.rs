//! What the server says it supports (the FEAT reply, RFC 2389), so the
//! backend can pick MLSD over LIST, MFMT for times, HASH or XMD5 for
//! checksums, and so on.

use super::reply::Reply;
use crate::backend::HashKind;

/// The extensions one server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// The feature lines as sent (trimmed), for `remote test`.
    pub lines: Vec<String>,
    /// MLST/MLSD: machine-readable listings and facts.
    pub mlst: bool,
    /// MFMT: setting modification times.
    pub mfmt: bool,
    /// MDTM: reading modification times.
    pub mdtm: bool,
    /// SIZE: file sizes.
    pub size: bool,
    /// `REST STREAM`: transfers that start at an offset.
    pub rest_stream: bool,
    /// UTF8: path names in UTF-8 (`OPTS UTF8 ON` is sent).
    pub utf8: bool,
    /// `AUTH TLS`: explicit TLS.
    pub auth_tls: bool,
    /// HASH (draft-bryan-ftpext-hash): the algorithms offered, upper case
    /// (`SHA-256`, `MD5`, `CRC32`, ...).
    pub hash: Vec<String>,
    /// The algorithm HASH uses until `OPTS HASH` selects another (the one
    /// FEAT marks with `*`).
    pub hash_default: Option<String>,
    /// XMD5: a file's MD5 (older, never standardised).
    pub xmd5: bool,
    /// XCRC: a file's CRC-32 (older, never standardised).
    pub xcrc: bool,
}

/// How a server can give a file's checksum of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCommand {
    /// `HASH <path>` after `OPTS HASH <name>` selected the algorithm.
    Hash(&'static str),
    /// The older one-command form: `XMD5 <path>` or `XCRC <path>`.
    Single(&'static str),
}

impl HashCommand {
    /// Its verb, for messages.
    pub fn verb(self) -> &'static str {
        match self {
            HashCommand::Hash(_) => "HASH",
            HashCommand::Single(verb) => verb,
        }
    }
}

impl Features {
    /// Reads a FEAT reply; a refused FEAT (5xx) means no extensions.
    pub fn from_reply(reply: &Reply) -> Self {
        if !reply.is_success() {
            return Features::default();
        }
        let lines: Vec<String> = reply
            .body()
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let mut f = Features::default();
        for line in &lines {
            let upper = line.to_ascii_uppercase();
            let name = upper.split_whitespace().next().unwrap_or("");
            match name {
                "MLST" | "MLSD" => f.mlst = true,
                "MFMT" => f.mfmt = true,
                "MDTM" => f.mdtm = true,
                "SIZE" => f.size = true,
                "REST" => f.rest_stream |= upper.contains("STREAM"),
                "UTF8" => f.utf8 = true,
                "AUTH" => f.auth_tls |= upper.contains("TLS"),
                "HASH" => {
                    let offered = upper.split_once(char::is_whitespace).map_or("", |(_, a)| a);
                    for name in offered.split(';').map(str::trim).filter(|n| !n.is_empty()) {
                        let bare = name.trim_end_matches('*').to_string();
                        if name.ends_with('*') {
                            f.hash_default = Some(bare.clone());
                        }
                        f.hash.push(bare);
                    }
                }
                "XMD5" => f.xmd5 = true,
                "XCRC" => f.xcrc = true,
                _ => {}
            }
        }
        f.lines = lines;
        f
    }

    /// How this server can give a checksum of `kind`: HASH where it offers
    /// the algorithm, else XMD5 or XCRC; `None` if not at all.
    pub fn hash_command(&self, kind: HashKind) -> Option<HashCommand> {
        let (name, single, has_single) = match kind {
            HashKind::Md5 => ("MD5", "XMD5", self.xmd5),
            HashKind::Crc32 => ("CRC32", "XCRC", self.xcrc),
        };
        if self.hash.iter().any(|a| a == name) {
            Some(HashCommand::Hash(name))
        } else if has_single {
            Some(HashCommand::Single(single))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_feat_reply() {
        let reply = Reply {
            code: 211,
            lines: [
                "211-Features:",
                " EPRT",
                " MDTM",
                " MLST type*;size*;sizd*;modify*;UNIX.mode*;",
                " REST STREAM",
                " SIZE",
                " UTF8",
                " AUTH TLS",
                "211 End.",
            ]
            .map(String::from)
            .to_vec(),
        };
        let f = Features::from_reply(&reply);
        assert!(f.mlst && f.mdtm && f.size && f.rest_stream && f.utf8 && f.auth_tls);
        assert!(!f.mfmt);
        assert_eq!(f.lines.len(), 7);
        assert_eq!(f.lines[0], "EPRT");
        let refused = Reply {
            code: 502,
            lines: vec!["502 no".into()],
        };
        assert_eq!(Features::from_reply(&refused), Features::default());
        assert!(f.hash.is_empty() && !f.xmd5 && !f.xcrc);
        assert_eq!(f.hash_command(HashKind::Md5), None);
        assert_eq!(f.hash_command(HashKind::Crc32), None);
    }

    fn feat(lines: &[&str]) -> Features {
        let mut all = vec!["211-Features:".to_string()];
        all.extend(lines.iter().map(|l| format!(" {l}")));
        all.push("211 End".into());
        Features::from_reply(&Reply {
            code: 211,
            lines: all,
        })
    }

    #[test]
    fn reads_hash_features() {
        let f = feat(&["HASH SHA-256;SHA-1;MD5*;CRC32", "SIZE"]);
        assert_eq!(f.hash, ["SHA-256", "SHA-1", "MD5", "CRC32"]);
        assert_eq!(f.hash_default.as_deref(), Some("MD5"));
        assert_eq!(
            f.hash_command(HashKind::Md5),
            Some(HashCommand::Hash("MD5"))
        );
        assert_eq!(
            f.hash_command(HashKind::Crc32),
            Some(HashCommand::Hash("CRC32"))
        );
        // Lower case, and no algorithm marked as selected.
        let f = feat(&["hash sha-1; md5"]);
        assert_eq!(f.hash, ["SHA-1", "MD5"]);
        assert_eq!(f.hash_default, None);
        assert_eq!(f.hash_command(HashKind::Crc32), None);
        // Only the older commands.
        let f = feat(&["XMD5", "XCRC", "XSHA1"]);
        assert_eq!(
            f.hash_command(HashKind::Md5),
            Some(HashCommand::Single("XMD5"))
        );
        assert_eq!(
            f.hash_command(HashKind::Crc32),
            Some(HashCommand::Single("XCRC"))
        );
        // HASH is preferred where it has the algorithm.
        let f = feat(&["HASH SHA-1*;MD5", "XMD5", "XCRC"]);
        assert_eq!(
            f.hash_command(HashKind::Md5),
            Some(HashCommand::Hash("MD5"))
        );
        assert_eq!(
            f.hash_command(HashKind::Crc32),
            Some(HashCommand::Single("XCRC"))
        );
        assert_eq!(HashCommand::Single("XCRC").verb(), "XCRC");
        assert_eq!(HashCommand::Hash("MD5").verb(), "HASH");
    }
}
