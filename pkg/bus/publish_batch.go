package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// maxIncompleteBatches is how many "batch incomplete" answers in a row
// PublishBatch takes as a permanent refusal.
const maxIncompleteBatches = 3

// BatchAck is the server's acknowledgement of an atomic batch.
type BatchAck struct {
	Stream string
	// Sequence is the stream sequence of the batch's last message.
	Sequence uint64
	// Count is the number of messages in the batch.
	Count int
	// Duplicate is true when the stream had already stored every message of
	// the batch (a re-send after a lost acknowledgement or a restart).
	Duplicate bool
}

// PublishBatch stores msgs (1..MaxBatch, one stream, distinct ids) as one
// atomic JetStream batch: all of them or none, with one fsync for the batch
// on a SyncAlways server. The stream must allow atomic publish.
//
// An attempt that times out (PublishTimeout) or is cut by a disconnect is
// re-sent with the same bytes and ids, after a growing delay, until ctx
// ends. When the server refuses the batch because the stream already holds
// one of its ids (error 10201: an earlier attempt, or an earlier run, was
// stored), the messages are re-sent one by one, each deduplicated by its id:
// those already stored count as success and the others are stored — not
// atomically with each other, which only happens when a caller regroups
// messages of which some were stored before. An identical re-send stores
// nothing new and returns Duplicate true.
//
// Errors: ErrInvalidMessage for bad input (nothing is sent); ErrRejected for
// what re-sending cannot fix (atomic publish disabled on the stream, batch
// too large, message too large, three "incomplete" answers in a row, ...;
// nothing was stored); ErrClosed after
// Close; otherwise ctx's error, with the last attempt's error.
// PublishBatch is synchronous and independent of Publish's pipeline.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message) (BatchAck, error) {
	if err := validateBatch(msgs); err != nil {
		return BatchAck{}, err
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return BatchAck{}, fmt.Errorf("publishing a batch: publisher %s: %w", p.opts.Name, ErrClosed)
	}
	desc := batchDesc(msgs)
	bo := newBackOff(p.opts.RetryWait, p.opts.MaxRetryWait)
	fc := jetstreamext.BatchFlowControl{AckFirst: true, AckTimeout: p.opts.PublishTimeout}
	incomplete := 0
	for attempt := 1; ; attempt++ {
		nms := make([]*nats.Msg, len(msgs))
		for i := range msgs {
			nms[i] = msgs[i].natsMsg()
		}
		actx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
		start := time.Now()
		ack, err := jetstreamext.PublishMsgBatch(actx, p.js, nms, fc)
		cancel()
		if err == nil {
			p.m.batchLat.Observe(time.Since(start).Seconds())
			p.m.batches.Inc()
			p.m.published.Add(float64(len(msgs)))
			return BatchAck{Stream: ack.Stream, Sequence: ack.Sequence, Count: len(msgs)}, nil
		}
		if isAPIError(err, errCodeBatchDuplicate) {
			return p.publishEach(ctx, msgs, desc, bo)
		}
		if !retryablePublishErr(err) {
			return BatchAck{}, fmt.Errorf("%w: %s: %w", ErrRejected, desc, err)
		}
		if isAPIError(err, errCodeBatchIncomplete) {
			// A message lost in transit makes a batch incomplete, but so
			// does one the stream refuses silently (the batch's messages
			// before the commit get no answer), e.g. one above the stream's
			// max message size. Only the first is worth re-sending for long.
			if incomplete++; incomplete >= maxIncompleteBatches {
				return BatchAck{}, fmt.Errorf("%w: %s: the server found the batch incomplete %d times in a row; "+
					"a message was probably refused (larger than the stream's max message size?): %w",
					ErrRejected, desc, incomplete, err)
			}
		} else {
			incomplete = 0
		}
		if ctx.Err() != nil {
			return BatchAck{}, fmt.Errorf("publishing %s: gave up after %d attempts: %w (last attempt: %v)", desc, attempt, ctx.Err(), err)
		}
		p.m.retries.Inc()
		p.log.Warn("atomic batch not acknowledged; re-sending", "batch", desc, "attempt", attempt, "err", err)
		if serr := sleepCtx(ctx, bo.NextBackOff()); serr != nil {
			return BatchAck{}, fmt.Errorf("publishing %s: gave up after %d attempts: %w (last attempt: %v)", desc, attempt, serr, err)
		}
	}
}

// publishEach publishes msgs one at a time, in order, each deduplicated by
// its id; see PublishBatch.
func (p *Publisher) publishEach(ctx context.Context, msgs []Message, desc string, bo interface{ NextBackOff() time.Duration }) (BatchAck, error) {
	var last *jetstream.PubAck
	dups := 0
	for i := range msgs {
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
			start := time.Now()
			ack, err := p.js.PublishMsg(actx, msgs[i].natsMsg())
			cancel()
			if err == nil {
				p.m.latency.Observe(time.Since(start).Seconds())
				last = ack
				if ack.Duplicate {
					dups++
				} else {
					p.m.published.Inc()
				}
				break
			}
			if !retryablePublishErr(err) {
				return BatchAck{}, fmt.Errorf("%w: %s: message %s after a duplicate answer: %w", ErrRejected, desc, msgs[i].ID, err)
			}
			if ctx.Err() != nil {
				return BatchAck{}, fmt.Errorf("publishing %s one by one after a duplicate answer: message %s: %w (last attempt: %v)", desc, msgs[i].ID, ctx.Err(), err)
			}
			p.m.retries.Inc()
			if serr := sleepCtx(ctx, bo.NextBackOff()); serr != nil {
				return BatchAck{}, fmt.Errorf("publishing %s one by one after a duplicate answer: message %s: %w (last attempt: %v)", desc, msgs[i].ID, serr, err)
			}
		}
	}
	if dups < len(msgs) {
		p.log.Warn("atomic batch was partly stored before; stored the rest message by message",
			"batch", desc, "stored_before", dups, "stored_now", len(msgs)-dups)
	} else {
		p.log.Debug("atomic batch was stored before", "batch", desc)
	}
	return BatchAck{Stream: last.Stream, Sequence: last.Sequence, Count: len(msgs), Duplicate: dups == len(msgs)}, nil
}

func validateBatch(msgs []Message) error {
	if len(msgs) == 0 || len(msgs) > MaxBatch {
		return fmt.Errorf("%w: atomic batch of %d messages: must hold 1 to %d", ErrInvalidMessage, len(msgs), MaxBatch)
	}
	var errs []error
	seen := make(map[string]int, len(msgs))
	for i := range msgs {
		if err := msgs[i].validate(); err != nil {
			errs = append(errs, fmt.Errorf("message %d: %w", i, err))
			continue
		}
		if j, ok := seen[msgs[i].ID]; ok {
			errs = append(errs, fmt.Errorf("%w: messages %d and %d have the same id %q", ErrInvalidMessage, j, i, msgs[i].ID))
			continue
		}
		seen[msgs[i].ID] = i
	}
	if len(errs) > 0 {
		return fmt.Errorf("atomic batch of %d messages: %w", len(msgs), errors.Join(errs...))
	}
	return nil
}

func batchDesc(msgs []Message) string {
	return fmt.Sprintf("atomic batch of %d messages (ids %s .. %s)", len(msgs), msgs[0].ID, msgs[len(msgs)-1].ID)
}

// LastMessage returns the newest message stored in stream on a subject
// filter (wildcards allowed), e.g. to resume a producer from the position
// its last stored message carries. The error wraps ErrNotFound when no
// stored message matches, ErrStreamNotFound when the stream does not exist.
func (c *Conn) LastMessage(ctx context.Context, stream, subjectFilter string) (*StoredMessage, error) {
	s, err := c.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("last message on %s: stream %s: %w", subjectFilter, stream, ErrStreamNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("last message on %s: looking up stream %s: %w", subjectFilter, stream, err)
	}
	r, err := s.GetLastMsgForSubject(ctx, subjectFilter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("last message on %s in stream %s: %w", subjectFilter, stream, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("last message on %s in stream %s: %w", subjectFilter, stream, err)
	}
	return storedMessage(stream, r), nil
}
