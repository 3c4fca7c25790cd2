//! Access policy for the SFTP gateway: who may log in, from where, and what
//! they may do once in. Pure logic: no network or file I/O.
//!
//! # Layout
//!
//! - [`permissions`]: [`Permission`], [`PermissionSet`] and per-folder
//!   [`PathPermissions`] (longest matching folder wins).
//! - [`users`]: the [`User`] record and its source-address allow-list.
//! - [`password`]: argon2 hashing, verification and hash validation.
//! - [`auth`]: the [`Authenticator`] deciding password and public-key logins
//!   with uniform rejections ([`AuthError`], [`RejectReason`]).
//! - [`throttle`]: the [`LoginThrottle`] banning addresses after repeated
//!   failures.
//! - [`connection_rate`]: the [`ConnectionRate`] limiting new connections
//!   per address.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod connection_rate;
pub mod password;
pub mod permissions;
pub mod throttle;
pub mod users;

pub use auth::{AuthError, Authenticator, RejectReason};
pub use connection_rate::{ConnectionRate, ConnectionRateSettings, RateExceeded, TokenBuckets};
pub use password::{hash_password, validate_hash, verify_password, PasswordError};
pub use permissions::{
    PathPermissions, PathRuleError, Permission, PermissionParseError, PermissionSet,
};
pub use throttle::{Banned, LoginThrottle, ThrottleSettings};
pub use users::User;
