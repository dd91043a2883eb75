#!/usr/bin/env bash
# Installs what the tests need from the OS: the Postgres server binaries
# (initdb, pg_ctl, postgres), the "postgres" OS user that runs them when
# the tests run as root (Postgres refuses to run as root), and Chromium
# (the sse reaction's live page is tested in a real browser).
#
# Idempotent: when the binaries are already found (same search as
# internal/pgtest: $PG_BIN, PATH, /usr/local/bin, /usr/lib/postgresql/*/bin)
# it installs nothing. It never starts a cluster; internal/pgtest makes a
# private one per test package. Debian/Ubuntu (apt-get) only.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }

has_server_bins() { # dir
	[[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]
}

find_bin_dir() {
	if [[ -n "${PG_BIN:-}" ]]; then
		if has_server_bins "$PG_BIN"; then
			printf '%s\n' "$PG_BIN"
			return 0
		fi
		log "PG_BIN=$PG_BIN does not hold initdb, pg_ctl and postgres" >&2
		return 1
	fi
	local dir candidates=()
	if command -v initdb >/dev/null 2>&1; then
		candidates+=("$(dirname "$(command -v initdb)")")
	fi
	candidates+=(/usr/local/bin)
	# Highest version first.
	while IFS= read -r dir; do
		candidates+=("$dir")
	done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r)
	for dir in "${candidates[@]}"; do
		if has_server_bins "$dir"; then
			printf '%s\n' "$dir"
			return 0
		fi
	done
	return 1
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		log "need root to run: $*" >&2
		exit 1
	fi
}

if bin_dir=$(find_bin_dir); then
	log "Postgres server binaries found in $bin_dir; nothing to install"
else
	if [[ -n "${PG_BIN:-}" ]]; then
		log "unset PG_BIN or point it at a directory with the server binaries" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no Postgres server binaries and no apt-get: install Postgres (15 or later) and set PG_BIN" >&2
		exit 1
	fi
	log "no Postgres server binaries found; installing the postgresql package"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
	if ! bin_dir=$(find_bin_dir); then
		log "postgresql installed but initdb, pg_ctl and postgres are still not found" >&2
		exit 1
	fi
	log "Postgres server binaries installed in $bin_dir"
fi
log "$("$bin_dir/postgres" --version)"

# The Debian package creates the user; a hand-installed Postgres may not.
if id postgres >/dev/null 2>&1; then
	log "OS user postgres exists: $(id postgres)"
else
	log "creating the OS user postgres"
	if getent group postgres >/dev/null 2>&1; then
		group_opt=(--gid postgres)
	else
		group_opt=(--user-group)
	fi
	as_root useradd --system "${group_opt[@]}" --home-dir /var/lib/postgresql --shell /bin/bash postgres
	log "OS user postgres created: $(id postgres)"
fi

# A real browser for the live page test of the sse reaction
# (internal/reaction, driven by chromedp): Debian's chromium package.
if command -v chromium >/dev/null 2>&1; then
	log "chromium found: $(command -v chromium)"
else
	if ! command -v apt-get >/dev/null 2>&1; then
		log "no chromium and no apt-get: install Chromium and put it on PATH as chromium" >&2
		exit 1
	fi
	log "no chromium found; installing the chromium package"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
	log "chromium installed: $(command -v chromium)"
fi
