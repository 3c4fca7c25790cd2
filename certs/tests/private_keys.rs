//! Private-key import against real keys made by ssh-keygen, puttygen and
//! openssl (see tests/data/README.md), and against damaged copies of them.

use std::path::PathBuf;

use certs::{load_private_key_file, parse_private_key, CertError, KeyError};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

const PASS: &str = "test-passphrase";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

/// Every private-key fixture: file, matching `.pub`, passphrase if encrypted.
const FIXTURES: &[(&str, &str, Option<&str>)] = &[
    ("test_ed25519_openssh", "test_ed25519_openssh.pub", None),
    (
        "test_ed25519_openssh_encrypted",
        "test_ed25519_openssh_encrypted.pub",
        Some(PASS),
    ),
    ("test_rsa_openssh", "test_rsa_openssh.pub", None),
    ("test_rsa_pkcs1.pem", "test_rsa_openssh.pub", None),
    (
        "test_rsa_pkcs1_encrypted.pem",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    (
        "test_rsa_pkcs1_3des.pem",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    (
        "test_rsa_pkcs1_aes256.pem",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    ("test_rsa_pkcs8.pem", "test_rsa_openssh.pub", None),
    (
        "test_rsa_pkcs8_encrypted.pem",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    (
        "test_rsa_pkcs8_3des_sha1.pem",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    ("test_ecdsa_sec1.pem", "test_ecdsa_sec1.pem.pub", None),
    (
        "test_ecdsa_sec1_encrypted.pem",
        "test_ecdsa_sec1.pem.pub",
        Some(PASS),
    ),
    ("test_rsa_v2.ppk", "test_rsa_openssh.pub", None),
    ("test_rsa_v3.ppk", "test_rsa_openssh.pub", None),
    (
        "test_rsa_v2_encrypted.ppk",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    (
        "test_rsa_v3_encrypted.ppk",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    ("test_ed25519_v2.ppk", "test_ed25519_openssh.pub", None),
    ("test_ed25519_v3.ppk", "test_ed25519_openssh.pub", None),
    (
        "test_ed25519_v2_encrypted.ppk",
        "test_ed25519_openssh.pub",
        Some(PASS),
    ),
    (
        "test_ed25519_v3_encrypted.ppk",
        "test_ed25519_openssh.pub",
        Some(PASS),
    ),
    ("test_rsa_sshcom", "test_rsa_openssh.pub", None),
    (
        "test_rsa_sshcom_encrypted",
        "test_rsa_openssh.pub",
        Some(PASS),
    ),
    ("test_rsa_sshcom_long_comment", "test_rsa_openssh.pub", None),
];

fn encrypted() -> impl Iterator<Item = &'static str> {
    FIXTURES
        .iter()
        .filter(|(_, _, pass)| pass.is_some())
        .map(|(name, _, _)| *name)
}

fn sign_and_verify(key: &PrivateKey) {
    let sig = key.sign("test", HashAlg::Sha256, b"message").unwrap();
    key.public_key().verify("test", b"message", &sig).unwrap();
}

#[test]
fn every_fixture_parses_to_the_public_key_of_its_pub_file() {
    for (name, pub_name, pass) in FIXTURES {
        let key =
            load_private_key_file(&data(name), *pass).unwrap_or_else(|e| panic!("{name}: {e}"));
        let public = PublicKey::read_openssh_file(data(pub_name)).unwrap();
        assert_eq!(
            key.public_key().key_data(),
            public.key_data(),
            "{name} vs {pub_name}"
        );
        assert!(!key.is_encrypted(), "{name}");
        sign_and_verify(&key);
    }
}

#[test]
fn every_rsa_format_gives_the_same_private_numbers() {
    // Catches mixed-up p/q/iqmp (ssh.com and OpenSSH order them differently):
    // the private halves must be identical, not only the public ones.
    let reference = parse_private_key(&read("test_rsa_openssh"), None).unwrap();
    for (name, pub_name, pass) in FIXTURES {
        if *pub_name != "test_rsa_openssh.pub" {
            continue;
        }
        let key = parse_private_key(&read(name), *pass).unwrap();
        assert_eq!(key.key_data(), reference.key_data(), "{name}");
    }
    let ed = parse_private_key(&read("test_ed25519_openssh"), None).unwrap();
    for name in ["test_ed25519_v2_encrypted.ppk", "test_ed25519_v3.ppk"] {
        let key = parse_private_key(&read(name), Some(PASS)).unwrap();
        assert_eq!(key.key_data(), ed.key_data(), "{name}");
    }
}

#[test]
fn comments_are_kept() {
    let cases = [
        ("test_rsa_openssh", "certs test key rsa"),
        ("test_rsa_v3.ppk", "certs test key rsa"),
        ("test_rsa_v2_encrypted.ppk", "certs test key rsa"),
        ("test_rsa_sshcom", "certs test key rsa"),
        ("test_rsa_sshcom_encrypted", "certs test key rsa"),
        (
            "test_rsa_sshcom_long_comment",
            "certs test key rsa with a very long comment that needs more than one \
             header line to fit",
        ),
    ];
    for (name, comment) in cases {
        let key = parse_private_key(&read(name), Some(PASS)).unwrap();
        assert_eq!(key.comment().as_str_lossy(), comment, "{name}");
    }
}

#[test]
fn algorithms_are_as_expected() {
    let algo = |name: &str| {
        parse_private_key(&read(name), Some(PASS))
            .unwrap()
            .algorithm()
    };
    assert_eq!(algo("test_ed25519_v3.ppk"), Algorithm::Ed25519);
    assert_eq!(algo("test_rsa_sshcom"), Algorithm::Rsa { hash: None });
    assert!(matches!(
        algo("test_ecdsa_sec1.pem"),
        Algorithm::Ecdsa { .. }
    ));
}

#[test]
fn a_passphrase_given_for_a_plain_key_is_ignored() {
    for name in [
        "test_rsa_openssh",
        "test_rsa_pkcs8.pem",
        "test_rsa_v3.ppk",
        "test_rsa_sshcom",
    ] {
        parse_private_key(&read(name), Some("unused")).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn missing_passphrase_is_reported() {
    for name in encrypted() {
        let err = parse_private_key(&read(name), None).unwrap_err();
        assert!(
            matches!(err, KeyError::PassphraseRequired),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn wrong_passphrase_is_an_error_not_a_panic() {
    for name in encrypted() {
        for wrong in ["wrong", "", "test-passphrasE"] {
            let err = parse_private_key(&read(name), Some(wrong)).unwrap_err();
            assert!(
                matches!(err, KeyError::WrongPassphrase),
                "{name} with {wrong:?}: {err:?}"
            );
        }
    }
}

#[test]
fn garbage_is_an_unknown_format_naming_the_accepted_ones() {
    for text in [
        "",
        "hello",
        "\n\n\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "\u{0}\u{1}\u{2}binary",
    ] {
        let err = parse_private_key(text, None).unwrap_err();
        assert!(matches!(err, KeyError::UnknownFormat), "{text:?}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("OpenSSH, PEM (PKCS#1, PKCS#8), PuTTY .ppk v2/v3, SSH2 (ssh.com)"),
            "{msg}"
        );
    }
}

#[test]
fn public_keys_and_dsa_are_refused_clearly() {
    let err = parse_private_key(&read("test_rsa_openssh.pub"), None).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("public key"), "{err}");

    let err = parse_private_key(&read("test_dsa_sshcom"), None).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("DSA"), "{err}");

    let pem = "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n";
    assert!(parse_private_key(pem, None)
        .unwrap_err()
        .to_string()
        .contains("DSA"));
}

#[test]
fn unsupported_legacy_pem_cipher_is_named() {
    let text = read("test_rsa_pkcs1_3des.pem").replace("DES-EDE3-CBC", "DES-CBC");
    let err = parse_private_key(&text, Some(PASS)).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("DES-CBC"), "{err}");
}

#[test]
fn crlf_line_ends_and_leading_text_are_accepted() {
    for (name, _, pass) in FIXTURES {
        let text =
            format!("Bag Attributes\n    localKeyID: 01\n{}", read(name)).replace('\n', "\r\n");
        parse_private_key(&text, *pass).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn truncated_inputs_give_errors() {
    for (name, _, pass) in FIXTURES {
        let text = read(name);
        let encrypted = pass.is_some();
        // Encrypted files cost a key derivation per attempt: fewer cuts.
        let step = if encrypted { 97 } else { 13 };
        let mut cuts: Vec<usize> = (0..text.len().saturating_sub(1)).step_by(step).collect();
        cuts.extend([text.len() - 2, text.len() / 2]);
        for cut in cuts {
            let result = parse_private_key(&text[..cut], *pass);
            assert!(result.is_err(), "{name} cut at {cut} parsed");
        }
    }
}

#[test]
fn garbled_inputs_never_panic() {
    for (name, _, pass) in FIXTURES {
        let text = read(name);
        let step = if pass.is_some() { 89 } else { 7 };
        for at in (0..text.len()).step_by(step) {
            for replacement in [b'A', b'/', b'\n', b'#'] {
                let mut bytes = text.clone().into_bytes();
                if bytes[at] == replacement {
                    continue;
                }
                bytes[at] = replacement;
                let garbled = String::from_utf8(bytes).unwrap();
                // Either outcome is fine; what matters is no panic.
                let _ = parse_private_key(&garbled, *pass);
            }
        }
    }
}

#[test]
fn ssh2_blob_fields_are_bounds_checked() {
    // Hand-made SSH2 blobs with lying sizes, each must give an error.
    use data_encoding::BASE64;
    fn armour(blob: &[u8]) -> String {
        format!(
            "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"x\"\n{}\n\
             ---- END SSH2 ENCRYPTED PRIVATE KEY ----\n",
            BASE64.encode(blob)
        )
    }
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    let kind = b"if-modn{sign{rsa-pkcs1-sha1},encrypt{rsa-pkcs1v2-oaep}}";
    let build = |total: Option<u32>, cipher: &[u8], payload: &[u8]| {
        let mut body = Vec::new();
        string(&mut body, kind);
        string(&mut body, cipher);
        string(&mut body, payload);
        let mut blob = 0x3f6f_f9ebu32.to_be_bytes().to_vec();
        let len = total.unwrap_or(body.len() as u32 + 8);
        blob.extend_from_slice(&len.to_be_bytes());
        blob.extend_from_slice(&body);
        armour(&blob)
    };
    let mut inner = Vec::new();
    string(&mut inner, &[0, 0, 0, 64, 1]); // mpint claims 64 bits, has 1 byte
    let cases = [
        build(Some(u32::MAX), b"none", &inner),
        build(Some(3), b"none", &inner),
        build(None, b"none", &[0xff, 0xff, 0xff, 0xff]),
        build(None, b"none", &inner),
        build(None, b"aes128-cbc", &inner),
        build(None, b"3des-cbc", &[1, 2, 3]),
    ];
    for (i, text) in cases.iter().enumerate() {
        let err = parse_private_key(text, Some(PASS)).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Malformed { .. } | KeyError::Unsupported { .. }
            ),
            "case {i}: {err:?}"
        );
    }
}

#[test]
fn bad_scrypt_parameters_are_refused_before_use() {
    use data_encoding::BASE64;
    let text = read("test_rsa_pkcs8_scrypt.pem");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = BASE64.decode(body.as_bytes()).unwrap();
    // The scrypt cost N is the INTEGER 0x4000 at offset 44 (`openssl asn1parse`).
    assert_eq!(der[44..48], [0x02, 0x02, 0x40, 0x00]);
    der[46] = 0x30; // N = 0x3000: not a power of two
    let pem = format!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{}\n-----END ENCRYPTED PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    let err = parse_private_key(&pem, Some(PASS)).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("scrypt"), "{err}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote_key");
    std::fs::write(&path, "not a key").unwrap();
    let err = load_private_key_file(&path, None).unwrap_err();
    assert!(
        matches!(
            err,
            CertError::Key {
                source: KeyError::UnknownFormat,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("remote_key") && msg.contains("PuTTY"), "{msg}");

    let err = load_private_key_file(&data("test_rsa_v3_encrypted.ppk"), None).unwrap_err();
    assert!(
        err.to_string().contains("test_rsa_v3_encrypted.ppk"),
        "{err}"
    );
    assert!(err.to_string().contains("passphrase"), "{err}");

    let err = load_private_key_file(&dir.path().join("missing"), None).unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err:?}");
}

#[test]
fn a_key_whose_public_half_does_not_match_is_refused() {
    // Found by fuzz/fuzz_targets/private_key.rs (kept in
    // fuzz/regressions/private_key/): an encrypted OpenSSH ECDSA key with
    // five bytes of its private scalar changed. The check integers still
    // match, so it decoded to a key whose signatures its own public key
    // rejects (every server would refuse it at login).
    let err = parse_private_key(&read("fuzz_ecdsa_openssh_damaged"), Some("fuzz")).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Malformed {
                format: "OpenSSH",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn key_derivations_asking_for_too_much_work_are_refused_at_once() {
    // Found by fuzz/fuzz_targets/private_key.rs (a timeout, kept in
    // fuzz/regressions/private_key/): an OpenSSH key whose bcrypt rounds
    // became 1,744,830,465, which would take years to decrypt.
    let started = std::time::Instant::now();
    let err =
        parse_private_key(&read("fuzz_ed25519_openssh_huge_rounds"), Some("fuzz")).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("1744830465 bcrypt rounds"),
        "{err}"
    );
    // The same for PKCS#8 with PBKDF2 (20,000,000 iterations).
    let err =
        parse_private_key(&read("test_ecdsa_pkcs8_20M_iterations.pem"), Some("fuzz")).unwrap_err();
    assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("20000000 PBKDF2 iterations"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
