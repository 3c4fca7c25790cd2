//! Authentication decisions: password and public-key checks against the
//! configured users and source-address allow-lists.
//!
//! Every rejection is the same [`AuthError::Rejected`] to the caller; the
//! [`RejectReason`] inside is only for the audit log and must never be
//! shown to the client (it would let an attacker probe for user names).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use russh::keys::PublicKey;

use crate::password::{hash_password, verify_password};
use crate::users::{address_allowed, User};

/// Fallback dummy hash (argon2id, default parameters) used only if a fresh
/// one cannot be made at start-up (no randomness available).
const FALLBACK_DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlkdW1teWR1bW15ZA$hTzw7lElU4JFWFCBXHbcSgTb6gHcPUXYYzWKbu28nMQ";

/// Why a login was rejected; for the audit log only, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No user with that name exists.
    UnknownUser,
    /// The user has no (usable) password, so password login is impossible.
    NoPassword,
    /// The password did not match.
    WrongPassword,
    /// The key is not one of the user's authorized keys.
    WrongKey,
    /// The source address is not allowed (globally or for this user).
    AddressNotAllowed,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::UnknownUser => "unknown user",
            RejectReason::NoPassword => "user has no password",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::WrongKey => "key not authorized for this user",
            RejectReason::AddressNotAllowed => "source address not allowed",
        })
    }
}

/// A failed authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The login was refused; `reason` is for the audit log only.
    #[error("authentication rejected: {reason}")]
    Rejected {
        /// Why, for the audit log; the client must not learn it.
        reason: RejectReason,
    },
}

impl AuthError {
    /// The audit-log reason for the rejection.
    pub fn reason(&self) -> RejectReason {
        match self {
            AuthError::Rejected { reason } => *reason,
        }
    }
}

/// Shorthand for a rejection with `reason`.
fn reject<T>(reason: RejectReason) -> Result<T, AuthError> {
    Err(AuthError::Rejected { reason })
}

/// Decides password and public-key logins for the configured users.
pub struct Authenticator {
    /// Users by login name.
    users: HashMap<String, Arc<User>>,
    /// Networks every login must come from; empty = any address.
    global_allowed_networks: Vec<IpNet>,
    /// Hash verified for unknown users / users without password so that
    /// every password attempt costs one argon2 run.
    dummy_hash: String,
}

impl Authenticator {
    /// Builds an authenticator over `users` (by name; if a name repeats, the
    /// last one wins) and the global source-address allow-list (empty = any
    /// address). Precomputes a dummy argon2 hash for timing equalisation.
    pub fn new(users: impl IntoIterator<Item = User>, global_allowed_networks: Vec<IpNet>) -> Self {
        let users = users
            .into_iter()
            .map(|u| (u.name.clone(), Arc::new(u)))
            .collect();
        let dummy_hash = hash_password("gateway dummy password")
            .unwrap_or_else(|_| FALLBACK_DUMMY_HASH.to_owned());
        Authenticator {
            users,
            global_allowed_networks,
            dummy_hash,
        }
    }

    /// The user called `name`, if any.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.get(name).cloned()
    }

    /// Whether `from` passes the global allow-list (checked when a
    /// connection arrives, before any login).
    pub fn address_allowed(&self, from: IpAddr) -> bool {
        address_allowed(&self.global_allowed_networks, from)
    }

    /// Whether `from` passes both the global and the user's allow-list.
    fn address_ok(&self, user: &User, from: IpAddr) -> bool {
        address_allowed(&self.global_allowed_networks, from) && user.allows_address(from)
    }

    /// Burns one argon2 verification so a rejection costs the same time as
    /// checking a real password.
    fn dummy_verify(&self, password: &str) {
        // The result is meaningless; only the time spent matters.
        let _ = verify_password(&self.dummy_hash, password);
    }

    /// Password login.
    ///
    /// Unknown user, user without (usable) password, wrong password and
    /// disallowed address all return `Err(AuthError::Rejected { reason })`;
    /// the caller must not tell the client the difference. Exactly one
    /// argon2 verification runs in every case (against a dummy hash when the
    /// user has no real one), so timing does not reveal which users exist.
    /// If several reasons apply, the first of UnknownUser,
    /// AddressNotAllowed, NoPassword, WrongPassword is reported.
    pub fn check_password(
        &self,
        user: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Arc<User>, AuthError> {
        let Some(found) = self.users.get(user) else {
            self.dummy_verify(password);
            return reject(RejectReason::UnknownUser);
        };
        let password_ok = match found.password_hash.as_deref() {
            Some(hash) => match verify_password(hash, password) {
                Ok(ok) => Some(ok),
                // A malformed hash (config validation should prevent this)
                // means the user has no usable password.
                Err(_) => {
                    self.dummy_verify(password);
                    None
                }
            },
            None => {
                self.dummy_verify(password);
                None
            }
        };
        if !self.address_ok(found, from) {
            return reject(RejectReason::AddressNotAllowed);
        }
        match password_ok {
            None => reject(RejectReason::NoPassword),
            Some(false) => reject(RejectReason::WrongPassword),
            Some(true) => Ok(Arc::clone(found)),
        }
    }

    /// Whether `key` is one of the user's authorized keys and `from` is an
    /// allowed address (used for the unsigned "offer" probe and again after
    /// the signature has been verified). Keys are compared by key data, so
    /// comments do not matter. If several reasons apply, the first of
    /// UnknownUser, AddressNotAllowed, WrongKey is reported.
    pub fn check_public_key(
        &self,
        user: &str,
        key: &PublicKey,
        from: IpAddr,
    ) -> Result<Arc<User>, AuthError> {
        let Some(found) = self.users.get(user) else {
            return reject(RejectReason::UnknownUser);
        };
        if !self.address_ok(found, from) {
            return reject(RejectReason::AddressNotAllowed);
        }
        if found
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
        {
            Ok(Arc::clone(found))
        } else {
            reject(RejectReason::WrongKey)
        }
    }
}

/// Lists user names only; hashes and keys stay out of logs.
impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Authenticator")
            .field("users", &names)
            .field("global_allowed_networks", &self.global_allowed_networks)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::validate_hash;
    use crate::permissions::PathPermissions;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICxqcR+ZJfXPpRw5wDHqtcWhl7IbfMnUj4ycRFtqMJiy alice@test";
    const KEY_A_OTHER_COMMENT: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICxqcR+ZJfXPpRw5wDHqtcWhl7IbfMnUj4ycRFtqMJiy laptop";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFGdcxRpRSU0SOTNRWKu4hLxmmpSjtdda65c+wxWr62M bob@test";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn user(name: &str, password: Option<&str>, keys: &[&str], nets: &[&str]) -> User {
        User {
            name: name.into(),
            password_hash: password.map(|p| hash_password(p).unwrap()),
            authorized_keys: keys.iter().map(|k| key(k)).collect(),
            home: name.into(),
            permissions: PathPermissions::full(),
            allowed_networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    fn reason<T: fmt::Debug>(r: Result<T, AuthError>) -> RejectReason {
        r.unwrap_err().reason()
    }

    fn auth(global: &[&str]) -> Authenticator {
        Authenticator::new(
            [
                user("alice", Some("secret"), &[KEY_A], &[]),
                user("bob", None, &[KEY_B], &["10.0.0.0/8"]),
                user("carol", Some("pw"), &[], &["192.0.2.0/24"]),
            ],
            global.iter().map(|n| n.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn fallback_dummy_hash_is_valid() {
        validate_hash(FALLBACK_DUMMY_HASH).unwrap();
        assert!(verify_password(FALLBACK_DUMMY_HASH, "dummy").unwrap());
    }

    #[test]
    fn dummy_hash_is_valid() {
        let a = auth(&[]);
        validate_hash(&a.dummy_hash).unwrap();
    }

    #[test]
    fn user_lookup() {
        let a = auth(&[]);
        assert_eq!(a.user("alice").unwrap().name, "alice");
        assert!(a.user("nobody").is_none());
        assert!(a.user("Alice").is_none(), "names are case-sensitive");
    }

    #[test]
    fn password_login() {
        let a = auth(&[]);
        let from = ip("198.51.100.1");
        let u = a.check_password("alice", "secret", from).unwrap();
        assert_eq!(u.name, "alice");
        assert!(Arc::ptr_eq(&u, &a.user("alice").unwrap()));

        assert_eq!(
            reason(a.check_password("alice", "Secret", from)),
            RejectReason::WrongPassword
        );
        assert_eq!(
            reason(a.check_password("nobody", "secret", from)),
            RejectReason::UnknownUser
        );
        assert_eq!(
            reason(a.check_password("bob", "", ip("10.0.0.1"))),
            RejectReason::NoPassword
        );
    }

    #[test]
    fn password_login_respects_user_networks() {
        let a = auth(&[]);
        a.check_password("carol", "pw", ip("192.0.2.9")).unwrap();
        a.check_password("carol", "pw", ip("::ffff:192.0.2.9"))
            .unwrap();
        assert_eq!(
            reason(a.check_password("carol", "pw", ip("203.0.113.1"))),
            RejectReason::AddressNotAllowed
        );
        // A wrong password from a disallowed address reports the address.
        assert_eq!(
            reason(a.check_password("carol", "nope", ip("203.0.113.1"))),
            RejectReason::AddressNotAllowed
        );
    }

    #[test]
    fn global_networks_apply_to_everyone() {
        let a = auth(&["192.0.2.0/25"]);
        a.check_password("alice", "secret", ip("192.0.2.1"))
            .unwrap();
        a.check_password("carol", "pw", ip("192.0.2.100")).unwrap();
        assert_eq!(
            reason(a.check_password("alice", "secret", ip("198.51.100.1"))),
            RejectReason::AddressNotAllowed
        );
        // Both lists must allow the address: carol's /24 is wider than the
        // global /25 but cannot widen it.
        assert_eq!(
            reason(a.check_password("carol", "pw", ip("192.0.2.200"))),
            RejectReason::AddressNotAllowed
        );
        assert_eq!(
            reason(a.check_public_key("alice", &key(KEY_A), ip("198.51.100.1"))),
            RejectReason::AddressNotAllowed
        );
    }

    #[test]
    fn malformed_stored_hash_counts_as_no_password() {
        let mut u = user("dave", None, &[], &[]);
        u.password_hash = Some("plain-text-oops".into());
        let a = Authenticator::new([u], Vec::new());
        assert_eq!(
            reason(a.check_password("dave", "plain-text-oops", ip("192.0.2.1"))),
            RejectReason::NoPassword
        );
    }

    #[test]
    fn public_key_login() {
        let a = auth(&[]);
        let from = ip("198.51.100.1");
        assert_eq!(
            a.check_public_key("alice", &key(KEY_A), from).unwrap().name,
            "alice"
        );
        // Comments are not part of the key.
        a.check_public_key("alice", &key(KEY_A_OTHER_COMMENT), from)
            .unwrap();
        assert_eq!(
            reason(a.check_public_key("alice", &key(KEY_B), from)),
            RejectReason::WrongKey
        );
        assert_eq!(
            reason(a.check_public_key("nobody", &key(KEY_A), from)),
            RejectReason::UnknownUser
        );
        // carol has no keys at all.
        assert_eq!(
            reason(a.check_public_key("carol", &key(KEY_A), ip("192.0.2.1"))),
            RejectReason::WrongKey
        );
    }

    #[test]
    fn public_key_login_respects_user_networks() {
        let a = auth(&[]);
        a.check_public_key("bob", &key(KEY_B), ip("10.9.9.9"))
            .unwrap();
        a.check_public_key("bob", &key(KEY_B), ip("::ffff:10.9.9.9"))
            .unwrap();
        assert_eq!(
            reason(a.check_public_key("bob", &key(KEY_B), ip("11.0.0.1"))),
            RejectReason::AddressNotAllowed
        );
    }

    #[test]
    fn last_duplicate_user_wins() {
        let a = Authenticator::new(
            [
                user("eve", Some("one"), &[], &[]),
                user("eve", Some("two"), &[], &[]),
            ],
            Vec::new(),
        );
        let from = ip("192.0.2.1");
        a.check_password("eve", "two", from).unwrap();
        assert!(a.check_password("eve", "one", from).is_err());
    }

    #[test]
    fn error_display() {
        let e = AuthError::Rejected {
            reason: RejectReason::WrongPassword,
        };
        assert_eq!(e.to_string(), "authentication rejected: wrong password");
        assert_eq!(RejectReason::UnknownUser.to_string(), "unknown user");
        assert_eq!(
            RejectReason::AddressNotAllowed.to_string(),
            "source address not allowed"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let a = auth(&[]);
        let dbg = format!("{a:?}");
        assert!(dbg.contains("alice"), "{dbg}");
        assert!(!dbg.contains("argon2"), "{dbg}");
    }

    #[test]
    fn authenticator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authenticator>();
    }
}
