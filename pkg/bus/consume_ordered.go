package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/retry"
)

// BatchHandler processes messages of an ordered consumer, in stream order,
// at most ConsumerOptions.BatchSize per call. Its result decides what
// happens to them: nil acknowledges all of ds; a *BatchError acknowledges
// ds[:Index] and treats ds[Index] like a Handler's error (Permanent:
// dead-lettered, then the rest of the batch goes on; retryable: retried in
// place from ds[Index:] after a backoff); any other error retries the whole
// batch after a backoff. A panic is recovered, logged and treated like a
// retryable error of the whole batch. The context ends at HandlerTimeout
// (the call then counts as a retryable failure) or at Drain's deadline.
type BatchHandler func(ctx context.Context, ds []*Delivery) error

// BatchError says which message of a batch failed: the ones before Index
// succeeded, ds[Index] failed with Err, the ones after were not done.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("message %d of the batch: %v", e.Index, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// errStopping ends a batch of single-message handler calls at Stop.
var errStopping = errors.New("consumer stopping")

// ConsumeBatches is Consume for a BatchHandler: an ordered consumer
// (opts.Ordered is implied, Concurrency must be 1) that hands the handler
// up to BatchSize fetched messages per call. Acknowledging a batch costs
// one round trip (the acks of its messages are sent without waiting, the
// last one waits for the server's confirmation, which follows the earlier
// ones). Errors are those of Consume.
func (c *Conn) ConsumeBatches(ctx context.Context, opts ConsumerOptions, h BatchHandler) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: consumer %s: nil batch handler", ErrConfig, opts.Durable)
	}
	opts.Ordered = true
	return c.consume(ctx, opts, nil, h)
}

// queued is a fetched message of an ordered consumer.
type queued struct {
	m     jetstream.Msg
	d     *Delivery
	tries uint64 // failed attempts in place
}

// orderedQueue holds an ordered consumer's fetched, unsettled messages in
// stream order; items[:busy] are with the worker.
type orderedQueue struct {
	mu         sync.Mutex
	items      []*queued
	seqs       map[uint64]struct{} // stream sequences of items
	busy       int
	limit      int
	fetchEnded bool
	wake       chan struct{} // to the worker
	space      chan struct{} // to the fetcher
	workerDone chan struct{}
}

func newOrderedQueue(limit int) *orderedQueue {
	return &orderedQueue{limit: limit, seqs: map[uint64]struct{}{}, wake: make(chan struct{}, 1), space: make(chan struct{}, 1), workerDone: make(chan struct{})}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push appends it unless its message is queued already (a redelivery after
// its AckWait ran out, e.g. while the connection was down: acks and
// progress go by stream sequence, so the queued delivery stands for both).
func (q *orderedQueue) push(it *queued) bool {
	q.mu.Lock()
	if _, dup := q.seqs[it.d.StreamSeq]; dup {
		q.mu.Unlock()
		return false
	}
	q.seqs[it.d.StreamSeq] = struct{}{}
	q.items = append(q.items, it)
	q.mu.Unlock()
	signal(q.wake)
	return true
}

// forget removes items from the sequence set; q.mu is held.
func (q *orderedQueue) forget(items []*queued) {
	for _, it := range items {
		delete(q.seqs, it.d.StreamSeq)
	}
}

func (q *orderedQueue) free() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.limit - len(q.items)
}

func (q *orderedQueue) busyCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.busy
}

func (q *orderedQueue) endFetch() {
	q.mu.Lock()
	q.fetchEnded = true
	q.mu.Unlock()
	signal(q.wake)
}

// take hands the worker up to n messages from the front, waiting for one;
// nil once the consumer stops or the fetcher ended with nothing left.
func (q *orderedQueue) take(n int, stop <-chan struct{}) []*queued {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			q.busy = min(n, len(q.items))
			out := q.items[:q.busy:q.busy]
			q.mu.Unlock()
			return out
		}
		ended := q.fetchEnded
		q.mu.Unlock()
		if ended {
			return nil
		}
		select {
		case <-q.wake:
		case <-stop:
			return nil
		}
	}
}

// release removes the first n messages (settled) and ends the worker's
// hold on the rest.
func (q *orderedQueue) release(n int) {
	q.mu.Lock()
	q.forget(q.items[:n])
	q.items = q.items[n:]
	q.busy = 0
	q.mu.Unlock()
	signal(q.space)
}

// dropIdle removes the messages not with the worker (their consumer was
// deleted: the recreated one delivers them again).
func (q *orderedQueue) dropIdle() {
	q.mu.Lock()
	q.forget(q.items[q.busy:])
	clear(q.items[q.busy:])
	q.items = q.items[:q.busy]
	q.mu.Unlock()
}

// drain removes and returns every message left.
func (q *orderedQueue) drain() []*queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.forget(out)
	q.items, q.busy = nil, 0
	return out
}

func (q *orderedQueue) snapshot() []jetstream.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]jetstream.Msg, len(q.items))
	for i, it := range q.items {
		out[i] = it.m
	}
	return out
}

// fetchOrdered keeps the queue filled with up to its limit of messages.
func (k *Consumer) fetchOrdered() {
	defer close(k.fetchDone)
	defer k.q.endFetch()
	bo := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	for {
		free := k.q.free()
		for free <= 0 {
			select {
			case <-k.q.space:
			case <-k.stopCh:
				return
			}
			free = k.q.free()
		}
		if k.lost.Load() && k.stillLost() {
			// The messages the worker has not started belong to the deleted
			// consumer; the recreated one delivers them again. Recreate once
			// the worker settled its batch (its acks went to the deleted
			// consumer, and the tracker remembers them).
			k.q.dropIdle()
			for k.q.busyCount() > 0 {
				select {
				case <-k.q.space:
				case <-k.stopCh:
					return
				}
			}
			k.repairConsumer()
			continue
		}
		if !k.fetchFailed(k.fetchOrderedBatch(free), bo) {
			return
		}
	}
}

// fetchOrderedBatch pulls up to n messages into the queue.
func (k *Consumer) fetchOrderedBatch(n int) error {
	ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.FetchWait)
	defer cancel()
	batch, err := k.consumer().Fetch(n, jetstream.FetchContext(ctx))
	if err != nil {
		return fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			k.log.Error("message without JetStream metadata; returning it", "subject", msg.Subject(), "err", err)
			_ = msg.Nak()
			continue
		}
		if k.track.delivered(md.Sequence.Stream, md.Timestamp) {
			k.ackSkipped(msg, md)
			continue
		}
		if md.NumDelivered > 1 {
			k.m.redeliveries.Inc()
		}
		if !k.q.push(&queued{m: msg, d: newDelivery(msg, md)}) {
			k.log.Debug("dropping a second delivery of a message already fetched", "stream_seq", md.Sequence.Stream, "delivery", md.NumDelivered)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	return nil
}

// runOrdered hands the queued messages to the handler, batch after batch,
// until Stop; then it hands the unsettled ones back in stream order.
func (k *Consumer) runOrdered() {
	defer k.handlers.Done()
	defer close(k.q.workerDone)
	for {
		items := k.q.take(k.opts.BatchSize, k.stopCh)
		if items == nil {
			break
		}
		n := k.processBatch(items)
		k.q.release(n)
		if n < len(items) {
			break // stopping
		}
	}
	// The pull has ended (Stop cancels it), so the server redelivers these
	// to the durable's next consumer, not to this one.
	<-k.fetchDone
	for _, it := range k.q.drain() {
		if err := it.m.Nak(); err != nil {
			k.log.Debug("returning a message failed; it is redelivered after AckWait", "stream_seq", it.d.StreamSeq, "err", err)
		}
	}
}

// keepQueueAlive sends InProgress for every fetched, unsettled message of
// an ordered consumer every progressEvery, so that no AckWait runs out
// behind a long retry.
func (k *Consumer) keepQueueAlive() {
	defer k.handlers.Done()
	t := time.NewTicker(k.progressEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, m := range k.q.snapshot() {
				if err := m.InProgress(); err != nil {
					k.log.Debug("sending in-progress failed", "err", err)
				}
			}
		case <-k.q.workerDone:
			return
		}
	}
}

// processBatch runs the handler over items until each is acknowledged or
// dead-lettered, retrying in place; it returns how many from the front it
// settled, fewer than len(items) only when the consumer is stopping.
func (k *Consumer) processBatch(items []*queued) (done int) {
	initial, maxWait := k.retryBounds()
	bo := retry.NewBackOff(initial, maxWait)
	degraded := false
	defer func() {
		if degraded {
			k.degrade("handler", "")
		}
	}()
	for done < len(items) {
		cur := items[done:]
		err, panicked := k.callBatch(cur)
		if err == nil {
			k.ackBatch(cur)
			return len(items)
		}
		cause, tried := err, len(cur)
		var be *BatchError
		if errors.As(err, &be) {
			if be.Index < 0 || be.Index >= len(cur) || be.Err == nil {
				k.log.Error("batch handler returned an invalid BatchError; retrying the whole batch", "index", be.Index, "batch", len(cur), "err", be.Err)
				cause = fmt.Errorf("invalid BatchError (index %d of a batch of %d): %v", be.Index, len(cur), be.Err) // retryable
			} else {
				cause, tried = be.Err, 1 // the ones after it were not done
				if be.Index > 0 {
					k.ackBatch(cur[:be.Index])
					done += be.Index
					cur = cur[be.Index:]
					bo.Reset()
				}
			}
		}
		if k.hardCtx.Err() != nil {
			k.interrupted.Add(int64(len(cur)))
			k.m.handled.WithLabelValues(outcomeRetry).Add(float64(len(cur)))
			return done
		}
		if errors.Is(cause, errStopping) {
			return done
		}
		if IsPermanent(cause) {
			if !k.deadLetterInPlace(cur[0], cause.Error()) {
				return done
			}
			done++
			bo.Reset()
			continue
		}
		d := cur[0].d
		for _, it := range cur[:tried] {
			it.tries++
		}
		outcome := outcomeRetry
		if panicked {
			outcome = outcomePanic
		}
		k.m.handled.WithLabelValues(outcome).Inc()
		wait := bo.NextBackOff()
		k.log.Warn("handler failed; retrying in place", "stream_seq", d.StreamSeq, "subject", d.Subject,
			"attempt", d.Attempt, "batch", len(cur), "retry_in", wait, "err", cause)
		degraded = true
		k.degrade("handler", fmt.Sprintf("retrying stream sequence %d (subject %s): attempt %d failed: %v", d.StreamSeq, d.Subject, d.Attempt, cause))
		if k.stopped() || retry.Sleep(k.stopCtx, wait) != nil {
			return done
		}
	}
	return done
}

// callBatch makes one handler call over items (for a single-message
// Handler, one call per message until one fails).
func (k *Consumer) callBatch(items []*queued) (err error, panicked bool) {
	ds := make([]*Delivery, len(items))
	for i, it := range items {
		it.d.Attempt = it.d.NumDelivered + it.tries
		ds[i] = it.d
	}
	k.m.inFlight.Add(float64(len(ds)))
	defer k.m.inFlight.Sub(float64(len(ds)))
	if k.bh == nil {
		for i, d := range ds {
			if i > 0 && k.stopped() {
				return &BatchError{Index: i, Err: errStopping}, false
			}
			start := time.Now()
			err, p := k.callTimed(d)
			k.m.duration.Observe(time.Since(start).Seconds())
			if err != nil {
				return &BatchError{Index: i, Err: err}, p
			}
		}
		return nil, false
	}
	ctx, cancel := k.attemptContext()
	defer cancel()
	start := time.Now()
	defer func() {
		k.m.duration.Observe(time.Since(start).Seconds())
		if r := recover(); r != nil {
			panicked = true
			err = fmt.Errorf("batch handler panic: %v", r)
			k.log.Error("batch handler panicked", "first_stream_seq", ds[0].StreamSeq, "batch", len(ds),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	herr := k.bh(ctx, ds)
	if herr != nil && k.hardCtx.Err() == nil && errors.Is(context.Cause(ctx), errHandlerTimeout) {
		var be *BatchError
		if errors.As(herr, &be) && be.Index >= 0 && be.Index < len(ds) {
			return &BatchError{Index: be.Index, Err: fmt.Errorf("handler timed out after %s: %v", k.opts.HandlerTimeout, be.Err)}, false
		}
		return fmt.Errorf("handler timed out after %s: %v", k.opts.HandlerTimeout, herr), false
	}
	return herr, false
}

// ackBatch acknowledges items: a plain ack for each but the last, whose
// ack waits for the server's confirmation (the server processes one
// connection's acks in order, so it confirms the earlier ones too).
func (k *Consumer) ackBatch(items []*queued) {
	if len(items) == 0 {
		return
	}
	last := len(items) - 1
	for _, it := range items[:last] {
		if err := it.m.Ack(); err != nil {
			k.log.Warn("acknowledgement failed; the message will be delivered again", "stream_seq", it.d.StreamSeq, "err", err)
		}
	}
	k.ack(items[last].m, items[last].d)
	for _, it := range items[:last] {
		k.settled(it.d.StreamSeq)
	}
	k.m.handled.WithLabelValues(outcomeAck).Add(float64(len(items)))
}

// deadLetterInPlace dead-letters it, retrying with backoff while the dead
// letter cannot be stored (the message is kept and order holds); false if
// the consumer stopped first.
func (k *Consumer) deadLetterInPlace(it *queued, reason string) bool {
	initial, maxWait := k.retryBounds()
	bo := retry.NewBackOff(initial, maxWait)
	for {
		if err := k.storeDeadLetter(k.hardCtx, it.d, reason); err == nil {
			k.terminate(it.m, it.d, reason)
			return true
		}
		if k.stopped() || retry.Sleep(k.stopCtx, bo.NextBackOff()) != nil {
			return false
		}
	}
}
