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
	// every earlier one are acknowledged (0: none). Only the owner of the
	// queue reads and writes it (it may raise it while the batch waits).
	confirm uint64
	queued  time.Time
}

// ackResult acknowledges the batches first..last (several queued batches
// are published as one when they fit together), or reports the error that
// ended the queue.
type ackResult struct {
	first, last uint64
	err         error
}

// stageAhead is how many batches the queue stages beyond the one whose
// commit is in flight: their transfer and staging on the server overlap
// that commit. Each counts against the server's limit of atomic batches in
// progress per stream (50 by default), shared by every source.
const stageAhead = 1

// publishQueue publishes batches in order and commits them strictly one
// after the other: a batch is committed only after the previous one was
// acknowledged, so that the stream never holds a later change without
// every earlier one (which the restart logic relies on: everything at or
// below the newest stored position is stored). After a failure it commits
// nothing more. While a commit is in flight, the next batch is already
// staged (sent to the server, which holds it apart from the stream until
// its commit): see stageAhead.
//
// Batches that wait while others are staged or committing are merged, in
// order, into one atomic batch of at most max messages when the queue
// takes them: batch sizes follow the load (small when live and idle, full
// in catch-up) whatever size the pusher flushed them at. A merged batch is
// stored entirely or not at all, like each of its parts.
//
// push never blocks (the callers bound the changes in flight), and neither
// does the publishing: acknowledgements are collected in a list the owner
// takes with takeAcks whenever ready is signalled, and the owner may
// register a function (setWaker) that the queue calls once when the next
// acknowledgement arrives, to interrupt a blocking read.
type publishQueue struct {
	pub Publisher
	met *metrics
	max int
	// ready receives a signal (coalesced) whenever acks were added.
	ready chan struct{}
	// wake tells the staging goroutine that waiting grew.
	wake chan struct{}
	// slots holds a token per batch staged or committing; staged carries
	// them, in order, from the staging goroutine to the committing one.
	slots  chan struct{}
	staged chan *stagedBatch

	mu      sync.Mutex
	waiting []*batch
	acks    []ackResult
	waker   func()

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the goroutine that pushes (the session or the snapshot):
	// what was handed over and not acknowledged.
	unacked     []*batch
	unackedMsgs int
	seq         uint64
}

// stagedBatch is one or more batches merged and staged together.
type stagedBatch struct {
	parts  []*batch
	msgs   []bus.Message
	tables []string
	ops    []string
	sb     StagedBatch
	err    error // staging failed: nothing to commit
}

// startPublishQueue starts the queue's goroutines; ctx bounds every
// publish. Merged batches hold at most maxMsgs messages.
func startPublishQueue(ctx context.Context, pub Publisher, met *metrics, maxMsgs int) *publishQueue {
	ctx, cancel := context.WithCancel(ctx)
	q := &publishQueue{
		pub:    pub,
		met:    met,
		max:    maxMsgs,
		ready:  make(chan struct{}, 1),
		wake:   make(chan struct{}, 1),
		slots:  make(chan struct{}, 1+stageAhead),
		staged: make(chan *stagedBatch, 1+stageAhead),
		cancel: cancel,
	}
	q.wg.Add(2)
	go q.stage(ctx)
	go q.commit(ctx, cancel)
	return q
}

// stage takes waiting batches, as soon as a slot is free, and stages them.
func (q *publishQueue) stage(ctx context.Context) {
	defer q.wg.Done()
	for {
		select {
		case q.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var parts []*batch
		for parts == nil {
			q.mu.Lock()
			if len(q.waiting) > 0 {
				parts = q.takeWaiting()
			}
			q.mu.Unlock()
			if parts != nil {
				break
			}
			select {
			case <-q.wake:
			case <-ctx.Done():
				return
			}
		}
		s := &stagedBatch{parts: parts, msgs: parts[0].msgs, tables: parts[0].tables, ops: parts[0].ops}
		if len(parts) > 1 {
			n := 0
			for _, b := range parts {
				n += len(b.msgs)
			}
			s.msgs = make([]bus.Message, 0, n)
			s.tables = make([]string, 0, n)
			s.ops = make([]string, 0, n)
			for _, b := range parts {
				s.msgs = append(s.msgs, b.msgs...)
				s.tables = append(s.tables, b.tables...)
				s.ops = append(s.ops, b.ops...)
			}
		}
		s.sb, s.err = q.pub.StageBatch(s.msgs)
		q.staged <- s // never blocks: it has room for every slot
		if s.err != nil {
			return
		}
	}
}

// commit commits the staged batches one after the other, in order, and
// reports each outcome. After a failure it stops the queue.
func (q *publishQueue) commit(ctx context.Context, stop context.CancelFunc) {
	defer q.wg.Done()
	for {
		var s *stagedBatch
		select {
		case s = <-q.staged:
		case <-ctx.Done():
			return
		}
		err := s.err
		if err == nil {
			_, err = s.sb.Commit(ctx)
		}
		if err == nil {
			for _, b := range s.parts {
				q.met.publishSeconds.Observe(time.Since(b.queued).Seconds())
			}
			for i := range s.msgs {
				q.met.published.WithLabelValues(s.tables[i], s.ops[i]).Inc()
			}
		} else {
			err = fmt.Errorf("publishing %d changes (%s .. %s): %w", len(s.msgs), s.msgs[0].ID, s.msgs[len(s.msgs)-1].ID, err)
		}
		q.mu.Lock()
		q.acks = append(q.acks, ackResult{first: s.parts[0].seq, last: s.parts[len(s.parts)-1].seq, err: err})
		if q.waker != nil {
			// Under the lock: once clearWaker returned, it is never called.
			q.waker()
			q.waker = nil
		}
		q.mu.Unlock()
		select {
		case q.ready <- struct{}{}:
		default:
		}
		if err != nil {
			// Nothing after a failed batch may be committed: batches
			// already staged are abandoned (the server drops them).
			stop()
			return
		}
		<-q.slots
	}
}

// takeWaiting removes the oldest waiting batch and those after it that fit
// with it within max messages. q.mu must be held and waiting non-empty.
func (q *publishQueue) takeWaiting() []*batch {
	n, total := 1, len(q.waiting[0].msgs)
	for n < len(q.waiting) && total+len(q.waiting[n].msgs) <= q.max {
		total += len(q.waiting[n].msgs)
		n++
	}
	parts := append([]*batch(nil), q.waiting[:n]...)
	clear(q.waiting[:n])
	q.waiting = q.waiting[n:]
	return parts
}

// busy reports whether batches wait to be staged.
func (q *publishQueue) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting) > 0
}

// takeAcks returns the acknowledgements that arrived since the last call,
// in order.
func (q *publishQueue) takeAcks() []ackResult {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.acks) == 0 {
		return nil
	}
	acks := q.acks
	q.acks = nil
	return acks
}

// setWaker registers f to be called (once, from the queue's goroutine) when
// the next acknowledgement arrives, and reports true; when one is already
// waiting to be taken it registers nothing and reports false. f must not
// block: it runs under the queue's lock, so that once clearWaker returned
// it is not called any more.
func (q *publishQueue) setWaker(f func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.acks) > 0 {
		return false
	}
	q.waker = f
	return true
}

// clearWaker unregisters the waker, if it was not called yet.
func (q *publishQueue) clearWaker() {
	q.mu.Lock()
	q.waker = nil
	q.mu.Unlock()
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

// acked records an acknowledgement and returns the highest position it
// makes confirmable (0: none) or the publish error.
func (q *publishQueue) acked(r ackResult) (uint64, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(q.unacked) == 0 || q.unacked[0].seq != r.first || r.last < r.first || r.last-r.first >= uint64(len(q.unacked)) {
		return 0, fmt.Errorf("pgsource: acknowledgement of batches %d..%d out of order", r.first, r.last)
	}
	var confirm uint64
	for q.unacked[0].seq <= r.last {
		b := q.unacked[0]
		q.unacked[0] = nil
		q.unacked = q.unacked[1:]
		q.unackedMsgs -= len(b.msgs)
		confirm = max(confirm, b.confirm)
		if len(q.unacked) == 0 {
			break
		}
	}
	return confirm, nil
}

// oldestAge is how long the oldest unacknowledged batch has waited.
func (q *publishQueue) oldestAge() time.Duration {
	if len(q.unacked) == 0 {
		return 0
	}
	return time.Since(q.unacked[0].queued)
}

// stop abandons whatever is in flight and waits for the goroutines.
func (q *publishQueue) stop() {
	q.cancel()
	q.wg.Wait()
}
