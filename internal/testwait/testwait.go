// Package testwait is the one way tests wait for a condition: they poll it
// with a deadline, never sleep for a guessed time. Test code only (tests and
// the test harnesses); production code must not import it.
package testwait

import (
	"context"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 10 * time.Millisecond

// Until polls cond until it holds; the test fails when within passes first.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	UntilErr(context.Background(), t, within, what, func() (bool, error) { return cond(), nil })
}

// UntilErr polls cond until it reports true; the test fails, with cond's
// last error, when within passes or ctx ends first.
func UntilErr(ctx context.Context, t testing.TB, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", within, what, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}
