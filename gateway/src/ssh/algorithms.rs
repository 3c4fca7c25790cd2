//! Which key exchanges, ciphers and MACs the SSH server offers: russh's
//! safe defaults (with AES-GCM first, see PERF-NOTES), or the lists a
//! site sets in `[server]` to satisfy an audit (ssh-audit warns about
//! `diffie-hellman-group14-sha256` and the encrypt-and-MAC `hmac-sha2-*`).

use std::borrow::Cow;

use russh::{cipher, kex, mac};

/// The algorithm lists of `[server]`; `None` keeps the default list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerAlgorithms {
    /// `server.kex_algorithms`.
    pub kex: Option<Vec<String>>,
    /// `server.ciphers`.
    pub ciphers: Option<Vec<String>>,
    /// `server.macs`.
    pub macs: Option<Vec<String>>,
}

/// The ciphers offered by default: AES-GCM first (fastest here), then
/// ChaCha20-Poly1305 and AES-CTR.
pub const DEFAULT_CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// The key exchanges that may be named (no `none`, no SHA-1 ones).
fn kex_choices() -> impl Iterator<Item = kex::Name> + Clone {
    kex::ALL_KEX_ALGORITHMS
        .iter()
        .map(|n| **n)
        .filter(|n| n.as_ref() != "none" && !n.as_ref().contains("sha1"))
}

fn cipher_choices() -> impl Iterator<Item = cipher::Name> + Clone {
    cipher::ALL_CIPHERS
        .iter()
        .map(|n| **n)
        .filter(|n| n.as_ref() != "none" && !n.as_ref().contains("cbc"))
}

fn mac_choices() -> impl Iterator<Item = mac::Name> + Clone {
    mac::ALL_MAC_ALGORITHMS
        .iter()
        .map(|n| **n)
        .filter(|n| n.as_ref() != "none" && !n.as_ref().contains("sha1"))
}

/// `names` as russh names from `choices`, or the problem with them.
fn pick<N: AsRef<str> + Copy>(
    names: &[String],
    choices: impl Iterator<Item = N> + Clone,
) -> Result<Vec<N>, String> {
    if names.is_empty() {
        return Err("must name at least one algorithm".to_string());
    }
    names
        .iter()
        .map(|wanted| {
            choices
                .clone()
                .find(|n| n.as_ref() == wanted)
                .ok_or_else(|| {
                    let known: Vec<String> =
                        choices.clone().map(|n| n.as_ref().to_string()).collect();
                    format!(
                        "`{wanted}` is not one the gateway offers: use some of {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

impl ServerAlgorithms {
    /// The problems with the lists, each with its key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(k) = &self.kex {
            if let Err(e) = pick(k, kex_choices()) {
                out.push(("server.kex_algorithms", e));
            }
        }
        if let Some(c) = &self.ciphers {
            if let Err(e) = pick(c, cipher_choices()) {
                out.push(("server.ciphers", e));
            }
        }
        if let Some(m) = &self.macs {
            if let Err(e) = pick(m, mac_choices()) {
                out.push(("server.macs", e));
            }
        }
        out
    }

    /// `preferred` with the lists applied (names validated by
    /// [`ServerAlgorithms::problems`]; unknown ones are skipped).
    pub fn apply(&self, mut preferred: russh::Preferred) -> russh::Preferred {
        preferred.cipher = Cow::Borrowed(DEFAULT_CIPHERS);
        if let Some(k) = &self.kex {
            let mut names: Vec<kex::Name> = k
                .iter()
                .filter_map(|w| kex_choices().find(|n| n.as_ref() == w))
                .collect();
            // The pseudo-algorithms that announce RFC 8308 extensions and
            // strict key exchange (the Terrapin counter-measure) stay.
            names.extend([
                kex::EXTENSION_SUPPORT_AS_SERVER,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
            ]);
            preferred.kex = Cow::Owned(names);
        }
        if let Some(c) = &self.ciphers {
            preferred.cipher = Cow::Owned(
                c.iter()
                    .filter_map(|w| cipher_choices().find(|n| n.as_ref() == w))
                    .collect(),
            );
        }
        if let Some(m) = &self.macs {
            preferred.mac = Cow::Owned(
                m.iter()
                    .filter_map(|w| mac_choices().find(|n| n.as_ref() == w))
                    .collect(),
            );
        }
        preferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<N: AsRef<str>>(v: &[N]) -> Vec<&str> {
        v.iter().map(|n| n.as_ref()).collect()
    }

    #[test]
    fn lists_replace_the_defaults_and_keep_strict_kex() {
        let a = ServerAlgorithms {
            kex: Some(vec![
                "mlkem768x25519-sha256".into(),
                "curve25519-sha256".into(),
            ]),
            ciphers: Some(vec!["aes256-gcm@openssh.com".into()]),
            macs: Some(vec!["hmac-sha2-256-etm@openssh.com".into()]),
        };
        assert!(a.problems().is_empty(), "{:?}", a.problems());
        let p = a.apply(russh::Preferred::default());
        assert_eq!(
            names(&p.kex),
            [
                "mlkem768x25519-sha256",
                "curve25519-sha256",
                "ext-info-s",
                "kex-strict-s-v00@openssh.com"
            ]
        );
        assert_eq!(names(&p.cipher), ["aes256-gcm@openssh.com"]);
        assert_eq!(names(&p.mac), ["hmac-sha2-256-etm@openssh.com"]);
        let d = ServerAlgorithms::default().apply(russh::Preferred::default());
        assert_eq!(names(&d.cipher)[0], "aes128-gcm@openssh.com");
        assert!(names(&d.kex).contains(&"diffie-hellman-group14-sha256"));
    }

    #[test]
    fn unknown_weak_and_empty_lists_are_refused() {
        let a = ServerAlgorithms {
            kex: Some(vec!["diffie-hellman-group1-sha1".into()]),
            ciphers: Some(vec!["aes128-cbc".into()]),
            macs: Some(vec![]),
        };
        let p = a.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].0, "server.kex_algorithms");
        assert!(p[0].1.contains("curve25519-sha256"), "{}", p[0].1);
        assert!(p[2].1.contains("at least one"), "{}", p[2].1);
    }
}
