//! `certs::parse_private_key` on any text: OpenSSH, PEM (PKCS#1, SEC1,
//! PKCS#8, encrypted or not), PuTTY .ppk v2/v3 and ssh.com SSH2.
//!
//! Input: one byte choosing the passphrase (even: none, odd: `fuzz`, the
//! passphrase of the encrypted seeds; the seeds start with `0` or `1`),
//! then the key file's bytes, read as `load_private_key_file` reads them
//! (lossy UTF-8).
//!
//! Checked: no panic, no hang (libFuzzer's -timeout), and a key that is
//! accepted is one the gateway can log in with: never DSA, and it makes a
//! signature its own public half verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use russh::keys::{Algorithm, HashAlg};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let passphrase = (choice & 1 == 1).then_some("fuzz");
    let text = String::from_utf8_lossy(rest);
    let Ok(key) = certs::parse_private_key(&text, passphrase) else {
        return;
    };
    let algorithm = key.algorithm();
    assert_ne!(algorithm, Algorithm::Dsa, "a DSA key was accepted");
    if matches!(
        algorithm,
        Algorithm::Rsa { .. } | Algorithm::Ecdsa { .. } | Algorithm::Ed25519
    ) {
        const NAMESPACE: &str = "fuzz@gateway";
        const MESSAGE: &[u8] = b"fuzz";
        let signed = key
            .sign(NAMESPACE, HashAlg::Sha256, MESSAGE)
            .and_then(|sig| key.public_key().verify(NAMESPACE, MESSAGE, &sig));
        assert!(
            signed.is_ok(),
            "accepted {algorithm} key cannot sign and verify: {signed:?}"
        );
    }
});
