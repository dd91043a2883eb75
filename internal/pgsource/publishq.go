package pgsource

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

// batch is one atomic batch of changes.
type batch struct {
	seq  uint64
	msgs []bus.Message
	// tables and ops of msgs, for the metrics.
	tables []string
	ops    []string
	// confirm is the WAL position that may be confirmed once this batch and
	// every earlier one are acknowledged (0: none).
	confirm uint64
	queued  time.Time
}

type ackResult struct {
	seq uint64
	n   int
	err error
}

// publishQueue publishes batches strictly one after the other, in order: a
// batch is sent only after the previous one was acknowledged, so that the
// stream never holds a later change without every earlier one (which the
// restart logic relies on: everything at or below the newest stored
// position is stored). After a failure it publishes nothing more.
//
// push never blocks (the callers bound the changes in flight); the
// publishing goroutine waits for the owner to take each acknowledgement
// from acks.
type publishQueue struct {
	pub  Publisher
	met  *metrics
	acks chan ackResult

	mu      sync.Mutex
	waiting []*batch
	wake    chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the goroutine that pushes (the session or the snapshot):
	// what was handed over and not acknowledged.
	unacked     []*batch
	unackedMsgs int
	seq         uint64
}

// startPublishQueue starts the queue's goroutine; ctx bounds every publish.
func startPublishQueue(ctx context.Context, pub Publisher, met *metrics) *publishQueue {
	ctx, cancel := context.WithCancel(ctx)
	q := &publishQueue{
		pub:    pub,
		met:    met,
		acks:   make(chan ackResult, 64),
		wake:   make(chan struct{}, 1),
		cancel: cancel,
	}
	q.wg.Add(1)
	go q.run(ctx)
	return q
}

func (q *publishQueue) run(ctx context.Context) {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(q.waiting) == 0 {
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		b := q.waiting[0]
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
		q.mu.Unlock()

		_, err := q.pub.PublishBatch(ctx, b.msgs)
		if err == nil {
			q.met.publishSeconds.Observe(time.Since(b.queued).Seconds())
			for i := range b.msgs {
				q.met.published.WithLabelValues(b.tables[i], b.ops[i]).Inc()
			}
		} else {
			err = fmt.Errorf("publishing %d changes (%s .. %s): %w", len(b.msgs), b.msgs[0].ID, b.msgs[len(b.msgs)-1].ID, err)
		}
		select {
		case q.acks <- ackResult{seq: b.seq, n: len(b.msgs), err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// push hands a batch over.
func (q *publishQueue) push(b *batch) {
	q.seq++
	b.seq = q.seq
	b.queued = time.Now()
	q.unacked = append(q.unacked, b)
	q.unackedMsgs += len(b.msgs)
	q.mu.Lock()
	q.waiting = append(q.waiting, b)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// acked records an acknowledgement and returns the position it makes
// confirmable (0: none) or the publish error.
func (q *publishQueue) acked(r ackResult) (uint64, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(q.unacked) == 0 || q.unacked[0].seq != r.seq {
		return 0, fmt.Errorf("pgsource: acknowledgement of batch %d out of order", r.seq)
	}
	b := q.unacked[0]
	q.unacked[0] = nil
	q.unacked = q.unacked[1:]
	q.unackedMsgs -= len(b.msgs)
	return b.confirm, nil
}

// oldestAge is how long the oldest unacknowledged batch has waited.
func (q *publishQueue) oldestAge() time.Duration {
	if len(q.unacked) == 0 {
		return 0
	}
	return time.Since(q.unacked[0].queued)
}

// stop abandons whatever is in flight and waits for the goroutine.
func (q *publishQueue) stop() {
	q.cancel()
	q.wg.Wait()
}
