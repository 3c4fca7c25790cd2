//! TLS to the cluster's PostgreSQL: a server started with `ssl = on` and
//! a certificate from the tests' own CA. `verify-full` with that CA works
//! and the gateway's sessions are encrypted (pg_stat_ssl); an unknown CA
//! or a certificate for another host name fails with a clear message;
//! `require` without a CA connects to either (it checks nothing but
//! encryption), `verify-ca` ignores the name; `disable` is plain.

use std::fs;
use std::path::{Path, PathBuf};

use e2e::cluster::ClusterSetup;
use e2e::*;

fn certs(dir: &Path) -> PathBuf {
    let d = dir.join("certs");
    fs::create_dir_all(&d).unwrap();
    e2e::ftpd::make_certs(&d).expect("test certificates");
    d
}

/// `gateway cluster status` with node A's state URL plus `query`.
fn status_with(c: &mut ClusterSetup, query: &str) -> CmdOutput {
    c.a.cfg.state = PathBuf::from(format!("{}?{query}", c.pg.url()));
    c.status().expect("cluster status runs")
}

#[test]
fn cluster_state_over_tls_with_libpq_sslmodes() {
    let mut c = ClusterSetup::new(5).expect("cluster set-up");
    let dir = certs(c.a.env.dir.path());
    let pem = |n: &str| dir.join(n).display().to_string();
    c.pg.serve_tls(&dir.join("server.pem"), &dir.join("server.key"))
        .expect("PostgreSQL with TLS");

    // verify-full with the right CA: the node runs, its sessions use TLS.
    c.a.cfg.state = PathBuf::from(format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        c.pg.url(),
        pem("ca.pem")
    ));
    let started = c.a.start_gateway().map(|_| ());
    if let Err(e) = started {
        panic!("node A over verify-full: {e:#}\n{}", c.logs());
    }
    let encrypted =
        c.pg.psql(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'gw'",
        )
        .unwrap();
    let (tls, all) = encrypted.split_once('|').unwrap();
    assert!(
        all != "0" && tls == all,
        "gateway sessions with TLS: {encrypted}\n{}",
        c.logs()
    );
    let out = c.status().unwrap();
    assert_ok(&out, "cluster status over verify-full");

    // An unknown CA: refused, saying why.
    let out = status_with(
        &mut c,
        &format!("sslmode=verify-full&sslrootcert={}", pem("unknown-ca.pem")),
    );
    assert_failed(&out, "verify-full with an unknown CA");
    eprintln!("unknown CA: {}{}", out.stdout.trim(), out.stderr.trim());
    assert_output_contains(
        &out,
        "invalid peer certificate: UnknownIssuer",
        "verify-full with an unknown CA",
    );

    // require without a CA: encrypted, unchecked.
    let out = status_with(&mut c, "sslmode=require");
    assert_ok(&out, "require without a CA");

    // A certificate for another host name: verify-full refuses,
    // verify-ca (chain only) and require accept.
    c.pg.serve_tls(&dir.join("wrong-host.pem"), &dir.join("wrong-host.key"))
        .unwrap();
    let out = status_with(
        &mut c,
        &format!("sslmode=verify-full&sslrootcert={}", pem("ca.pem")),
    );
    assert_failed(&out, "verify-full with a certificate for wrong.example");
    eprintln!("wrong host: {}{}", out.stdout.trim(), out.stderr.trim());
    assert_output_contains(&out, "not valid for name", "verify-full, wrong host");
    let out = status_with(
        &mut c,
        &format!("sslmode=verify-ca&sslrootcert={}", pem("ca.pem")),
    );
    assert_ok(&out, "verify-ca with a certificate for another name");
    let out = status_with(&mut c, "sslmode=require");
    assert_ok(&out, "require with a certificate for another name");

    // verify-full without a CA file is a config error naming the key.
    let out = status_with(&mut c, "sslmode=verify-full");
    assert_failed(&out, "verify-full without sslrootcert");
    assert_output_contains(&out, "sslrootcert", "verify-full without sslrootcert");

    // disable: plain TCP (the server allows both).
    let out = status_with(&mut c, "sslmode=disable");
    assert_ok(&out, "sslmode=disable");
}
