#!/usr/bin/env bash
# Side-by-side benchmark: coffer against restic, borg and (if installed) rustic, on real data
# built on this machine.
#
#   benches/compare.sh              full run (6-9 minutes on 2 cores, of which ~1 minute builds
#                                   the datasets; later runs reuse them)
#   QUICK=1 benches/compare.sh      smoke run (small tree, tiny dumps, 1 round, 2 nights;
#                                   about 1-2 minutes): checks that the script works
#
# Environment (all optional):
#   WORK=/var/tmp/coffer-bench   work dir: datasets, repositories, caches, logs, results.md.
#                                Must be reachable by an unprivileged user (PostgreSQL runs as one).
#   TREE=/usr/share              a real folder; a copy of it is the file-tree dataset
#   SCALE=5                      size of the database: pgbench scale SCALE plus 20,000 customers
#                                and 40,000 orders per unit; one unit is ~30 MB of plain dump
#   NIGHTS=6                     number of nightly dumps
#   ROUNDS=2                     repetitions; the best wall time of each step is kept
#   TOOLS="coffer restic borg rustic"   tools to compare (those not installed are skipped)
#   VERIFY=1                     in round 1, compare every restore with its source (untimed)
#   REBUILD=1                    rebuild the datasets even if cached ones match
#   PG_BIN=/usr/lib/postgresql/15/bin
#   QUICK=1                      defaults become TREE=/usr/share/doc SCALE=1 NIGHTS=2 ROUNDS=1
#
# Method (see "Benchmarks" in DESIGN.md: ratios against peers on the same data, never bare times):
# - Datasets: (a) a copy of TREE, so every tool reads the same unchanging inodes; (b) NIGHTS
#   plain-SQL pg_dumps of a throwaway PostgreSQL 15 cluster with scattered updates, deletes
#   and inserts between nights (the pattern behind "What measurements say about dedup of
#   database dumps" in DESIGN.md).
#   The dumps are backed up twice: from stdin, and as a file (`app.sql`) in a folder that
#   each night's dump replaces, the way most administrators keep them.
# - Each round starts every tool on fresh repositories and fresh cache dirs (one per tool and
#   repository, inside WORK). Within a round the tools run interleaved, step by step, and the
#   order rotates from round to round, so load from other processes spreads over all tools.
# - Wall time: the best over rounds. Peak RSS: the highest over rounds (from /usr/bin/time
#   %M). Repository size: `du -sb` after each step, the mean over rounds (chunk boundaries
#   are keyed per repository, so sizes differ slightly between rounds).
# - The page cache is NOT dropped (that needs root and would hurt other users of the machine):
#   the datasets are read from RAM, so the numbers measure the tools' CPU and repository
#   writes, not the source disk. Before every step, untimed, its inputs (source, repository,
#   cache dir) are read once so they are in the cache for every tool alike, and `sync` runs,
#   so one tool's pending writeback is not charged to the next. Restores write tens of
#   thousands of files and are bound by the file system: on a shared machine they are the
#   noisiest rows.
# - Every tool runs with its defaults (compression: coffer zstd, restic "auto", borg lz4),
#   the same password, and the tree repository separate from the dump repository.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ ${QUICK:-0} == 1 ]]; then
  : "${TREE:=/usr/share/doc}" "${SCALE:=1}" "${NIGHTS:=2}" "${ROUNDS:=1}"
fi
: "${WORK:=/var/tmp/coffer-bench}" "${TREE:=/usr/share}" "${SCALE:=5}" "${NIGHTS:=6}"
: "${ROUNDS:=2}" "${TOOLS:=coffer restic borg rustic}" "${VERIFY:=1}" "${REBUILD:=0}"
: "${PG_BIN:=/usr/lib/postgresql/15/bin}"

# One password for every tool; drop anything from the caller's environment that would take
# precedence over it or point a tool at another repository.
PASSWORD=coffer-bench-password
unset COFFER_PASSWORD_FILE COFFER_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
  RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE BORG_PASSCOMMAND BORG_PASSPHRASE_FD BORG_REPO \
  RUSTIC_PASSWORD_FILE RUSTIC_PASSWORD_COMMAND RUSTIC_REPOSITORY
export COFFER_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD \
  RUSTIC_PASSWORD=$PASSWORD

START_TIME=$SECONDS
say() { printf '[%s +%4ds] %s\n' "$(date +%T)" "$((SECONDS - START_TIME))" "$*" >&2; }
warn() { say "WARNING: $*"; }
die() {
  say "ERROR: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------

check_prerequisites() {
  [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
  [[ -x $PG_BIN/initdb ]] || die "PostgreSQL 15 binaries not found in PG_BIN=$PG_BIN"
  [[ -d $TREE ]] || die "TREE=$TREE is not a directory"
  # coffer always comes first: the ratio column divides its figure by the best peer's.
  [[ " $TOOLS " == *" coffer "* ]] || die "TOOLS must include coffer"
  ACTIVE_TOOLS=(coffer)
  local t
  for t in $TOOLS; do
    case $t in
      coffer) ;;
      restic | borg | rustic)
        if command -v "$t" >/dev/null; then
          ACTIVE_TOOLS+=("$t")
        elif [[ $t == rustic ]]; then
          say "rustic is not installed; skipping it (cargo install rustic-rs --locked)"
        else
          warn "$t is not installed; skipping it (apt-get install restic borgbackup)"
        fi
        ;;
      *) die "unknown tool '$t' in TOOLS" ;;
    esac
  done
}

build_coffer() {
  say "building coffer (cargo build --release)"
  (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1 ||
    die "cargo build failed; see $LOGS/cargo-build.log"
  COFFER=${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer
  [[ -x $COFFER ]] || die "no binary at $COFFER"
}

# The file tree: a copy, so that mtimes and inodes cannot change under the tools during the
# run (package upgrades touch /usr/share), and so the tree sits on the same disk as WORK.
prepare_tree() {
  local name
  name=tree-$(printf '%s' "$TREE" | tr -c 'A-Za-z0-9_.-' '_')
  TREE_DATA=$WORK/data/$name
  if [[ $REBUILD != 1 && -e $TREE_DATA.complete ]]; then
    say "reusing the tree copy $TREE_DATA"
  else
    say "copying $TREE to $TREE_DATA"
    rm -rf "$TREE_DATA" "$TREE_DATA.complete"
    mkdir -p "$TREE_DATA"
    cp -a "$TREE/." "$TREE_DATA/" 2>"$LOGS/tree-copy.log" ||
      warn "some files of $TREE could not be copied; see $LOGS/tree-copy.log"
    touch "$TREE_DATA.complete"
  fi
  TREE_BYTES=$(du -sb "$TREE_DATA" | cut -f1)
  TREE_FILES=$(find "$TREE_DATA" -type f | wc -l)
}

# ---------------------------------------------------------------------------------------------
# The nightly dump series from a throwaway PostgreSQL 15 cluster
# ---------------------------------------------------------------------------------------------

# The cluster and the database (as root PostgreSQL runs as `coffer-bench`, created if missing),
# shared with benches/postgres.sh.
PG_FIRST_PORT=54329 PG_RUN_AS=coffer-bench PG_CREATE_USER=1 PG_SAY_SOCKET=1
# shellcheck source-path=SCRIPTDIR source=pgdata.sh
source "$(dirname "$0")/pgdata.sh"
trap pg_stop EXIT

make_dumps() {
  DUMPS=$WORK/data/dumps-scale$SCALE-nights$NIGHTS
  if [[ $REBUILD != 1 && -e $DUMPS/complete ]]; then
    say "reusing the dump series in $DUMPS"
    return
  fi
  rm -rf "$DUMPS"
  mkdir -p "$DUMPS"
  pg_start
  load_database
  local night
  for ((night = 1; night <= NIGHTS; night++)); do
    # The day's traffic (application churn, pgbench, VACUUM), see churn in pgdata.sh.
    if ((night > 1)); then
      churn "$night"
    fi
    as_pg "$PG_BIN/pg_dump" "${PGCONN[@]}" -Fp app >"$DUMPS/night$night.sql" ||
      die "pg_dump failed"
    say "night $night: dump of $(($(stat -c %s "$DUMPS/night$night.sql") / 1000000)) MB"
  done
  pg_stop
  rm -rf "$PGROOT"
  touch "$DUMPS/complete"
}

# ---------------------------------------------------------------------------------------------
# Tool adapters: `cmd_TOOL ACTION NAME [TARGET]` sets CMD (the command to time) and CMD_DIR
# (where to run it) for the repository REPO with the cache dir CACHE. NAME is a snapshot name
# (only borg names its archives); TARGET is the restore target.
# ---------------------------------------------------------------------------------------------

cmd_coffer() {
  local c=("$COFFER" -q -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" init) ;;
    backup_tree) CMD=("${c[@]}" backup "$TREE_DATA") ;;
    restore_tree) CMD=("${c[@]}" restore latest --target "$3") ;;
    backup_stdin) CMD=("${c[@]}" backup --stdin --stdin-name dump.sql) ;;
    backup_folder) CMD=("${c[@]}" backup "$DUMP_FOLDER") ;;
    dump) CMD=("${c[@]}" dump latest dump.sql) ;;
    check) CMD=("${c[@]}" check --read-data) ;;
  esac
}

cmd_restic() {
  local c=(restic -q -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" init) ;;
    backup_tree) CMD=("${c[@]}" backup "$TREE_DATA") ;;
    restore_tree) CMD=("${c[@]}" restore latest --target "$3") ;;
    backup_stdin) CMD=("${c[@]}" backup --stdin --stdin-filename dump.sql) ;;
    backup_folder) CMD=("${c[@]}" backup "$DUMP_FOLDER") ;;
    dump) CMD=("${c[@]}" dump latest /dump.sql) ;;
    check) CMD=("${c[@]}" check --read-data) ;;
  esac
}

# borg keeps its cache, keys and security state under BORG_BASE_DIR; `env` execs borg, so
# /usr/bin/time still measures borg itself.
cmd_borg() {
  local c=(env BORG_BASE_DIR="$CACHE" borg)
  case $1 in
    init) CMD=("${c[@]}" init --encryption=repokey-blake2 "$REPO") ;;
    backup_tree) CMD=("${c[@]}" create "$REPO::$2" "$TREE_DATA") ;;
    # borg extracts into the current directory, without the leading "/".
    restore_tree) CMD=("${c[@]}" extract "$REPO::$2") CMD_DIR=$3 ;;
    backup_stdin) CMD=("${c[@]}" create --stdin-name dump.sql "$REPO::$2" -) ;;
    backup_folder) CMD=("${c[@]}" create "$REPO::$2" "$DUMP_FOLDER") ;;
    dump) CMD=("${c[@]}" extract --stdout "$REPO::$2" dump.sql) ;;
    check) CMD=("${c[@]}" check --verify-data "$REPO") ;;
  esac
}

# rustic 0.11 (cargo install rustic-rs --locked). Its stdin backup needs --force: with a
# parent snapshot it otherwise records the stream as "unchanged" without reading it.
cmd_rustic() {
  local c=(rustic -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" init) ;;
    backup_tree) CMD=("${c[@]}" backup "$TREE_DATA") ;;
    restore_tree) CMD=("${c[@]}" restore latest "$3") ;;
    backup_stdin) CMD=("${c[@]}" backup --force --stdin-filename dump.sql -) ;;
    backup_folder) CMD=("${c[@]}" backup "$DUMP_FOLDER") ;;
    dump) CMD=("${c[@]}" dump latest:dump.sql) ;;
    check) CMD=("${c[@]}" check --read-data) ;;
  esac
}

# use_repo TOOL KIND: point REPO/CACHE at the tool's tree or dump repository of this round.
use_repo() {
  REPO=$RUN/$1/$2-repo
  CACHE=$RUN/$1/$2-cache
}

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------

# warm PATH...: read every file once, so that the timed step finds them in the page cache.
warm() {
  find "$@" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
}

# measure TOOL STEP ROUND STDIN STDOUT: run CMD under /usr/bin/time, append one line to RAW:
# tool, step, round, wall seconds (or FAIL), peak RSS KiB, repository bytes after the step.
# A failing tool is recorded as FAIL and the run goes on, so one broken peer (or a broken
# coffer) still leaves a table.
measure() {
  local tool=$1 step=$2 round=$3 in=$4 out=$5
  local log=$LOGS/$tool.$step.r$round.log tf=$LOGS/time.out rc=0 wall rss size
  printf '$ %q ' "${CMD[@]}" >>"$log"
  printf '\n' >>"$log"
  # Untimed: bring the step's inputs (source, repository, the tool's cache dir) into the page
  # cache, since the kernel here trims cold pages within minutes and whichever tool went
  # first would otherwise pay for disk reads; and flush what earlier steps wrote, so one
  # tool's writeback does not land in the next one's wall time.
  local inputs=("$REPO" "$CACHE")
  [[ -f $in ]] && inputs+=("$in")
  [[ $step == tree_backup || $step == tree_rerun ]] && inputs+=("$TREE_DATA")
  [[ $step == file* ]] && inputs+=("$DUMP_FOLDER")
  warm "${inputs[@]}"
  sync
  (cd "${CMD_DIR:-$WORK}" && /usr/bin/time -f '%e %M' -o "$tf" "${CMD[@]}" <"$in" >>"$out" 2>>"$log") || rc=$?
  CMD_DIR=
  size=$(du -sb "$REPO" | cut -f1)
  if ((rc != 0)); then
    warn "$tool $step (round $round) failed with status $rc; see $log"
    printf '%s\t%s\t%s\tFAIL\t0\t%s\n' "$tool" "$step" "$round" "$size" >>"$RAW"
    return 0
  fi
  read -r wall rss <"$tf"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$round" "$wall" "$rss" "$size" >>"$RAW"
  say "  $tool $step: ${wall}s, $((rss / 1024)) MiB, repository $((size / 1000000)) MB"
}

# step ROUND STEP ACTION KIND NAME [STDIN]: one step for every tool, in this round's order.
step() {
  local round=$1 stepname=$2 action=$3 kind=$4 name=$5 in=${6:-/dev/null} t
  for t in "${ORDER[@]}"; do
    use_repo "$t" "$kind"
    "cmd_$t" "$action" "$name"
    measure "$t" "$stepname" "$round" "$in" "$LOGS/$t.$stepname.r$round.log"
  done
}

run_round() {
  local round=$1 k t kind night target out
  k=$(((round - 1) % ${#ACTIVE_TOOLS[@]}))
  ORDER=("${ACTIVE_TOOLS[@]:k}" "${ACTIVE_TOOLS[@]:0:k}")
  say "round $round of $ROUNDS (order: ${ORDER[*]})"

  # Fresh repositories and caches: nothing carries over from the previous round.
  rm -rf "$RUN"
  DUMP_FOLDER=$RUN/dump-folder
  mkdir -p "$DUMP_FOLDER"
  for t in "${ORDER[@]}"; do
    for kind in tree dump dumpfile; do
      use_repo "$t" "$kind"
      mkdir -p "$CACHE" "$(dirname "$REPO")"
      "cmd_$t" init
      "${CMD[@]}" >>"$LOGS/$t.init.log" 2>&1 || die "$t init failed; see $LOGS/$t.init.log"
    done
  done

  step "$round" tree_backup backup_tree tree tree1
  step "$round" tree_rerun backup_tree tree tree2

  for t in "${ORDER[@]}"; do
    target=$RUN/$t/restore
    mkdir -p "$target"
    use_repo "$t" tree
    "cmd_$t" restore_tree tree2 "$target"
    measure "$t" tree_restore "$round" /dev/null "$LOGS/$t.tree_restore.r$round.log"
    if [[ $VERIFY == 1 && $round == 1 ]]; then
      if diff -r --no-dereference "$TREE_DATA" "$target$TREE_DATA" >"$LOGS/$t.verify-tree.log" 2>&1; then
        echo "$t tree identical" >>"$VERIFIED"
        say "  $t restored tree is identical to the source"
      else
        echo "$t tree DIFFERS (see $LOGS/$t.verify-tree.log)" >>"$VERIFIED"
        warn "$t restored tree differs from the source; see $LOGS/$t.verify-tree.log"
      fi
    fi
    rm -rf "$target"
  done

  for ((night = 1; night <= NIGHTS; night++)); do
    step "$round" "night$night" backup_stdin dump "night$night" "$DUMPS/night$night.sql"
  done

  # The same dumps the way most administrators keep them: written to a file in a folder
  # that is backed up (each night's dump replaces the last one's file).
  for ((night = 1; night <= NIGHTS; night++)); do
    cp "$DUMPS/night$night.sql" "$DUMP_FOLDER/app.sql"
    step "$round" "file$night" backup_folder dumpfile "file$night"
  done

  for t in "${ORDER[@]}"; do
    out=$RUN/$t/restored.sql
    use_repo "$t" dump
    "cmd_$t" dump "night$NIGHTS"
    measure "$t" dump_restore "$round" /dev/null "$out"
    if [[ $VERIFY == 1 && $round == 1 ]]; then
      if cmp -s "$out" "$DUMPS/night$NIGHTS.sql"; then
        echo "$t dump identical" >>"$VERIFIED"
      else
        echo "$t dump DIFFERS" >>"$VERIFIED"
        warn "$t restored dump differs from night$NIGHTS.sql"
      fi
    fi
    rm -f "$out"
  done

  step "$round" check_tree check tree ""
  step "$round" check_dump check dump ""
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# agg KIND TOOL STEP: one number (or FAIL, or empty) from RAW.
#   time    best wall time over rounds; STEP=nights (stdin) or files (a file in a folder):
#           mean over nights 2..N of each night's best
#   rss     highest peak RSS over rounds (and nights), in KiB
#   size    mean repository size over rounds after STEP, in bytes
#   growth  mean repository growth per night over nights 2..N and rounds, in bytes
agg() {
  local series=night
  [[ $3 == files ]] && series=file
  awk -F'\t' -v kind="$1" -v tool="$2" -v want="$3" -v series="$series" '
    function night_of(s) { return s ~ ("^" series "[0-9]+$") ? substr(s, length(series) + 1) + 0 : 0 }
    function is_later_night(s) { return night_of(s) >= 2 }
    $1 != tool { next }
    kind == "growth" && night_of($2) { size[$3, night_of($2)] = $6; rounds[$3] = 1 }
    !(want == "nights" || want == "files" ? is_later_night($2) : $2 == want) { next }
    $4 == "FAIL" { fail = 1; next }
    kind == "time" { if (!($2 in best) || $4 < best[$2]) best[$2] = $4 }
    kind == "rss" { if ($5 > peak) peak = $5 }
    kind == "size" { sum += $6; n++ }
    END {
      if (fail) { print "FAIL"; exit }
      if (kind == "time") { for (s in best) { t += best[s]; m++ } if (m) printf "%.2f\n", t / m }
      if (kind == "rss" && peak) print peak
      if (kind == "size" && n) printf "%.0f\n", sum / n
      if (kind == "growth") {
        for (r in rounds) for (k = 2; (r, k) in size; k++) { g += size[r, k] - size[r, k - 1]; m++ }
        if (m) printf "%.0f\n", g / m
      }
    }' "$RAW"
}

# fmt KIND VALUE: human units (s, MiB, MB).
fmt() {
  case $2 in
    "" | FAIL) printf '%s' "${2:-–}" ;;
    *) case $1 in
      time) printf '%.2f' "$2" ;;
      rss) awk -v v="$2" 'BEGIN { printf "%.0f", v / 1024 }' ;;
      size | growth) awk -v v="$2" 'BEGIN { printf "%.1f", v / 1e6 }' ;;
    esac ;;
  esac
}

# row LABEL KIND STEP: one Markdown row, with coffer divided by the best (lowest) peer.
row() {
  local label=$1 kind=$2 stepname=$3 t v coffer_v="" best_peer=""
  printf '| %s |' "$label"
  for t in "${ACTIVE_TOOLS[@]}"; do
    v=$(agg "$kind" "$t" "$stepname")
    printf ' %s |' "$(fmt "$kind" "$v")"
    [[ $v == "" || $v == FAIL ]] && continue
    if [[ $t == coffer ]]; then
      coffer_v=$v
    elif [[ -z $best_peer ]] || awk -v a="$v" -v b="$best_peer" 'BEGIN { exit !(a < b) }'; then
      best_peer=$v
    fi
  done
  if [[ -n $coffer_v && -n $best_peer ]] && awk -v b="$best_peer" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$coffer_v" -v b="$best_peer" 'BEGIN { printf " %.2f× |\n", a / b }'
  else
    printf ' – |\n'
  fi
}

table_header() {
  local t
  printf '| %s |' "$1"
  for t in "${ACTIVE_TOOLS[@]}"; do printf ' %s |' "$t"; done
  printf ' coffer / best peer |\n|---|'
  for t in "${ACTIVE_TOOLS[@]}"; do printf -- '---:|'; done
  printf -- '---:|\n'
}

# Load average, and the share of time some task waited for I/O over the last minute (other
# users of a shared machine show up here, and restores are I/O bound).
load_now() {
  printf '%s' "$(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ -r /proc/pressure/io ]]; then
    awk '/^some/ { sub("avg60=", "", $3); printf ", I/O pressure %s%%", $3 }' /proc/pressure/io
  fi
}

tool_versions() {
  local t
  for t in "${ACTIVE_TOOLS[@]}"; do
    case $t in
      coffer) printf -- '- %s (%s)\n' "$("$COFFER" --version)" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" ;;
      restic) printf -- '- %s\n' "$(restic version | head -1)" ;;
      borg) printf -- '- %s\n' "$(borg --version)" ;;
      rustic) printf -- '- %s\n' "$(rustic --version | head -1)" ;;
    esac
  done
  printf -- '- %s\n' "$("$PG_BIN/pg_dump" --version)"
}

report() {
  local dump_mb cpu mem
  dump_mb=$(du -cb "$DUMPS"/night*.sql | awk -v n="$NIGHTS" 'END { printf "%.0f", $1 / n / 1e6 }')
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  cat <<EOF
# coffer vs peers: side-by-side benchmark

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); run took $((SECONDS - START_TIME)) s ($([[ ${QUICK:-0} == 1 ]] && echo "QUICK smoke run" || echo "full run"))
- machine: $(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r)
- load average at start: $LOAD_START; at end: $(load_now) (the machine may be shared: compare ratios, not bare times)
$(tool_versions)

Data, built on this machine:
- tree: a copy of \`$TREE\`: $((TREE_BYTES / 1000000)) MB in $TREE_FILES files
- dumps: backed up from stdin, and as \`app.sql\` in a folder (each night's dump replacing the last); $NIGHTS nightly plain-SQL \`pg_dump\`s of ~$dump_mb MB each (pgbench scale $SCALE, $((20000 * SCALE)) customers, $((40000 * SCALE)) orders); between nights ~1% of customers and accounts updated, ~0.1% deleted, 0.2% new customers, 1% new orders, order states advanced, VACUUM

Method: $ROUNDS round(s); fresh repositories and cache dirs per round (each tool its own, inside \`$WORK\`); tools interleaved step by step, order rotated per round. Wall time is the best over rounds; peak RSS the highest over rounds; sizes (\`du -sb\` of the repository) the mean over rounds. The page cache is not dropped: before every step, untimed, its inputs (source, repository, cache dir) are read once so every tool finds them in RAM, and \`sync\` runs. Each tool uses its defaults (borg: \`--encryption=repokey-blake2\`, lz4). Tree and dumps go to separate repositories. Lower is better everywhere.

### Wall time (seconds)

$(table_header step)
$(row "tree: first backup" time tree_backup)
$(row "tree: unchanged re-run" time tree_rerun)
$(row "tree: restore" time tree_restore)
$(row "dump: first night (stdin)" time night1)
$(row "dump: later night, mean of $((NIGHTS - 1))" time nights)
$(row "dump: restore one dump" time dump_restore)
$(row "dump as a file in a folder: first night" time file1)
$(row "dump as a file in a folder: later night, mean of $((NIGHTS - 1))" time files)
$(row "check --read-data, tree repository" time check_tree)
$(row "check --read-data, dump repository" time check_dump)

### Peak RSS (MiB)

$(table_header step)
$(row "tree: first backup" rss tree_backup)
$(row "tree: unchanged re-run" rss tree_rerun)
$(row "tree: restore" rss tree_restore)
$(row "dump: first night (stdin)" rss night1)
$(row "dump: later nights" rss nights)
$(row "dump: restore one dump" rss dump_restore)
$(row "dump as a file in a folder: later nights" rss files)
$(row "check --read-data, tree repository" rss check_tree)
$(row "check --read-data, dump repository" rss check_dump)

### Repository size (MB)

$(table_header "repository")
$(row "tree: after first backup" size tree_backup)
$(row "tree: after unchanged re-run" size tree_rerun)
$(row "dumps: after first night" size night1)
$(row "dumps: after $NIGHTS nights" size "night$NIGHTS")
$(row "dumps: growth per later night (mean)" growth nights)
$(row "dump files in a folder: after first night" size file1)
$(row "dump files in a folder: growth per later night (mean)" growth files)

Restores verified against the source (round 1): $(if [[ -s $VERIFIED ]]; then paste -sd, "$VERIFIED" | sed 's/,/; /g'; else echo "not checked (VERIFY=0)"; fi).
Raw measurements: \`$RAW\`; logs: \`$LOGS\`.
EOF
}

# ---------------------------------------------------------------------------------------------

main() {
  LOAD_START=$(load_now)
  check_prerequisites
  mkdir -p "$WORK/data" "$WORK/logs"
  WORK=$(cd "$WORK" && pwd)
  LOGS=$WORK/logs
  RUN=$WORK/run
  RAW=$WORK/raw.tsv
  VERIFIED=$LOGS/verified.txt
  rm -f "$LOGS"/*.log "$RAW" "$VERIFIED"
  say "work dir $WORK; tools: ${ACTIVE_TOOLS[*]}; TREE=$TREE SCALE=$SCALE NIGHTS=$NIGHTS ROUNDS=$ROUNDS"

  build_coffer
  prepare_tree
  make_dumps

  local round
  for ((round = 1; round <= ROUNDS; round++)); do
    run_round "$round"
  done

  report | tee "$WORK/results.md"
  cp "$WORK/results.md" "$WORK/results-$(date -u +%Y%m%dT%H%M%SZ).md"
  say "done; results in $WORK/results.md"
}

main "$@"
