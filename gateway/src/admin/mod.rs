//! The admin HTTP API (issue 8): what it can do is [`control::Control`].

pub mod control;
