#!/usr/bin/env bash
# The project's single test command (CI runs it through .ci/run).
#   1. installs the OpenSSH clients and server, puttygen and ss the end-to-end
#      tests drive (if missing),
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
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: openssh-client, sshpass, openssh-server, putty-tools, iproute2, rclone"
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
step "build gateway (cargo build -p gateway)" cargo build -p gateway
# The benchmark with tiny sizes against the debug build, so bench/run.py
# cannot rot; its figures mean nothing (the full run is `python3 bench/run.py`).
step "benchmark smoke test (bench/run.py --quick)" python3 bench/run.py --quick --debug --no-build
step "run tests" run_tests
