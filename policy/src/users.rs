//! Gateway users: credentials, home folder, permissions and address limits.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use russh::keys::PublicKey;

use crate::permissions::PathPermissions;

/// One account that may log in to the gateway.
#[derive(Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// argon2 PHC string; `None` means password login is not possible.
    pub password_hash: Option<String>,
    /// Public keys accepted for public-key login.
    pub authorized_keys: Vec<PublicKey>,
    /// Folder in the gateway storage, e.g. "alice" or "" for the storage
    /// root; opaque to this crate.
    pub home: String,
    /// What the user may do where (virtual paths inside the home).
    pub permissions: PathPermissions,
    /// Source networks the user may log in from; empty means any address.
    pub allowed_networks: Vec<IpNet>,
}

impl User {
    /// Whether a login from `addr` is allowed by this user's network list.
    ///
    /// An empty list allows any address. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are matched as IPv4.
    pub fn allows_address(&self, addr: IpAddr) -> bool {
        address_allowed(&self.allowed_networks, addr)
    }
}

/// Hides the password hash so it never lands in logs via `{:?}`.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("authorized_keys", &self.authorized_keys.len())
            .field("home", &self.home)
            .field("permissions", &self.permissions)
            .field("allowed_networks", &self.allowed_networks)
            .finish()
    }
}

/// Whether `addr` is inside one of `networks` (empty = any address).
///
/// The address is tried both as given and in canonical form, so an
/// IPv4-mapped IPv6 address matches IPv4 networks.
pub(crate) fn address_allowed(networks: &[IpNet], addr: IpAddr) -> bool {
    if networks.is_empty() {
        return true;
    }
    let canonical = addr.to_canonical();
    networks
        .iter()
        .any(|net| net.contains(&addr) || net.contains(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(networks: &[&str]) -> User {
        User {
            name: "alice".into(),
            password_hash: Some("$argon2id$secret".into()),
            authorized_keys: Vec::new(),
            home: "alice".into(),
            permissions: PathPermissions::full(),
            allowed_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_allows_any_address() {
        let u = user(&[]);
        assert!(u.allows_address(ip("192.0.2.1")));
        assert!(u.allows_address(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_networks() {
        let u = user(&["10.0.0.0/8", "192.0.2.7/32"]);
        assert!(u.allows_address(ip("10.1.2.3")));
        assert!(u.allows_address(ip("192.0.2.7")));
        assert!(!u.allows_address(ip("192.0.2.8")));
        assert!(!u.allows_address(ip("11.0.0.1")));
        assert!(!u.allows_address(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_networks() {
        let u = user(&["2001:db8::/32"]);
        assert!(u.allows_address(ip("2001:db8:1::5")));
        assert!(!u.allows_address(ip("2001:db9::1")));
        assert!(!u.allows_address(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_matches_as_ipv4() {
        let u = user(&["10.0.0.0/8"]);
        assert!(u.allows_address(ip("::ffff:10.2.3.4")));
        assert!(!u.allows_address(ip("::ffff:11.2.3.4")));
        // A mapped-form network still matches the mapped address itself.
        let u = user(&["::ffff:10.0.0.0/104"]);
        assert!(u.allows_address(ip("::ffff:10.2.3.4")));
    }

    #[test]
    fn debug_redacts_password_hash() {
        let dbg = format!("{:?}", user(&[]));
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(dbg.contains("alice"), "{dbg}");
    }
}
