#!/usr/bin/env bash
# The project's single test command (CI runs it through .ci/run).
#   1. installs the OpenSSH clients the end-to-end tests drive (if missing),
#   2. builds the gateway binary (debug),
#   3. runs every test of the workspace (cargo nextest, else cargo test).
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

install_packages() {
    local missing=()
    { command -v sftp && command -v scp && command -v ssh-keygen; } >/dev/null 2>&1 \
        || missing+=(openssh-client)
    command -v sshpass >/dev/null 2>&1 || missing+=(sshpass)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: openssh-client, sshpass"
        return 0
    fi
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
step "build gateway (cargo build -p gateway)" cargo build -p gateway
step "run tests" run_tests
