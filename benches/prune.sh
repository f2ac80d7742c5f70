#!/usr/bin/env bash
# Prune benchmark: what `coffer prune` costs (wall time, peak RSS) next to restic, rustic and
# borg, and how that cost grows as the repository grows while the amount forgotten stays the
# same.
#
#   benches/prune.sh              full run: repositories of 200, 400 and 800 daily snapshots.
#                                 Building them is the long part (about 2 s per day for coffer,
#                                 restic and borg together on 2 cores, so ~30 minutes) and is
#                                 cached in WORK (see REBUILD); the measurements take another
#                                 10-20 minutes. WORK needs about 3 GB.
#   QUICK=1 benches/prune.sh      smoke run (tiny tree, 20 and 40 snapshots, 1 round; about a
#                                 minute, under one with the repositories cached): checks that
#                                 the script works
#
# Environment (all optional):
#   WORK=/var/tmp/coffer-prune-bench  work dir: the evolving tree, cached repositories, logs,
#                                 prune-results.md
#   TREE=/usr/share/doc           a real folder; a copy of it is day 1 of the dataset
#   SIZES="200 400 800"           repository sizes, in snapshots (one snapshot per day)
#   FORGET=20                     how many of the oldest snapshots are forgotten before prune,
#                                 the same at every size
#   ROUNDS=2                      repetitions of every measurement, each on a fresh copy of the
#                                 cached repository; the best wall time is kept
#   TOOLS="coffer coffer-rt0 restic restic-mu0 rustic borg"   runners (peers not installed are
#                                 skipped): coffer-rt0 is coffer prune --repack-threshold 0,
#                                 restic-mu0 restic prune --max-unused 0 (both free every unused
#                                 byte); rustic prunes copies of the restic repositories (the
#                                 format is shared)
#   COFFER=$ROOT/target/release/coffer   the binary; built with `cargo build --release` only
#                                 when missing (or when BUILD=1)
#   VERIFY=1                      in round 1, count the snapshots left after forget and run each
#                                 tool's check after prune (untimed)
#   REBUILD=1                     rebuild the cached repositories even if they match
#   QUICK=1                       defaults become WORK=/var/tmp/coffer-prune-bench-quick
#                                 TREE=/usr/share/perl5 SIZES="20 40" FORGET=10 ROUNDS=1
#
# Method (see "Benchmarks" in DESIGN.md: ratios against peers on the same data, never bare times):
# - Dataset: day 1 is a copy of TREE. Every later day, from a generator seeded by the day number
#   (so every run and every tool sees the same bytes): a line is appended to CHANGED files of
#   the tree (chosen among all of them), ADDED new log-like text files of 8-128 KiB appear
#   under _daily/, and the files added LIFETIME days before are deleted. Snapshot d is taken
#   after day d's changes, with its time set to 03:00 on 2020-01-01 + (d - 1) days.
# - Building: one pass over the days, every tool backing up the same tree in lockstep; when the
#   day count reaches a size in SIZES, each tool's repository and cache dir are copied to
#   WORK/repos/TOOL/N. The copies are reused while the tool's --version, TREE and the generator
#   are unchanged (so a new coffer commit reuses them: REBUILD=1 forces a new build, as is
#   needed after a change of the repository format); a tool whose copies are missing or stale
#   is rebuilt from day 1.
# - Measuring, for every size N, round and runner (runners interleaved, order rotated per round),
#   on a fresh copy of the size-N repository and its cache dir:
#     list    the snapshot listing (a floor: opening the repository, key derivation included)
#     forget  keep the newest N - FORGET snapshots (borg: `borg prune --keep-last`)
#     prune   the garbage collection alone: coffer prune (defaults, and --repack-threshold 0);
#             restic prune (defaults, and --max-unused 0); rustic prune --instant-delete;
#             borg compact
#   each under /usr/bin/time (wall seconds, peak RSS). Between list and forget, a first prune
#   with nothing forgotten (also timed, reported apart) settles what the build left: restic
#   repacks packs under 1/25 of its target size once ten or more exist, and every daily
#   backup leaves such tiny packs, so restic's first prune of a never-pruned repository
#   rewrites almost all of it. The prune after forget is then the steady-state cost. Repository size (`du -sb`) is taken
#   before and after prune; freed = before - after.
# - The page cache is not dropped (that needs root): before every timed step, untimed, the
#   repository and cache dir are read once and `sync` runs, as in compare.sh.
# - Every tool runs with its defaults (coffer zstd, restic "auto" compression, borg lz4), the
#   same password, and one host name ("bench") for every snapshot.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ ${QUICK:-0} == 1 ]]; then
  : "${WORK:=/var/tmp/coffer-prune-bench-quick}" "${TREE:=/usr/share/perl5}" "${SIZES:=20 40}"
  : "${FORGET:=10}" "${ROUNDS:=1}"
fi
: "${WORK:=/var/tmp/coffer-prune-bench}" "${TREE:=/usr/share/doc}" "${SIZES:=200 400 800}"
: "${FORGET:=20}" "${ROUNDS:=2}" "${TOOLS:=coffer coffer-rt0 restic restic-mu0 rustic borg}"
: "${VERIFY:=1}" "${REBUILD:=0}" "${BUILD:=0}" "${PYTHON:=python3}"
# Daily churn (part of the cache signature).
CHANGED=10 ADDED=4 LIFETIME=7
GENERATOR_VERSION=1

PASSWORD=coffer-bench-password
unset COFFER_PASSWORD_FILE COFFER_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
  RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE BORG_PASSCOMMAND BORG_PASSPHRASE_FD BORG_REPO \
  RUSTIC_PASSWORD_FILE RUSTIC_PASSWORD_COMMAND RUSTIC_REPOSITORY
export COFFER_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD \
  RUSTIC_PASSWORD=$PASSWORD
# Measurements run on copies, so borg sees its repository at a new path every time.
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no

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

# The repository a runner prunes: rustic and restic-mu0 work on copies of restic's.
base_tool() {
  case $1 in
    restic | restic-mu0 | rustic) echo restic ;;
    coffer | coffer-rt0) echo coffer ;;
    *) echo "$1" ;;
  esac
}

label() {
  case $1 in
    coffer-rt0) echo "coffer --repack-threshold 0" ;;
    restic-mu0) echo "restic --max-unused 0" ;;
    rustic) echo "rustic --instant-delete" ;;
    borg) echo "borg compact" ;;
    *) echo "$1" ;;
  esac
}

check_prerequisites() {
  [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
  [[ -d $TREE ]] || die "TREE=$TREE is not a directory"
  command -v "$PYTHON" >/dev/null || die "$PYTHON is missing"
  local n prev=0
  for n in $SIZES; do
    if ! [[ $n =~ ^[0-9]+$ ]] || ((n <= prev)); then die "SIZES must be increasing numbers: '$SIZES'"; fi
    ((n > FORGET)) || die "every size must exceed FORGET=$FORGET"
    prev=$n
  done
  read -ra SIZE_LIST <<<"$SIZES"
  ((FORGET > LIFETIME)) ||
    warn "FORGET=$FORGET <= LIFETIME=$LIFETIME: the kept snapshots still hold every daily file of the forgotten ones"
  MAX_N=${SIZE_LIST[-1]}
  RUNNERS=()
  local t bin
  for t in $TOOLS; do
    case $t in
      coffer | coffer-rt0) RUNNERS+=("$t") ;;
      restic | restic-mu0 | rustic | borg)
        bin=${t%-mu0}
        if command -v "$bin" >/dev/null; then
          RUNNERS+=("$t")
        else
          warn "$bin is not installed; skipping $t"
        fi
        ;;
      *) die "unknown runner '$t' in TOOLS" ;;
    esac
  done
  ((${#RUNNERS[@]})) || die "no runner left"
  BUILD_TOOLS=()
  for t in "${RUNNERS[@]}"; do
    t=$(base_tool "$t")
    [[ " ${BUILD_TOOLS[*]} " == *" $t "* ]] || BUILD_TOOLS+=("$t")
  done
}

prepare_coffer() {
  [[ " ${BUILD_TOOLS[*]} " == *" coffer "* ]] || return 0
  if [[ -z ${COFFER:-} ]]; then
    COFFER=${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer
    if [[ $BUILD == 1 || ! -x $COFFER ]]; then
      say "building coffer (cargo build --release)"
      (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1 ||
        die "cargo build failed; see $LOGS/cargo-build.log"
    elif [[ -n $(find "$ROOT/src" -newer "$COFFER" -name '*.rs' -print -quit) ]]; then
      warn "$COFFER is older than src/; BUILD=1 rebuilds it"
    fi
  fi
  [[ -x $COFFER ]] || die "no coffer binary at $COFFER"
  "$COFFER" prune --help >/dev/null 2>&1 || die "$COFFER has no prune command (BUILD=1 rebuilds)"
}

tool_version() {
  case $1 in
    coffer) printf '%s (%s)' "$("$COFFER" --version)" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" ;;
    restic | restic-mu0) restic version | head -1 ;;
    rustic) rustic --version | head -1 ;;
    borg) borg --version ;;
  esac
}

# The deterministic day generator. `day.py TREE D` applies day D's changes (none on day 1)
# and prints the day's date.
write_generator() {
  cat >"$WORK/day.py" <<'PY'
import datetime, os, random, sys

tree, day = sys.argv[1], int(sys.argv[2])
changed, added, lifetime = (int(x) for x in sys.argv[3:6])
date = datetime.date(2020, 1, 1) + datetime.timedelta(days=day - 1)
print(date.isoformat())
if day == 1:
    sys.exit(0)

vocab_rng = random.Random("coffer prune bench vocabulary")
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = ["".join(vocab_rng.choice(letters) for _ in range(vocab_rng.randint(2, 10))) for _ in range(600)]
levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
rng = random.Random(f"coffer prune bench day {day}")

def log_line(second):
    words = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 16)))
    return (f"{date.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} "
            f"{rng.choice(levels)} app[{rng.randint(1000, 99999)}] req={rng.getrandbits(64):016x} {words}\n")

daily = os.path.join(tree, "_daily")
pool = []
for dirpath, dirnames, filenames in os.walk(tree):
    dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) != daily)
    for f in sorted(filenames):
        p = os.path.join(dirpath, f)
        if os.path.isfile(p) and not os.path.islink(p):
            pool.append(p)
for p in rng.sample(pool, min(changed, len(pool))):
    with open(p, "a") as f:
        f.write(log_line(rng.randrange(86400)))

os.makedirs(daily, exist_ok=True)
for k in range(added):
    target = rng.randint(8, 128) * 1024
    lines, size, second = [], 0, 0
    while size < target:
        second = min(86399, second + rng.randint(0, 30))
        line = log_line(second)
        lines.append(line)
        size += len(line)
    with open(os.path.join(daily, f"d{day:05d}-{k}.log"), "w") as f:
        f.writelines(lines)
old = day - lifetime
for k in range(added):
    p = os.path.join(daily, f"d{old:05d}-{k}.log")
    if os.path.exists(p):
        os.remove(p)
PY
}

# ---------------------------------------------------------------------------------------------
# Tool adapters: `cmd_TOOL ACTION [ARG]` sets CMD for the repository REPO and cache dir CACHE.
# Actions: init, backup DAY, list, forget KEEP, prune, check, count (snapshots as JSON/lines).
# ---------------------------------------------------------------------------------------------

cmd_coffer() {
  local c=("$COFFER" -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" -q init) ;;
    backup) CMD=("${c[@]}" -q backup --host bench --time "${DATE}T03:00" "$TREE_DATA") ;;
    list) CMD=("${c[@]}" snapshots) ;;
    count) CMD=("${c[@]}" --json snapshots) ;;
    forget) CMD=("${c[@]}" forget --keep-last "$2") ;;
    prune) CMD=("${c[@]}" prune) ;;
    check) CMD=("${c[@]}" check) ;;
  esac
}

cmd_restic() {
  local c=(restic -r "$REPO" --cache-dir "$CACHE")
  case $1 in
    init) CMD=("${c[@]}" -q init) ;;
    backup) CMD=("${c[@]}" -q backup --host bench --time "$DATE 03:00:00" "$TREE_DATA") ;;
    list) CMD=("${c[@]}" snapshots) ;;
    count) CMD=("${c[@]}" --json snapshots) ;;
    forget) CMD=("${c[@]}" forget --keep-last "$2") ;;
    prune) CMD=("${c[@]}" prune) ;;
    check) CMD=("${c[@]}" check) ;;
  esac
}

cmd_coffer-rt0() {
  cmd_coffer "$@"
  [[ $1 == prune ]] && CMD+=(--repack-threshold 0)
  return 0
}

cmd_restic-mu0() {
  cmd_restic "$@"
  [[ $1 == prune ]] && CMD+=(--max-unused 0)
  return 0
}

# rustic marks packs for deletion and removes them in a later prune (after --keep-delete, 23h
# by default); --instant-delete removes them now, which is what restic and coffer do.
cmd_rustic() {
  local c=(rustic -r "$REPO" --cache-dir "$CACHE" --no-progress)
  case $1 in
    list) CMD=("${c[@]}" snapshots) ;;
    count) CMD=("${c[@]}" snapshots --json) ;;
    forget) CMD=("${c[@]}" forget --keep-last "$2") ;;
    prune) CMD=("${c[@]}" prune --instant-delete) ;;
    check) CMD=("${c[@]}" check) ;;
  esac
}

# borg keeps its cache, keys and security state under BORG_BASE_DIR; `env` execs borg, so
# /usr/bin/time still measures borg itself. borg's prune is the forget step; compact frees
# the space.
cmd_borg() {
  local c=(env BORG_BASE_DIR="$CACHE" borg)
  case $1 in
    init) CMD=("${c[@]}" init --encryption=repokey-blake2 "$REPO") ;;
    backup) CMD=("${c[@]}" create --timestamp "${DATE}T03:00:00" "$REPO::day-$2" "$TREE_DATA") ;;
    list) CMD=("${c[@]}" list "$REPO") ;;
    count) CMD=("${c[@]}" list --short "$REPO") ;;
    forget) CMD=("${c[@]}" prune --keep-last "$2" "$REPO") ;;
    prune) CMD=("${c[@]}" compact "$REPO") ;;
    check) CMD=("${c[@]}" check "$REPO") ;;
  esac
}

# count_snapshots RUNNER: the number of snapshots in REPO.
count_snapshots() {
  "cmd_$1" count
  if [[ $1 == borg ]]; then
    "${CMD[@]}" 2>/dev/null | wc -l
  else
    "${CMD[@]}" 2>/dev/null | "$PYTHON" -c '
import json, sys
def n(v):
    if isinstance(v, dict):
        return 1 if "time" in v and "paths" in v else sum(n(x) for x in v.values())
    return sum(n(x) for x in v) if isinstance(v, list) else 0
print(n(json.load(sys.stdin)))'
  fi
}

# ---------------------------------------------------------------------------------------------
# Building the repositories (cached)
# ---------------------------------------------------------------------------------------------

signature() {
  printf 'generator %s changed %s added %s lifetime %s tree %s (%s) tool %s\n' \
    "$GENERATOR_VERSION" "$CHANGED" "$ADDED" "$LIFETIME" "$TREE" "$TREE_STAMP" "$(tool_version "$1" | cut -d'(' -f1)"
}

# cached TOOL: the tool's cached repositories match this run, and (the repository format may
# have changed under the same --version) the tool can still list the smallest of them.
cached() {
  local n ok=0
  for n in "${SIZE_LIST[@]}"; do
    [[ -f $WORK/repos/$1/$n/signature && $(cat "$WORK/repos/$1/$n/signature") == "$(signature "$1")" ]] ||
      return 1
  done
  n=${SIZE_LIST[0]}
  rm -rf "$RUN"
  mkdir -p "$RUN"
  cp -a "$WORK/repos/$1/$n/repo" "$WORK/repos/$1/$n/cache" "$RUN/"
  REPO=$RUN/repo CACHE=$RUN/cache
  [[ $(count_snapshots "$1" 2>/dev/null) == "$n" ]] || ok=1
  rm -rf "$RUN"
  ((ok == 0)) || say "the cached $1 repositories no longer open; rebuilding them"
  return $ok
}

build_repositories() {
  # What TREE holds now (bytes, files, newest mtime), so a changed TREE means a new build.
  TREE_STAMP=$(find "$TREE" -type f -printf '%s %T@\n' 2>/dev/null |
    awk '{ b += $1; if ($2 > m) m = $2; n++ } END { printf "%d bytes, %d files, newest %d", b, n, m }')
  local t todo=() d n
  for t in "${BUILD_TOOLS[@]}"; do
    if [[ $REBUILD != 1 ]] && cached "$t"; then
      say "reusing the cached $t repositories of $SIZES snapshots"
    else
      todo+=("$t")
    fi
  done
  ((${#todo[@]})) || return 0

  say "building ${todo[*]} repositories of $SIZES snapshots (days 1..$MAX_N)"
  TREE_DATA=$WORK/data/tree
  rm -rf "$WORK/data" "$WORK/build"
  mkdir -p "$TREE_DATA"
  cp -a "$TREE/." "$TREE_DATA/" 2>"$LOGS/tree-copy.log" ||
    warn "some files of $TREE could not be copied; see $LOGS/tree-copy.log"
  for t in "${todo[@]}"; do
    rm -rf "$WORK/repos/$t"
    REPO=$WORK/build/$t/repo CACHE=$WORK/build/$t/cache
    mkdir -p "$CACHE"
    "cmd_$t" init
    "${CMD[@]}" >>"$LOGS/$t.init.log" 2>&1 || die "$t init failed; see $LOGS/$t.init.log"
  done

  local tf=$LOGS/time.out wall rss
  for ((d = 1; d <= MAX_N; d++)); do
    DATE=$("$PYTHON" "$WORK/day.py" "$TREE_DATA" "$d" "$CHANGED" "$ADDED" "$LIFETIME") ||
      die "the day generator failed on day $d"
    for t in "${todo[@]}"; do
      REPO=$WORK/build/$t/repo CACHE=$WORK/build/$t/cache
      "cmd_$t" backup "$(printf %05d "$d")"
      /usr/bin/time -f '%e %M' -o "$tf" "${CMD[@]}" >>"$LOGS/$t.build.log" 2>&1 </dev/null ||
        die "$t backup of day $d failed; see $LOGS/$t.build.log"
      read -r wall rss <"$tf"
      printf '%s\t%s\t%s\t%s\n' "$t" "$d" "$wall" "$rss" >>"$BUILD_RAW"
    done
    if ((d % 50 == 0)); then say "  day $d of $MAX_N"; fi
    for n in "${SIZE_LIST[@]}"; do
      ((n == d)) || continue
      for t in "${todo[@]}"; do
        mkdir -p "$WORK/repos/$t/$n"
        cp -a "$WORK/build/$t/repo" "$WORK/build/$t/cache" "$WORK/repos/$t/$n/"
        printf '%s\n' "$(du -sb "$TREE_DATA" | cut -f1) $(find "$TREE_DATA" -type f | wc -l)" \
          >"$WORK/repos/$t/$n/tree"
        awk -F'\t' -v t="$t" '$1 == t { s += $3; n++ } END { if (n) printf "%.3f\n", s / n }' \
          "$BUILD_RAW" >"$WORK/repos/$t/$n/backup-mean"
        signature "$t" >"$WORK/repos/$t/$n/signature"
      done
      say "  $n snapshots: copied ${todo[*]}"
    done
  done
  rm -rf "$WORK/build" "$WORK/data"
}

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------

warm() {
  find "$@" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
}

# measure RUNNER N ROUND STEP (list, first, forget, prune): run CMD under /usr/bin/time, append to RAW: runner, size N,
# round, step, wall seconds (or FAIL), peak RSS KiB, repository bytes before and after.
measure() {
  local runner=$1 n=$2 round=$3 stepname=$4
  local log=$LOGS/$runner.$n.$stepname.r$round.log tf=$LOGS/time.out rc=0 wall rss before after
  before=$(du -sb "$REPO" | cut -f1)
  warm "$REPO" "$CACHE"
  sync
  {
    printf '$'
    printf ' %q' "${CMD[@]}"
    printf '\n'
  } >>"$log"
  /usr/bin/time -f '%e %M' -o "$tf" "${CMD[@]}" </dev/null >>"$log" 2>&1 || rc=$?
  after=$(du -sb "$REPO" | cut -f1)
  if ((rc != 0)); then
    warn "$runner $stepname at $n snapshots (round $round) failed with status $rc; see $log"
    printf '%s\t%s\t%s\t%s\tFAIL\t0\t%s\t%s\n' "$runner" "$n" "$round" "$stepname" "$before" "$after" >>"$RAW"
    return 1
  fi
  read -r wall rss <"$tf"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$runner" "$n" "$round" "$stepname" "$wall" "$rss" "$before" "$after" >>"$RAW"
  say "  $runner $stepname: ${wall}s, $((rss / 1024)) MiB, repository $((before / 1000000)) -> $((after / 1000000)) MB"
}

# One runner at one size in one round, on a fresh copy of the cached repository.
run_one() {
  local runner=$1 n=$2 round=$3 base left
  base=$(base_tool "$runner")
  rm -rf "$RUN"
  mkdir -p "$RUN"
  cp -a "$WORK/repos/$base/$n/repo" "$WORK/repos/$base/$n/cache" "$RUN/"
  REPO=$RUN/repo CACHE=$RUN/cache
  "cmd_$runner" list
  measure "$runner" "$n" "$round" list || true
  # The repository has never been pruned: a first prune, with nothing forgotten, does what
  # is owed from the build (restic and rustic merge the tiny packs every daily backup left),
  # so that the prune measured below costs what forgetting costs, as it would in a
  # repository pruned regularly.
  "cmd_$runner" prune
  measure "$runner" "$n" "$round" first || true
  "cmd_$runner" forget $((n - FORGET))
  if measure "$runner" "$n" "$round" forget; then
    if [[ $VERIFY == 1 && $round == 1 ]]; then
      left=$(count_snapshots "$runner" || true)
      if [[ $left != $((n - FORGET)) ]]; then
        warn "$runner: ${left:-?} snapshots after forget at $n, expected $((n - FORGET))"
        echo "$runner at $n: ${left:-?} snapshots after forget (expected $((n - FORGET)))" >>"$VERIFIED"
      fi
    fi
    "cmd_$runner" prune
    if measure "$runner" "$n" "$round" prune && [[ $VERIFY == 1 && $round == 1 ]]; then
      "cmd_$runner" check
      if "${CMD[@]}" >"$LOGS/$runner.$n.check.log" 2>&1 </dev/null; then
        echo "$runner at $n: check passed after prune" >>"$VERIFIED"
      else
        warn "$runner: check failed after prune at $n snapshots; see $LOGS/$runner.$n.check.log"
        echo "$runner at $n: CHECK FAILED after prune (see $LOGS/$runner.$n.check.log)" >>"$VERIFIED"
      fi
    fi
  fi
  rm -rf "$RUN"
}

run_all() {
  local round n k order
  for ((round = 1; round <= ROUNDS; round++)); do
    k=$(((round - 1) % ${#RUNNERS[@]}))
    order=("${RUNNERS[@]:k}" "${RUNNERS[@]:0:k}")
    for n in "${SIZE_LIST[@]}"; do
      say "round $round of $ROUNDS, $n snapshots (order: ${order[*]})"
      for runner in "${order[@]}"; do
        run_one "$runner" "$n" "$round"
      done
    done
  done
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

# agg KIND RUNNER N STEP: time (best wall over rounds), rss (highest peak KiB), before / after /
# freed (mean bytes over rounds); FAIL if any round failed, empty if not measured.
agg() {
  awk -F'\t' -v kind="$1" -v r="$2" -v n="$3" -v s="$4" '
    $1 != r || $2 != n || $4 != s { next }
    $5 == "FAIL" { fail = 1; next }
    { m++; if (m == 1 || $5 < best) best = $5; if ($6 > peak) peak = $6; b += $7; a += $8 }
    END {
      if (fail) { print "FAIL"; exit }
      if (!m) exit
      if (kind == "time") printf "%.2f\n", best
      if (kind == "rss") print peak
      if (kind == "before") printf "%.0f\n", b / m
      if (kind == "after") printf "%.0f\n", a / m
      if (kind == "freed") printf "%.0f\n", (b - a) / m
    }' "$RAW"
}

is_num() { [[ $1 =~ ^[0-9.]+$ ]]; }

fmt() {
  is_num "${2:-}" || {
    printf '%s' "${2:-–}"
    return
  }
  case $1 in
    time) printf '%.2f' "$2" ;;
    rss) awk -v v="$2" 'BEGIN { printf "%.0f", v / 1024 }' ;;
    before | after | freed) awk -v v="$2" 'BEGIN { printf "%.1f", v / 1e6 }' ;;
  esac
}

ratio() {
  if is_num "${1:-}" && is_num "${2:-}" && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'
  else
    printf '–'
  fi
}

has() { [[ " ${RUNNERS[*]} " == *" $1 "* ]]; }

# The headline: coffer against restic's defaults, one row per size, then the growth.
main_table() {
  local n first=${SIZE_LIST[0]} ct rt cr rr
  echo "| snapshots | repository MB (coffer / restic) | coffer wall s | restic wall s | coffer / restic | coffer RSS MiB | restic RSS MiB | coffer / restic |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in "${SIZE_LIST[@]}"; do
    ct=$(agg time coffer "$n" prune) rt=$(agg time restic "$n" prune)
    cr=$(agg rss coffer "$n" prune) rr=$(agg rss restic "$n" prune)
    printf '| %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$n" \
      "$(fmt before "$(agg before coffer "$n" prune)")" "$(fmt before "$(agg before restic "$n" prune)")" \
      "$(fmt time "$ct")" "$(fmt time "$rt")" "$(ratio "$ct" "$rt")" \
      "$(fmt rss "$cr")" "$(fmt rss "$rr")" "$(ratio "$cr" "$rr")"
  done
  printf '| growth %s → %s | %s / %s | %s | %s | | %s | %s | |\n' "$first" "$MAX_N" \
    "$(ratio "$(agg before coffer "$MAX_N" prune)" "$(agg before coffer "$first" prune)")" \
    "$(ratio "$(agg before restic "$MAX_N" prune)" "$(agg before restic "$first" prune)")" \
    "$(ratio "$(agg time coffer "$MAX_N" prune)" "$(agg time coffer "$first" prune)")" \
    "$(ratio "$(agg time restic "$MAX_N" prune)" "$(agg time restic "$first" prune)")" \
    "$(ratio "$(agg rss coffer "$MAX_N" prune)" "$(agg rss coffer "$first" prune)")" \
    "$(ratio "$(agg rss restic "$MAX_N" prune)" "$(agg rss restic "$first" prune)")"
}

# per_size_table KIND STEP: one row per runner, one column per size, then the growth.
per_size_table() {
  local kind=$1 stepname=$2 r n
  printf '| runner |'
  for n in "${SIZE_LIST[@]}"; do printf ' %s |' "$n"; done
  printf ' growth %s → %s |\n|---|' "${SIZE_LIST[0]}" "$MAX_N"
  for n in "${SIZE_LIST[@]}"; do printf -- '---:|'; done
  printf -- '---:|\n'
  for r in "${RUNNERS[@]}"; do
    printf '| %s |' "$(label "$r")"
    for n in "${SIZE_LIST[@]}"; do printf ' %s |' "$(fmt "$kind" "$(agg "$kind" "$r" "$n" "$stepname")")"; done
    printf ' %s |\n' "$(ratio "$(agg "$kind" "$r" "$MAX_N" "$stepname")" "$(agg "$kind" "$r" "${SIZE_LIST[0]}" "$stepname")")"
  done
}

space_table() {
  local r n
  echo "| runner | snapshots | as built MB | freed by the first prune MB | after forget MB | after prune MB | freed by prune MB |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for r in "${RUNNERS[@]}"; do
    for n in "${SIZE_LIST[@]}"; do
      printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$r")" "$n" \
        "$(fmt before "$(agg before "$r" "$n" first)")" "$(fmt freed "$(agg freed "$r" "$n" first)")" \
        "$(fmt before "$(agg before "$r" "$n" prune)")" "$(fmt after "$(agg after "$r" "$n" prune)")" \
        "$(fmt freed "$(agg freed "$r" "$n" prune)")"
    done
  done
}

build_table() {
  local t n
  echo "| tool | mean backup s (per day) | repository MB at $(printf '%s ' "${SIZE_LIST[@]}")snapshots |"
  echo "|---|---:|---|"
  for t in "${BUILD_TOOLS[@]}"; do
    printf '| %s | %s |' "$t" "$(cat "$WORK/repos/$t/$MAX_N/backup-mean" 2>/dev/null || echo –)"
    for n in "${SIZE_LIST[@]}"; do
      printf ' %s' "$(du -sb "$WORK/repos/$t/$n/repo" | awk '{ printf "%.1f", $1 / 1e6 }')"
    done
    printf ' |\n'
  done
}

load_now() {
  printf '%s' "$(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ -r /proc/pressure/io ]]; then
    awk '/^some/ { sub("avg60=", "", $3); printf ", I/O pressure %s%%", $3 }' /proc/pressure/io
  fi
}

report() {
  local cpu mem tree_bytes tree_files r
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  read -r tree_bytes tree_files <"$WORK/repos/${BUILD_TOOLS[0]}/$MAX_N/tree"
  cat <<EOF
# coffer prune vs peers: cost as the repository grows

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); run took $((SECONDS - START_TIME)) s ($([[ ${QUICK:-0} == 1 ]] && echo "QUICK smoke run" || echo "full run"))
- machine: $(nproc) CPUs ($cpu), $mem RAM, Linux $(uname -r)
- load average at start: $LOAD_START; at end: $(load_now) (the machine may be shared: compare ratios, not bare times)
$(for r in "${BUILD_TOOLS[@]}"; do printf -- '- %s\n' "$(tool_version "$r")"; [[ $r == restic ]] && has rustic && printf -- '- %s\n' "$(tool_version rustic)"; done)

Headline: the prune after forgetting the oldest $FORGET snapshots, on a repository that has had one prune before (see "The first prune" below).

Data: day 1 is a copy of \`$TREE\`; every later day appends a line to $CHANGED of its files, adds $ADDED log-like text files of 8-128 KiB and deletes those added $LIFETIME days before (deterministic generator). One snapshot per day; at $MAX_N days the tree is $((tree_bytes / 1000000)) MB in $tree_files files. Every size N holds snapshots of days 1..N; before prune the oldest $FORGET are forgotten (\`forget --keep-last N-$FORGET\`), the same amount at every size.

Method: $ROUNDS round(s); each measurement on a fresh copy of the cached repository and its cache dir; runners interleaved, order rotated per round. Wall time is the best over rounds; peak RSS the highest. Before every timed step, untimed, the repository and cache are read once and \`sync\` runs. Sizes are \`du -sb\` of the repository. Lower is better everywhere.

## prune: coffer against restic (defaults)

$(main_table)

## prune wall time (seconds), every runner

$(per_size_table time prune)

## prune peak RSS (MiB), every runner

$(per_size_table rss prune)

## The first prune of a never-pruned repository (nothing forgotten)

Wall s:

$(per_size_table time first)

Peak RSS MiB:

$(per_size_table rss first)

## Floors and the forget step

Listing snapshots (opening the repository, key derivation included), wall s:

$(per_size_table time list)

Listing snapshots, peak RSS MiB:

$(per_size_table rss list)

forget of the oldest $FORGET (borg: \`borg prune\`), wall s:

$(per_size_table time forget)

## Space

$(space_table)

## The repositories (built once, cached)

$(build_table)

Notes:
- coffer prune deletes packs with nothing reachable and repacks those whose unused share is at least \`--repack-threshold\` (20% by default); the coffer --repack-threshold 0 row repacks every pack that holds unused data.
- restic (0.14) repacks, whatever \`--max-unused\` says: packs holding tree blobs with any unused blob, packs below 1/25 of the target pack size (16 MiB) with any unused blob, and every fully used pack below 1/25 once there are ten or more. Every daily backup here writes such tiny packs, hence the first-prune table.
- restic prune repacks other partly used packs only while unused data exceeds \`--max-unused\` (5% of the repository by default); packs that are wholly unused are deleted either way. The restic --max-unused 0 row repacks every pack that holds unused data.
- rustic prunes copies of the restic repositories; without \`--instant-delete\` it only marks packs and deletes them in a prune at least 23 h later.
- borg: \`borg prune\` is the forget step and \`borg compact\` frees the space; compact skips segments with less than 10% to free (its default \`--threshold\`).

Verification (round 1): $(if [[ -s $VERIFIED ]]; then paste -sd';' "$VERIFIED" | sed 's/;/; /g'; else echo "not checked (VERIFY=0)"; fi).
Raw measurements: \`$RAW\`; logs: \`$LOGS\`.
EOF
}

# ---------------------------------------------------------------------------------------------

main() {
  LOAD_START=$(load_now)
  mkdir -p "$WORK/logs"
  WORK=$(cd "$WORK" && pwd)
  LOGS=$WORK/logs
  RUN=$WORK/run
  RAW=$WORK/prune-raw.tsv
  BUILD_RAW=$LOGS/build.tsv
  VERIFIED=$LOGS/verified.txt
  rm -f "$LOGS"/*.log "$RAW" "$VERIFIED" "$BUILD_RAW"
  check_prerequisites
  say "work dir $WORK; runners: ${RUNNERS[*]}; TREE=$TREE SIZES=\"$SIZES\" FORGET=$FORGET ROUNDS=$ROUNDS"
  prepare_coffer
  write_generator
  build_repositories
  run_all
  report | tee "$WORK/prune-results.md"
  cp "$WORK/prune-results.md" "$WORK/prune-results-$(date -u +%Y%m%dT%H%M%SZ).md"
  say "done; results in $WORK/prune-results.md"
}

main "$@"
