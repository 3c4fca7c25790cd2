//! The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`), as a
//! receiver: a load balancer in front of the gateway starts each
//! connection with a header naming the real client, which the gateway
//! then uses for its audit lines, allow-lists, throttle and limits.
//!
//! Both versions of the spec
//! (<https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>) are
//! read: v1, one text line (`PROXY TCP4 ...\r\n`, at most 107 bytes), and
//! v2, a 16-byte binary block plus the length it announces. The header
//! is read without reading one byte past it (v1 byte by byte, v2 by its
//! announced length), since the SSH client's version line follows it on
//! the same stream. Whether a connection must start with a header is
//! decided by the caller (`server.proxy_protocol_from`): a header is
//! never guessed at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 line, CRLF included (spec 2.1).
pub const V1_MAX_LEN: usize = 107;

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most bytes a v2 header may announce after its fixed 16 (addresses
/// and TLVs). Addresses take at most 216 (AF_UNIX); the rest is TLVs,
/// which real load balancers keep to a few hundred bytes.
pub const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxiedAddress {
    /// The connection was relayed for `source` (the client), which
    /// connected to `destination` (the address the load balancer listens on).
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where the client connected to.
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the load balancer's own connection (a health check);
    /// the socket's peer is the real one.
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` for a family or transport other than
    /// TCP over IPv4/IPv6: the load balancer does not say who the client
    /// is, so the socket's peer is used, as the spec says.
    Unknown,
}

impl ProxiedAddress {
    /// The client's address: the one the header names, else `socket_peer`
    /// (the load balancer itself).
    pub fn client_or(&self, socket_peer: SocketAddr) -> SocketAddr {
        match self {
            ProxiedAddress::Proxied { source, .. } => *source,
            ProxiedAddress::Local | ProxiedAddress::Unknown => socket_peer,
        }
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxyHeader,
    /// A v1 line that does not match the spec.
    #[error("malformed v1 header: {0}")]
    MalformedV1(String),
    /// A v2 header that does not match the spec.
    #[error("malformed v2 header: {0}")]
    MalformedV2(String),
    /// A v2 header announcing more than [`V2_MAX_PAYLOAD`] bytes.
    #[error("v2 header too long: it announces {0} bytes after the fixed 16, at most {V2_MAX_PAYLOAD} are accepted")]
    TooLong(usize),
    /// The connection ended inside the header.
    #[error("the connection closed inside the PROXY header (after {0} bytes)")]
    Truncated(usize),
    /// Reading failed.
    #[error("cannot read the PROXY header: {0}")]
    Io(#[source] std::io::Error),
}

/// Reads one PROXY protocol header (v1 or v2) from the start of `stream`,
/// and nothing after it.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<ProxiedAddress, ProxyHeaderError> {
    let mut first = [0u8; 1];
    read_exact(stream, &mut first, 0).await?;
    match first[0] {
        b'P' => read_v1(stream).await,
        b'\r' => read_v2(stream).await,
        _ => Err(ProxyHeaderError::NotProxyHeader),
    }
}

/// `read_exact` with end of stream as [`ProxyHeaderError::Truncated`];
/// `already` is how many header bytes came before `buf`.
async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    already: usize,
) -> Result<(), ProxyHeaderError> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) => return Err(ProxyHeaderError::Truncated(already + filled)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProxyHeaderError::Io(e)),
        }
    }
    Ok(())
}

/// The rest of a v1 line whose `P` was read: byte by byte up to CRLF.
async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxiedAddress, ProxyHeaderError> {
    let mut line = Vec::with_capacity(V1_MAX_LEN);
    line.push(b'P');
    loop {
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte, line.len()).await?;
        let byte = byte[0];
        line.push(byte);
        // Give up at the first byte that cannot be a PROXY line, so a
        // client that speaks first (an SSH version line) is told at once.
        if line.len() <= V1_PREFIX.len() {
            if byte != V1_PREFIX[line.len() - 1] {
                return Err(ProxyHeaderError::NotProxyHeader);
            }
            continue;
        }
        match byte {
            b'\n' if line[line.len() - 2] == b'\r' => break,
            b'\n' => return Err(v1("a bare LF instead of CRLF")),
            _ if line[line.len() - 2] == b'\r' => return Err(v1("a bare CR instead of CRLF")),
            b'\r' => {}
            b' '..=b'~' => {}
            _ => return Err(v1("a byte that is not printable US-ASCII")),
        }
        if line.len() >= V1_MAX_LEN {
            return Err(v1(format!("no CRLF within the first {V1_MAX_LEN} bytes")));
        }
    }
    // Printable ASCII only, checked above.
    let text = std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| v1("not US-ASCII"))?;
    parse_v1(text)
}

fn v1(message: impl Into<String>) -> ProxyHeaderError {
    ProxyHeaderError::MalformedV1(message.into())
}

fn v2(message: impl Into<String>) -> ProxyHeaderError {
    ProxyHeaderError::MalformedV2(message.into())
}

/// A v1 line without its CRLF: `PROXY TCP4 src dst sport dport`.
fn parse_v1(line: &str) -> Result<ProxiedAddress, ProxyHeaderError> {
    let rest = line
        .strip_prefix("PROXY ")
        .ok_or(ProxyHeaderError::NotProxyHeader)?;
    // UNKNOWN may be followed by anything, which is ignored.
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Ok(ProxiedAddress::Unknown);
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    let [protocol, source, destination, source_port, destination_port] = fields[..] else {
        return Err(v1(format!(
            "expected `TCP4|TCP6 <source> <destination> <source port> <destination port>` separated by single spaces, got `{line}`"
        )));
    };
    let (source, destination) = match protocol {
        "TCP4" => (
            IpAddr::V4(v1_ipv4(source, "source")?),
            IpAddr::V4(v1_ipv4(destination, "destination")?),
        ),
        "TCP6" => (
            IpAddr::V6(v1_ipv6(source, "source")?),
            IpAddr::V6(v1_ipv6(destination, "destination")?),
        ),
        other => {
            return Err(v1(format!(
                "unknown protocol `{other}` (expected TCP4, TCP6 or UNKNOWN)"
            )))
        }
    };
    Ok(ProxiedAddress::Proxied {
        source: SocketAddr::new(source, v1_port(source_port, "source")?),
        destination: SocketAddr::new(destination, v1_port(destination_port, "destination")?),
    })
}

fn v1_ipv4(text: &str, which: &str) -> Result<Ipv4Addr, ProxyHeaderError> {
    // std refuses leading zeros in IPv4 octets, as the spec does.
    text.parse()
        .map_err(|_| v1(format!("{which} address `{text}` is not an IPv4 address")))
}

fn v1_ipv6(text: &str, which: &str) -> Result<Ipv6Addr, ProxyHeaderError> {
    // Only hex digits and colons: std would also take an embedded IPv4
    // part, which the spec does not allow.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err(v1(format!(
            "{which} address `{text}` is not an IPv6 address"
        )));
    }
    text.parse()
        .map_err(|_| v1(format!("{which} address `{text}` is not an IPv6 address")))
}

fn v1_port(text: &str, which: &str) -> Result<u16, ProxyHeaderError> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    match text.parse::<u16>() {
        Ok(port) if digits_only && !leading_zero => Ok(port),
        _ => Err(v1(format!(
            "{which} port `{text}` is not a number from 0 to 65535 without leading zeros"
        ))),
    }
}

/// The rest of a v2 header whose first byte (`\r`) was read.
async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxiedAddress, ProxyHeaderError> {
    let mut fixed = [0u8; 16];
    fixed[0] = b'\r';
    read_exact(stream, &mut fixed[1..], 1).await?;
    if fixed[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::NotProxyHeader);
    }
    let version = fixed[12] >> 4;
    let command = fixed[12] & 0x0f;
    if version != 2 {
        return Err(v2(format!("version {version} (only 2 is defined)")));
    }
    let family = fixed[13] >> 4;
    let transport = fixed[13] & 0x0f;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong(len));
    }
    // Checked before reading the rest, so a wrong header is refused at once.
    if command > 1 {
        return Err(v2(format!(
            "unknown command {command:#x} (expected 0 LOCAL or 1 PROXY)"
        )));
    }
    if family > 3 {
        return Err(v2(format!(
            "unknown address family {family:#x} (expected 0 to 3)"
        )));
    }
    if transport > 2 {
        return Err(v2(format!(
            "unknown transport protocol {transport:#x} (expected 0 to 2)"
        )));
    }
    let mut payload = vec![0u8; len];
    read_exact(stream, &mut payload, 16).await?;
    if command == 0 {
        // LOCAL: the address block, whatever it holds, is ignored.
        return Ok(ProxiedAddress::Local);
    }
    match (family, transport) {
        // TCP over IPv4.
        (1, 1) => {
            let Some(a) = payload.get(..12) else {
                return Err(v2(format!(
                    "TCP over IPv4 needs 12 address bytes, the header has {len}"
                )));
            };
            let source = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let destination = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            Ok(ProxiedAddress::Proxied {
                source: SocketAddr::new(source.into(), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(
                    destination.into(),
                    u16::from_be_bytes([a[10], a[11]]),
                ),
            })
        }
        // TCP over IPv6.
        (2, 1) => {
            let Some(a) = payload.get(..36) else {
                return Err(v2(format!(
                    "TCP over IPv6 needs 36 address bytes, the header has {len}"
                )));
            };
            let mut source = [0u8; 16];
            source.copy_from_slice(&a[..16]);
            let mut destination = [0u8; 16];
            destination.copy_from_slice(&a[16..32]);
            Ok(ProxiedAddress::Proxied {
                source: SocketAddr::new(
                    Ipv6Addr::from(source).into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ),
                destination: SocketAddr::new(
                    Ipv6Addr::from(destination).into(),
                    u16::from_be_bytes([a[34], a[35]]),
                ),
            })
        }
        // UNSPEC, UNIX, UDP: the spec's fallback is to use the real
        // endpoints, as for v1 UNKNOWN.
        _ => Ok(ProxiedAddress::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const AFTER: &[u8] = b"SSH-2.0-OpenSSH_9.6\r\n";

    /// Reads a header from `header` followed by [`AFTER`], and checks that
    /// exactly the bytes after the header are left.
    async fn read(header: &[u8]) -> Result<ProxiedAddress, ProxyHeaderError> {
        let input = [header, AFTER].concat();
        let mut stream: &[u8] = &input;
        let result = read_header(&mut stream).await;
        if result.is_ok() {
            assert_eq!(stream, AFTER, "bytes after the header were consumed");
        }
        result
    }

    fn proxied(source: &str, destination: &str) -> ProxiedAddress {
        ProxiedAddress::Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    fn v2_header(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        let mut p = vec![198, 51, 100, 23, 10, 0, 0, 5];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&2222u16.to_be_bytes());
        p
    }

    #[tokio::test]
    async fn v1_tcp4() {
        assert_eq!(
            read(b"PROXY TCP4 198.51.100.23 10.0.0.5 40000 2222\r\n")
                .await
                .unwrap(),
            proxied("198.51.100.23:40000", "10.0.0.5:2222")
        );
        let longest = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
        assert_eq!(
            read(longest).await.unwrap(),
            proxied("255.255.255.255:65535", "255.255.255.255:65535")
        );
        assert_eq!(
            read(b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n").await.unwrap(),
            proxied("1.2.3.4:0", "5.6.7.8:0")
        );
    }

    #[tokio::test]
    async fn v1_tcp6() {
        assert_eq!(
            read(b"PROXY TCP6 2001:db8::23 2001:db8::1 40000 22\r\n")
                .await
                .unwrap(),
            proxied("[2001:db8::23]:40000", "[2001:db8::1]:22")
        );
        // The longest line the spec allows for TCP6 (104 bytes).
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        assert_eq!(
            read(line.as_bytes()).await.unwrap(),
            proxied(&format!("[{full}]:65535"), &format!("[{full}]:65535"))
        );
    }

    #[tokio::test]
    async fn v1_unknown() {
        assert_eq!(
            read(b"PROXY UNKNOWN\r\n").await.unwrap(),
            ProxiedAddress::Unknown
        );
        // The longest line of all (107 bytes): what follows UNKNOWN is ignored.
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_LEN);
        assert_eq!(
            read(line.as_bytes()).await.unwrap(),
            ProxiedAddress::Unknown
        );
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(ProxiedAddress::Unknown.client_or(peer), peer);
        assert_eq!(ProxiedAddress::Local.client_or(peer), peer);
        assert_eq!(
            proxied("198.51.100.23:40000", "10.0.0.5:2222").client_or(peer),
            "198.51.100.23:40000".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn v1_malformed() {
        for (line, expect) in [
            (&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..], "bare LF"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx\r\n", "bare CR"),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "single spaces"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "single spaces"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "single spaces"),
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "unknown protocol `TCP5`",
            ),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "source address"),
            (b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "destination address"),
            (
                b"PROXY TCP6 ::1 ::ffff:1.2.3.4 1 2\r\n",
                "destination address",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 022 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +22 2\r\n", "source port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 22 -1\r\n", "destination port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 22 \xff\r\n", "printable"),
            (b"PROXY \r\n", "single spaces"),
        ] {
            let err = read(line).await.unwrap_err();
            assert!(
                matches!(err, ProxyHeaderError::MalformedV1(_)),
                "{:?}: {err:?}",
                String::from_utf8_lossy(line)
            );
            let message = err.to_string();
            assert!(message.starts_with("malformed v1 header: "), "{message}");
            assert!(message.contains(expect), "{message}");
        }
    }

    #[tokio::test]
    async fn v1_oversized() {
        // No CRLF within 107 bytes: refused without reading further.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(200, b'f');
        line.extend_from_slice(b"\r\n");
        let mut stream: &[u8] = &line;
        let err = read_header(&mut stream).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("no CRLF within the first 107 bytes"),
            "{err}"
        );
        assert_eq!(stream.len(), line.len() - V1_MAX_LEN);
        // 106 bytes and CRLF: one too many.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 1, b'f');
        line.extend_from_slice(b"\r\n");
        assert!(matches!(
            read(&line).await,
            Err(ProxyHeaderError::MalformedV1(_))
        ));
    }

    #[tokio::test]
    async fn garbage_is_not_a_header() {
        for start in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXZ TCP4",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXYTCP4",
            b"\r\n\r\n\0\r\nQUIT!xxxx",
            b"\0",
        ] {
            let err = read(start).await.unwrap_err();
            assert!(
                matches!(err, ProxyHeaderError::NotProxyHeader),
                "{:?}: {err:?}",
                String::from_utf8_lossy(start)
            );
            assert_eq!(err.to_string(), "not a PROXY protocol header");
        }
    }

    #[tokio::test]
    async fn an_ssh_client_is_refused_at_its_first_byte() {
        // A client that is not behind the load balancer sends its version
        // line and waits: the refusal must not wait for more.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"S").await.unwrap();
        let err = read_header(&mut server).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::NotProxyHeader));
    }

    #[tokio::test]
    async fn truncated() {
        for partial in [
            &b""[..],
            b"PROX",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
            &V2_SIGNATURE[..7],
            &v2_header(0x21, 0x11, &v2_tcp4())[..20],
        ] {
            let mut stream: &[u8] = partial;
            let err = read_header(&mut stream).await.unwrap_err();
            assert!(
                matches!(err, ProxyHeaderError::Truncated(n) if n == partial.len()),
                "{partial:?}: {err:?}"
            );
            assert!(err.to_string().contains("closed inside the PROXY header"));
        }
    }

    #[tokio::test]
    async fn v2_tcp_over_ipv4() {
        assert_eq!(
            read(&v2_header(0x21, 0x11, &v2_tcp4())).await.unwrap(),
            proxied("198.51.100.23:40000", "10.0.0.5:2222")
        );
    }

    #[tokio::test]
    async fn v2_tcp_over_ipv6() {
        let mut p = Vec::new();
        p.extend_from_slice(&"2001:db8::23".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&22u16.to_be_bytes());
        assert_eq!(
            read(&v2_header(0x21, 0x21, &p)).await.unwrap(),
            proxied("[2001:db8::23]:40000", "[2001:db8::1]:22")
        );
    }

    #[tokio::test]
    async fn v2_tlvs_are_skipped() {
        let mut p = v2_tcp4();
        // PP2_TYPE_UNIQUE_ID and PP2_TYPE_NOOP.
        p.extend_from_slice(&[0x05, 0x00, 0x04, 1, 2, 3, 4, 0x04, 0x00, 0x00]);
        assert_eq!(
            read(&v2_header(0x21, 0x11, &p)).await.unwrap(),
            proxied("198.51.100.23:40000", "10.0.0.5:2222")
        );
    }

    #[tokio::test]
    async fn v2_local() {
        assert_eq!(
            read(&v2_header(0x20, 0x00, &[])).await.unwrap(),
            ProxiedAddress::Local
        );
        // The address block of a LOCAL header is skipped and ignored.
        assert_eq!(
            read(&v2_header(0x20, 0x11, &v2_tcp4())).await.unwrap(),
            ProxiedAddress::Local
        );
    }

    #[tokio::test]
    async fn v2_other_families_use_the_socket_peer() {
        for fam in [0x00, 0x12, 0x22, 0x31, 0x32] {
            assert_eq!(
                read(&v2_header(0x21, fam, &[0u8; 216])).await.unwrap(),
                ProxiedAddress::Unknown,
                "family/transport {fam:#x}"
            );
        }
    }

    #[tokio::test]
    async fn v2_malformed() {
        for (header, expect) in [
            (v2_header(0x11, 0x11, &v2_tcp4()), "version 1"),
            (v2_header(0x22, 0x11, &v2_tcp4()), "unknown command 0x2"),
            (
                v2_header(0x21, 0x41, &v2_tcp4()),
                "unknown address family 0x4",
            ),
            (
                v2_header(0x21, 0x13, &v2_tcp4()),
                "unknown transport protocol 0x3",
            ),
            (
                v2_header(0x21, 0x11, &v2_tcp4()[..11]),
                "needs 12 address bytes",
            ),
            (v2_header(0x21, 0x21, &[0u8; 35]), "needs 36 address bytes"),
        ] {
            let err = read(&header).await.unwrap_err();
            assert!(matches!(err, ProxyHeaderError::MalformedV2(_)), "{err:?}");
            let message = err.to_string();
            assert!(message.starts_with("malformed v2 header: "), "{message}");
            assert!(message.contains(expect), "{message}");
        }
    }

    #[tokio::test]
    async fn v2_oversized() {
        let mut header = v2_header(0x21, 0x11, &v2_tcp4());
        header[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut stream: &[u8] = &header;
        let err = read_header(&mut stream).await.unwrap_err();
        assert!(matches!(err, ProxyHeaderError::TooLong(65535)), "{err:?}");
        // Refused after the fixed part, before reading the payload.
        assert_eq!(stream.len(), header.len() - 16);
        // The largest accepted length is accepted.
        let mut p = v2_tcp4();
        p.resize(V2_MAX_PAYLOAD, 0);
        assert!(read(&v2_header(0x21, 0x11, &p)).await.is_ok());
    }

    #[tokio::test]
    async fn a_header_sent_in_pieces() {
        // TCP may deliver the header a few bytes at a time.
        let (mut client, mut server) = tokio::io::duplex(4);
        let reader = tokio::spawn(async move {
            let header = read_header(&mut server).await;
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.unwrap();
            (header, rest)
        });
        let mut bytes = v2_header(0x21, 0x11, &v2_tcp4());
        bytes.extend_from_slice(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
        bytes.extend_from_slice(AFTER);
        for chunk in bytes.chunks(3) {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let (header, rest) = reader.await.unwrap();
        assert_eq!(
            header.unwrap(),
            proxied("198.51.100.23:40000", "10.0.0.5:2222")
        );
        // A second header is not read: it is the client's data.
        assert_eq!(
            rest,
            [&b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..], AFTER].concat()
        );
    }
}
