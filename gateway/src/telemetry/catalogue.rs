//! Every metric the gateway exports, with its kind and help text: the
//! gateway's own below, the remotes' in [`backends::metrics::NAMES`], the
//! process's in [`super::process::names`]. Dashboards and alert rules
//! (`deploy/`) may name only these; a test holds the list to the code.

use metrics::{describe_counter, describe_gauge};

/// How a metric behaves, as Prometheus types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (restarts at zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One of the gateway's metrics.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its name in `/metrics`.
    pub name: &'static str,
    /// Its Prometheus type.
    pub kind: Kind,
    /// What it counts (the `# HELP` line).
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric { name, kind, help }
}

/// The gateway's own metrics (sessions, logins, syncs, reloads, the S3
/// endpoint, state); the remotes' are described by `backends`.
pub const GATEWAY_METRICS: &[Metric] = &[
    metric(
        "gateway_build_info",
        Kind::Gauge,
        "Always 1; the labels say which gateway this is (version)",
    ),
    metric(
        "gateway_sessions",
        Kind::Gauge,
        "Inbound sessions logged in now",
    ),
    metric(
        "gateway_connections_unauthenticated",
        Kind::Gauge,
        "Inbound connections that have not logged in yet",
    ),
    metric(
        "gateway_logins_total",
        Kind::Counter,
        "Login attempts by method and outcome (ok, rejected, refused, banned)",
    ),
    metric(
        "gateway_sessions_refused_total",
        Kind::Counter,
        "Connections refused or closed by a session limit, by reason (max_unauthenticated, max_unauthenticated_per_address, max_sessions, max_sessions_per_user, grace_time, idle_timeout, proxy_header)",
    ),
    metric(
        "gateway_throttled_addresses_total",
        Kind::Counter,
        "Addresses banned after repeated failed logins",
    ),
    metric(
        "gateway_sync_runs_total",
        Kind::Counter,
        "Sync runs by outcome",
    ),
    metric(
        "gateway_sync_files_copied_total",
        Kind::Counter,
        "Files copied by syncs",
    ),
    metric(
        "gateway_sync_bytes_copied_total",
        Kind::Counter,
        "Bytes copied by syncs",
    ),
    metric(
        "gateway_sync_files_failed_total",
        Kind::Counter,
        "Files that failed in syncs",
    ),
    metric(
        "gateway_sync_last_success_timestamp_seconds",
        Kind::Gauge,
        "When each sync last ended a run without failures (Unix time)",
    ),
    metric(
        "gateway_sync_next_run_timestamp_seconds",
        Kind::Gauge,
        "When each scheduled sync is next due (Unix time); in the past while a due run has not started or is running",
    ),
    metric(
        "gateway_sync_running",
        Kind::Gauge,
        "1 while this node runs the sync, else 0",
    ),
    metric(
        "gateway_reloads_total",
        Kind::Counter,
        "Config reloads by outcome (applied, refused)",
    ),
    metric(
        "gateway_s3_requests_total",
        Kind::Counter,
        "Requests to the S3 endpoint by HTTP method and status class (2xx, 4xx, 5xx)",
    ),
    metric(
        "gateway_s3_signature_failures_total",
        Kind::Counter,
        "S3 requests refused for wrong credentials (SignatureDoesNotMatch, InvalidAccessKeyId), counted against the address",
    ),
    metric(
        "gateway_s3_refused_total",
        Kind::Counter,
        "S3 requests answered 503 SlowDown before running, by reason (signature_failures: the address failed too many signatures; key_rate: the access key is over its rate)",
    ),
    metric(
        "gateway_remote_disabled",
        Kind::Gauge,
        "1 while the remote is disabled (its host key changed; an admin must trust the new one), else 0",
    ),
    metric(
        "gateway_state_store_up",
        Kind::Gauge,
        "1 when the state store (embedded or the cluster's PostgreSQL) took a write at the last scrape, else 0",
    ),
];

/// Reasons of `gateway_sessions_refused_total`, exported at 0 from the
/// start so that `increase()` sees the first refusal.
pub const REFUSAL_REASONS: &[&str] = &[
    "max_unauthenticated",
    "max_unauthenticated_per_address",
    "connection_rate",
    "max_sessions",
    "max_sessions_per_user",
    "grace_time",
    "idle_timeout",
    "proxy_header",
];

/// Every metric name the gateway exports: its own, the remotes' and the
/// process's.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    GATEWAY_METRICS
        .iter()
        .map(|m| m.name)
        .chain(backends::metrics::NAMES.iter().copied())
        .chain(super::process::names())
}

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for m in GATEWAY_METRICS {
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.help),
            Kind::Gauge => describe_gauge!(m.name, m.help),
        }
    }
    backends::metrics::describe();
}

/// Series whose labels are known at start, exported from the start (at 0,
/// or 1 for the build): a counter that first appears at 1 is invisible to
/// `increase()` and `rate()`, so an alert on its first event would not fire.
pub fn register_fixed_series() {
    metrics::gauge!("gateway_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("gateway_sessions").set(0.0);
    metrics::gauge!("gateway_connections_unauthenticated").set(0.0);
    metrics::counter!("gateway_throttled_addresses_total").increment(0);
    for reason in REFUSAL_REASONS {
        metrics::counter!("gateway_sessions_refused_total", "reason" => *reason).increment(0);
    }
    for outcome in ["applied", "refused"] {
        metrics::counter!("gateway_reloads_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("gateway_s3_signature_failures_total").increment(0);
    for reason in ["signature_failures", "key_rate"] {
        metrics::counter!("gateway_s3_refused_total", "reason" => reason).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `"gateway_..."` string in the gateway's and the backends'
    /// sources, which is how metrics are named where they are recorded.
    fn names_in_sources() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = BTreeSet::new();
        let mut folders = vec![root.join("gateway/src"), root.join("backends/src")];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("source folder") {
                let path = entry.expect("folder entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source file");
                    for piece in text.split("\"gateway_").skip(1) {
                        let name: String = piece
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect();
                        if !name.is_empty() && piece[name.len()..].starts_with('"') {
                            found.insert(format!("gateway_{name}"));
                        }
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_metric_recorded_in_the_code_is_in_the_catalogue() {
        let known: BTreeSet<&str> = all_names().collect();
        let found = names_in_sources();
        assert!(found.len() > 20, "the scan found too little: {found:?}");
        let missing: Vec<&String> = found
            .iter()
            .filter(|n| !known.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "not in the catalogue: {missing:?}");
    }

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for name in all_names() {
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.starts_with("gateway_") || name.starts_with("process_"),
                "{name}"
            );
        }
        for m in GATEWAY_METRICS {
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
        }
    }
}
