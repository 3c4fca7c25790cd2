//! What the server says it supports (the FEAT reply, RFC 2389), so the
//! backend can pick MLSD over LIST, MFMT for times, and so on.

use super::reply::Reply;

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
                _ => {}
            }
        }
        f.lines = lines;
        f
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
    }
}
