#!/usr/bin/env bash
# Smoke-fuzz every coffer decoder for a few seconds each; for CI.
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]
#
# SECONDS per target defaults to 10; TARGETs default to every target (`cargo fuzz list`).
# Environment: FUZZ_TOOLCHAIN (default "nightly"), FUZZ_ARGS (extra libFuzzer flags).
# Exits non-zero if any target crashes, leaks, times out or fails to build; the crashing
# input is left in fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
set -uo pipefail

secs="${1:-10}"
shift || true
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
cd "$(dirname "$0")/.." || exit 2

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 2; }

echo "== building ${#targets[@]} fuzz targets"
cargo "+$toolchain" fuzz build || { echo "FAIL: fuzz build" >&2; exit 1; }

logdir="fuzz/target/smoke-logs"
mkdir -p "$logdir"
failed=()
summary=()
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    log="$logdir/$t.log"
    # New units go to fuzz/corpus/<t> (git-ignored); fuzz/seeds/<t> is read-only input.
    corpora=("fuzz/corpus/$t")
    mkdir -p "fuzz/corpus/$t"
    [ -d "fuzz/seeds/$t" ] && corpora+=("fuzz/seeds/$t")
    # -timeout: one input taking >20s is a hang; a crash makes libFuzzer (and cargo fuzz) exit non-zero.
    # shellcheck disable=SC2086
    cargo "+$toolchain" fuzz run "$t" "${corpora[@]}" -- \
        -max_total_time="$secs" -timeout=20 -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        line="ok    $t: ${runs:-?} execs, ${cov:-cov: ?}, ${corp:-corp: ?}"
    else
        line="FAIL  $t (exit $rc): see $log"
        failed+=("$t")
        grep -E '^(==[0-9]+==|thread .* panicked|.*SUMMARY|.*Test unit written)' "$log" | head -20 >&2
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary (${secs}s per target, $(date -u +%Y-%m-%dT%H:%MZ))"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
