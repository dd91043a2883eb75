#!/usr/bin/env bash
# Builds the three binaries into ./bin.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/ ./cmd/...
ls -l bin
