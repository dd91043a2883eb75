package testwait

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	Until(t, 5*time.Second, "three polls", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Fatalf("polled %d times, want 3", n.Load())
	}
}

// recorder captures Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	panic(r)
}

func TestUntilErrFailsAtTheDeadlineWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != r {
				t.Fatalf("no failure reported (recovered %v)", p)
			}
		}()
		UntilErr(context.Background(), r, 50*time.Millisecond, "never", func() (bool, error) { return false, errors.New("boom") })
	}()
	if r.failed == "" {
		t.Fatal("no failure reported")
	}
}

func TestUntilErrStopsWhenTheContextEnds(t *testing.T) {
	r := &recorder{TB: t}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	func() {
		defer func() { _ = recover() }()
		UntilErr(ctx, r, time.Minute, "never", func() (bool, error) { return false, nil })
	}()
	if r.failed == "" || time.Since(start) > 5*time.Second {
		t.Fatalf("failure %q after %s, want an immediate failure", r.failed, time.Since(start))
	}
}
