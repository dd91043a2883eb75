#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need (Postgres),
# then gofmt, go vet and go test -race over all packages, and the allocation
# tests without -race. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# The differential test of the query engine runs thousands of random change
# sequences here (a plain `go test` runs a few hundred).
export TRIBUTARY_DIFF_SEQUENCES="${TRIBUTARY_DIFF_SEQUENCES:-3000}"

echo "== tracked files"
# Nothing a build produces belongs in git: no tracked file may exceed 1 MiB.
big="$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk '$1 > 1048576 {print $2 " (" $1 " bytes)"}')"
if [[ -n "$big" ]]; then
	echo "tracked files over 1 MiB (built binaries or generated data?):" >&2
	echo "$big" >&2
	exit 1
fi
echo "== gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
	echo "not gofmt-formatted (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 40m ./...
# Allocation tests once more without the race detector, whose sync.Pool
# drops pooled state on purpose (regexp's matchers, say).
echo "== allocation tests without -race"
go test -count=1 -run 'DoesNotAllocate' ./internal/cypher
