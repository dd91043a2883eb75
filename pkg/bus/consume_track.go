package bus

import (
	"slices"
	"sync"
	"time"
)

// maxTracked bounds how many settled stream sequences a tracker remembers
// above the oldest unsettled one. Past it, a recreated consumer may hand
// some acknowledged messages to the handler again (at-least-once still
// holds); an ordered consumer settles in order and never gets near it.
const maxTracked = 1 << 16

// tracker is the client's record of the messages delivered to one
// Consumer: which are not settled yet (for the lag metrics and to know
// where a recreated consumer must resume) and which were settled above the
// oldest unsettled one (so that their redeliveries are acknowledged without
// reaching the handler).
type tracker struct {
	mu sync.Mutex
	// open are the messages delivered and not yet acknowledged or
	// terminated: stream sequence -> when the stream stored it.
	open map[uint64]time.Time
	// order are the stream sequences delivered, ascending, from the oldest
	// open one; those not in open are settled.
	order []uint64
	// trimmed is the highest sequence dropped from the front of order
	// (settled); maxSettled the highest settled at all.
	trimmed, maxSettled uint64
	// serverFloor is the server's ack floor as last seen: every message
	// up to it is acknowledged.
	serverFloor uint64
	// before is the last sequence the server had delivered when this
	// Consumer started: messages up to it may be unacknowledged by an
	// earlier process, unknown to this one.
	before uint64
}

func newTracker(ackFloor, delivered uint64) *tracker {
	return &tracker{open: map[uint64]time.Time{}, serverFloor: ackFloor, before: delivered, trimmed: ackFloor}
}

// delivered records a delivery; it reports whether the message was
// already settled by this Consumer (a redelivery to acknowledge and skip).
func (t *tracker) delivered(seq uint64, stored time.Time) (settled bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[seq]; ok {
		return false
	}
	if seq > t.before {
		// Delivered first to this Consumer: settled if it is below the
		// trimmed front or in order without being open.
		if seq <= t.trimmed {
			return true
		}
		if _, found := slices.BinarySearch(t.order, seq); found {
			return true
		}
	}
	t.open[seq] = stored
	if n := len(t.order); n == 0 || t.order[n-1] < seq {
		t.order = append(t.order, seq)
	} else if i, found := slices.BinarySearch(t.order, seq); !found {
		t.order = slices.Insert(t.order, i, seq)
	}
	if len(t.order) > maxTracked {
		// Forget the settled ones: their redeliveries (only after a
		// recreation) reach the handler again.
		t.order = slices.DeleteFunc(t.order, func(s uint64) bool { _, ok := t.open[s]; return !ok })
	}
	return false
}

// settle records that seq was acknowledged or terminated.
func (t *tracker) settle(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[seq]; !ok {
		return
	}
	delete(t.open, seq)
	t.maxSettled = max(t.maxSettled, seq)
	i := 0
	for i < len(t.order) {
		if _, ok := t.open[t.order[i]]; ok {
			break
		}
		t.trimmed = max(t.trimmed, t.order[i])
		i++
	}
	if i > 0 {
		t.order = t.order[i:]
	}
}

// setServerFloor records the server's ack floor.
func (t *tracker) setServerFloor(floor uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.serverFloor = max(t.serverFloor, floor)
}

// resumeAt is the stream sequence a recreated consumer starts at: the
// oldest message not known to be settled.
func (t *tracker) resumeAt() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := max(t.serverFloor, t.trimmed, t.maxSettled) + 1
	if t.serverFloor < t.before {
		// An earlier process may have left messages up to before
		// unacknowledged: only the server's floor is known to be settled.
		start = t.serverFloor + 1
	}
	for s := range t.open {
		start = min(start, s)
	}
	return max(start, t.serverFloor+1)
}

// oldestOpen is when the stream stored the oldest message delivered and
// not yet settled (zero when there is none).
func (t *tracker) oldestOpen() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var oldest time.Time
	for _, ts := range t.open {
		if oldest.IsZero() || ts.Before(oldest) {
			oldest = ts
		}
	}
	return oldest
}

// reset forgets everything: the stream was created anew and its sequences
// start again at 1.
func (t *tracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open = map[uint64]time.Time{}
	t.order = nil
	t.trimmed, t.maxSettled, t.serverFloor, t.before = 0, 0, 0, 0
}
