package app

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target (GOGC) of every
// binary when the environment does not set GOGC. A Tributary process holds
// large, long-lived indexes (the embedded NATS server's subject and
// duplicate indexes, a query's element store) and allocates per message:
// with Go's default of 100 the collector repeatedly rescans the long-lived
// part, about a sixth of source-pg's CPU at 100k changes/s. 300 lets the
// heap grow to four times the live data between collections instead of
// twice (docs/operations.md: memory). GOGC and GOMEMLIMIT in the
// environment take precedence, as always with Go.
const DefaultGCPercent = 300

// ApplyGCDefault sets DefaultGCPercent unless GOGC is set, and returns the
// value in effect (-1: off). Main calls it; tools that run a component in
// their own process (benchmarks) call it too, to measure what runs.
func ApplyGCDefault() int {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		old := debug.SetGCPercent(100)
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
