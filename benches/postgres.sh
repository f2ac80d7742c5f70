#!/usr/bin/env bash
# Nightly PostgreSQL dumps: `coffer backup --postgres URL` against `pg_dump | restic backup
# --stdin` and `pg_dump | borg create -`, on the same live database, in one run.
#
#   benches/postgres.sh             full run (~300 MB of plain dump, 7 nights, 2 rounds;
#                                   about 8 minutes on 2 cores, plus the build)
#   QUICK=1 benches/postgres.sh     smoke run (SCALE=1, 2 nights, 1 round; about 1 minute)
#
# Environment (all optional):
#   WORK=/var/tmp/pgbench-run       cluster, repositories, caches, logs, results.md (removed at
#                                   the end, except logs/ and results.md; KEEP=1 keeps all)
#   SCALE=10                        database size: pgbench scale SCALE plus 20,000 customers and
#                                   40,000 orders per unit; one unit is ~30 MB of plain dump
#   NIGHTS=7                        nights; each night after the first applies ~1% churn
#   ROUNDS=2                        repetitions, each on a fresh cluster (same seeds) and fresh
#                                   repositories; the best wall time of each backup is kept
#   CARGO_TARGET_DIR=/var/tmp/pgbench-target   where coffer is built (release)
#   PG_BIN=/usr/lib/postgresql/15/bin
#
# Method (same rules as benches/compare.sh; see "Benchmarks" in DESIGN.md):
# - A throwaway PostgreSQL 15 cluster per round, as root run as the `postgres` OS user; TCP on a free
#   loopback port with trust authentication, so all three tools reach it by the same URL.
# - The schema and the nightly churn are those of benches/compare.sh, from benches/pgdata.sh
#   (customers and orders with text, jsonb, numeric and timestamptz columns and indexes, plus
#   the pgbench tables): per night ~1% of customers updated, some moved or erased, ~1% new
#   orders, orders moving through their states, 1,000*SCALE pgbench transactions, then
#   VACUUM ANALYZE.
# - Every night each tool runs its own pg_dump of the unchanged database (nothing writes
#   between the three backups), into its own repository with its own cache; the order of the
#   tools rotates from night to night and round to round, so load from other processes
#   spreads over all three. Per tool and night: the best wall time over rounds, the highest
#   peak RSS, the mean repository growth.
# - Wall time and peak RSS from /usr/bin/time around the whole pipeline (for restic and borg
#   `bash -c 'pg_dump | tool'`; coffer runs pg_dump itself): wall includes pg_dump's own work
#   for every tool alike, and %M is the largest single process (the backup tool in practice).
#   Repository growth: `du -sb` of the repository before and after each backup.
# - After each round, untimed: every tool's copy of the last dump is read back and compared
#   with pg_dump's output (minus the random \restrict key lines, see without_restrict_key).
# - Defaults for every tool: coffer zstd, restic 0.14 compression "auto" (repository v2),
#   borg 1.2 lz4 with its default buzhash chunker (512 KiB-8 MiB, target 2 MiB),
#   repokey-blake2; one password for all. Page cache not dropped; `sync` before each backup.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ ${QUICK:-0} == 1 ]]; then
  : "${SCALE:=1}" "${NIGHTS:=2}" "${ROUNDS:=1}" "${WORK:=/var/tmp/pgbench-quick}"
fi
: "${WORK:=/var/tmp/pgbench-run}" "${SCALE:=10}" "${NIGHTS:=7}" "${ROUNDS:=2}" "${KEEP:=0}"
: "${PG_BIN:=/usr/lib/postgresql/15/bin}" "${CARGO_TARGET_DIR:=/var/tmp/pgbench-target}"
export CARGO_TARGET_DIR
TOOLS=(coffer restic borg)

PASSWORD=coffer-bench-password
unset COFFER_PASSWORD_FILE COFFER_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
  RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE BORG_PASSCOMMAND BORG_PASSPHRASE_FD BORG_REPO
export COFFER_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD

START_TIME=$SECONDS
say() { printf '[%s +%4ds] %s\n' "$(date +%T)" "$((SECONDS - START_TIME))" "$*" >&2; }
die() {
  say "ERROR: $*"
  exit 1
}

LOGS=$WORK/logs
RAW=$LOGS/raw.tsv

check_prerequisites() {
  [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
  [[ -x $PG_BIN/initdb ]] || die "PostgreSQL 15 binaries not found in PG_BIN=$PG_BIN"
  local t
  for t in restic borg; do
    command -v "$t" >/dev/null || die "$t is not installed (apt-get install restic borgbackup)"
  done
  # A full run peaks at about 4x the dump size (database, three repositories).
  local avail
  avail=$(df -B1 --output=avail "$(dirname "$WORK")" | tail -1)
  ((avail > SCALE * 400000000)) || die "less than $((SCALE * 400)) MB free under $(dirname "$WORK")"
}

build_coffer() {
  say "building coffer (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1 ||
    die "cargo build failed; see $LOGS/cargo-build.log"
  COFFER=$CARGO_TARGET_DIR/release/coffer
  [[ -x $COFFER ]] || die "no binary at $COFFER"
}

# ---------------------------------------------------------------------------------------------
# The throwaway cluster and the database, shared with benches/compare.sh (here, as root,
# PostgreSQL runs as `postgres`, and the cluster stays up for the backups)
# ---------------------------------------------------------------------------------------------

PG_FIRST_PORT=55329 PG_RUN_AS=postgres PG_CREATE_USER=0 PG_SAY_SOCKET=0
# shellcheck source-path=SCRIPTDIR source=pgdata.sh
source "$(dirname "$0")/pgdata.sh"

cleanup() {
  pg_stop
  if [[ $KEEP != 1 && -d $WORK ]]; then
    rm -rf "$WORK/pg" "$WORK/repos"
  fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# The three backups
# ---------------------------------------------------------------------------------------------

# `bash -c` runs the pipeline so that /usr/bin/time covers pg_dump and the tool alike;
# pipefail makes a failed pg_dump fail the step.
# shellcheck disable=SC2016 # expanded by the inner bash
PIPE='set -o pipefail; "$0" --format=plain "$1" | "${@:2}"'

# cmd_TOOL ACTION NIGHT: set CMD for REPO and CACHE.
cmd_coffer() {
  local c=("$COFFER" -q -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" init) ;;
    backup) CMD=("${c[@]}" backup --postgres "$PGURL") ;;
    dump) CMD=("${c[@]}" dump latest app.sql) ;;
  esac
}

cmd_restic() {
  local c=(restic -q -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" init) ;;
    backup) CMD=(bash -c "$PIPE" "$PG_BIN/pg_dump" "$PGURL" "${c[@]}" backup --stdin --stdin-filename app.sql) ;;
    dump) CMD=("${c[@]}" dump latest /app.sql) ;;
  esac
}

# borg keeps its cache, keys and security state under BORG_BASE_DIR.
cmd_borg() {
  local c=(env BORG_BASE_DIR="$CACHE" borg)
  case $1 in
    init) CMD=("${c[@]}" init --encryption=repokey-blake2 "$REPO") ;;
    backup) CMD=(bash -c "$PIPE" "$PG_BIN/pg_dump" "$PGURL" "${c[@]}" create --stdin-name app.sql "$REPO::night$2" -) ;;
    dump) CMD=("${c[@]}" extract --stdout "$REPO::night$2" app.sql) ;;
  esac
}

use_repo() {
  REPO=$WORK/repos/$1/repo
  CACHE=$WORK/repos/$1/cache
}

# backup TOOL ROUND NIGHT: one timed backup; appends tool, round, night, wall s, peak RSS
# KiB, repository bytes before and after to RAW.
backup() {
  local tool=$1 round=$2 night=$3 log=$LOGS/$1.r$2.night$3.log tf=$LOGS/time.out before after wall rss
  use_repo "$tool"
  "cmd_$tool" backup "$night"
  before=$(du -sb "$REPO" | cut -f1)
  sync
  /usr/bin/time -f '%e %M' -o "$tf" "${CMD[@]}" >"$log" 2>&1 || die "$tool night $night failed; see $log"
  after=$(du -sb "$REPO" | cut -f1)
  read -r wall rss <"$tf"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$round" "$night" "$wall" "$rss" "$before" "$after" >>"$RAW"
  say "  $tool: ${wall}s, $((rss / 1024)) MiB, +$(((after - before) / 1000)) kB"
}

# pg_dump 15.14 and later (CVE-2025-8714) write a random key into the `\restrict` line at
# the top and the `\unrestrict` line at the end of every plain dump, so no two dumps are
# byte-identical, and each tool's backup ran its own pg_dump.
without_restrict_key() { sed -E '/^\\(un)?restrict [A-Za-z0-9]+$/d'; }

# Untimed, after the last night: each tool's copy of the dump equals pg_dump's own output.
verify_last_night() {
  local round=$1 t sum
  for t in "${TOOLS[@]}"; do
    use_repo "$t"
    "cmd_$t" dump "$NIGHTS"
    sum=$("${CMD[@]}" 2>>"$LOGS/verify.log" | without_restrict_key | sha256sum | cut -c1-64)
    if [[ $sum == "$LAST_SUM" ]]; then
      say "  $t: the last night's dump restores byte for byte"
    else
      say "  $t: the last night's dump DIFFERS from pg_dump's output (see $LOGS/verify.log)"
      VERIFY_FAILED+=" $t (round $round)"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

tool_versions() {
  printf -- '- %s (%s)\n' "$("$COFFER" --version)" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
  printf -- '- %s\n' "$(restic version | head -1)"
  printf -- '- %s\n' "$(borg --version)"
  printf -- '- %s\n' "$("$PG_BIN/pg_dump" --version)"
}

report() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  {
    cat <<MD
# benches/postgres.sh: $(date -u '+%Y-%m-%d %H:%M UTC')

- machine: $(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r)
- database: SCALE=$SCALE, $NIGHTS nights, $ROUNDS rounds (each on a fresh cluster and fresh repositories); plain dump $(awk '{ printf "%.1f", $1 / 1e6 }' <<<"$FIRST_DUMP") MB on night 1, $(awk '{ printf "%.1f", $1 / 1e6 }' <<<"$LAST_DUMP") MB on night $NIGHTS; $DB_BYTES bytes on disk after loading
- load: $LOAD_SECONDS s; whole run: $((SECONDS - START_TIME)) s
- last night restored equal to pg_dump (but the \\restrict key lines): ${VERIFY_RESULT}
$(tool_versions)

MD
    # Per tool and night: the best wall time over rounds, the highest peak RSS, the mean
    # repository growth; then night 1 and the mean of the later nights.
    awk -F'\t' -v nights="$NIGHTS" -v rounds="$ROUNDS" '
      function ratio(a, b) { return b > 0 ? sprintf("%.2f×", a / b) : "-" }
      {
        t = $1; n = $3; wall = $4; rss = $5; grow = $7 - $6
        if (!((t, n) in best) || wall < best[t, n]) best[t, n] = wall
        growth[t, n] += grow / rounds
        if (rss > peak[t]) peak[t] = rss
      }
      END {
        k = nights - 1
        split("coffer restic borg", T, " ")
        for (i = 1; i <= 3; i++) {
          t = T[i]
          first[t] = growth[t, 1]; t1[t] = best[t, 1]
          for (n = 2; n <= nights; n++) { later[t] += growth[t, n]; tl[t] += best[t, n] }
          tall[t] = t1[t] + tl[t]
        }
        print "| | coffer | restic | borg | coffer/restic | coffer/borg |"
        print "|---|---:|---:|---:|---:|---:|"
        row("added by night 1", first, 1e-6, " MB", 1)
        if (k > 0) row("mean added per later night", later, 1e-6 / k, " MB", 1)
        row("backup time, night 1", t1, 1, " s", 2)
        if (k > 0) row("mean backup time, later nights", tl, 1 / k, " s", 2)
        row("mean backup time, all nights", tall, 1 / nights, " s", 2)
        row("peak RSS", peak, 1 / 1024, " MiB", 0)
      }
      function row(label, a, f, unit, d,   fmt) {
        fmt = "%." d "f" unit
        printf "| %s | " fmt " | " fmt " | " fmt " | %s | %s |\n", label,
          a["coffer"] * f, a["restic"] * f, a["borg"] * f,
          ratio(a["coffer"], a["restic"]), ratio(a["coffer"], a["borg"])
      }' "$RAW"
    printf '\nEvery backup (tool, round, night, wall s, peak RSS KiB, repository bytes before, after):\n\n```\n'
    cat "$RAW"
    printf '```\n'
  } >"$WORK/results.md"
  cat "$WORK/results.md"
}

# One round: a fresh cluster loaded the same way (same seeds), fresh repositories, NIGHTS
# nights. The tools' order rotates by night and by round.
run_round() {
  local round=$1 t0=$SECONDS night k t order
  say "round $round of $ROUNDS"
  rm -rf "$WORK/pg" "$WORK/repos"
  pg_start
  load_database
  LOAD_SECONDS=$((SECONDS - t0))
  DB_BYTES=$(psql_file -At -c "SELECT pg_database_size('app')")
  for t in "${TOOLS[@]}"; do
    use_repo "$t"
    mkdir -p "$CACHE"
    "cmd_$t" init
    "${CMD[@]}" >>"$LOGS/$t.init.log" 2>&1 || die "$t init failed; see $LOGS/$t.init.log"
  done
  for ((night = 1; night <= NIGHTS; night++)); do
    ((night > 1)) && churn "$night"
    # Untimed: the dump's size and checksum, which also brings the database into the page
    # cache before whichever tool goes first.
    "$PG_BIN/pg_dump" --format=plain "$PGURL" >"$WORK/tonight.sql" || die "pg_dump failed"
    LAST_DUMP=$(stat -c %s "$WORK/tonight.sql")
    LAST_SUM=$(without_restrict_key <"$WORK/tonight.sql" | sha256sum | cut -c1-64)
    rm -f "$WORK/tonight.sql"
    ((night == 1)) && FIRST_DUMP=$LAST_DUMP
    k=$(((night + round - 2) % ${#TOOLS[@]}))
    order=("${TOOLS[@]:k}" "${TOOLS[@]:0:k}")
    say "night $night: dump of $((LAST_DUMP / 1000000)) MB (order: ${order[*]})"
    for t in "${order[@]}"; do
      backup "$t" "$round" "$night"
    done
  done
  say "verifying the last night's restores (untimed)"
  verify_last_night "$round"
  pg_stop
}

main() {
  rm -rf "$WORK"
  mkdir -p "$LOGS"
  check_prerequisites
  build_coffer
  : >"$RAW"
  VERIFY_FAILED=
  local round
  for ((round = 1; round <= ROUNDS; round++)); do
    run_round "$round"
  done
  VERIFY_RESULT=${VERIFY_FAILED:+NO for$VERIFY_FAILED}
  : "${VERIFY_RESULT:=yes, every tool in every round}"
  report
}

main "$@"
