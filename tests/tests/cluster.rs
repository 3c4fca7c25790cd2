//! Several gateway nodes as one (`server.state = "postgres://..."`): a
//! remote's `max_connections` holds over both nodes, a dead node's slots
//! come free in seconds, a host key change seen by one node disables the
//! remote for both, a scheduled sync runs once per tick, and with
//! PostgreSQL stopped new remote connections are refused (not made past
//! the cap) until it is back. Real PostgreSQL, HAProxy, sshd and OpenSSH
//! clients.

use std::fs;
use std::time::Duration;

use e2e::cluster::*;
use e2e::haproxy::{Haproxy, ProxyProtocol};
use e2e::sshd::*;
use e2e::*;

/// 40 clients through HAProxy (PROXY protocol v2) over two nodes, the
/// remote capped at 5: sshd never sees more than 5 connections from the
/// gateways together, every transfer is intact, both nodes work, and a
/// client with strict host key checking sees one host key on both nodes.
#[test]
fn forty_clients_over_two_nodes_never_exceed_the_cap() {
    let mut s = ClusterSetup::new(5).unwrap();
    for node in [&mut s.a, &mut s.b] {
        node.cfg
            .server_extra
            .push("proxy_protocol_from = [\"127.0.0.1/32\"]".into());
        node.cfg
            .server_extra
            .push("max_sessions_per_user = 0".into());
    }
    s.start_both().unwrap();
    let lb = Haproxy::start(
        &[
            format!("127.0.0.1:{}", s.a.gw().port()).parse().unwrap(),
            format!("127.0.0.1:{}", s.b.gw().port()).parse().unwrap(),
        ],
        ProxyProtocol::V2,
    )
    .unwrap();

    // One known_hosts, strict after the first connection: both nodes show
    // the same host key.
    let mut first = s.a.client();
    first.port = lb.port();
    first.known_hosts = s.a.env.path("lb_known_hosts");
    assert_ok(
        &first.sftp("ls /\n").unwrap(),
        "first login through HAProxy",
    );
    first.strict = true;
    for i in 0..4 {
        let out = first.sftp("ls /\n").unwrap();
        assert_ok(
            &out,
            &format!("strict login {i} through HAProxy\n{}", s.logs()),
        );
    }

    let sampler = ConnectionSampler::start(s.sshd.port()..=s.sshd.port());
    let n = 40;
    let mut jobs = Vec::new();
    let mut sources = Vec::new();
    for i in 0..n {
        let src = s.a.env.path(&format!("up-{i}.bin"));
        write_random_file(&src, 256 * 1024 + i * 1000).unwrap();
        let back = s.a.env.path(&format!("back-{i}.bin"));
        let mut c = s.a.client_n(i);
        c.port = lb.port();
        c.timeout = Duration::from_secs(240);
        jobs.push((
            c,
            format!(
                "put {} {MOUNT}/f-{i}.bin\nget {MOUNT}/f-{i}.bin {}\n",
                p(&src),
                p(&back)
            ),
        ));
        sources.push((src, back));
    }
    let started = std::time::Instant::now();
    let outs = sftp_in_parallel(jobs);
    let took = started.elapsed();
    let report = sampler.finish().unwrap();
    let (peak, samples) = (report.max, report.samples);
    assert_all_ok(&outs, "40 clients through HAProxy", &s.logs());
    for (i, (src, back)) in sources.iter().enumerate() {
        assert_same_file(src, &s.root.join(format!("f-{i}.bin")));
        assert_same_file(src, back);
    }
    assert!(samples > 10, "only {samples} samples of sshd's connections");
    assert!(
        peak <= 5,
        "sshd had {peak} connections from the gateways at once (cap 5 over the cluster)\n{}",
        s.logs()
    );
    assert!(
        peak >= 2,
        "never more than {peak} connection at once: no parallelism?"
    );
    // Both nodes served clients and reached the remote.
    for (name, node) in [("A", &s.a), ("B", &s.b)] {
        let log = node.gateway_log();
        assert!(
            log.contains("op=\"login\"") || log.contains("op=login"),
            "node {name} served no login\n{}",
            s.logs()
        );
    }
    // The audit lines name the client (the PROXY header), and nothing
    // names HAProxy's health checks as logins.
    let status = s.status().unwrap();
    assert_ok(&status, "gateway cluster status");
    let text = status.stdout.clone();
    assert!(
        text.matches(" alive ").count() == 2,
        "cluster status should list two live nodes:\n{text}"
    );
    let holders = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("partner:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .count();
    assert_eq!(
        holders, 2,
        "both nodes should hold slots of the remote:\n{text}"
    );
    println!("{text}");
    println!(
        "40 clients took {took:?}; peak sshd connections: {peak} in {samples} samples; {} connections to sshd in all",
        s.sshd.connection_count()
    );
}

/// A node killed with SIGKILL while it holds every slot: PostgreSQL frees
/// them at once, and the other node opens all 5 connections.
#[test]
fn a_killed_node_frees_its_slots_within_seconds() {
    let mut s = ClusterSetup::new(5).unwrap();
    for node in [&mut s.a, &mut s.b] {
        node.remote().idle_timeout = Some("10m".into());
    }
    s.start_both().unwrap();
    // Five parallel transfers on A leave it holding 5 idle connections.
    s.fill_node_a("a");
    let status = s.status().unwrap();
    assert!(status.stdout.contains("partner: 5 of 5"), "{status}");

    kill_9(s.a.gw()).unwrap();
    let freed = within(Duration::from_secs(10), || {
        s.slots_held().unwrap_or(99) == 0
    });
    assert!(
        freed.is_some(),
        "the killed node's slots are still held: {:?}\n{}",
        s.slots_held(),
        s.logs()
    );
    println!("slots freed {:?} after kill -9", freed.unwrap());

    // Node B can use all five at once.
    let sampler = ConnectionSampler::start(s.sshd.port()..=s.sshd.port());
    let srcs: Vec<_> = (0..5)
        .map(|i| {
            let src = s.b.env.path(&format!("b{i}.bin"));
            write_random_file(&src, 8 << 20).unwrap();
            src
        })
        .collect();
    let jobs = srcs
        .iter()
        .enumerate()
        .map(|(i, src)| {
            (
                s.b.client_n(i),
                format!("put {} {MOUNT}/b{i}.bin\n", p(src)),
            )
        })
        .collect();
    assert_all_ok(&sftp_in_parallel(jobs), "5 clients on node B", &s.logs());
    let peak = sampler.finish().unwrap().max;
    for (i, src) in srcs.iter().enumerate() {
        assert_same_file(src, &s.root.join(format!("b{i}.bin")));
    }
    let b_holds = within(Duration::from_secs(5), || s.slots_held().unwrap_or(0) == 5);
    assert!(
        b_holds.is_some() && peak <= 5,
        "node B should hold all 5 slots (held {:?}, sshd peak {peak})\n{}",
        s.slots_held(),
        s.logs()
    );
}

/// A host key change seen by node A disables the remote for node B too;
/// `gateway remote trust` on B enables it for both.
#[test]
fn a_host_key_change_seen_by_one_node_disables_the_remote_for_both() {
    let mut s = ClusterSetup::new(5).unwrap();
    s.start_both().unwrap();
    assert_ok(
        &s.a.client().sftp(&format!("ls {MOUNT}\n")).unwrap(),
        "ls on A (pins the key)",
    );
    assert_ok(
        &s.b.client().sftp(&format!("ls {MOUNT}\n")).unwrap(),
        "ls on B",
    );
    let fp1 = s.sshd.host_key_fingerprint();

    s.sshd.restart_with_new_host_key().unwrap();
    let fp2 = s.sshd.host_key_fingerprint();
    let out = s.a.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls on A after the host key changed");
    assert!(
        s.a.gateway_log().contains(&fp2),
        "node A's log does not name the new key {fp2}\n{}",
        s.logs()
    );
    let accepted = s.sshd.accepted_count();
    let connections = s.sshd.connection_count();
    let out = s.b.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls on B after A saw the host key change");
    assert_eq!(
        s.sshd.connection_count(),
        connections,
        "node B connected to a remote node A disabled\n{}",
        s.logs()
    );
    assert_eq!(s.sshd.accepted_count(), accepted);
    let list = s.b.remote_list().unwrap();
    assert!(
        list.stdout.contains("disabled"),
        "`remote list` on B does not say disabled\n{list}"
    );

    let out = s.b.remote_trust().unwrap();
    assert_ok(&out, "gateway remote trust on B");
    assert!(out.stdout.contains(&fp2), "{out}");
    assert_ne!(fp1, fp2);
    for (name, node) in [("A", &s.a), ("B", &s.b)] {
        let out = node.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
        assert_ok(
            &out,
            &format!("ls on {name} after trust on B\n{}", s.logs()),
        );
    }
}

/// A sync scheduled every 2 s on both nodes runs once per tick across the
/// cluster; the node running a long run is killed and the other node takes
/// the sync over, recording what happened to the killed run.
#[test]
fn a_scheduled_sync_runs_once_per_tick_and_survives_its_node() {
    let mut s = ClusterSetup::new(5).unwrap();
    // Both nodes share one storage folder (as on a shared file system), so
    // a pull's result is the same whichever node runs it.
    s.b.cfg.storage = s.a.cfg.storage.clone();
    fs::create_dir_all(s.a.cfg.storage.join("inbox")).unwrap();
    let sync = e2e::SyncConfig {
        every: Some("2s".into()),
        settle: Some("0s".into()),
        ..e2e::SyncConfig::new("ticks", "inbox", REMOTE, "outgoing", "pull")
    };
    for node in [&mut s.a, &mut s.b] {
        node.cfg.syncs = vec![sync.clone()];
    }
    fs::create_dir_all(s.root.join("outgoing")).unwrap();
    fs::write(s.root.join("outgoing/small.txt"), b"tick\n").unwrap();
    s.start_both().unwrap();

    std::thread::sleep(Duration::from_secs(13));
    let history = s.a.sync_history("ticks");
    let starts = run_starts(&history);
    assert!(
        (4..=8).contains(&starts.len()),
        "{} runs in 13 s of a 2 s schedule on two nodes (once per tick: about 6)\n{history}\n{}",
        starts.len(),
        s.logs()
    );
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= 1.5,
            "two runs {gap:.2}s apart: a tick ran twice\n{history}"
        );
    }

    // A long run (a 300 MiB pull), killed with its node.
    write_random_file(&s.root.join("outgoing/big.bin"), 300 << 20).unwrap();
    let mut history = String::new();
    let runner = within(Duration::from_secs(20), || {
        history = s.a.sync_history("ticks");
        history.contains("running in pid")
    });
    assert!(
        runner.is_some(),
        "no run started for the big file\n{history}\n{}",
        s.logs()
    );
    let pid_a = s.a.gw().pid().unwrap();
    let pid_b = s.b.gw().pid().unwrap();
    let running = history
        .lines()
        .find(|l| l.contains("running in pid"))
        .unwrap_or_default()
        .to_string();
    let (victim, survivor) = if running.contains(&format!("pid {pid_a}")) {
        (&s.a, &s.b)
    } else if running.contains(&format!("pid {pid_b}")) {
        (&s.b, &s.a)
    } else {
        panic!("the running run names neither node's pid ({pid_a}, {pid_b}): {running}\n{history}");
    };
    kill_9(victim.gw()).unwrap();
    let done = within(Duration::from_secs(60), || {
        fs::metadata(s.a.cfg.storage.join("inbox/big.bin")).is_ok_and(|m| m.len() == 300 << 20)
            && !survivor.sync_history("ticks").contains("running in pid")
    });
    let history = survivor.sync_history("ticks");
    assert!(
        done.is_some(),
        "the surviving node did not finish the pull after the other was killed\n{history}\n{}",
        s.logs()
    );
    assert_same_file(
        &s.root.join("outgoing/big.bin"),
        &s.a.cfg.storage.join("inbox/big.bin"),
    );
    assert!(
        history.contains("interrupted") && history.contains("stopped while running it"),
        "the killed run is not recorded as interrupted by its node stopping\n{history}"
    );
}

/// Start times (seconds since the epoch, from the run ids) of the runs in
/// `history`, oldest first.
fn run_starts(history: &str) -> Vec<f64> {
    let mut starts: Vec<f64> = history
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|id| id.rsplit('/').next()?.parse::<u64>().ok())
        .map(|ms| ms as f64 / 1000.0)
        .collect();
    starts.sort_by(f64::total_cmp);
    starts
}

/// PostgreSQL stopped: a transfer in progress finishes, new remote
/// connections are refused with a clear error (never past the cap), and
/// once PostgreSQL is back the cluster works again by itself.
#[test]
fn with_postgres_stopped_new_connections_are_refused_until_it_is_back() {
    let mut s = ClusterSetup::new(5).unwrap();
    s.start_both().unwrap();
    let big = s.a.env.path("big.bin");
    write_random_file(&big, 200 << 20).unwrap();
    fs::copy(&big, s.root.join("big.bin")).unwrap();
    let sampler = ConnectionSampler::start(s.sshd.port()..=s.sshd.port());

    // A slow download on A, started before PostgreSQL stops.
    let back = s.a.env.path("back.bin");
    let mut slow = s.a.client();
    slow.extra.push("-l".into());
    slow.extra.push("200000".into()); // Kbit/s: about 8 s for 200 MiB
    slow.timeout = Duration::from_secs(180);
    let download = {
        let batch = format!("get {MOUNT}/big.bin {}\n", p(&back));
        std::thread::spawn(move || slow.sftp(&batch))
    };
    std::thread::sleep(Duration::from_secs(2));
    s.pg.stop().unwrap();

    // B has no connection to the remote: it cannot open one.
    let out = s.b.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_failed(&out, "ls on B with PostgreSQL stopped");
    let refused = within(Duration::from_secs(10), || {
        s.b.gateway_log().contains("connection slots are free")
    });
    assert!(
        refused.is_some(),
        "node B's log does not explain the refusal\n{}",
        s.logs()
    );

    let out = download.join().unwrap().unwrap();
    assert_ok(
        &out,
        &format!(
            "the download in progress when PostgreSQL stopped\n{}",
            s.logs()
        ),
    );
    assert_same_file(&big, &back);

    s.pg.start_again().unwrap();
    let recovered = within(Duration::from_secs(30), || {
        s.b.client()
            .sftp(&format!("ls {MOUNT}\n"))
            .is_ok_and(|o| o.success())
    });
    assert!(recovered.is_some(), "node B did not recover\n{}", s.logs());
    println!(
        "B recovered {:?} after PostgreSQL came back",
        recovered.unwrap()
    );
    let out = s.a.client().sftp(&format!("ls {MOUNT}\n")).unwrap();
    assert_ok(&out, "ls on A after PostgreSQL came back");
    let peak = sampler.finish().unwrap().max;
    assert!(peak <= 5, "sshd saw {peak} connections\n{}", s.logs());
}

/// `aws s3api ARGS` through `url` with `key`, as JSON (`{}` when the
/// command prints nothing).
fn s3api(
    url: &str,
    key: &e2e::s3_endpoint::S3Key,
    scratch: &std::path::Path,
    args: &[&str],
) -> serde_json::Value {
    let mut all = vec!["s3api"];
    all.extend_from_slice(args);
    let out = e2e::s3_endpoint::aws(url, key, &all, scratch).unwrap();
    assert_ok(&out, &format!("aws s3api {}", args.join(" ")));
    if out.stdout.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "aws s3api {}: not JSON ({e}):\n{}",
                args.join(" "),
                out.stdout
            )
        })
    }
}

/// The S3 endpoint on both nodes behind HAProxy round robin: each `aws`
/// call is a new connection, so the parts of one multipart upload reach
/// both nodes; every node lists every part, the upload completes into the
/// remote byte for byte, and nothing stays staged in the database after it
/// completes or is aborted.
#[test]
fn multipart_parts_sent_to_both_nodes_complete_into_one_object() {
    let mut s = ClusterSetup::new(5).unwrap();
    for node in [&mut s.a, &mut s.b] {
        node.cfg.s3_listen = Some("127.0.0.1:0".into());
    }
    s.start_both().unwrap();
    let key = e2e::s3_endpoint::create_key(&s.a.config_path, "alice").unwrap();
    let endpoints = [s.a.gw(), s.b.gw()].map(|gw| {
        e2e::s3_endpoint::endpoint_addr(gw).unwrap_or_else(|e| panic!("{e}\n{}", s.logs()))
    });
    let lb = Haproxy::start(&endpoints, ProxyProtocol::None).unwrap();
    lb.wait_all_up(Duration::from_secs(20)).unwrap();
    let url = format!("http://{}", lb.addr());
    let scratch = s.a.env.path("s3-scratch");
    fs::create_dir_all(&scratch).unwrap();

    let object = "partner/joined.bin";
    let created = s3api(
        &url,
        &key,
        &scratch,
        &[
            "create-multipart-upload",
            "--bucket",
            "default",
            "--key",
            object,
        ],
    );
    let upload_id = created["UploadId"].as_str().expect("UploadId").to_string();
    let sizes = [5 << 20, 5 << 20, (1 << 20) + 7];
    let mut whole = Vec::new();
    let mut parts = Vec::new();
    let before = lb.sessions_per_server().unwrap();
    for (i, size) in sizes.iter().enumerate() {
        let path = scratch.join(format!("part{}", i + 1));
        write_random_file(&path, *size).unwrap();
        whole.extend(fs::read(&path).unwrap());
        let number = (i + 1).to_string();
        let put = s3api(
            &url,
            &key,
            &scratch,
            &[
                "upload-part",
                "--bucket",
                "default",
                "--key",
                object,
                "--upload-id",
                &upload_id,
                "--part-number",
                &number,
                "--body",
                &path.display().to_string(),
            ],
        );
        parts.push(serde_json::json!({"PartNumber": i + 1, "ETag": put["ETag"]}));
    }
    let after = lb.sessions_per_server().unwrap();
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "the parts did not reach both nodes (connections per node before {before:?}, after {after:?})"
    );

    // Each node lists all three parts (two calls: one per node).
    for _ in 0..2 {
        let listed = s3api(
            &url,
            &key,
            &scratch,
            &[
                "list-parts",
                "--bucket",
                "default",
                "--key",
                object,
                "--upload-id",
                &upload_id,
            ],
        );
        let numbers: Vec<i64> = listed["Parts"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["PartNumber"].as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(numbers, [1, 2, 3], "{listed}\n{}", s.logs());
    }
    let staged: u64 =
        s.pg.psql("SELECT count(*) FROM gw_s3_chunks")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert!(
        staged >= 11,
        "the parts are not staged in the database: {staged} chunks"
    );

    let manifest = scratch.join("parts.json");
    fs::write(&manifest, serde_json::json!({"Parts": parts}).to_string()).unwrap();
    let done = s3api(
        &url,
        &key,
        &scratch,
        &[
            "complete-multipart-upload",
            "--bucket",
            "default",
            "--key",
            object,
            "--upload-id",
            &upload_id,
            "--multipart-upload",
            &format!("file://{}", manifest.display()),
        ],
    );
    assert!(
        done["ETag"].as_str().is_some_and(|e| e.ends_with("-3\"")),
        "{done}"
    );
    let landed =
        fs::read(s.root.join("joined.bin")).unwrap_or_else(|e| panic!("{e}\n{}", s.logs()));
    assert!(
        landed == whole,
        "the completed object differs from its parts ({} vs {} bytes)",
        landed.len(),
        whole.len()
    );
    for table in ["gw_s3_uploads", "gw_s3_parts", "gw_s3_chunks"] {
        assert_eq!(
            s.pg.psql(&format!("SELECT count(*) FROM {table}"))
                .unwrap()
                .trim(),
            "0",
            "{table} after completion"
        );
    }

    // An aborted upload leaves nothing either, whichever node aborts it.
    let created = s3api(
        &url,
        &key,
        &scratch,
        &[
            "create-multipart-upload",
            "--bucket",
            "default",
            "--key",
            "partner/gone.bin",
        ],
    );
    let gone_id = created["UploadId"].as_str().expect("UploadId").to_string();
    let body = scratch.join("part1");
    s3api(
        &url,
        &key,
        &scratch,
        &[
            "upload-part",
            "--bucket",
            "default",
            "--key",
            "partner/gone.bin",
            "--upload-id",
            &gone_id,
            "--part-number",
            "1",
            "--body",
            &body.display().to_string(),
        ],
    );
    s3api(
        &url,
        &key,
        &scratch,
        &[
            "abort-multipart-upload",
            "--bucket",
            "default",
            "--key",
            "partner/gone.bin",
            "--upload-id",
            &gone_id,
        ],
    );
    for table in ["gw_s3_uploads", "gw_s3_parts", "gw_s3_chunks"] {
        assert_eq!(
            s.pg.psql(&format!("SELECT count(*) FROM {table}"))
                .unwrap()
                .trim(),
            "0",
            "{table} after the abort"
        );
    }
    assert!(!s.root.join("gone.bin").exists());
}

/// `gateway remote test` in a cluster takes a slot like any node: with
/// node A holding all five connections of the remote (idle), the test on
/// B's config succeeds after A gives one back, sshd never sees a sixth
/// connection, and the tool leaves no node behind in `cluster status`.
#[test]
fn remote_test_takes_a_cluster_slot() {
    let mut s = ClusterSetup::new(5).unwrap();
    for node in [&mut s.a, &mut s.b] {
        node.remote().idle_timeout = Some("10m".into());
    }
    s.start_both().unwrap();
    s.fill_node_a("t");

    let sampler = ConnectionSampler::start(s.sshd.port()..=s.sshd.port());
    let out = s.b.remote_test().unwrap();
    let peak = sampler.finish().unwrap().max;
    assert_ok(&out, &format!("remote test on a full remote\n{}", s.logs()));
    assert!(
        peak <= 5,
        "sshd saw {peak} connections at once: `remote test` went past the cap of 5\n{}",
        s.logs()
    );
    let nodes = s.pg.psql("SELECT count(*) FROM gw_nodes").unwrap();
    assert_eq!(nodes.trim(), "2", "the tool's node row was left behind");
}

/// An S3 remote's `max_connections` (requests at once) holds over both nodes: node A's two slow
/// downloads take both request slots, so node B's listing waits until one
/// of them ends, and the cluster never holds more than two.
#[test]
fn an_s3_remotes_request_cap_holds_across_nodes() {
    use e2e::relay::{Relay, RelayOptions};
    use e2e::s3d::{S3Server, S3ServerKind};
    let pg = e2e::postgres::Postgres::start().unwrap();
    let s3 = S3Server::start(S3ServerKind::S3sFs).unwrap();
    let relay = Relay::start(RelayOptions::new("127.0.0.1", s3.addr())).unwrap();
    let mut remote = e2e::RemoteConfig::s3(
        "bucket",
        &format!("http://{}", relay.addr()),
        s3.bucket(),
        s3.access_key(),
        s3.secret_key(),
    )
    .io_timeout("60s");
    remote.max_connections = Some(2);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut node = e2e::mount::MountedGateway::new(remote.clone(), "/bucket").unwrap();
        node.cfg.server_extra.push(format!(
            "local_state = {}",
            toml_str(&node.env.state.display().to_string())
        ));
        node.cfg.state = std::path::PathBuf::from(pg.url());
        nodes.push(node);
    }
    let (a_part, b_part) = nodes.split_at_mut(1);
    let (a, b) = (&mut a_part[0], &mut b_part[0]);
    b.cfg.users = a.cfg.users.clone();
    b.key = a.key.clone();
    a.start_gateway().unwrap();
    b.start_gateway().unwrap();
    let logs = |a: &e2e::mount::MountedGateway, b: &e2e::mount::MountedGateway| {
        format!(
            "=== A ===\n{}\n=== B ===\n{}\n=== S3 ===\n{}",
            a.gateway_log(),
            b.gateway_log(),
            s3.logs()
        )
    };
    let held = || -> usize { slots_held(&pg).unwrap() };

    let src = a.env.path("big.bin");
    write_random_file(&src, 4 << 20).unwrap();
    assert_ok(
        &a.client()
            .sftp(&format!("put {} /bucket/big.bin\n", p(&src)))
            .unwrap(),
        "upload",
    );
    // About 4 s per download from now on.
    relay.slow(1 << 20);
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (listing, listed_at, ends) = std::thread::scope(|scope| {
        /// Stops the sampler however this closure ends (a failed
        /// assertion included), so the scope can end.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _stop_sampler = StopOnDrop(&stop);
        let sampler = scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(held(), std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let downloads: Vec<_> = (0..2)
            .map(|i| {
                let client = a.client_n(i);
                let dest = a.env.path(&format!("down{i}.bin"));
                scope.spawn(move || {
                    let out = client
                        .sftp(&format!("get /bucket/big.bin {}\n", p(&dest)))
                        .unwrap();
                    (out, std::time::Instant::now())
                })
            })
            .collect();
        // Both downloads stream: A holds both slots.
        let full = within(Duration::from_secs(20), || {
            held() == 2
                && (0..2).all(|i| {
                    fs::metadata(a.env.path(&format!("down{i}.bin"))).is_ok_and(|m| m.len() > 0)
                })
        });
        assert!(
            full.is_some(),
            "node A's two downloads never held both slots ({})\n{}",
            held(),
            logs(a, b)
        );
        let listing = b.client().sftp("ls -l /bucket\n").unwrap();
        let listed_at = std::time::Instant::now();
        let ends: Vec<_> = downloads
            .into_iter()
            .map(|d| {
                let (out, at) = d.join().unwrap();
                assert_ok(&out, "a download on node A");
                at
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        sampler.join().unwrap();
        (listing, listed_at, ends)
    });
    relay.slow(0);
    assert_ok(&listing, &format!("listing on node B\n{}", logs(a, b)));
    assert!(listing.lists_name("big.bin"), "{listing}");
    let first_end = ends.iter().min().copied().unwrap();
    assert!(
        listed_at + Duration::from_millis(200) >= first_end,
        "node B listed while node A held both request slots: the cap did not hold across nodes\n{}",
        logs(a, b)
    );
    let peak = peak.into_inner();
    assert!(peak <= 2, "the cluster held {peak} request slots of 2");
    for i in 0..2 {
        assert_same_file(&src, &a.env.path(&format!("down{i}.bin")));
    }
}
