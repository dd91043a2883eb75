#!/usr/bin/env bash
# Runs the query-engine benchmark (issue 9; see docs/benchmarks.md, section
# query-engine): for a filter and a grouped aggregation query, the
# throughput over N stored changes (the replay path) and live, next to two
# limits measured in the same run (an ordered batch consumer that only
# acknowledges, and the engine's in-process Apply), the restart (rebuild)
# time with N changes of history, and the publish-to-result latency at a
# fixed rate. Everything runs in this process on embedded nats-servers with
# the default durability (fsync always). Prints markdown tables on stdout,
# progress on stderr. Arguments go to the benchmark, e.g.:
#
#	scripts/bench-query.sh -quick
#	scripts/bench-query.sh -n 200000 -cpuprofile /tmp/query.pprof
#
# Exits non-zero on an error, not on a missed target (the tables say so).
set -euo pipefail
cd "$(dirname "$0")/.."

exec go run ./test/bench/query "$@"
