#!/usr/bin/env bash
# Runs Tributary's whole job on this machine, each binary its own process:
# a throwaway Postgres (installed by scripts/install-deps.sh when missing,
# started and removed by the demo), source-pg hosting the embedded NATS
# server on a loopback port, query-engine run and reactor, all from
# examples/curbside.yaml. It applies a story of row changes and streams the
# result diffs as they happen; then checks them (against SQL, the results
# stream and the live page) and exits non-zero if anything is wrong.
#   ./scripts/demo.sh          run the story, check, stop, clean up
#   ./scripts/demo.sh --keep   stay up with the live page until Ctrl-C
# See test/demo and docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
bash scripts/build.sh >&2
# Built, not `go run`: Ctrl-C then reaches the demo itself, which stops
# the binaries in order and removes what it made.
demo_bin="$(mktemp -d)"
trap 'rm -rf "$demo_bin"' EXIT
go build -o "$demo_bin/demo" ./test/demo
# Go flags take --keep as well as -keep.
"$demo_bin/demo" -bin bin -config examples/curbside.yaml "$@"
