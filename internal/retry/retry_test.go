package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackOffIsCappedAndNeverStops(t *testing.T) {
	bo := NewBackOff(10*time.Millisecond, 40*time.Millisecond)
	for i := 0; i < 50; i++ {
		d := bo.NextBackOff()
		if d <= 0 {
			t.Fatalf("attempt %d: backoff gave up (%s)", i, d)
		}
		// Jitter is at most ±50% of the interval, which is capped at max.
		if d > 60*time.Millisecond {
			t.Fatalf("attempt %d: waited %s, above the cap of 40ms plus jitter", i, d)
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
}
