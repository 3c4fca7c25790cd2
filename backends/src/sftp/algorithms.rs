//! The SSH algorithms offered to a remote: modern ones by default, plus
//! the legacy ones an admin opts into per remote (in the spirit of
//! OpenSSH's `KexAlgorithms +...`), and the names negotiated on a
//! connection, for `remote test` and for the warning a legacy connection
//! logs.

use std::borrow::Cow;

use russh::keys::Algorithm;
use russh::{cipher, kex, mac};

/// A legacy algorithm the gateway can offer when a remote's config asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyAlgorithm {
    /// A key exchange (`diffie-hellman-group14-sha1`, ...).
    Kex(kex::Name),
    /// `ssh-rsa`: RSA host keys and signatures with SHA-1.
    SshRsa,
    /// A cipher (`aes128-cbc`, ...).
    Cipher(cipher::Name),
    /// A MAC (`hmac-sha1`, ...).
    Mac(mac::Name),
}

/// Every legacy name accepted, with what it is.
pub const LEGACY_ALGORITHMS: &[(&str, LegacyAlgorithm)] = &[
    (
        "diffie-hellman-group14-sha1",
        LegacyAlgorithm::Kex(kex::DH_G14_SHA1),
    ),
    (
        "diffie-hellman-group-exchange-sha1",
        LegacyAlgorithm::Kex(kex::DH_GEX_SHA1),
    ),
    (
        "diffie-hellman-group1-sha1",
        LegacyAlgorithm::Kex(kex::DH_G1_SHA1),
    ),
    ("ssh-rsa", LegacyAlgorithm::SshRsa),
    ("aes128-cbc", LegacyAlgorithm::Cipher(cipher::AES_128_CBC)),
    ("aes192-cbc", LegacyAlgorithm::Cipher(cipher::AES_192_CBC)),
    ("aes256-cbc", LegacyAlgorithm::Cipher(cipher::AES_256_CBC)),
    ("hmac-sha1", LegacyAlgorithm::Mac(mac::HMAC_SHA1)),
    (
        "hmac-sha1-etm@openssh.com",
        LegacyAlgorithm::Mac(mac::HMAC_SHA1_ETM),
    ),
];

impl LegacyAlgorithm {
    /// The algorithm named `name`, or an error listing the names accepted.
    pub fn parse(name: &str) -> Result<LegacyAlgorithm, String> {
        LEGACY_ALGORITHMS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let known: Vec<&str> = LEGACY_ALGORITHMS.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown legacy algorithm `{name}` (known: {})",
                    known.join(", ")
                )
            })
    }

    /// Its SSH name.
    pub fn name(self) -> &'static str {
        LEGACY_ALGORITHMS
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// How the gateway speaks SSH to one remote beyond its address and login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// SSH handshakes to this remote in progress at once, at most (a
    /// connection counts until it has logged in): stock OpenSSH drops
    /// connections at random beyond 10 unauthenticated ones
    /// (`MaxStartups 10:30:100`).
    pub max_handshakes: usize,
    /// Legacy algorithms offered after the modern ones.
    pub legacy: Vec<LegacyAlgorithm>,
}

/// Handshakes in progress at once by default: below OpenSSH's
/// `MaxStartups` start of 10, with room for other clients of the server.
pub const DEFAULT_MAX_HANDSHAKES: usize = 6;

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            legacy: Vec::new(),
        }
    }
}

/// The modern ciphers, fastest first (AES-GCM is what the measurements in
/// PERF-NOTES favour on this kind of CPU).
const MODERN_CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

impl SshOptions {
    /// The algorithm lists to offer: russh's defaults (with AES-GCM first)
    /// and then the legacy ones asked for.
    pub fn preferred(&self) -> russh::Preferred {
        let base = russh::Preferred::default();
        let mut kex_names: Vec<kex::Name> = base.kex.to_vec();
        // russh offers SHA-1 `ssh-rsa` host keys by default; OpenSSH 8.8
        // stopped: it is legacy here too.
        let mut keys: Vec<Algorithm> = base
            .key
            .iter()
            .filter(|k| **k != Algorithm::Rsa { hash: None })
            .cloned()
            .collect();
        let mut ciphers: Vec<cipher::Name> = MODERN_CIPHERS.to_vec();
        let mut macs: Vec<mac::Name> = base.mac.to_vec();
        for legacy in &self.legacy {
            match *legacy {
                // Before the extension pseudo-algorithms, which must stay last.
                LegacyAlgorithm::Kex(k) => {
                    let at = kex_names
                        .iter()
                        .position(|n| {
                            n.as_ref().starts_with("ext-info")
                                || n.as_ref().starts_with("kex-strict")
                        })
                        .unwrap_or(kex_names.len());
                    if !kex_names.contains(&k) {
                        kex_names.insert(at, k);
                    }
                }
                LegacyAlgorithm::SshRsa => {
                    let sha1 = Algorithm::Rsa { hash: None };
                    if !keys.contains(&sha1) {
                        keys.push(sha1);
                    }
                }
                LegacyAlgorithm::Cipher(c) if !ciphers.contains(&c) => ciphers.push(c),
                LegacyAlgorithm::Mac(m) if !macs.contains(&m) => macs.push(m),
                LegacyAlgorithm::Cipher(_) | LegacyAlgorithm::Mac(_) => {}
            }
        }
        russh::Preferred {
            kex: Cow::Owned(kex_names),
            key: Cow::Owned(keys),
            cipher: Cow::Owned(ciphers),
            mac: Cow::Owned(macs),
            ..base
        }
    }

    /// Whether `ssh-rsa` (SHA-1) signatures may be used to log in.
    pub fn sha1_signatures(&self) -> bool {
        self.legacy.contains(&LegacyAlgorithm::SshRsa)
    }
}

/// What a connection negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// The key exchange.
    pub kex: String,
    /// The server's host key algorithm.
    pub host_key: String,
    /// The cipher (the same both ways in practice).
    pub cipher: String,
    /// The MAC (the cipher's own for AEAD ciphers).
    pub mac: String,
}

impl Negotiated {
    /// From russh's record of the key exchange.
    pub fn from_names(names: &russh::Names) -> Self {
        let host_key = match &names.key {
            Algorithm::Rsa { hash: None } => "ssh-rsa".to_string(),
            other => other.to_string(),
        };
        let aead = [
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
        ]
        .contains(&names.cipher);
        Negotiated {
            kex: names.kex.as_ref().to_string(),
            host_key,
            cipher: names.cipher.as_ref().to_string(),
            mac: if aead {
                "implicit (AEAD cipher)".to_string()
            } else {
                names.client_mac.as_ref().to_string()
            },
        }
    }

    /// The legacy algorithms among these, by name.
    pub fn legacy(&self) -> Vec<&str> {
        [&self.kex, &self.host_key, &self.cipher, &self.mac]
            .into_iter()
            .filter(|n| LEGACY_ALGORITHMS.iter().any(|(name, _)| name == n))
            .map(|n| n.as_str())
            .collect()
    }
}

impl std::fmt::Display for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key exchange {}, host key {}, cipher {}, MAC {}",
            self.kex, self.host_key, self.cipher, self.mac
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_offer_no_legacy_algorithm() {
        let p = SshOptions::default().preferred();
        for (name, _) in LEGACY_ALGORITHMS {
            let offered = p.kex.iter().any(|k| k.as_ref() == *name)
                || p.cipher.iter().any(|c| c.as_ref() == *name)
                || p.mac.iter().any(|m| m.as_ref() == *name);
            assert!(!offered, "{name} offered by default");
        }
        assert!(
            !p.key.contains(&Algorithm::Rsa { hash: None }),
            "ssh-rsa offered by default"
        );
        assert_eq!(p.cipher[0], cipher::AES_128_GCM);
    }

    #[test]
    fn legacy_names_are_added_after_the_modern_ones() {
        let options = SshOptions {
            legacy: [
                "diffie-hellman-group14-sha1",
                "ssh-rsa",
                "aes128-cbc",
                "hmac-sha1",
            ]
            .iter()
            .map(|n| LegacyAlgorithm::parse(n).unwrap())
            .collect(),
            ..SshOptions::default()
        };
        let p = options.preferred();
        let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
        let g14 = kex
            .iter()
            .position(|k| *k == "diffie-hellman-group14-sha1")
            .unwrap();
        assert!(kex[..g14].contains(&"curve25519-sha256"), "{kex:?}");
        assert!(
            kex[g14 + 1..]
                .iter()
                .all(|k| k.starts_with("ext-info") || k.starts_with("kex-strict")),
            "{kex:?}"
        );
        assert_eq!(p.key.last(), Some(&Algorithm::Rsa { hash: None }));
        assert_eq!(p.cipher.last(), Some(&cipher::AES_128_CBC));
        assert_eq!(p.mac.last(), Some(&mac::HMAC_SHA1));
        assert!(options.sha1_signatures());
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let err = LegacyAlgorithm::parse("arcfour").unwrap_err();
        assert!(
            err.contains("arcfour") && err.contains("diffie-hellman-group14-sha1"),
            "{err}"
        );
        assert_eq!(LegacyAlgorithm::parse("ssh-rsa").unwrap().name(), "ssh-rsa");
    }
}
