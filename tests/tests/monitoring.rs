//! What ops teams import: the Prometheus alert rules (`deploy/prometheus/`)
//! pass `promtool check rules` and their own unit tests, the Grafana
//! dashboard (`deploy/grafana/`) is its generator's output, and every metric
//! either of them names is one a real gateway exports, read from its
//! `/metrics` while it serves a mount on sshd and runs a scheduled sync.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::ops::{eventually, http, logged_http_address, scrape, Scrape};
use e2e::sshd::*;
use e2e::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// promtool: `$GW_PROMTOOL`, else the copy scripts/test.sh extracts.
fn promtool() -> PathBuf {
    e2e::peers::peer_binary(
        "GW_PROMTOOL",
        "peers/prometheus/usr/bin/promtool",
        "extracts Debian's prometheus package into target/peers/prometheus",
    )
    .unwrap()
}

/// Runs `cmd` (a minute at most) and returns its output; panics if it fails.
fn run(cmd: Command) -> String {
    let what = format!("{cmd:?}");
    let out = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert_ok(&out, &what);
    out.text()
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo().join("deploy/prometheus");
    for (verb, file) in [
        ("check", "gateway-alerts.yml"),
        ("test", "gateway-alerts.test.yml"),
    ] {
        let mut promtool = Command::new(promtool());
        promtool.args([verb, "rules", file]).current_dir(&dir);
        let out = run(promtool);
        assert!(out.contains("SUCCESS"), "promtool {verb} rules: {out}");
    }
}

#[test]
fn the_dashboard_is_its_generators_output() {
    let mut generate = Command::new("python3");
    generate
        .arg(repo().join("deploy/grafana/generate.py"))
        .arg("--check");
    let out = run(generate);
    assert!(!out.contains("not generate.py's output"), "{out}");
    let text = fs::read_to_string(repo().join("deploy/grafana/gateway-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = json["panels"].as_array().unwrap();
    for row in [
        "Connection pools",
        "Remotes: connecting and operations",
        "Throughput",
        "Sessions",
        "Syncs",
        "Cluster and process",
    ] {
        assert!(
            panels
                .iter()
                .any(|p| p["type"] == "row" && p["title"] == row),
            "no row {row:?}"
        );
    }
}

/// Every `gateway_*` and `process_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["gateway_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The names the alert rules and the dashboard's queries use.
fn names_in_deploy() -> BTreeSet<String> {
    let rules = fs::read_to_string(repo().join("deploy/prometheus/gateway-alerts.yml")).unwrap();
    let exprs: Vec<&str> = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("summary:") && !l.contains("description:"))
        .collect();
    let mut names = metric_names(&exprs.join("\n"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(repo().join("deploy/grafana/gateway-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries += target["expr"].as_str().unwrap_or_default();
            queries.push('\n');
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        queries += var["definition"].as_str().unwrap_or_default();
        queries.push('\n');
    }
    names.extend(metric_names(&queries));
    names
}

fn sample_names(m: &Scrape) -> BTreeSet<String> {
    m.samples.iter().map(|(n, _, _)| n.clone()).collect()
}

/// A gateway with a mount on sshd and a push sync every 2 s: after an
/// upload, a sync run and a host key change, `/metrics` holds every name
/// the rules and the dashboard use, histograms have buckets, the process
/// and build metrics are there, and the gauges the alerts watch move.
#[test]
fn every_metric_the_rules_and_dashboard_name_is_exported() {
    let wanted = names_in_deploy();
    assert!(wanted.len() >= 20, "too few names found: {wanted:?}");

    let mut s = MountSetup::new().unwrap();
    s.cfg.metrics_listen = Some("127.0.0.1:0".into());
    s.cfg.s3_listen = Some("127.0.0.1:0".into());
    let outbound = s.cfg.storage.join("outbound");
    fs::create_dir_all(&outbound).unwrap();
    fs::write(outbound.join("report.csv"), b"a,b\n1,2\n").unwrap();
    let mut sync = SyncConfig::new("nightly", "/outbound", REMOTE, "", "push").settle("0s");
    sync.every = Some("2s".into());
    s.cfg.syncs.push(sync);
    s.start_gateway().unwrap();
    let addr: SocketAddr = logged_http_address(s.gw(), "metrics on http://")
        .unwrap_or_else(|| panic!("no metrics address logged\n{}", s.logs()));

    let start = scrape(addr).unwrap();
    let version = start
        .samples
        .iter()
        .find(|(n, _, _)| n == "gateway_build_info")
        .and_then(|(_, l, v)| (*v == 1.0).then_some(l.clone()))
        .unwrap_or_else(|| panic!("no gateway_build_info 1\n{}", start.text));
    assert!(
        version.iter().any(|(k, v)| k == "version" && !v.is_empty()),
        "{version:?}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let v = start.get(name, &[]);
        assert!(v > 0.0, "{name} = {v}\n{}", start.text);
    }
    assert_eq!(start.value("gateway_state_store_up", &[]), Some(1.0));

    // An upload through the mount: operations, bytes, pool waits.
    let c = s.client();
    let src = s.env.path("up.bin");
    fs::write(&src, vec![7u8; 300_000]).unwrap();
    let out = c
        .sftp(&format!(
            "put {} {MOUNT}/up.bin\nls {MOUNT}\n-ls {MOUNT}/no-such-folder\n",
            p(&src)
        ))
        .unwrap();
    assert_ok(&out, &format!("put through the mount\n{}", s.logs()));
    // An unsigned request to the S3 endpoint (refused, and counted).
    let s3 = e2e::s3_endpoint::endpoint_addr(s.gw()).unwrap();
    let refused = http(s3, "GET", "/default?list-type=2", &[]).unwrap();
    assert!(refused.status >= 400, "{refused:?}");
    eventually(
        30,
        "a successful sync run",
        || s.logs(),
        || {
            scrape(addr).is_ok_and(|m| {
                m.get(
                    "gateway_sync_runs_total",
                    &[("sync", "nightly"), ("outcome", "succeeded")],
                ) >= 1.0
            })
        },
    );
    assert!(
        s.root.join("report.csv").exists(),
        "the sync did not copy\n{}",
        s.logs()
    );

    let m = scrape(addr).unwrap();
    let r = [("remote", REMOTE)];
    assert_eq!(
        m.value("gateway_remote_disabled", &r),
        Some(0.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.value(
            "gateway_remote_connect_failures_total",
            &[("remote", REMOTE), ("reason", "host_key_mismatch")]
        ),
        Some(0.0),
        "failure reasons are exported at 0 before the first failure\n{}",
        m.text
    );
    assert_eq!(
        m.value(
            "gateway_sync_runs_total",
            &[("sync", "nightly"), ("outcome", "failed")]
        ),
        Some(0.0),
        "{}",
        m.text
    );
    let next = m.get(
        "gateway_sync_next_run_timestamp_seconds",
        &[("sync", "nightly")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 5.0..now + 5.0).contains(&next),
        "next run {next}, now {now}"
    );
    let buckets: Vec<&str> = m
        .text
        .lines()
        .filter(|l| l.starts_with("gateway_remote_operation_seconds_bucket{"))
        .collect();
    assert!(
        buckets.iter().any(|l| l.contains("le=\"0.001\""))
            && buckets.iter().any(|l| l.contains("le=\"+Inf\"")),
        "operation latencies are not a histogram with buckets\n{}",
        m.text
    );
    assert!(
        !m.text.contains("quantile="),
        "a summary is still exported\n{}",
        m.text
    );

    let have = sample_names(&m);
    let missing: Vec<&String> = wanted.iter().filter(|n| !have.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named by deploy/ but not in /metrics: {missing:?}\n{}",
        m.text
    );

    // The remote's host key changes: the gauges behind the alerts move.
    s.sshd.restart_with_new_host_key().unwrap();
    let out = c.sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls after the remote's host key changed");
    let m = scrape(addr).unwrap();
    assert_eq!(
        m.value("gateway_remote_disabled", &r),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(
        m.get(
            "gateway_remote_connect_failures_total",
            &[("remote", REMOTE), ("reason", "host_key_mismatch")]
        ) >= 1.0,
        "{}",
        m.text
    );
}
