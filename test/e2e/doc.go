// Package e2e holds whole-system tests: they build the real binaries, run
// them as separate processes against a real Postgres (internal/pgtest) and a
// real NATS server (internal/natstest), inject faults (kill -9, Postgres
// restarts, NATS node loss) and check what reached the bus and the
// reactions.
//
// The binaries are built without the race detector, so these tests stay
// within CI's time; the packages they exercise are race-tested on their own.
package e2e
