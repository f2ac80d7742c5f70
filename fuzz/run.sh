#!/usr/bin/env bash
# Fuzz every coffer decoder (or the TARGETs named) for SECONDS each, one target at a time,
# and print per target: executions, exec/s, coverage (cov, ft), corpus size and findings.
#
#   fuzz/run.sh [--cpu] [--keep] SECONDS [TARGET...]
#
#   SECONDS  per target: wall-clock seconds, or with --cpu CPU seconds (the target is run
#            again, from its corpus, until its process has used that much CPU: on a shared
#            machine, and under `nice -n 19`, wall time says little about how much was fuzzed).
#   --keep   new inputs go into the committed corpus fuzz/corpus/<target>, which is then
#            minimized with `cargo fuzz cmin`; without it they go to the scratch folder
#            fuzz/target/new-corpus/<target> and the committed corpus is only read.
#   TARGETs  default to every target `cargo fuzz list` names, so new targets are picked up.
#
# Inputs: fuzz/corpus/<target> (committed, minimized) and fuzz/seeds/<target> (valid objects
# written by gen_seeds). Environment: FUZZ_TOOLCHAIN (default "nightly"), FUZZ_ARGS (extra
# libFuzzer flags). Long runs: `nice -n 19 fuzz/run.sh --cpu --keep 1200` (nice is inherited).
#
# Exits 1 if any target crashes, panics, leaks, runs out of memory or hangs (one input over
# 20 s), or fails to build; the input is left in fuzz/artifacts/<target>/ (reproduce:
# cargo +nightly fuzz run <target> <file>). Logs are in fuzz/target/run-logs/<target>.log.
set -uo pipefail

cpu=0
keep=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --cpu) cpu=1 ;;
        --keep) keep=1 ;;
        *) break ;;
    esac
    shift
done
usage() { echo "usage: $0 [--cpu] [--keep] SECONDS [TARGET...]" >&2; exit 2; }
[ "$#" -gt 0 ] || usage
secs="$1"
shift
case "$secs" in '' | *[!0-9]* | 0) usage ;; esac
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
triple=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
bindir="fuzz/target/$triple/release"

logdir="fuzz/target/run-logs"
mkdir -p "$logdir"
# Sum of the numbers matching a libFuzzer final-stats key over every round of a log.
stat_sum() { grep -o "stat::$1: *[0-9]*" "$2" | awk '{s += $2} END {print s + 0}'; }
files_in() { find "$1" -type f 2>/dev/null | wc -l; }
bytes_in() { find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

failed=()
rows=()
for t in "${targets[@]}"; do
    bin="$bindir/$t"
    [ -x "$bin" ] || { echo "FAIL: no fuzz target $t (see cargo +$toolchain fuzz list)" >&2; failed+=("$t"); continue; }
    kept="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$kept" "$artifacts"
    if [ "$keep" -eq 1 ]; then
        corpora=("$kept")
    else
        scratch="fuzz/target/new-corpus/$t"
        rm -rf "$scratch"
        mkdir -p "$scratch"
        corpora=("$scratch" "$kept")
    fi
    [ -d "fuzz/seeds/$t" ] && corpora+=("fuzz/seeds/$t")
    found_before=$(files_in "$artifacts")
    log="$logdir/$t.log"
    : >"$log"
    echo "== $t: ${secs}s $([ "$cpu" -eq 1 ] && echo CPU || echo wall)"
    used_cpu=0
    used_wall=0
    rc=0
    # One round without --cpu; with it, rounds until the CPU budget is spent (libFuzzer's
    # -max_total_time counts wall time, which is never less than a single thread's CPU time).
    while :; do
        left=$((secs - ${used_cpu%.*}))
        [ "$cpu" -eq 1 ] || left=$secs
        t0=$(date +%s)
        # -timeout: one input taking over 20 s is a hang; any finding makes libFuzzer exit non-zero.
        # shellcheck disable=SC2086
        /usr/bin/time -f 'cpu-seconds %U %S' -a -o "$log" \
            "$bin" -artifact_prefix="$artifacts/" -max_total_time="$left" -timeout=20 \
            -print_final_stats=1 ${FUZZ_ARGS:-} "${corpora[@]}" >>"$log" 2>&1
        rc=$?
        used_wall=$((used_wall + $(date +%s) - t0))
        used_cpu=$(awk '/^cpu-seconds/ {s += $2 + $3} END {printf "%.1f", s}' "$log")
        [ "$rc" -eq 0 ] && [ "$cpu" -eq 1 ] && [ $((secs - ${used_cpu%.*})) -ge 1 ] || break
    done
    if [ "$keep" -eq 1 ] && [ "$rc" -eq 0 ]; then
        cargo "+$toolchain" fuzz cmin "$t" "$kept" >>"$log" 2>&1 || { echo "FAIL: cmin $t" >&2; rc=1; }
    fi
    execs=$(stat_sum number_of_executed_units "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    found=$(($(files_in "$artifacts") - found_before))
    rate=$(awk -v e="$execs" -v c="$used_cpu" 'BEGIN {printf "%d", (c > 0 ? e / c : 0)}')
    corpus="$(files_in "$kept") files, $(bytes_in "$kept") B"
    [ "$keep" -eq 1 ] || corpus="$corpus (+$(files_in "$scratch") new)"
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAIL (exit $rc)"
        failed+=("$t")
        grep -E '^(==[0-9]+==|thread .* panicked|.*SUMMARY|.*Test unit written)' "$log" | head -20 >&2
    fi
    row="| $t | $result | $execs | $rate | ${used_cpu} / ${used_wall} | ${cov:-?} | $corpus | $found |"
    echo "$row"
    rows+=("$row")
done

echo "== summary: $([ "$cpu" -eq 1 ] && echo "${secs} CPU" || echo "${secs} wall") seconds per target," \
    "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "| target | result | execs | exec/s (per CPU s) | CPU s / wall s | coverage | corpus | findings |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in $logdir/)" >&2
    exit 1
fi
