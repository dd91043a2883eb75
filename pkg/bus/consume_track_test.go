package bus

import (
	"testing"
	"time"
)

func TestTrackerResumesAtTheOldestUnsettled(t *testing.T) {
	now := time.Now()
	// The server had delivered up to 10, all acknowledged.
	tr := newTracker(10, 10)
	for s := uint64(11); s <= 15; s++ {
		if tr.delivered(s, now) {
			t.Fatalf("%d: first delivery reported as settled", s)
		}
	}
	if got := tr.resumeAt(); got != 11 {
		t.Fatalf("nothing settled: resume at %d, want 11", got)
	}
	tr.settle(11)
	tr.settle(13)
	if got := tr.resumeAt(); got != 12 {
		t.Fatalf("11 and 13 settled: resume at %d, want 12", got)
	}
	// A recreated consumer redelivers 12..15: 13 is settled (skip), the
	// others are not.
	for s, want := range map[uint64]bool{11: true, 12: false, 13: true, 14: false, 15: false} {
		if got := tr.delivered(s, now); got != want {
			t.Errorf("redelivery of %d: settled %v, want %v", s, got, want)
		}
	}
	tr.settle(12)
	tr.settle(14)
	tr.settle(15)
	if got := tr.resumeAt(); got != 16 {
		t.Fatalf("all settled: resume at %d, want 16", got)
	}
	if !tr.oldestOpen().IsZero() {
		t.Fatal("nothing open, yet an oldest open message")
	}
}

func TestTrackerDoesNotSkipWhatAnEarlierProcessLeftUnacknowledged(t *testing.T) {
	now := time.Now()
	// The server had delivered up to 20 but acknowledged only up to 10:
	// an earlier process may hold 11..20.
	tr := newTracker(10, 20)
	for s := uint64(21); s <= 25; s++ {
		tr.delivered(s, now)
		tr.settle(s)
	}
	if got := tr.resumeAt(); got != 11 {
		t.Fatalf("resume at %d, want 11 (the server's ack floor + 1)", got)
	}
	if tr.delivered(15, now) {
		t.Fatal("a message of the earlier process was reported settled")
	}
	if !tr.delivered(22, now) {
		t.Fatal("a message this consumer settled was not recognised")
	}
	// Once the server's floor passes what the earlier process held, the
	// client's own record decides.
	tr.settle(15)
	tr.setServerFloor(20)
	if got := tr.resumeAt(); got != 26 {
		t.Fatalf("resume at %d, want 26", got)
	}
}

func TestTrackerOldestOpen(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	tr := newTracker(0, 0)
	tr.delivered(2, t0.Add(time.Second))
	tr.delivered(1, t0)
	if !tr.oldestOpen().Equal(t0) {
		t.Fatalf("oldest open %v, want %v", tr.oldestOpen(), t0)
	}
	tr.settle(1)
	if !tr.oldestOpen().Equal(t0.Add(time.Second)) {
		t.Fatalf("oldest open %v after settling 1", tr.oldestOpen())
	}
}
