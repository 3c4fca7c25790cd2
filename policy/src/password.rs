//! Password hashing and verification with argon2 (PHC strings).
//!
//! Hashes are argon2id with the crate's default parameters and a random
//! 16-byte salt. Verification accepts any well-formed argon2 PHC string
//! (argon2id, argon2i or argon2d, with its own parameters).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hint appended to hash problems so an operator knows how to fix them.
const HASH_HINT: &str = "make one with `gateway user hash-password`";

/// A password could not be hashed, or a stored hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a usable argon2 PHC string; `problem` says why.
    #[error("{problem} ({HASH_HINT})")]
    InvalidHash {
        /// What is wrong with the hash, in plain words.
        problem: String,
    },
    /// The operating system could not provide random bytes for a salt.
    #[error("could not get random bytes for the password salt: {0}")]
    Random(String),
    /// argon2 failed to compute the hash.
    #[error("could not hash the password: {0}")]
    Hashing(String),
}

impl PasswordError {
    /// Shorthand for an [`PasswordError::InvalidHash`] with the given problem.
    fn invalid(problem: impl Into<String>) -> Self {
        PasswordError::InvalidHash {
            problem: problem.into(),
        }
    }
}

/// Hashes `password` with argon2id, default parameters and a random 16-byte
/// salt; returns the PHC string to store in the configuration.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| PasswordError::Random(e.to_string()))?;
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt_bytes)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks `password` against the stored PHC `hash`.
///
/// Returns `Ok(false)` for a wrong password; `Err` only when the hash itself
/// is malformed (see [`validate_hash`]).
pub fn verify_password(hash: &str, password: &str) -> Result<bool, PasswordError> {
    let parsed = parse_hash(hash)?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(PasswordError::invalid(format!(
            "the argon2 hash cannot be used: {e}"
        ))),
    }
}

/// Checks that `hash` is a parseable argon2 PHC string (for configuration
/// validation, so a bad hash is reported at start-up, not at first login).
pub fn validate_hash(hash: &str) -> Result<(), PasswordError> {
    parse_hash(hash).map(|_| ())
}

/// Parses and fully validates an argon2 PHC string.
fn parse_hash(hash: &str) -> Result<PasswordHash, PasswordError> {
    let hash = hash.trim();
    if hash.is_empty() {
        return Err(PasswordError::invalid("the password hash is empty"));
    }
    if !hash.starts_with('$') {
        return Err(PasswordError::invalid(
            "not an argon2 hash: a PHC string starts with `$argon2id$` \
             (is this a plain-text password?)",
        ));
    }
    let ident = hash[1..].split('$').next().unwrap_or_default();
    if Algorithm::new(ident).is_err() {
        return Err(PasswordError::invalid(format!(
            "not an argon2 hash: it uses the `{ident}` algorithm, expected argon2id"
        )));
    }
    let parsed = PasswordHash::new(hash)
        .map_err(|e| PasswordError::invalid(format!("malformed argon2 hash: {e}")))?;
    Algorithm::try_from(parsed.algorithm.as_str()).map_err(|_| {
        PasswordError::invalid(format!(
            "not an argon2 hash: it uses the `{}` algorithm, expected argon2id",
            parsed.algorithm
        ))
    })?;
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|_| {
            PasswordError::invalid(format!(
                "unsupported argon2 version v={version} (expected v=19)"
            ))
        })?;
    }
    Params::try_from(&parsed)
        .map_err(|e| PasswordError::invalid(format!("the argon2 parameters are invalid: {e}")))?;
    if parsed.salt.is_none() {
        return Err(PasswordError::invalid("the argon2 hash has no salt"));
    }
    if parsed.hash.is_none() {
        return Err(PasswordError::invalid(
            "the argon2 hash has no hash output (it is truncated)",
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "correct horse").unwrap());
        assert!(!verify_password(&hash, "wrong horse").unwrap());
        assert!(!verify_password(&hash, "").unwrap());
        validate_hash(&hash).unwrap();
    }

    #[test]
    fn salts_are_random() {
        let a = hash_password("same").unwrap();
        let b = hash_password("same").unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&a, "same").unwrap());
        assert!(verify_password(&b, "same").unwrap());
    }

    #[test]
    fn empty_password_can_be_hashed() {
        let hash = hash_password("").unwrap();
        assert!(verify_password(&hash, "").unwrap());
        assert!(!verify_password(&hash, "x").unwrap());
    }

    #[test]
    fn other_argon2_variants_verify() {
        // argon2i hash of "password" (cheap parameters), made with the argon2 crate.
        let params = Params::new(8, 1, 1, None).unwrap();
        let hasher = Argon2::new(Algorithm::Argon2i, Version::V0x13, params);
        let hash: PasswordHash = hasher
            .hash_password_with_salt(b"password", b"0123456789abcdef")
            .unwrap();
        let hash = hash.to_string();
        assert!(hash.starts_with("$argon2i$"), "{hash}");
        validate_hash(&hash).unwrap();
        assert!(verify_password(&hash, "password").unwrap());
        assert!(!verify_password(&hash, "Password").unwrap());
    }

    fn problem(hash: &str) -> String {
        match validate_hash(hash).unwrap_err() {
            PasswordError::InvalidHash { problem } => problem,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn invalid_hashes_are_explained() {
        assert!(problem("").contains("empty"));
        assert!(problem("hunter2").contains("not an argon2 hash"));
        let p = problem("$argon2id$garbage");
        assert!(p.contains("truncated") || p.contains("malformed"), "{p}");
        let p = problem("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$!!!");
        assert!(p.contains("malformed argon2 hash"), "{p}");
        // bcrypt strings are reported by their algorithm name.
        let p = problem("$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
        assert!(
            p.contains("not an argon2 hash") && p.contains("`2b`"),
            "{p}"
        );
        assert!(problem("$").contains("not an argon2 hash"));
        let p = problem("$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g");
        assert!(p.contains("`scrypt`"), "{p}");
        let p = problem("$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA");
        assert!(p.contains("parameters"), "{p}");
        let p = problem("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0");
        assert!(p.contains("no hash output"), "{p}");
        let p = problem("$argon2id$v=19$m=19456,t=2,p=1");
        assert!(p.contains("no salt"), "{p}");
        let p = problem("$argon2id$v=7$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA");
        assert!(p.contains("version"), "{p}");
    }

    #[test]
    fn invalid_hash_message_says_how_to_fix() {
        let msg = validate_hash("hunter2").unwrap_err().to_string();
        assert!(msg.starts_with("not an argon2 hash"), "{msg}");
        assert!(msg.contains("`gateway user hash-password`"), "{msg}");
    }

    #[test]
    fn verify_with_malformed_hash_is_an_error() {
        assert!(matches!(
            verify_password("nonsense", "pw"),
            Err(PasswordError::InvalidHash { .. })
        ));
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        let hash = hash_password("pw").unwrap();
        let padded = format!("  {hash}\n");
        validate_hash(&padded).unwrap();
        assert!(verify_password(&padded, "pw").unwrap());
    }
}
