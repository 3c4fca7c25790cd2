//! Log output: plain text or JSON lines on standard error; the level comes
//! from `RUST_LOG` (default `info`). Audit lines use the target `audit`.
//!
//! The S3 library's own log is off by default: it logs every error answer
//! at ERROR, a client's mistakes (unsigned requests, unknown keys, APIs
//! the endpoint does not offer) included. The endpoint logs its requests
//! itself: refusals of credentials at INFO, other client errors at DEBUG,
//! its own failures at WARN.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,russh=warn,s3s=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging not initialised: {e}");
    }
}

/// For one-shot commands: warnings and errors only, on standard error.
pub fn init_quiet() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,russh=error,backends=error,s3s=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
