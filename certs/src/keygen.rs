//! New client key pairs for remotes: the gateway can make the RSA-4096 key
//! it authenticates with, so an operator only has to install the public
//! line on the remote server.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::PrivateKey;

use crate::host_keys::{fingerprint, store_private_key};
use crate::CertError;

/// RSA modulus size of generated client keys: accepted by every server,
/// strong for years.
const RSA_BITS: usize = 4096;

/// What [`write_new_key_pair`] made: the parts an operator needs to
/// install the key on a remote server and to recognise it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The public key as an `authorized_keys` line: `ssh-rsa AAAA... comment`.
    pub public_line: String,
    /// `SHA256:...` fingerprint of the public key, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
}

/// Generates an RSA key pair with a 4096-bit modulus, with `comment`
/// (which ends up in the public line, to tell keys apart on the server).
/// Takes a few seconds.
pub fn generate_rsa_4096(comment: &str) -> Result<PrivateKey, CertError> {
    let keypair = RsaKeypair::random(&mut rand::rng(), RSA_BITS).map_err(CertError::Generate)?;
    PrivateKey::new(KeypairData::Rsa(keypair), comment).map_err(CertError::Generate)
}

/// Generates an RSA-4096 key pair and stores it: the private key at `path`
/// (OpenSSH format, unencrypted, mode 0600) and the public line at
/// `PATH.pub`. Never overwrites: if either file exists the call fails
/// naming it, as replacing a key would lock the gateway out of every
/// server that trusts the old one.
pub fn write_new_key_pair(path: &Path, comment: &str) -> Result<GeneratedKey, CertError> {
    let pub_path = public_path(path);
    for p in [path, pub_path.as_path()] {
        refuse_existing(p)?;
    }
    let key = generate_rsa_4096(comment)?;
    let public_line = key.public_key().to_openssh().map_err(CertError::Generate)?;

    // Durable write to a staging name, then a hard link to the final name:
    // linking fails if the name exists, so a file created meanwhile is
    // never replaced, and the name only ever holds a complete key.
    let file_name = path
        .file_name()
        .ok_or_else(|| CertError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let staging = path.with_file_name(format!(".{file_name}.{}.new", std::process::id()));
    store_private_key(&key, &staging)?;
    let linked = fs::hard_link(&staging, path);
    let _ = fs::remove_file(&staging);
    linked.map_err(|e| link_error(path, e))?;

    if let Err(e) = write_public_line(&pub_path, &public_line) {
        // Leave no half pair behind, so that a retry can succeed.
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(GeneratedKey {
        public_line,
        fingerprint: fingerprint(key.public_key()),
    })
}

/// `PATH.pub`, where ssh-keygen puts the public half.
fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Fails if something (even a dangling symlink) is at `path`.
fn refuse_existing(path: &Path) -> Result<(), CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CertError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CertError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn link_error(path: &Path, e: std::io::Error) -> CertError {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        CertError::Exists {
            path: path.to_path_buf(),
        }
    } else {
        CertError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Writes the public line to a new file (never an existing one).
fn write_public_line(path: &Path, line: &str) -> Result<(), CertError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| link_error(path, e))?;
    let io = |e| CertError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private_keys::load_private_key_file;
    use russh::keys::HashAlg;

    /// The one RSA-4096 generation of the test suite (it is slow): checks
    /// the key, the files, their modes and the refusal to overwrite.
    #[test]
    fn writes_a_new_rsa_4096_pair_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_remote");
        let made = write_new_key_pair(&path, "gateway@test").unwrap();

        assert!(
            made.public_line.starts_with("ssh-rsa AAAA"),
            "{}",
            made.public_line
        );
        assert!(made.public_line.ends_with(" gateway@test"));
        assert!(made.fingerprint.starts_with("SHA256:"));
        let pub_text = fs::read_to_string(public_path(&path)).unwrap();
        assert_eq!(pub_text, format!("{}\n", made.public_line));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // Only the key pair is left in the folder (no staging file).
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);

        let key = load_private_key_file(&path, None).unwrap();
        let KeypairData::Rsa(rsa) = key.key_data() else {
            panic!("not RSA");
        };
        assert_eq!(rsa.key_size(), 4096);
        assert_eq!(key.comment().as_str_lossy(), "gateway@test");
        assert_eq!(fingerprint(key.public_key()), made.fingerprint);
        let sig = key.sign("test", HashAlg::Sha512, b"hello").unwrap();
        key.public_key().verify("test", b"hello", &sig).unwrap();
        assert!(key.public_key().verify("test", b"other", &sig).is_err());

        let err = write_new_key_pair(&path, "again").unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("id_remote"), "{err}");
        assert_eq!(fs::read_to_string(public_path(&path)).unwrap(), pub_text);
    }

    #[test]
    fn refuses_when_only_the_public_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_remote");
        fs::write(public_path(&path), "ssh-rsa AAAA old\n").unwrap();
        // Refused before any (slow) generation happens.
        let err = write_new_key_pair(&path, "x").unwrap_err();
        assert!(err.to_string().contains("id_remote.pub"), "{err}");
        assert!(!path.exists());
    }
}
