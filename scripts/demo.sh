#!/usr/bin/env bash
# Runs Tributary's main job end to end on this machine: a throwaway Postgres
# (installed by scripts/install-deps.sh when missing, started and removed by
# the demo), source-pg with its embedded NATS server, row changes, and the
# change envelopes read back from JetStream. Exits non-zero if anything is
# missing, duplicated or out of order. See test/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >&2
bash scripts/build.sh >&2
exec go run ./test/demo -bin bin "$@"
