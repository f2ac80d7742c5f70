#!/usr/bin/env bash
# Point-in-time recovery, side by side: coffer against pgBackRest on the same PostgreSQL 15
# database on this machine: WAL archiving at full pgbench write load, two base backups around
# a burst of churn, a restore to a point in time, and the RPO when the server is killed.
#
#   benches/pitr.sh               full run (SCALE=50: a 790 MB database; about 5 minutes per
#                                 tool on 2 cores, plus building the database once, under 1 minute)
#   benches/pitr.sh --quick       smoke run (SCALE=5, short loads; under 3 minutes): checks
#                                 that the script works
#
# Environment (all optional):
#   WORK=/var/tmp/coffer-pitr     work dir: the pristine database (kept between runs), each
#                                 tool's cluster, repository, restores and logs; results.md.
#                                 Must be reachable by the postgres OS user.
#   SCALE=50                      pgbench scale of the database (15 MB per unit)
#   LOAD_SECS=120                 archiving phase: pgbench -c 4 -j 2 -T LOAD_SECS
#   CHURN_SECS=60                 churn between the two base backups (same pgbench, full rate)
#   RPO_SECS=30                   RPO phase: seconds of load before the server is killed
#   ARCHIVE_TIMEOUT=60            archive_timeout for both tools (coffer's default, the RPO bound)
#   ROUNDS=1                      repetitions; the tools' order rotates; times: best of rounds,
#                                 everything else: mean
#   TOOLS="pgbackrest coffer"     tools to run. coffer's phases run as far as its build has
#                                 the commands they drive (wal-push and setup-archiving;
#                                 backup --postgres-base; restore --to-postgres-data and
#                                 wal-fetch); the report names what it lacks
#   PGBR_COMPRESS=zst             pgBackRest's compress-type (zst: the codec coffer uses;
#                                 gz is pgBackRest's default)
#   COFFER=PATH                   a coffer binary to use instead of building one
#   CARGO_TARGET_DIR=/var/tmp/pitr-target   where coffer is built (cargo build --release)
#   REBUILD=1                     rebuild the pristine database even if a cached one matches
#   KEEP=1                        keep clusters, repositories and restores after the run
#   PG_BIN=/usr/lib/postgresql/15/bin
#
# Method (as benches/compare.sh: the same data and settings, ratios rather than bare times):
# - The database (pgbench -i -s SCALE, data checksums on, plus a table `tick`) is built once
#   and kept as a stopped "pristine" data directory. Each tool gets a copy of it, so every
#   tool starts from byte-identical data with the same settings: PostgreSQL's defaults
#   (fsync, synchronous_commit and full_page_writes on, max_wal_size 1GB, checkpoint_timeout
#   5min), archive_mode on, archive_timeout ARCHIVE_TIMEOUT. The tools run one after the
#   other (two loaded clusters at once would halve each one's share of 2 cores); with ROUNDS
#   > 1 the order rotates.
# - Both repositories are encrypted (pgBackRest: aes-256-cbc, coffer always) with the same
#   password, and compressed with zstd (pgBackRest: compress-type=PGBR_COMPRESS). pgBackRest
#   archives synchronously (its default: one archive-push per segment), backups with
#   start-fast=y (an immediate checkpoint). coffer runs with its defaults; its
#   archive_command is the one `coffer setup-archiving` prints.
# - Archiving: `pgbench -n -c 4 -j 2 -T LOAD_SECS` (TPC-B-like, full write rate). Produced:
#   pg_current_wal_lsn() before and after / 16 MiB; archived: pg_stat_archiver.archived_count.
#   The `.ready` files in pg_wal/archive_status are counted every second: the backlog at the
#   end of the load and how long it takes to drain show whether archiving lags. CPU per
#   segment: the archive_command runs under /usr/bin/time (user+sys of that process and its
#   children; a background pusher that outlives the command would not be counted, so a tool
#   with one must add it). Repository bytes per segment: `du -sb` growth over the phase.
# - Base backups: one after the load, then CHURN_SECS of the same load (with `tick` getting a
#   row every 100 ms), then a second: wall time and repository growth (`du -sb`, WAL archived
#   meanwhile included, alike for both). pgBackRest's second is taken twice, incr then diff,
#   both against the full; coffer takes one (deduplicated), compared with each.
# - Restore to a point in time: the target is the clock time in the middle of the churn.
#   Wall time from the restore command to a server that accepts connections and has finished
#   recovery (pg_is_in_recovery() false, or paused at the target), next to the live one. The
#   restored `tick` table is checked: no row after the target, and its newest row's distance
#   before it. The restored server runs with archive_mode=off, so it archives nothing.
# - RPO: `tick` gets a row every 100 ms while pgbench runs at full rate; after RPO_SECS the
#   server and all its processes get SIGKILL; then each tool restores to the end of its
#   archive. RPO = kill time - newest recovered `tick` row.
# - Page cache not dropped; the machine may be shared (load average in the report).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "benches/pitr.sh: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done
if ((QUICK)); then
  : "${SCALE:=5}" "${LOAD_SECS:=15}" "${CHURN_SECS:=10}" "${RPO_SECS:=8}" "${WORK:=/var/tmp/coffer-pitr-quick}"
fi
: "${WORK:=/var/tmp/coffer-pitr}" "${SCALE:=50}" "${LOAD_SECS:=120}" "${CHURN_SECS:=60}"
: "${RPO_SECS:=30}" "${ARCHIVE_TIMEOUT:=60}" "${ROUNDS:=1}" "${TOOLS:=pgbackrest coffer}"
: "${PGBR_COMPRESS:=zst}" "${REBUILD:=0}" "${KEEP:=0}" "${PG_BIN:=/usr/lib/postgresql/15/bin}"
: "${CARGO_TARGET_DIR:=/var/tmp/pitr-target}"
export CARGO_TARGET_DIR
# The most a restore (to a running server) or a backlog drain may take before it counts as failed.
: "${WAIT_LIMIT:=1800}"

PASSWORD=coffer-bench-password
unset COFFER_PASSWORD COFFER_PASSWORD_FILE COFFER_REPOSITORY PGPASSWORD PGHOST PGPORT PGUSER \
  PGDATABASE PGBACKREST_CONFIG PGBACKREST_STANZA

START_TIME=$SECONDS
say() { printf '[%s +%4ds] %s\n' "$(date +%T)" "$((SECONDS - START_TIME))" "$*" >&2; }
warn() { say "WARNING: $*"; }
die() {
  say "ERROR: $*"
  exit 1
}

# As root PostgreSQL (and so pgBackRest, and coffer's wal-push) runs as `postgres`.
PG_FIRST_PORT=55429 PG_RUN_AS=postgres PG_CREATE_USER=0 PG_SAY_SOCKET=0
# shellcheck source-path=SCRIPTDIR source=pgdata.sh
source "$(dirname "$0")/pgdata.sh"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

STARTED=()    # data directories of servers this script started (stopped on exit)
BACKGROUND=() # pids of background clients (pgbench, the ticker), waited for or ended on exit

# q PORT SQL: one query on database app, unaligned, as the superuser `bench` over TCP.
q() {
  local port=$1
  shift
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
    -U bench -d app -c "$*"
}

# srv_start DATA PORT [-c name=value]...: start a server as the postgres OS user and wait
# until it accepts connections.
srv_start() {
  local data=$1 port=$2
  shift 2
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data.log" -w -t "$WAIT_LIMIT" \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$SOCK $*" \
    start >>"$LOGS/pg_ctl.log" 2>&1 || die "cannot start PostgreSQL in $data; see $data.log"
  STARTED+=("$data")
}

srv_stop() {
  as_pg "$PG_BIN/pg_ctl" -D "$1" -m "${2:-fast}" -w stop >>"$LOGS/pg_ctl.log" 2>&1 || true
}

# descendants PID: every process below PID (backends, the archiver and the archive_command
# it runs, and that command's own children).
descendants() {
  local p
  for p in $(ps -o pid= --ppid "$1" || true); do
    echo "$p"
    descendants "$p"
  done
}

# srv_kill DATA: SIGKILL to the postmaster and every process below it, as a crash of the
# machine would: an archive-push under way dies too. The tree is stopped first (twice, to
# catch what forked meanwhile), so nothing new starts between listing and killing.
srv_kill() {
  local pm family
  pm=$(head -1 "$1/postmaster.pid")
  family="$pm $(descendants "$pm")"
  # shellcheck disable=SC2086 # lists of pids
  kill -STOP $family 2>/dev/null || true
  family="$family $(descendants "$pm")"
  # shellcheck disable=SC2086
  kill -STOP $family 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -KILL $family 2>/dev/null || true
  while kill -0 "$pm" 2>/dev/null; do sleep 0.05; done
}

# wait_recovered PORT: wait until a (restored) server accepts connections and has finished
# recovery, or paused at its target; print done or paused.
wait_recovered() {
  local port=$1 deadline=$((SECONDS + WAIT_LIMIT)) st
  while ((SECONDS < deadline)); do
    st=$(PGCONNECT_TIMEOUT=2 q "$port" "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'done'
           WHEN pg_get_wal_replay_pause_state() = 'paused' THEN 'paused' ELSE 'replaying' END" \
      2>/dev/null) || st=
    if [[ $st == done || $st == paused ]]; then
      echo "$st"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ready_count DATA: WAL segments waiting to be archived.
ready_count() { find "$1/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l; }

# drain DATA: wait until nothing waits to be archived; print the seconds it took.
drain() {
  local t0 deadline=$((SECONDS + WAIT_LIMIT))
  t0=$(now)
  while (($(ready_count "$1") > 0)); do
    ((SECONDS < deadline)) || die "archiving did not catch up within ${WAIT_LIMIT}s; see $LOGS"
    sleep 0.2
  done
  elapsed "$t0" "$(now)"
}

# load SECONDS LOG: pgbench at full write rate, in the background (pid in LOAD_PID).
load() {
  "$PG_BIN/pgbench" -n -c 4 -j 2 -T "$1" -h 127.0.0.1 -p "$PORT" -U bench app >"$2" 2>&1 &
  LOAD_PID=$!
  BACKGROUND+=("$LOAD_PID")
}

# ticker SECONDS: a row in `tick` every 100 ms, each its own committed transaction.
ticker() {
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U bench -d app -c "CALL tick($1)" \
    >>"$LOGS/ticker.log" 2>&1 &
  TICK_PID=$!
  BACKGROUND+=("$TICK_PID")
}

cleanup() {
  local p d
  for p in "${BACKGROUND[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for d in "${STARTED[@]}"; do
    [[ -f $d/postmaster.pid ]] && srv_stop "$d" immediate
  done
  if [[ $KEEP != 1 && -n ${WORK:-} ]]; then
    rm -rf "$WORK/run"
  fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# The pristine database, built once per SCALE
# ---------------------------------------------------------------------------------------------

TICK_SQL="
CREATE TABLE tick (t timestamptz NOT NULL);
CREATE PROCEDURE tick(seconds float8) LANGUAGE plpgsql AS \$\$
DECLARE stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
  WHILE clock_timestamp() < stop LOOP
    INSERT INTO tick VALUES (clock_timestamp());
    COMMIT;
    PERFORM pg_sleep(0.1);
  END LOOP;
END \$\$;"

prepare_pristine() {
  PRISTINE=$WORK/data/pristine-scale$SCALE
  if [[ $REBUILD != 1 && -e $PRISTINE.complete ]]; then
    say "reusing the database in $PRISTINE"
    return
  fi
  rm -rf "$PRISTINE" "$PRISTINE.complete"
  mkdir -p "$PRISTINE"
  [[ -n $PG_OS_USER ]] && chown "$PG_OS_USER:" "$PRISTINE"
  as_pg "$PG_BIN/initdb" -D "$PRISTINE/data" -U bench -A trust -E UTF8 --no-locale \
    --data-checksums >"$LOGS/initdb.log" 2>&1 || die "initdb failed; see $LOGS/initdb.log"
  PORT=$(free_port)
  srv_start "$PRISTINE/data" "$PORT"
  say "loading the database (pgbench -i -s $SCALE)"
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U bench app
  "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U bench app \
    >"$LOGS/pgbench-init.log" 2>&1 || die "pgbench -i failed; see $LOGS/pgbench-init.log"
  q "$PORT" "$TICK_SQL" >/dev/null
  q "$PORT" "VACUUM ANALYZE" >/dev/null
  DB_BYTES=$(q "$PORT" "SELECT pg_database_size('app')")
  srv_stop "$PRISTINE/data"
  echo "$DB_BYTES" >"$PRISTINE.complete"
}

# ---------------------------------------------------------------------------------------------
# Tool adapters: each defines TOOL_archive_command (echo it), TOOL_init, TOOL_base N (N = 1,
# or 2 for the backup after churn; pgBackRest's 2 is two backups, incr and diff, recorded
# as base2_incr and base2_diff), TOOL_restore_time DIR PORT TARGET_UTC and
# TOOL_restore_end DIR PORT (each returns once the command returns; the caller waits for the
# server, starting it first for a tool whose restore does not).
# ---------------------------------------------------------------------------------------------

pgbr() { as_pg pgbackrest --config="$RUN/pgbackrest.conf" --stanza=bench "$@"; }

pgbackrest_archive_command() {
  echo "pgbackrest --config=$RUN/pgbackrest.conf --stanza=bench archive-push %p"
}

pgbackrest_init() {
  cat >"$RUN/pgbackrest.conf" <<EOF
[global]
repo1-path=$REPO
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PASSWORD
compress-type=$PGBR_COMPRESS
start-fast=y
archive-timeout=$WAIT_LIMIT
log-path=$RUN/pgbackrest-log
lock-path=$RUN/pgbackrest-lock
spool-path=$RUN/pgbackrest-spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$DATA
pg1-port=$PORT
pg1-socket-path=$SOCK
pg1-user=bench
EOF
  chmod 600 "$RUN/pgbackrest.conf"
  [[ -n $PG_OS_USER ]] && chown "$PG_OS_USER:" "$RUN/pgbackrest.conf"
  pgbr stanza-create >>"$LOGS/pgbackrest.log" 2>&1 || die "stanza-create failed; see $LOGS/pgbackrest.log"
  pgbr check >>"$LOGS/pgbackrest.log" 2>&1 || die "pgbackrest check failed; see $LOGS/pgbackrest.log"
}

pgbackrest_base() {
  if [[ $1 == 1 ]]; then
    timed base1 pgbr --type=full backup
    PGBR_FULL=$(find "$REPO/backup/bench" -maxdepth 1 -name '*F' -printf '%f\n' | sort | tail -1)
  else
    timed base2_incr pgbr --type=incr backup
    timed base2_diff pgbr --type=diff backup
  fi
}

# pgBackRest writes the data directory and the recovery settings; the server is started by
# the caller. --set names the full backup (the one that ends before the target).
pgbackrest_restore_time() {
  local target=${3/T/ }
  pgbr --pg1-path="$1" --set="$PGBR_FULL" --type=time "--target=${target%Z}+00" \
    --target-action=promote restore
}

pgbackrest_restore_end() { pgbr --pg1-path="$1" restore; }

# coffer: every command as the postgres OS user, like wal-push, so that the repository and
# its cache have one owner.
cof() { as_pg "$COFFER_BIN" -q -r "$REPO" --password-file "$RUN/password" --cache-dir "$RUN/cache" "$@"; }

coffer_archive_command() {
  as_pg "$COFFER_BIN" --json -r "$REPO" --password-file "$RUN/password" \
    --cache-dir "$RUN/archiver-cache" setup-archiving \
    --archive-timeout "${ARCHIVE_TIMEOUT}s" "$(url "$PORT")" 2>>"$LOGS/coffer.log" |
    jq -r .archive_command
}

coffer_init() {
  printf '%s\n' "$PASSWORD" >"$RUN/password"
  chmod 600 "$RUN/password"
  [[ -n $PG_OS_USER ]] && chown "$PG_OS_USER:" "$RUN/password"
  cof init >>"$LOGS/coffer.log" 2>&1 || die "coffer init failed; see $LOGS/coffer.log"
}

coffer_base() {
  timed "base$1" cof backup --postgres-base "$(url "$PORT")"
}

# coffer's restore starts the server itself (as the data directory's owner, archiving off)
# and returns once recovery has ended; its JSON report (kept in DIR.json) says how long
# writing the data directory and the WAL it needs took (restore_seconds), the figure that
# compares with pgBackRest's restore command.
coffer_restore() {
  local dir=$1 port=$2 snapshot=$3
  cof --json restore "$snapshot" --to-postgres-data "$dir" --start --port "$port" >"$dir.json"
  local rc=$?
  cat "$dir.json"
  return $rc
}
coffer_restore_time() { coffer_restore "$1" "$2" "@$3"; }
coffer_restore_end() { coffer_restore "$1" "$2" latest; }

# Which of the commands the benchmark drives this coffer has: sets COFFER_CAN_ARCHIVE,
# COFFER_CAN_BACKUP, COFFER_CAN_RESTORE (1 or 0) and COFFER_MISSING (what it lacks).
coffer_capabilities() {
  local has_push=1 has_setup=1 has_fetch=1 has_base=1 has_restore=1
  COFFER_MISSING=()
  "$COFFER_BIN" wal-push --help >/dev/null 2>&1 || { has_push=0; COFFER_MISSING+=(wal-push); }
  "$COFFER_BIN" setup-archiving --help >/dev/null 2>&1 || { has_setup=0; COFFER_MISSING+=(setup-archiving); }
  "$COFFER_BIN" wal-fetch --help >/dev/null 2>&1 || { has_fetch=0; COFFER_MISSING+=(wal-fetch); }
  "$COFFER_BIN" backup --help 2>/dev/null | grep -q -- --postgres-base ||
    { has_base=0; COFFER_MISSING+=("backup --postgres-base"); }
  "$COFFER_BIN" restore --help 2>/dev/null | grep -q -- --to-postgres-data ||
    { has_restore=0; COFFER_MISSING+=("restore --to-postgres-data"); }
  COFFER_CAN_ARCHIVE=$((has_push && has_setup))
  COFFER_CAN_BACKUP=$((COFFER_CAN_ARCHIVE && has_base))
  COFFER_CAN_RESTORE=$((COFFER_CAN_BACKUP && has_fetch && has_restore))
}

# can TOOL archive|backup|restore: may this tool's phase run (pgBackRest: always)?
can() {
  [[ $1 == pgbackrest ]] && return 0
  case $2 in
    archive) ((COFFER_CAN_ARCHIVE)) ;;
    backup) ((COFFER_CAN_BACKUP)) ;;
    restore) ((COFFER_CAN_RESTORE)) ;;
  esac
}

url() { echo "postgresql://bench@127.0.0.1:$1/app"; }

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------

# record METRIC VALUE: one figure of this tool and round.
record() {
  printf '%s\t%s\t%s\t%s\n' "$TOOL" "$ROUND" "$1" "$2" >>"$RAW"
  say "  $TOOL $1 = $2"
}

repo_bytes() { du -sb "$REPO" | cut -f1; }

# timed METRIC CMD...: run CMD, record its wall time (METRIC_s) and the repository's growth
# (METRIC_bytes); a failure is recorded as FAIL and ends this tool's round.
timed() {
  local metric=$1 t0 t1 b0 b1
  shift
  b0=$(repo_bytes)
  sync
  t0=$(now)
  if ! "$@" >>"$LOGS/$TOOL.$metric.r$ROUND.log" 2>&1; then
    record "${metric}_s" FAIL
    return 1
  fi
  t1=$(now)
  b1=$(repo_bytes)
  record "${metric}_s" "$(elapsed "$t0" "$t1")"
  record "${metric}_bytes" $((b1 - b0))
}

# The archive_command, wrapped so that each run appends "wall user sys" to TIMELOG; quoted
# for postgresql.conf.
wrapped_archive_command() {
  local cmd=$1
  cmd="/usr/bin/time -a -o $TIMELOG -f \"%%e %%U %%S\" $cmd"
  printf "'%s'" "$(printf '%s' "$cmd" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"
}

phase_archiving() {
  local lsn0 lsn1 arch0 arch1 fail0 fail1 b0 b1 lines0 t0 ready max=0 samples=$RUN/ready.tsv
  say "$TOOL: archiving at full pgbench load for ${LOAD_SECS}s"
  q "$PORT" "SELECT pg_switch_wal()" >/dev/null
  drain "$DATA" >/dev/null
  lsn0=$(q "$PORT" "SELECT pg_current_wal_lsn()")
  read -r arch0 fail0 < <(q "$PORT" "SELECT archived_count, failed_count FROM pg_stat_archiver" | tr '|' ' ')
  lines0=$(wc -l <"$TIMELOG")
  b0=$(repo_bytes)
  t0=$SECONDS
  load "$LOAD_SECS" "$LOGS/$TOOL.load.r$ROUND.log"
  while kill -0 "$LOAD_PID" 2>/dev/null; do
    ready=$(ready_count "$DATA")
    printf '%s\t%s\n' "$((SECONDS - t0))" "$ready" >>"$samples"
    ((ready > max)) && max=$ready
    sleep 1
  done
  wait "$LOAD_PID" || die "pgbench failed; see $LOGS/$TOOL.load.r$ROUND.log"
  lsn1=$(q "$PORT" "SELECT pg_current_wal_lsn()")
  read -r arch1 fail1 < <(q "$PORT" "SELECT archived_count, failed_count FROM pg_stat_archiver" | tr '|' ' ')
  record wal_backlog_end "$(ready_count "$DATA")"
  record wal_backlog_max "$max"
  record wal_drain_s "$(drain "$DATA")"
  local produced archived_total
  produced=$(q "$PORT" "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0') / (16 * 1024 * 1024)")
  archived_total=$(q "$PORT" "SELECT archived_count - $arch0 FROM pg_stat_archiver")
  b1=$(repo_bytes)
  record wal_tps "$(awk '/^tps = / { printf "%.0f", $3; exit }' "$LOGS/$TOOL.load.r$ROUND.log")"
  record wal_produced_per_s "$(awk -v n="$produced" -v s="$LOAD_SECS" 'BEGIN { printf "%.2f", n / s }')"
  record wal_archived_per_s "$(awk -v n="$((arch1 - arch0))" -v s="$LOAD_SECS" 'BEGIN { printf "%.2f", n / s }')"
  record wal_failed $((fail1 - fail0))
  record wal_bytes_per_segment "$(awk -v b="$((b1 - b0))" -v n="$archived_total" 'BEGIN { printf "%.0f", n ? b / n : 0 }')"
  # One line per archive_command run: "wall user sys" (a failed run has an extra line
  # "Command exited with non-zero status N" first, skipped).
  tail -n +"$((lines0 + 1))" "$TIMELOG" | awk '
    NF == 3 && $1 ~ /^[0-9.]+$/ { n++; cpu += $2 + $3; wall += $1 }
    END { printf "%.1f %.1f %d\n", n ? 1000 * cpu / n : 0, n ? 1000 * wall / n : 0, n }' >"$RUN/cpu"
  read -r cpu wall runs <"$RUN/cpu"
  record wal_cpu_ms_per_segment "$cpu"
  record wal_command_ms "$wall"
  record wal_command_runs "$runs"
}

# Base backup 1, CHURN_SECS of load (and ticks) with the target time taken in the middle,
# base backup 2.
phase_backups() {
  say "$TOOL: first base backup"
  "${TOOL}_base" 1 || return 1
  say "$TOOL: ${CHURN_SECS}s of churn"
  ticker $((CHURN_SECS + 2))
  load "$CHURN_SECS" "$LOGS/$TOOL.churn.r$ROUND.log"
  sleep $((CHURN_SECS / 2))
  TARGET_UTC=$(q "$PORT" "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
  wait "$LOAD_PID" || die "pgbench failed; see $LOGS/$TOOL.churn.r$ROUND.log"
  wait "$TICK_PID" || die "the ticker failed; see $LOGS/ticker.log"
  # The target's WAL is archived before anything else happens.
  q "$PORT" "SELECT pg_switch_wal()" >/dev/null
  drain "$DATA" >/dev/null
  say "$TOOL: second base backup"
  "${TOOL}_base" 2
}

# restore_timed METRIC DIR PORT KIND [TARGET]: time a restore to a recovered, running server.
restore_timed() {
  local metric=$1 dir=$2 port=$3 kind=$4 target=${5:-} t0 t1 st log=$LOGS/$TOOL.$1.r$ROUND.log
  rm -rf "$dir" "$dir.json"
  mkdir -m 700 "$dir"
  [[ -n $PG_OS_USER ]] && chown "$PG_OS_USER:" "$dir"
  sync
  t0=$(now)
  if ! "${TOOL}_restore_$kind" "$dir" "$port" "$target" >>"$log" 2>&1; then
    record "${metric}_s" FAIL
    return 1
  fi
  STARTED+=("$dir")
  local cmd_s
  cmd_s=$(elapsed "$t0" "$(now)")
  if [[ -s $dir.json ]]; then
    # A restore that also recovered (coffer --start): the part that writes the data
    # directory is the one it reports, and the rest is recovery.
    record "${metric}_command_s" "$(jq -r '.restore_seconds | . * 100 | round / 100' "$dir.json")"
    record "${metric}_reported_recovered_s" "$(jq -r '.recovered_seconds // "FAIL"' "$dir.json")"
    record "${metric}_last_replayed_commit" "$(jq -r '.last_replayed_commit // "none"' "$dir.json")"
  else
    record "${metric}_command_s" "$cmd_s"
  fi
  # pgBackRest leaves starting to the user; coffer's --start has started it already.
  if [[ ! -f $dir/postmaster.pid ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir.log" -o "-c listen_addresses=127.0.0.1 \
-c port=$port -c unix_socket_directories=$SOCK -c archive_mode=off" start >>"$log" 2>&1 || true
  fi
  if ! st=$(wait_recovered "$port"); then
    record "${metric}_s" FAIL
    warn "$TOOL: the restored server did not finish recovery; see $log and $dir.log"
    return 1
  fi
  t1=$(now)
  record "${metric}_s" "$(elapsed "$t0" "$t1")"
  [[ $st == paused ]] && record "${metric}_paused" 1
  return 0
}

phase_pitr() {
  local dir=$RUN/restore-pitr port
  port=$(free_port)
  say "$TOOL: restore to $TARGET_UTC (the middle of the churn)"
  restore_timed pitr "$dir" "$port" time "$TARGET_UTC" || return 0
  # No row after the target, and the newest one close before it.
  record pitr_rows_after_target "$(q "$port" "SELECT count(*) FROM tick WHERE t > '$TARGET_UTC'")"
  record pitr_newest_before_target_ms "$(q "$port" "SELECT round(extract(epoch FROM '$TARGET_UTC'::timestamptz - max(t)) * 1000) FROM tick")"
  srv_stop "$dir" immediate
  [[ $KEEP == 1 ]] || rm -rf "$dir"
}

phase_rpo() {
  local dir=$RUN/restore-end port killed newest
  say "$TOOL: RPO: ${RPO_SECS}s of load and ticks, then SIGKILL"
  ticker $((RPO_SECS + 30))
  load $((RPO_SECS + 30)) "$LOGS/$TOOL.rpo-load.r$ROUND.log"
  sleep "$RPO_SECS"
  killed=$(now)
  srv_kill "$DATA"
  wait "$LOAD_PID" 2>/dev/null || true
  wait "$TICK_PID" 2>/dev/null || true
  record rpo_backlog_at_kill "$(ready_count "$DATA")"
  port=$(free_port)
  say "$TOOL: restore to the end of the archive"
  restore_timed end "$dir" "$port" end || return 0
  newest=$(q "$port" "SELECT extract(epoch FROM max(t)) FROM tick")
  record rpo_s "$(elapsed "$newest" "$killed")"
  srv_stop "$dir" immediate
}

# One tool's round: a copy of the pristine database, archiving to the tool's repository.
run_tool() {
  TOOL=$1
  RUN=$WORK/run/$TOOL
  DATA=$RUN/data
  REPO=$RUN/repo
  TIMELOG=$RUN/archive-time.log
  rm -rf "$RUN"
  mkdir -p "$RUN/cache"
  cp -a "$PRISTINE/data" "$DATA"
  : >"$TIMELOG"
  [[ -n $PG_OS_USER ]] && chown -R "$PG_OS_USER:" "$RUN"
  PORT=$(free_port)
  say "$TOOL (round $ROUND): cluster on 127.0.0.1:$PORT"
  # coffer's command comes from `coffer setup-archiving`, which asks the server; its
  # repository must exist first.
  srv_start "$DATA" "$PORT"
  "${TOOL}_init_early"
  local cmd
  cmd=$("${TOOL}_archive_command")
  [[ -n $cmd ]] || die "$TOOL: no archive_command; see $LOGS"
  srv_stop "$DATA"
  cat >>"$DATA/postgresql.conf" <<EOF

# benches/pitr.sh
archive_mode = on
archive_timeout = ${ARCHIVE_TIMEOUT}s
archive_command = $(wrapped_archive_command "$cmd")
EOF
  srv_start "$DATA" "$PORT"
  "${TOOL}_init_late"
  phase_archiving
  # Each later phase needs the commands of the one before it (a restore needs a base backup).
  if can "$TOOL" backup && phase_backups && can "$TOOL" restore; then
    phase_pitr
    phase_rpo
  fi
  srv_stop "$DATA" immediate
  [[ $KEEP == 1 ]] || rm -rf "$RUN"
}

# pgBackRest's stanza needs the server archiving; coffer's repository must exist before
# setup-archiving is asked for the command.
pgbackrest_init_early() { :; }
pgbackrest_init_late() { pgbackrest_init; }
coffer_init_early() { coffer_init; }
coffer_init_late() { :; }

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# agg TOOL METRIC: best (lowest) over rounds for times (*_s), else the mean; FAIL if any
# round failed; empty if never measured.
agg() {
  awk -F'\t' -v tool="$1" -v m="$2" '
    $1 == tool && $3 == m {
      if ($4 == "FAIL") { fail = 1; next }
      n++; sum += $4
      if (!seen || $4 < best) best = $4
      seen = 1
    }
    END {
      if (fail) print "FAIL"
      else if (n && m ~ /_s$/) print best
      else if (n) printf "%.6g\n", sum / n
    }' "$RAW"
}

# row LABEL PGBR_METRIC COFFER_METRIC DIVISOR DECIMALS: one Markdown row with coffer's ratio
# to pgBackRest.
row() {
  local label=$1 a b
  a=$(agg pgbackrest "$2")
  b=$(agg coffer "$3")
  awk -v label="$label" -v a="$a" -v b="$b" -v div="$4" -v d="$5" '
    function show(v) { return v == "" ? "–" : v == "FAIL" ? "FAIL" : sprintf("%." d "f", v / div) }
    BEGIN {
      # A ratio of figures that round to zero as shown (a backlog drained in 0.0 s) says nothing.
      r = (a != "" && a != "FAIL" && b != "" && b != "FAIL" && show(a) + 0 > 0) ? sprintf("%.2f×", b / a) : "–"
      printf "| %s | %s | %s | %s |\n", label, show(a), show(b), r
    }'
}

load_now() {
  printf '%s' "$(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ -r /proc/pressure/cpu ]]; then
    awk '/^some/ { sub("avg60=", "", $3); printf ", CPU pressure %s%%", $3 }' /proc/pressure/cpu
  fi
}

report() {
  local cpu mem coffer_line
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  if [[ -n ${COFFER_BIN:-} ]]; then
    coffer_line="- $("$COFFER_BIN" --version) ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
    if ((${#COFFER_MISSING[@]})); then
      coffer_line+="; not in this build yet, so not measured: $(
        IFS=,
        echo "${COFFER_MISSING[*]}" | sed 's/,/, /g'
      ) (its rows show –)"
    fi
  else
    coffer_line="- coffer: not in TOOLS"
  fi
  cat <<EOF
# coffer vs pgBackRest: point-in-time recovery

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); run took $((SECONDS - START_TIME)) s ($( ((QUICK)) && echo "--quick smoke run" || echo "full run"))
- machine: $(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r)
- load average at start: $LOAD_START; at end: $(load_now) (the machine may be shared: compare ratios, not bare times)
- $("$PG_BIN/postgres" --version); database: pgbench scale $SCALE, $((DB_BYTES / 1000000)) MB, data checksums on
- $(pgbackrest version) (encrypted aes-256-cbc, compress-type=$PGBR_COMPRESS, synchronous archive-push, start-fast=y)
$coffer_line
- settings for both: PostgreSQL defaults (fsync, synchronous_commit, full_page_writes on; max_wal_size 1GB), archive_mode on, archive_timeout ${ARCHIVE_TIMEOUT}s
- loads: \`pgbench -n -c 4 -j 2\` for ${LOAD_SECS}s (archiving), ${CHURN_SECS}s (churn between the base backups), ${RPO_SECS}s before SIGKILL (RPO); $ROUNDS round(s)

| measure | pgBackRest | coffer | coffer / pgBackRest |
|---|---:|---:|---:|
$(row "pgbench tps during the archiving load (higher is better)" wal_tps wal_tps 1 0)
$(row "WAL produced, segments/s" wal_produced_per_s wal_produced_per_s 1 2)
$(row "WAL archived during the load, segments/s (higher is better)" wal_archived_per_s wal_archived_per_s 1 2)
$(row "archive backlog at the end of the load, segments (0 = no lag)" wal_backlog_end wal_backlog_end 1 0)
$(row "largest archive backlog during the load, segments" wal_backlog_max wal_backlog_max 1 0)
$(row "time to clear the backlog after the load, s" wal_drain_s wal_drain_s 1 1)
$(row "archive_command CPU (user+sys) per segment, ms" wal_cpu_ms_per_segment wal_cpu_ms_per_segment 1 0)
$(row "archive_command wall time per segment, ms" wal_command_ms wal_command_ms 1 0)
$(row "repository bytes per 16 MiB segment, MB" wal_bytes_per_segment wal_bytes_per_segment 1e6 2)
$(row "archive failures" wal_failed wal_failed 1 0)
$(row "first base backup (pgBackRest full), s" base1_s base1_s 1 1)
$(row "first base backup, repository MB added" base1_bytes base1_bytes 1e6 1)
$(row "second base backup after churn, s (pgBackRest incr)" base2_incr_s base2_s 1 1)
$(row "second base backup after churn, s (pgBackRest diff)" base2_diff_s base2_s 1 1)
$(row "second base backup, repository MB added (pgBackRest incr)" base2_incr_bytes base2_bytes 1e6 1)
$(row "second base backup, repository MB added (pgBackRest diff)" base2_diff_bytes base2_bytes 1e6 1)
$(row "restore to a time mid-churn: command to recovered server, s" pitr_s pitr_s 1 1)
$(row "  of which writing the data directory (and coffer's WAL spool), s" pitr_command_s pitr_command_s 1 1)
$(row "  rows after the target (must be 0)" pitr_rows_after_target pitr_rows_after_target 1 0)
$(row "  newest row before the target, ms (rows come every 100 ms)" pitr_newest_before_target_ms pitr_newest_before_target_ms 1 0)
$(row "restore to the end after SIGKILL: command to recovered server, s" end_s end_s 1 1)
$(row "  of which writing the data directory (and coffer's WAL spool), s" end_command_s end_command_s 1 1)
$(row "archive backlog when the server was killed, segments" rpo_backlog_at_kill rpo_backlog_at_kill 1 0)
$(row "RPO under load: kill time - newest recovered commit, s" rpo_s rpo_s 1 1)

Times are wall seconds (best of rounds), everything else the mean of rounds. The ratio is coffer's figure over pgBackRest's; lower is better unless the row says otherwise.
Raw figures: \`$RAW\`; logs: \`$LOGS\`.
EOF
}

# ---------------------------------------------------------------------------------------------

check_prerequisites() {
  [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || die "PostgreSQL 15 binaries not found in PG_BIN=$PG_BIN"
  command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
  ACTIVE=()
  local t
  for t in $TOOLS; do
    case $t in
      pgbackrest)
        if command -v pgbackrest >/dev/null; then
          ACTIVE+=(pgbackrest)
        else
          warn "pgbackrest is not installed; skipping it (apt-get install pgbackrest)"
        fi
        ;;
      coffer) prepare_coffer ;;
      *) die "unknown tool '$t' in TOOLS (pgbackrest, coffer)" ;;
    esac
  done
  ((${#ACTIVE[@]})) || die "no tool to run"
}

# coffer: built (or COFFER), copied where the postgres OS user can run it, and skipped with a
# note while its build lacks the PITR commands.
prepare_coffer() {
  local bin=${COFFER:-}
  if [[ -z $bin ]]; then
    say "building coffer (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1 ||
      die "cargo build failed; see $LOGS/cargo-build.log"
    bin=$CARGO_TARGET_DIR/release/coffer
  fi
  [[ -x $bin ]] || die "no coffer binary at $bin"
  mkdir -p "$WORK/bin"
  install -m 755 "$bin" "$WORK/bin/coffer"
  COFFER_BIN=$WORK/bin/coffer
  coffer_capabilities
  if ((COFFER_CAN_ARCHIVE)); then
    ACTIVE+=(coffer)
  fi
  if ((${#COFFER_MISSING[@]})); then
    warn "coffer: this build lacks $(
      IFS=,
      echo "${COFFER_MISSING[*]}" | sed 's/,/, /g'
    ); the phases that need them are skipped"
  fi
}

main() {
  LOAD_START=$(load_now)
  mkdir -p "$WORK/data" "$WORK/logs" "$WORK/run"
  WORK=$(cd "$WORK" && pwd)
  LOGS=$WORK/logs
  RAW=$WORK/raw.tsv
  SOCK=$WORK/run/sock
  rm -f "$LOGS"/*.log "$RAW"
  : >"$RAW"
  choose_pg_user
  check_prerequisites
  mkdir -p "$SOCK"
  [[ -n $PG_OS_USER ]] && chown "$PG_OS_USER:" "$SOCK" "$WORK/run"
  as_pg test -w "$SOCK" || die "user ${PG_OS_USER:-$(id -un)} cannot write $SOCK (is WORK under a private dir?)"
  say "work dir $WORK; tools: ${ACTIVE[*]}; SCALE=$SCALE LOAD_SECS=$LOAD_SECS CHURN_SECS=$CHURN_SECS RPO_SECS=$RPO_SECS ROUNDS=$ROUNDS"
  prepare_pristine
  DB_BYTES=$(cat "$PRISTINE.complete")
  local k t order
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    k=$(((ROUND - 1) % ${#ACTIVE[@]}))
    order=("${ACTIVE[@]:k}" "${ACTIVE[@]:0:k}")
    for t in "${order[@]}"; do
      run_tool "$t"
    done
  done
  report | tee "$WORK/results.md"
  cp "$WORK/results.md" "$WORK/results-$(date -u +%Y%m%dT%H%M%SZ).md"
  say "done; results in $WORK/results.md"
}

main "$@"
