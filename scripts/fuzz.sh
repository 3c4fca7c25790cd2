#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) one after another.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 300 (0: only replay the corpus and the
# regression inputs once, a quick check); no TARGET means all of them
# (`cargo fuzz list`). Installs cargo-fuzz if missing, builds every target
# once (release, debug assertions, AddressSanitizer; the stable toolchain
# with RUSTC_BOOTSTRAP=1, as cargo-fuzz needs nightly flags), then runs
# each target in one process (the machine's other core stays free) for
# the given time, starting from fuzz/corpus/<target> and the crash inputs
# kept in fuzz/regressions/<target>. Prints, per target, the executions,
# exec/s, final coverage (cov/ft) and whether it crashed; exits non-zero
# if any target crashed (or timed out, or ran out of memory).
#
# New inputs go to fuzz/target/corpus/<target> (git-ignored), so a run
# leaves the tracked corpus alone. FUZZ_UPDATE_CORPUS=1 merges them into
# fuzz/corpus/<target>, keeping a smallest set of inputs that covers every
# edge covered (libFuzzer -set_cover_merge=1 -use_counters=0: at most a few
# hundred files here, where `cargo fuzz cmin` kept up to 1,158).
# FUZZ_SANITIZER=none builds without ASan. Logs: fuzz/target/logs/<target>.log.
#
# Reproducing a crash: libFuzzer saves the input as
# fuzz/artifacts/<target>/crash-<sha1> (or timeout-*, oom-*) and the log
# shows the panic and stack. From fuzz/:
#
#   target/x86_64-unknown-linux-gnu/release/<target> artifacts/<target>/crash-<sha1>
#
# runs that one input again with the binary this script built; or, after
# changing the code (rebuilds first; the same flags as below):
#
#   export RUSTC_BOOTSTRAP=1
#   cargo fuzz run -O --codegen-units 16 <target> artifacts/<target>/crash-<sha1>
#   cargo fuzz fmt -O --codegen-units 16 <target> artifacts/<target>/crash-<sha1>   # readable
#   cargo fuzz tmin -O --codegen-units 16 <target> artifacts/<target>/crash-<sha1>  # smaller
#
# Once fixed, keep the input in fuzz/regressions/<target>/ (every run
# starts by running that folder's inputs) and add a unit test with it next
# to the code.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

SECS=${1:-300}
[ $# -gt 0 ] && shift
case $SECS in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac

export RUSTC_BOOTSTRAP=1
SANITIZER=${FUZZ_SANITIZER:-address}
BUILD=(-O --codegen-units 16 --sanitizer "$SANITIZER")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

# One build of every target, then the binaries are run directly: `cargo
# fuzz run` would check (and redo) the build before each target.
echo "== building (sanitizer: $SANITIZER)"
cargo fuzz build "${BUILD[@]}" || exit 1
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release
for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || { echo "no fuzz target $t (cargo fuzz list)" >&2; exit 2; }
done

# Longest input per target: SFTP streams hold several packets, key and
# config files a few KiB; the parsers of single lines need less.
max_len() {
    case $1 in
    sftp_session) echo 65536 ;;
    private_key | config) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

mkdir -p target/logs
failed=0
rows=()
for t in "${TARGETS[@]}"; do
    work=target/corpus/$t
    mkdir -p "$work" "corpus/$t" "artifacts/$t"
    dirs=("$work" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    log=target/logs/$t.log
    echo "== $t: ${SECS} s"
    if [ "$SECS" -eq 0 ]; then
        how=(-runs=0)
    else
        how=(-max_total_time="$SECS")
    fi
    start=$SECONDS
    "$BIN/$t" -artifact_prefix="artifacts/$t/" "${how[@]}" -timeout=30 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    crash=$(grep -m1 -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //')
    if [ $rc -ne 0 ] || [ -n "$crash" ]; then
        failed=1
        status="CRASH (exit $rc) ${crash:-see $log}"
        grep -m3 -E "panicked at|ERROR: libFuzzer|==ERROR|deadly signal" "$log" | sed 's/^/    /'
    else
        status="ok"
    fi
    row=$(printf '%-14s %5ss  execs %-10s %6s exec/s  %-18s %s' \
        "$t" "$took" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$status")
    echo "$row"
    rows+=("$row")
    if [ "${FUZZ_UPDATE_CORPUS:-0}" = 1 ] && [ $rc -eq 0 ]; then
        # Merge into an empty folder: only inputs that add coverage stay
        # (edges, not hit counts: far fewer files, the same edges).
        merged=target/merged/$t
        rm -rf "$merged" && mkdir -p "$merged"
        "$BIN/$t" -set_cover_merge=1 -use_counters=0 -max_len="$(max_len "$t")" -timeout=30 -rss_limit_mb=2048 \
            "$merged" "corpus/$t" "$work" >"target/logs/$t.merge.log" 2>&1 &&
            rm -rf "corpus/$t" && mv "$merged" "corpus/$t" &&
            echo "   corpus/$t: $(ls "corpus/$t" | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
    fi
done

echo "== summary"
printf '%s\n' "${rows[@]}"
exit $failed
