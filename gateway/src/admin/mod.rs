//! The admin HTTP API: what it can do is [`control::Control`];
//! [`http::serve_admin`] serves it, to holders of the keys in
//! [`auth::ApiKeys`], and the web [`console`] over it; [`keys`] makes new
//! keys (`gateway admin new-key`).

pub mod auth;
pub mod console;
pub mod control;
pub mod http;
pub mod keys;
pub mod problem;

pub use auth::ApiKeys;
pub use http::serve_admin;
