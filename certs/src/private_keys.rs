//! Private keys the gateway authenticates with when it connects out to a
//! remote SFTP server. Operators bring these keys from wherever they were
//! made, so every common format is read: OpenSSH, PEM (PKCS#1, SEC1 EC,
//! PKCS#8, encrypted or not), PuTTY `.ppk` v2/v3 and the ssh.com "SSH2"
//! format. Whatever the input, the result is one [`PrivateKey`].
//!
//! A key file that cannot be used gives a [`KeyError`] that says why (wrong
//! or missing passphrase, damaged file, unsupported algorithm), never a
//! panic: the files come from outside and may be anything.

use std::io::Read;
use std::path::Path;

use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use data_encoding::{BASE64, BASE64_NOPAD, HEXUPPER_PERMISSIVE};
use pkcs8::der::Decode;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair, RsaPrivateKey};
use russh::keys::ssh_key::public::RsaPublicKey;
use russh::keys::ssh_key::{self, Mpint};
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use zeroize::Zeroizing;

use crate::CertError;

/// Why a private key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is none of the formats this module reads.
    #[error(
        "not a private key in a known format; accepted formats: \
         OpenSSH, PEM (PKCS#1, PKCS#8), PuTTY .ppk v2/v3, SSH2 (ssh.com)"
    )]
    UnknownFormat,
    /// The key is encrypted and no passphrase was given.
    #[error("the private key is encrypted: a passphrase is required")]
    PassphraseRequired,
    /// The passphrase does not decrypt the key. For formats without an
    /// integrity check (legacy PEM, SSH2) a damaged file can look the same.
    #[error("wrong passphrase for the private key")]
    WrongPassphrase,
    /// The file has a known format but its content is broken (truncated,
    /// altered, not what the header announces).
    #[error("malformed {format} private key: {reason}")]
    Malformed {
        /// The format the file claims to be.
        format: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is well formed but uses something this gateway does not
    /// support (a cipher, a key type, a public key instead of a private one).
    #[error("unsupported private key: {what}")]
    Unsupported {
        /// What is not supported, and what to do instead where there is a way.
        what: String,
    },
}

/// Largest key file [`load_private_key_file`] reads: real keys are a few
/// KiB, so anything bigger is the wrong file (and must not fill memory).
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

// The key derivation limits below are small when built by `cargo fuzz`
// (`--cfg fuzzing`), so that the fuzzer spends its time on parsing rather
// than on derivations that are slow by design.

/// Largest memory (KiB) a key derivation may ask for (Argon2 in `.ppk` v3,
/// scrypt in PKCS#8): PuTTY uses 8 MiB; a crafted header could otherwise
/// ask for terabytes and abort the process on allocation failure.
const MAX_ARGON2_MEMORY_KIB: u64 = if cfg!(fuzzing) { 8 * 1024 } else { 1024 * 1024 };

/// Largest number of Argon2 passes accepted from a `.ppk` v3 header, for
/// the same reason as [`MAX_ARGON2_MEMORY_KIB`] (time instead of memory).
const MAX_ARGON2_PASSES: u64 = if cfg!(fuzzing) { 4 } else { 10_000 };

/// Largest number of bcrypt rounds accepted from an encrypted OpenSSH key:
/// `ssh-keygen -a` defaults to 16 and 100 is common advice; a round takes
/// about 10 ms, so a damaged or crafted file could otherwise ask for years
/// (found by `fuzz/fuzz_targets/private_key.rs`).
const MAX_BCRYPT_ROUNDS: u32 = if cfg!(fuzzing) { 16 } else { 1_000 };

/// Largest PBKDF2 iteration count accepted from an encrypted PKCS#8 key
/// (OpenSSL's default is 2,048; a few seconds' work at most), for the same
/// reason as [`MAX_BCRYPT_ROUNDS`].
const MAX_PBKDF2_ITERATIONS: u32 = if cfg!(fuzzing) { 10_000 } else { 10_000_000 };

const OPENSSH: &str = "OpenSSH";
const PKCS1: &str = "PEM PKCS#1";
const SEC1: &str = "PEM EC (SEC1)";
const PKCS8: &str = "PKCS#8";
const PPK: &str = "PuTTY .ppk";
const SSHCOM: &str = "SSH2 (ssh.com)";

/// Reads a private key file in any supported format (see
/// [`parse_private_key`]), naming the file in any error.
pub fn load_private_key_file(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<PrivateKey, CertError> {
    let io = |e| CertError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let key_error = |source| CertError::Key {
        path: path.to_path_buf(),
        source,
    };
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(key_error(KeyError::Unsupported {
            what: format!("file larger than {MAX_KEY_FILE_BYTES} bytes; not a key file"),
        }));
    }
    // Key files are ASCII; anything else cannot match a format and is
    // reported as such by the parser.
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    parse_private_key(&text, passphrase).map_err(key_error)
}

/// Decodes a private key from its text, detecting the format:
///
/// - OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----`), encrypted or not;
/// - PEM PKCS#1 (`BEGIN RSA PRIVATE KEY`) and SEC1 (`BEGIN EC PRIVATE KEY`),
///   unencrypted or with OpenSSL's legacy encryption (AES-128/192/256-CBC,
///   DES-EDE3-CBC);
/// - PKCS#8 (`BEGIN PRIVATE KEY`, `BEGIN ENCRYPTED PRIVATE KEY` with PBES2:
///   PBKDF2 or scrypt, AES-CBC or DES-EDE3-CBC);
/// - PuTTY `.ppk` versions 2 and 3, encrypted or not;
/// - ssh.com SSH2 (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`), RSA only,
///   cipher `none` or `3des-cbc`.
///
/// `passphrase` is used only if the key is encrypted. DSA keys are refused
/// whatever the format: OpenSSH has disabled them and the SSH client here
/// cannot sign with them.
pub fn parse_private_key(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = Zeroizing::new(text.replace("\r\n", "\n"));
    let key = parse_detected(&text, passphrase)?;
    if key.algorithm() == Algorithm::Dsa {
        return Err(dsa_unsupported());
    }
    Ok(key)
}

/// Finds the first line that starts a known format and decodes from there
/// (leading text, such as OpenSSL's "Bag Attributes", is skipped).
fn parse_detected(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let line = raw.trim();
        let rest = &text[start..];
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            match label {
                "OPENSSH PRIVATE KEY"
                | "RSA PRIVATE KEY"
                | "EC PRIVATE KEY"
                | "PRIVATE KEY"
                | "ENCRYPTED PRIVATE KEY" => return parse_pem(rest, passphrase),
                "DSA PRIVATE KEY" => return Err(dsa_unsupported()),
                "PUBLIC KEY" | "RSA PUBLIC KEY" | "SSH2 PUBLIC KEY" => {
                    return Err(public_key_given())
                }
                // Certificates and the like: a bundle may hold the key further down.
                _ => continue,
            }
        }
        if line.starts_with("PuTTY-User-Key-File-") {
            return parse_ppk(rest, passphrase);
        }
        if line == SSHCOM_BEGIN {
            return parse_sshcom(rest, passphrase);
        }
        if line == "---- BEGIN SSH2 PUBLIC KEY ----" {
            return Err(public_key_given());
        }
        if line.starts_with("SSH PRIVATE KEY FILE FORMAT 1.1") {
            return Err(KeyError::Unsupported {
                what: "SSH-1 (protocol version 1) key; make a new SSH-2 key".into(),
            });
        }
        if is_openssh_public_line(line) {
            return Err(public_key_given());
        }
    }
    Err(KeyError::UnknownFormat)
}

/// Whether a line looks like `ssh-rsa AAAA... comment` (an authorized_keys
/// or `.pub` line), given by mistake instead of the private key.
fn is_openssh_public_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return false;
    };
    (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && blob.starts_with("AAAA")
}

fn public_key_given() -> KeyError {
    KeyError::Unsupported {
        what: "this is a public key; the private key file is needed".into(),
    }
}

fn dsa_unsupported() -> KeyError {
    KeyError::Unsupported {
        what: "DSA keys (obsolete, disabled by OpenSSH); use an RSA, ECDSA or Ed25519 key".into(),
    }
}

fn malformed(format: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        format,
        reason: reason.into(),
    }
}

/// Decodes base64 split over lines, with or without `=` padding.
fn decode_base64(format: &'static str, body: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let compact: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    BASE64
        .decode(compact.as_bytes())
        .or_else(|_| BASE64_NOPAD.decode(compact.trim_end_matches('=').as_bytes()))
        .map(Zeroizing::new)
        .map_err(|e| malformed(format, format!("bad base64 body: {e}")))
}

// ---------------------------------------------------------------------------
// PEM: OpenSSH, PKCS#1, SEC1, PKCS#8

/// One PEM block: its label, its RFC 1421 headers and its decoded body.
struct Pem {
    label: String,
    headers: Vec<(String, String)>,
    der: Zeroizing<Vec<u8>>,
}

impl Pem {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits the PEM block at the start of `text` (which begins with its
/// BEGIN line) into label, headers and body.
fn read_pem(text: &str) -> Result<Pem, KeyError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .unwrap_or_default()
        .to_string();
    let format = pem_format(&label);
    let end = format!("-----END {label}-----");
    let mut headers = Vec::new();
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(malformed(format, format!("unexpected line {line:?}")));
        }
        if let Some((name, value)) = line.split_once(':') {
            if !body.is_empty() {
                return Err(malformed(format, "header line inside the base64 body"));
            }
            headers.push((name.trim().to_string(), value.trim().to_string()));
            continue;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(malformed(
            format,
            format!("no {end:?} line (file truncated?)"),
        ));
    }
    let der = decode_base64(format, &body)?;
    if der.is_empty() {
        return Err(malformed(format, "empty body"));
    }
    Ok(Pem {
        label,
        headers,
        der,
    })
}

/// The format name used in errors for a PEM label.
fn pem_format(label: &str) -> &'static str {
    match label {
        "OPENSSH PRIVATE KEY" => OPENSSH,
        "RSA PRIVATE KEY" => PKCS1,
        "EC PRIVATE KEY" => SEC1,
        _ => PKCS8,
    }
}

fn parse_pem(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let pem = read_pem(text)?;
    let format = pem_format(&pem.label);
    let key = match pem.label.as_str() {
        "OPENSSH PRIVATE KEY" => parse_openssh(&pem.der, passphrase),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
            let encrypted = pem
                .header("Proc-Type")
                .is_some_and(|v| v.to_ascii_uppercase().contains("ENCRYPTED"));
            if !encrypted {
                decode_clean_pem(&pem.label, &pem.der).map_err(|e| malformed(format, e.to_string()))
            } else {
                let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let der = decrypt_legacy_pem(format, pem.header("DEK-Info"), &pem.der, passphrase)?;
                // No integrity check in this format: a wrong key that happens to
                // leave valid padding gives garbage that fails to decode.
                decode_clean_pem(&pem.label, &der).map_err(|_| KeyError::WrongPassphrase)
            }
        }
        "PRIVATE KEY" => {
            decode_clean_pem("PRIVATE KEY", &pem.der).map_err(|e| malformed(PKCS8, e.to_string()))
        }
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
            let der = decrypt_pkcs8(&pem.der, passphrase)?;
            decode_clean_pem("PRIVATE KEY", &der).map_err(|e| malformed(PKCS8, e.to_string()))
        }
        other => Err(malformed(format, format!("unexpected PEM label {other:?}"))),
    }?;
    halves_match(format, key)
}

/// Refuses a key whose public half is not the one of its private half:
/// some formats store both with nothing tying them together (OpenSSH's
/// private section is checked only by its check integers, so a damaged
/// scalar still decodes), and every server would refuse the key at login.
/// Found by `fuzz/fuzz_targets/private_key.rs`.
fn halves_match(format: &'static str, key: PrivateKey) -> Result<PrivateKey, KeyError> {
    let can_sign = matches!(
        key.algorithm(),
        Algorithm::Rsa { .. } | Algorithm::Ecdsa { .. } | Algorithm::Ed25519
    );
    if can_sign && !signs_and_verifies(&key) {
        return Err(malformed(
            format,
            "the public key does not match the private key (damaged file?)",
        ));
    }
    Ok(key)
}

/// Decodes the binary OpenSSH key format, decrypting it if needed.
fn parse_openssh(der: &[u8], passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let key = PrivateKey::from_bytes(der).map_err(|e| ssh_key_error(OPENSSH, e))?;
    if !key.is_encrypted() {
        return Ok(key);
    }
    let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
    if let ssh_key::Kdf::Bcrypt { rounds, .. } = key.kdf() {
        if *rounds > MAX_BCRYPT_ROUNDS {
            return Err(KeyError::Unsupported {
                what: format!(
                    "OpenSSH key encrypted with {rounds} bcrypt rounds (more than \
                     {MAX_BCRYPT_ROUNDS}); re-encrypt it with `ssh-keygen -p -a 100 -f FILE`"
                ),
            });
        }
    }
    key.decrypt(passphrase).map_err(|e| match e {
        // Check integers (or the AEAD tag) do not match: wrong key.
        ssh_key::Error::Crypto => KeyError::WrongPassphrase,
        other => ssh_key_error(OPENSSH, other),
    })
}

/// Maps an ssh-key error to ours: algorithms it does not know are
/// "unsupported", anything else means the data is broken.
fn ssh_key_error(format: &'static str, e: ssh_key::Error) -> KeyError {
    match e {
        ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. } => {
            KeyError::Unsupported {
                what: format!("{format} key: {e}"),
            }
        }
        other => malformed(format, other.to_string()),
    }
}

/// Decodes unencrypted DER of a PEM label through russh's decoder (which
/// knows PKCS#1, SEC1 and PKCS#8 with RSA, ECDSA and Ed25519 keys), by
/// handing it a clean PEM block with no headers.
fn decode_clean_pem(label: &str, der: &[u8]) -> Result<PrivateKey, russh::keys::Error> {
    let body = Zeroizing::new(BASE64.encode(der));
    let mut pem = Zeroizing::new(String::with_capacity(body.len() + 100));
    pem.push_str(&format!("-----BEGIN {label}-----\n"));
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    russh::keys::decode_secret_key(&pem, None)
}

/// The ciphers of OpenSSL's legacy PEM encryption that this module
/// decrypts, all in CBC mode.
#[derive(Clone, Copy)]
enum LegacyCipher {
    Aes128,
    Aes192,
    Aes256,
    DesEde3,
}

/// Decrypts a PEM body encrypted the OpenSSL "traditional" way: the
/// `DEK-Info: CIPHER,IV` header, key = EVP_BytesToKey(MD5, salt = IV[..8]).
fn decrypt_legacy_pem(
    format: &'static str,
    dek_info: Option<&str>,
    data: &[u8],
    passphrase: &str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let dek_info = dek_info.ok_or_else(|| malformed(format, "encrypted but no DEK-Info header"))?;
    let (name, iv_hex) = dek_info
        .split_once(',')
        .ok_or_else(|| malformed(format, format!("bad DEK-Info header {dek_info:?}")))?;
    let name = name.trim().to_ascii_uppercase();
    let (cipher, key_len, block) = match name.as_str() {
        "AES-128-CBC" => (LegacyCipher::Aes128, 16, 16),
        "AES-192-CBC" => (LegacyCipher::Aes192, 24, 16),
        "AES-256-CBC" => (LegacyCipher::Aes256, 32, 16),
        "DES-EDE3-CBC" => (LegacyCipher::DesEde3, 24, 8),
        _ => {
            return Err(KeyError::Unsupported {
                what: format!(
                    "PEM encryption {name}; re-encrypt the key with `ssh-keygen -p -f FILE`"
                ),
            })
        }
    };
    let iv = HEXUPPER_PERMISSIVE
        .decode(iv_hex.trim().as_bytes())
        .map_err(|e| malformed(format, format!("bad DEK-Info IV: {e}")))?;
    if iv.len() != block {
        return Err(malformed(format, "DEK-Info IV has the wrong length"));
    }
    if !data.chunks_exact(block).remainder().is_empty() {
        return Err(malformed(
            format,
            "encrypted body is not a whole number of cipher blocks",
        ));
    }
    let key = evp_bytes_to_key(passphrase.as_bytes(), &iv[..8], key_len);
    let mut buf = Zeroizing::new(data.to_vec());
    let bad_len = |_| malformed(format, "bad cipher key or IV length");
    let plain_len = match cipher {
        LegacyCipher::Aes128 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(bad_len)?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map(<[u8]>::len),
        LegacyCipher::Aes192 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(bad_len)?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map(<[u8]>::len),
        LegacyCipher::Aes256 => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(bad_len)?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map(<[u8]>::len),
        LegacyCipher::DesEde3 => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(bad_len)?
            .decrypt_padded::<Pkcs7>(&mut buf)
            .map(<[u8]>::len),
    }
    // Bad padding after decryption: the key (passphrase) is wrong.
    .map_err(|_| KeyError::WrongPassphrase)?;
    buf.truncate(plain_len);
    Ok(buf)
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration:
/// D1 = MD5(pass || salt), Di = MD5(Di-1 || pass || salt), key = D1 || D2 ...
fn evp_bytes_to_key(passphrase: &[u8], salt: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut previous: Option<[u8; 16]> = None;
    while key.len() < len {
        let mut md5 = md5::Context::new();
        if let Some(previous) = previous {
            md5.consume(previous);
        }
        md5.consume(passphrase);
        md5.consume(salt);
        let digest = md5.finalize().0;
        key.extend_from_slice(&digest);
        previous = Some(digest);
    }
    key.truncate(len);
    key
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` into the DER of the plain
/// `PrivateKeyInfo`.
fn decrypt_pkcs8(der: &[u8], passphrase: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    const FORMAT: &str = "encrypted PKCS#8";
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| malformed(FORMAT, e.to_string()))?;
    if let pkcs5::EncryptionScheme::Pbes2(params) = &info.encryption_algorithm {
        match &params.kdf {
            pkcs5::pbes2::Kdf::Scrypt(scrypt) => check_scrypt(
                scrypt.cost_parameter,
                scrypt.block_size,
                scrypt.parallelization,
            )?,
            pkcs5::pbes2::Kdf::Pbkdf2(pbkdf2) if pbkdf2.iteration_count > MAX_PBKDF2_ITERATIONS => {
                return Err(KeyError::Unsupported {
                    what: format!(
                        "PKCS#8 key encrypted with {} PBKDF2 iterations (more than \
                         {MAX_PBKDF2_ITERATIONS}); re-encrypt it with `ssh-keygen -p -f FILE`",
                        pbkdf2.iteration_count
                    ),
                });
            }
            _ => {}
        }
    }
    let doc = info.decrypt(passphrase).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed) => KeyError::WrongPassphrase,
        // Decrypted with valid padding by chance, but not DER: wrong key.
        pkcs8::Error::Asn1(_) => KeyError::WrongPassphrase,
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::UnsupportedAlgorithm { oid }) => {
            KeyError::Unsupported {
                what: format!(
                    "PKCS#8 encryption algorithm {oid}; re-encrypt the key with \
                     `ssh-keygen -p -f FILE`"
                ),
            }
        }
        pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::NoPbes1CryptSupport) => {
            KeyError::Unsupported {
                what: "PKCS#8 with PBES1 encryption; re-encrypt the key with \
                       `ssh-keygen -p -f FILE`"
                    .into(),
            }
        }
        other => malformed(FORMAT, other.to_string()),
    })?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// Checks scrypt parameters from a PKCS#8 file before they are used: the
/// pkcs5 crate panics on N = 0, and a crafted N or r could ask for more
/// memory than the machine has (aborting the process).
fn check_scrypt(n: u64, r: u16, p: u16) -> Result<(), KeyError> {
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err(malformed(
            "encrypted PKCS#8",
            "invalid scrypt parameters (N must be a power of two, r and p non-zero)",
        ));
    }
    let memory = n.saturating_mul(u64::from(r)).saturating_mul(128);
    if memory > MAX_ARGON2_MEMORY_KIB * 1024 {
        return Err(KeyError::Unsupported {
            what: format!("PKCS#8 scrypt parameters needing {memory} bytes of memory"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// PuTTY .ppk

/// Decodes a PuTTY `.ppk` v2/v3 file through ssh-key, after checking the
/// headers here so that errors are precise and a crafted Argon2 header
/// cannot ask for unbounded memory or time.
fn parse_ppk(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().trim();
    let version = header
        .strip_prefix("PuTTY-User-Key-File-")
        .and_then(|rest| rest.split_once(':'))
        .map(|(v, _)| v.trim())
        .ok_or_else(|| malformed(PPK, format!("bad first line {header:?}")))?;
    if version != "2" && version != "3" {
        return Err(KeyError::Unsupported {
            what: format!("PuTTY .ppk version {version}; only versions 2 and 3 are read"),
        });
    }
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    };
    let encryption = value("Encryption").unwrap_or("none");
    let encrypted = match encryption {
        "none" => false,
        "aes256-cbc" => true,
        other => {
            return Err(KeyError::Unsupported {
                what: format!("PuTTY .ppk encryption {other:?}"),
            })
        }
    };
    if encrypted && passphrase.is_none() {
        return Err(KeyError::PassphraseRequired);
    }
    if encrypted && version == "3" {
        match value("Key-Derivation") {
            Some("Argon2i" | "Argon2d" | "Argon2id") => {}
            Some(other) => {
                return Err(KeyError::Unsupported {
                    what: format!("PuTTY .ppk key derivation {other:?}"),
                })
            }
            None => return Err(malformed(PPK, "encrypted v3 file without Key-Derivation")),
        }
        for (name, max) in [
            ("Argon2-Memory", MAX_ARGON2_MEMORY_KIB),
            ("Argon2-Passes", MAX_ARGON2_PASSES),
            ("Argon2-Parallelism", 255),
        ] {
            let n: u64 = value(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| malformed(PPK, format!("missing or bad {name}")))?;
            if n > max {
                return Err(KeyError::Unsupported {
                    what: format!("PuTTY .ppk {name} {n} (more than {max})"),
                });
            }
        }
    }
    let key = PrivateKey::from_ppk(text, passphrase.map(str::to_owned)).map_err(|e| match e {
        ssh_key::Error::Ppk(ref inner) if format!("{inner:?}") == "IncorrectMac" => {
            if encrypted {
                KeyError::WrongPassphrase
            } else {
                malformed(PPK, "MAC check failed: the file was altered or damaged")
            }
        }
        other => ssh_key_error(PPK, other),
    })?;
    halves_match(PPK, key)
}

// ---------------------------------------------------------------------------
// ssh.com SSH2

const SSHCOM_BEGIN: &str = "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----";
const SSHCOM_END: &str = "---- END SSH2 ENCRYPTED PRIVATE KEY ----";
/// First four bytes of an ssh.com private key blob.
const SSHCOM_MAGIC: u32 = 0x3f6f_f9eb;

/// Decodes an ssh.com "SSH2" private key, as described in PuTTY's
/// import.c:
///
/// ```text
/// uint32 0x3f6ff9eb, uint32 total blob size,
/// string key type, string cipher ("none" or "3des-cbc"),
/// string encrypted blob = { string payload, padding }
/// RSA payload: mpint e, d, n, u, p, q  (mpint = uint32 bit count, bytes)
/// ```
///
/// 3DES key: MD5(pass) || MD5(pass || MD5(pass)), first 24 bytes, zero IV.
fn parse_sshcom(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let (comment, blob) = read_sshcom_armour(text)?;
    let mut r = Reader::new(&blob);
    if r.u32()? != SSHCOM_MAGIC {
        return Err(malformed(SSHCOM, "bad magic number"));
    }
    let total = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    if total < 8 || total > blob.len() {
        return Err(malformed(SSHCOM, "blob size does not match its length"));
    }
    let mut r = Reader::new(&blob[8..total]);
    let key_type = String::from_utf8_lossy(r.string()?).into_owned();
    let cipher = String::from_utf8_lossy(r.string()?).into_owned();
    let data = r.string()?;
    if key_type.starts_with("dl-modp{sign{dsa") {
        return Err(dsa_unsupported());
    }
    if !key_type.starts_with("if-modn{sign{rsa") {
        return Err(KeyError::Unsupported {
            what: format!("{SSHCOM} key type {key_type:?}"),
        });
    }
    let encrypted = match cipher.as_str() {
        "none" => false,
        "3des-cbc" => true,
        other => {
            return Err(KeyError::Unsupported {
                what: format!("{SSHCOM} cipher {other:?}; only none and 3des-cbc are read"),
            })
        }
    };
    let plain = if encrypted {
        let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
        if !data.chunks_exact(8).remainder().is_empty() {
            return Err(malformed(
                SSHCOM,
                "encrypted blob is not a whole number of 3DES blocks",
            ));
        }
        let key = sshcom_3des_key(passphrase.as_bytes());
        let mut buf = Zeroizing::new(data.to_vec());
        cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key[..24], &[0u8; 8])
            .map_err(|_| malformed(SSHCOM, "bad 3DES key length"))?
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| malformed(SSHCOM, "bad 3DES block length"))?;
        buf
    } else {
        Zeroizing::new(data.to_vec())
    };
    // No MAC in this format: a length that does not fit, numbers that do
    // not make an RSA key, or a failed test signature after decryption mean
    // the passphrase is wrong.
    let broken = |reason: &str| {
        if encrypted {
            KeyError::WrongPassphrase
        } else {
            malformed(SSHCOM, reason)
        }
    };
    let payload = Reader::new(&plain)
        .string()
        .map_err(|_| broken("payload length exceeds the blob"))?;
    let key = sshcom_rsa(payload, comment).map_err(|e| match e {
        KeyError::Malformed { reason, .. } => broken(&reason),
        other => other,
    })?;
    if !signs_and_verifies(&key) {
        return Err(broken("the RSA numbers do not form a working key pair"));
    }
    Ok(key)
}

/// Splits the text armour: returns the `Comment` header (unquoted) and the
/// decoded base64 blob. Header lines ending with `\` continue on the next line.
fn read_sshcom_armour(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let mut lines = text.lines().map(str::trim_end);
    if lines.next().map(str::trim) != Some(SSHCOM_BEGIN) {
        return Err(malformed(SSHCOM, "missing BEGIN line"));
    }
    let mut comment = String::new();
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if line == SSHCOM_END {
            ended = true;
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if !body.is_empty() {
                return Err(malformed(SSHCOM, "header line inside the base64 body"));
            }
            let mut value = value.trim_start().to_string();
            while let Some(stripped) = value.strip_suffix('\\') {
                let next = lines
                    .next()
                    .ok_or_else(|| malformed(SSHCOM, "continued header at end of file"))?;
                value = format!("{stripped}{next}");
            }
            if name.trim().eq_ignore_ascii_case("Comment") {
                let v = value.trim();
                comment = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_string();
            }
            continue;
        }
        body.push_str(line.trim());
    }
    if !ended {
        return Err(malformed(
            SSHCOM,
            format!("no {SSHCOM_END:?} line (file truncated?)"),
        ));
    }
    let blob = decode_base64(SSHCOM, &body)?;
    Ok((comment, blob))
}

/// The ssh.com 3DES key: MD5(pass) || MD5(pass || MD5(pass)) (32 bytes, of
/// which the cipher takes the first 24).
fn sshcom_3des_key(passphrase: &[u8]) -> Zeroizing<[u8; 32]> {
    let first = md5::compute(passphrase).0;
    let mut md5 = md5::Context::new();
    md5.consume(passphrase);
    md5.consume(first);
    let second = md5.finalize().0;
    let mut key = Zeroizing::new([0u8; 32]);
    key[..16].copy_from_slice(&first);
    key[16..].copy_from_slice(&second);
    key
}

/// Builds the RSA key from the ssh.com payload `e, d, n, u, p, q`, where
/// u = p⁻¹ mod q. OpenSSH's order is the other way round (iqmp = q⁻¹ mod p),
/// so ssh.com's p and q swap places.
fn sshcom_rsa(payload: &[u8], comment: String) -> Result<PrivateKey, KeyError> {
    let mut r = Reader::new(payload);
    let e = r.sshcom_mpint()?;
    let d = r.sshcom_mpint()?;
    let n = r.sshcom_mpint()?;
    let u = r.sshcom_mpint()?;
    let p = r.sshcom_mpint()?;
    let q = r.sshcom_mpint()?;
    for (name, value) in [
        ("e", &e),
        ("d", &d),
        ("n", &n),
        ("u", &u),
        ("p", &p),
        ("q", &q),
    ] {
        if value.iter().all(|&b| b == 0) {
            return Err(malformed(SSHCOM, format!("RSA {name} is zero")));
        }
    }
    for (name, value) in [("n", &n), ("p", &p), ("q", &q), ("e", &e)] {
        if value.last().is_some_and(|b| b & 1 == 0) {
            return Err(malformed(SSHCOM, format!("RSA {name} is even")));
        }
    }
    let mpint = Mpint::from_positive_bytes;
    let public = RsaPublicKey::new(mpint(e), mpint(n))
        .map_err(|err| malformed(SSHCOM, format!("RSA public key: {err}")))?;
    let private = RsaPrivateKey::new(mpint(d), mpint(u), mpint(q), mpint(p))
        .map_err(|err| malformed(SSHCOM, format!("RSA private key: {err}")))?;
    let keypair = RsaKeypair::new(public, private)
        .map_err(|err| malformed(SSHCOM, format!("RSA key pair: {err}")))?;
    PrivateKey::new(KeypairData::Rsa(keypair), comment)
        .map_err(|err| malformed(SSHCOM, format!("RSA key pair: {err}")))
}

/// Whether the key signs a test message that its public half verifies:
/// the one integrity check for formats that have none of their own.
fn signs_and_verifies(key: &PrivateKey) -> bool {
    const NAMESPACE: &str = "key-check@certs";
    const MESSAGE: &[u8] = b"private key consistency check";
    key.sign(NAMESPACE, HashAlg::Sha256, MESSAGE)
        .and_then(|sig| key.public_key().verify(NAMESPACE, MESSAGE, &sig))
        .is_ok()
}

/// Bounds-checked reader of SSH wire-format fields.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyError> {
        if n > self.data.len() {
            return Err(malformed(SSHCOM, "data ends early (file truncated?)"));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, KeyError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], KeyError> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        self.take(len)
    }

    /// ssh.com's mpint: a uint32 bit count, then (bits + 7) / 8 bytes.
    fn sshcom_mpint(&mut self) -> Result<&'a [u8], KeyError> {
        let bits = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        self.take(bits.div_ceil(8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // Expected values from
        // `openssl enc -des-ede3-cbc -md md5 -P -k password -S 0102030405060708`.
        let key = evp_bytes_to_key(b"password", &[1, 2, 3, 4, 5, 6, 7, 8], 24);
        assert_eq!(
            HEXUPPER_PERMISSIVE.encode(&key),
            "E7B0971E52CA5CC8D0539FB3412F6316F7BA2E6EE293D9F3"
        );
        let key = evp_bytes_to_key(b"password", &[1, 2, 3, 4, 5, 6, 7, 8], 16);
        assert_eq!(
            HEXUPPER_PERMISSIVE.encode(&key),
            "E7B0971E52CA5CC8D0539FB3412F6316"
        );
    }

    #[test]
    fn scrypt_parameters_are_checked_before_use() {
        assert!(check_scrypt(16384, 8, 1).is_ok());
        for (n, r, p) in [
            (0, 8, 1),
            (1, 8, 1),
            (1000, 8, 1),
            (16384, 0, 1),
            (16384, 8, 0),
        ] {
            assert!(
                matches!(check_scrypt(n, r, p), Err(KeyError::Malformed { .. })),
                "{n} {r} {p}"
            );
        }
        assert!(matches!(
            check_scrypt(1 << 40, 8, 1),
            Err(KeyError::Unsupported { .. })
        ));
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(r.string().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.sshcom_mpint().is_err());
        let mut r = Reader::new(&[0, 0]);
        assert!(r.u32().is_err());
    }

    #[test]
    fn public_key_lines_are_recognised() {
        let err = parse_private_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 x\n", None).unwrap_err();
        assert!(err.to_string().contains("public key"), "{err}");
        let err = parse_private_key(
            "---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("public key"), "{err}");
    }
}
