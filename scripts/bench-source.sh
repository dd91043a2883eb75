#!/usr/bin/env bash
# Runs the source-pg benchmark (issue 3; see docs/benchmarks.md, section
# source-pg): the Postgres limit (pg_recvlogical), the bus limit (nats bench)
# and source-pg end to end, for one-row and large transactions, with fsync
# on every bus write and with lazy fsync, then the commit-to-ack latency at a
# fixed commit rate. Prints markdown tables on stdout, progress on stderr.
#
# Needs the Postgres server binaries and pg_recvlogical (scripts/install-deps.sh)
# and the nats CLI, which it installs with `go install` when it is missing.
# Arguments go to the benchmark, e.g.:
#
#	scripts/bench-source.sh -quick
#	scripts/bench-source.sh -n 1000000 -cpuprofile /tmp/source.pprof
#
# Exits non-zero on an error, not on a missed target (the tables say so).
set -euo pipefail
cd "$(dirname "$0")/.."

NATSCLI_VERSION=v0.5.0

log() { printf 'bench-source: %s\n' "$*" >&2; }

bash scripts/install-deps.sh >&2

gobin="$(go env GOBIN)"
[[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
nats_cli=""
if command -v nats >/dev/null 2>&1; then
	nats_cli="$(command -v nats)"
elif [[ -x "$gobin/nats" ]]; then
	nats_cli="$gobin/nats"
else
	log "installing the nats CLI $NATSCLI_VERSION (about a minute)"
	go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION"
	nats_cli="$gobin/nats"
fi
log "nats CLI: $nats_cli ($("$nats_cli" --version 2>&1))"

exec go run ./test/bench/source -nats "$nats_cli" "$@"
