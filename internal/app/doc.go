// Package app is the runtime the three binaries share: the common flags,
// loading and checking the config, logging, the bus connection and
// topology, the lifecycle buckets, the /metrics /healthz /readyz server, and
// the process lifecycle (all-or-nothing start; SIGTERM drains and exits 0; a
// component that gives up ends the process non-zero).
//
// A binary supplies only a Build function that creates its components.
// This package must never hold component logic.
package app
