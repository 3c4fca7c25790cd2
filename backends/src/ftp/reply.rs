//! FTP replies: reading one (single- or multi-line) reply from the control
//! connection, with limits so a misbehaving server cannot make the gateway
//! buffer without end.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest single reply line accepted.
const MAX_LINE: u64 = 8 * 1024;
/// Most lines one reply may have (FEAT and MLST replies are a few dozen).
const MAX_LINES: usize = 1000;

/// One reply from the server: its code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// Every line as sent, without line endings (the first and last ones
    /// still start with the code).
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the first line, after the code.
    pub fn text(&self) -> &str {
        self.lines
            .first()
            .map(|l| l.get(4..).unwrap_or("").trim())
            .unwrap_or("")
    }

    /// Whether the reply is a preliminary one (1xx).
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// Whether the reply reports success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The lines between the first and the last of a multi-line reply
    /// (FEAT's feature list, MLST's fact line).
    pub fn body(&self) -> &[String] {
        match self.lines.len() {
            0..=2 => &[],
            n => &self.lines[1..n - 1],
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not an FTP reply.
    #[error("malformed reply from the server: {0}")]
    Malformed(String),
}

/// Reads one complete reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReadError> {
    let first = read_line(reader).await?;
    let code = code_of(&first).ok_or_else(|| ReadError::Malformed(shorten(&first)))?;
    let multi = first.as_bytes().get(3) == Some(&b'-');
    let mut lines = vec![first];
    if multi {
        let end = format!("{code} ");
        loop {
            let line = read_line(reader).await?;
            let done = line.starts_with(&end) || line == end.trim_end();
            lines.push(line);
            if done {
                break;
            }
            if lines.len() > MAX_LINES {
                return Err(ReadError::Malformed(format!(
                    "reply {code} has more than {MAX_LINES} lines"
                )));
            }
        }
    }
    Ok(Reply { code, lines })
}

/// The code of a reply's first line: three digits, then a space, a dash or
/// the end of the line.
fn code_of(line: &str) -> Option<u16> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !matches!(bytes.get(3), None | Some(b' ') | Some(b'-')) {
        return None;
    }
    line[..3].parse().ok().filter(|c| (100..600).contains(c))
}

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, ReadError> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Err(ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the control connection",
        )));
    }
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Malformed(format!(
            "a reply line is longer than {MAX_LINE} bytes"
        )));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn shorten(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &str) -> Result<Reply, ReadError> {
        let mut reader = tokio::io::BufReader::new(input.as_bytes());
        read_reply(&mut reader).await
    }

    #[tokio::test]
    async fn single_and_multi_line_replies() {
        let r = parse("220 Welcome\r\n").await.unwrap();
        assert_eq!((r.code, r.text()), (220, "Welcome"));
        let r = parse("211-Features:\r\n EPSV\r\n MLST size*;\r\n211 End\r\n")
            .await
            .unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.body(), [" EPSV", " MLST size*;"]);
        // A line inside a multi-line reply may itself start with digits.
        let r = parse("250-Listing\r\n250 not the end yet\r\n250-x\r\n250 End\r\n")
            .await
            .unwrap();
        assert_eq!(r.lines.len(), 2);
        let r = parse("230\n").await.unwrap();
        assert_eq!((r.code, r.text()), (230, ""));
    }

    #[tokio::test]
    async fn garbage_and_eof_are_errors() {
        assert!(matches!(
            parse("hello\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(parse("").await, Err(ReadError::Io(_))));
        assert!(matches!(
            parse("211-start\r\n more\r\n").await,
            Err(ReadError::Io(_))
        ));
        let long = format!("200 {}\r\n", "x".repeat(10_000));
        assert!(matches!(parse(&long).await, Err(ReadError::Malformed(_))));
    }
}
