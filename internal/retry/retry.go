// Package retry holds the one way Tributary waits between attempts: a capped
// exponential backoff with jitter (cenkalti/backoff) and a sleep that ends
// with its context. Every package that retries uses these instead of
// building its own.
//
// It must never decide what is worth retrying: callers classify errors.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// NewBackOff returns a capped exponential backoff with jitter that starts
// at initial and never waits longer than max. It never gives up by itself
// (no elapsed-time limit): callers bound retries with their context.
func NewBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = initial
	bo.MaxInterval = max
	bo.Reset()
	return bo
}

// Sleep waits d, or until ctx ends; it returns ctx.Err() in that case and
// nil otherwise.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
