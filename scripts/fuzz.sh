#!/usr/bin/env bash
# Fuzzes the imgcache library with cargo-fuzz (libFuzzer): every target in fuzz/fuzz_targets,
# one after the other, each for SECONDS_PER_TARGET seconds (default 600), starting from the
# committed seeds in fuzz/seeds/<target> and the local corpus in fuzz/corpus/<target>
# (git-ignored; libFuzzer adds what it finds there). Prints a table of target, seconds,
# executions and crashes, and exits non-zero when any target crashed, leaked past the RSS
# limit or timed out; the input is in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 20         # smoke run (CI)
#   FUZZ_TARGETS="archive dialect" scripts/fuzz.sh 60
#
# Toolchain: stable Rust only. `-s none` builds without a sanitizer: sanitizers need the
# nightly-only `-Zsanitizer` (Rust code here is safe; libFuzzer still finds panics, overflows
# under debug assertions, hangs and memory blow-ups). With `-s none`, cargo-fuzz 0.13 passes
# only stable flags (-Cpasses=sancov-module, -Cllvm-args=..., --cfg fuzzing), so no
# RUSTC_BOOTSTRAP is needed. Should a cargo-fuzz version ask for a nightly-only flag anyway
# ("only accepted on the nightly compiler"), the build is retried once with RUSTC_BOOTSTRAP=1,
# which lets stable rustc accept -Z flags; it is never set otherwise.
#
# Environment: FUZZ_TARGETS (default: all), FUZZ_JOBS (parallel fuzz processes, default 1,
# at most 2 advised on a shared machine), FUZZ_ARGS (extra libFuzzer arguments).
set -euo pipefail

SECONDS_PER_TARGET="${1:-600}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
JOBS="${FUZZ_JOBS:-1}"
LOGS="$FUZZ/target/fuzz-logs"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz..." >&2
    nice -n 10 cargo install cargo-fuzz --locked
fi

cd "$FUZZ"
TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list)}"

build() {
    nice -n 10 cargo fuzz build -s none 2>&1
}
echo "building fuzz targets..." >&2
mkdir -p "$LOGS"
if ! build >"$LOGS/build.log"; then
    if grep -q "only accepted on the nightly compiler" "$LOGS/build.log"; then
        echo "cargo-fuzz asked for a nightly-only flag: retrying with RUSTC_BOOTSTRAP=1" >&2
        export RUSTC_BOOTSTRAP=1
        build >"$LOGS/build.log" || { cat "$LOGS/build.log" >&2; exit 1; }
    else
        cat "$LOGS/build.log" >&2
        exit 1
    fi
fi

run_target() {
    local t="$1" log="$LOGS/$1.log"
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    local before
    before=$(find "artifacts/$t" -type f | wc -l)
    local start=$SECONDS rc=0
    # shellcheck disable=SC2086
    nice -n 10 cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=512 -timeout=10 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    local execs crashes
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # failed without writing an input (build or libFuzzer error): see the log
    fi
    printf '%s\t%s\t%s\t%s\n' "$t" "$took" "${execs:-?}" "$crashes" >"$LOGS/$t.result"
}

pids=()
for t in $TARGETS; do
    run_target "$t" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then
        wait "${pids[0]}" || true
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

status=0
printf '%-12s %8s %12s %8s\n' target seconds executions crashes
for t in $TARGETS; do
    IFS=$'\t' read -r name took execs crashes <"$LOGS/$t.result"
    printf '%-12s %8s %12s %8s\n' "$name" "$took" "$execs" "$crashes"
    if [ "$crashes" != 0 ]; then
        status=1
        echo "  $t: see $LOGS/$t.log and $FUZZ/artifacts/$t/" >&2
        grep -m1 -E "panicked at|ERROR: libFuzzer" "$LOGS/$t.log" | sed 's/^/  /' >&2 || true
    fi
done
exit $status
