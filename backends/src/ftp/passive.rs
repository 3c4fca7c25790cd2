//! Parsing the server's answers to EPSV (229) and PASV (227), which say
//! where the next data connection goes.

use std::net::Ipv4Addr;

/// The port of an EPSV reply: `229 Entering Extended Passive Mode (|||6446|)`.
/// RFC 2428 lets the server choose the delimiter; the host part is empty.
pub fn parse_epsv(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let delim = inner.chars().next()?;
    if delim.is_ascii_alphanumeric() {
        return None;
    }
    let parts: Vec<&str> = inner.split(delim).collect();
    // "", "", "", port, ""
    match parts.as_slice() {
        ["", "", "", port, ""] => port.parse().ok().filter(|p| *p != 0),
        _ => None,
    }
}

/// The address and port of a PASV reply:
/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`. Some servers leave out
/// the parentheses, so the first run of six comma-separated numbers counts.
pub fn parse_pasv(text: &str) -> Option<(Ipv4Addr, u16)> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes[start].is_ascii_digit() && (start == 0 || !bytes[start - 1].is_ascii_digit()) {
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_digit() || c == ','))
                .map_or(text.len(), |e| start + e);
            let nums: Vec<Option<u8>> = text[start..end]
                .split(',')
                .map(|n| n.parse().ok())
                .collect();
            if nums.len() == 6 {
                if let Some(n) = nums.into_iter().collect::<Option<Vec<u8>>>() {
                    let port = u16::from(n[4]) << 8 | u16::from(n[5]);
                    if port != 0 {
                        return Some((Ipv4Addr::new(n[0], n[1], n[2], n[3]), port));
                    }
                }
            }
            start = end;
        } else {
            start += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv("Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(parse_epsv("Extended Passive (!!!40000!)."), Some(40000));
        assert_eq!(parse_epsv("(|||0|)"), None);
        assert_eq!(parse_epsv("(|1|2|3|)"), None);
        assert_eq!(parse_epsv("no port here"), None);
        assert_eq!(parse_epsv("(|||99999|)"), None);
    }

    #[test]
    fn pasv_replies() {
        assert_eq!(
            parse_pasv("Entering Passive Mode (127,0,0,1,195,80)."),
            Some((Ipv4Addr::new(127, 0, 0, 1), 50000))
        );
        assert_eq!(
            parse_pasv("Entering Passive Mode 10,1,2,3,4,1"),
            Some((Ipv4Addr::new(10, 1, 2, 3), 1025))
        );
        // A number before the tuple does not confuse the parser.
        assert_eq!(
            parse_pasv("=227 mode 1 (192,168,0,9,0,21)"),
            Some((Ipv4Addr::new(192, 168, 0, 9), 21))
        );
        assert_eq!(parse_pasv("(300,0,0,1,1,1)"), None);
        assert_eq!(parse_pasv("(1,2,3,4,5)"), None);
    }
}
