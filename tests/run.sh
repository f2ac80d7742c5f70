#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what the tests need, then run every test.
#
#   bash tests/run.sh [ARGS...]       ARGS go to `cargo test --all-targets --no-fail-fast`,
#                                     e.g. a name filter and harness flags:
#                                     `bash tests/run.sh sigkill -- --nocapture`
#                                     (`--test NAME` adds to --all-targets, it does not narrow it)
#   COFFER_TEST_SETUP_ONLY=1 bash tests/run.sh    install and check the tools, run no test
#
# The tests start their own servers on free loopback ports (tests/common/servers.rs,
# tests/common/postgres.rs) and fail, naming what to install, when one is missing; this script
# is what installs them:
#   - moto (S3) from PyPI:            pip install 'moto[server]'
#   - Azurite (Azure Blob) from npm:  npm install -g azurite
#   - OpenSSH server and client (SFTP) and PostgreSQL 15 from Debian: apt-get install
# Each is installed only when missing, so a second run installs nothing. Needs root (or the
# tools already installed). `--no-fail-fast`: cargo runs every test binary even after one
# fails, so one run lists every failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "tests/run.sh: $*" >&2; }
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# moto: `moto_server --help` imports the server's own dependencies (Flask), which plain
# `pip install moto` leaves out, so "on PATH" is not enough.
if ! moto_server --help >/dev/null 2>&1; then
    say "installing moto[server] from PyPI"
    pip install --quiet 'moto[server]'
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

if ! command -v azurite-blob >/dev/null 2>&1; then
    say "installing azurite from npm"
    npm install -g --silent azurite
fi

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
    say "installing openssh-server and openssh-client from Debian"
    apt_install openssh-server openssh-client
fi

# tests/postgres.rs and the job tests start throwaway clusters with initdb and pg_ctl, as the
# unprivileged `postgres` user (nobody if it is missing) when the tests run as root.
pgbin=/usr/lib/postgresql/15/bin
pgtools=(initdb pg_ctl pg_dump pg_dumpall psql postgres)
for tool in "${pgtools[@]}"; do
    if [ ! -x "$pgbin/$tool" ]; then
        say "installing postgresql-15 and postgresql-client-15 from Debian"
        apt_install postgresql-15 postgresql-client-15
        break
    fi
done

missing=()
moto_server --help >/dev/null 2>&1 || missing+=("moto_server (pip install 'moto[server]')")
for tool in azurite-blob ssh ssh-keygen /usr/sbin/sshd "${pgtools[@]/#/$pgbin/}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "still missing after the install steps: ${missing[*]}"
    exit 1
fi
say "moto, Azurite, OpenSSH and PostgreSQL 15 are installed"

if [ -n "${COFFER_TEST_SETUP_ONLY:-}" ]; then
    exit 0
fi
exec cargo test --all-targets --no-fail-fast "$@"
