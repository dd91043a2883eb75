package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/tributary/tributary/internal/retry"
)

// maxIncompleteBatches is how many "batch incomplete" answers in a row
// PublishBatch takes as a permanent refusal.
const maxIncompleteBatches = 3

// Headers of JetStream's atomic batch protocol (nats-server 2.12+).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

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

// batchAckResponse is the server's answer to a batch commit (or its error).
type batchAckResponse struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	BatchID  string              `json:"batch"`
	Count    uint64              `json:"count"`
}

// BatchOption tunes one StageBatch or PublishBatch.
type BatchOption func(*batchOptions)

type batchOptions struct {
	fence *Fence
}

// WithFence makes the batch a fenced write: its first message carries f's
// claim sequence as the expected last sequence of f's fence subject, so
// the server stores the batch only while f's claim is the fence's last
// (see Fence). The batch must go to f's stream. A batch refused because
// another claim followed f's fails with an error wrapping ErrFenced,
// without re-sending: nothing of it was stored. A nil f adds nothing.
func WithFence(f *Fence) BatchOption {
	return func(o *batchOptions) { o.fence = f }
}

// PublishBatch stores msgs (1..Conn.MaxBatch, one stream, distinct ids) as one
// atomic JetStream batch: all of them or none, with one fsync for the batch
// on a SyncAlways server. The stream must allow atomic publish. It is
// StageBatch followed by Commit.
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
// Errors: ErrInvalidMessage for bad input (nothing is sent); ErrFenced for a
// fenced batch (WithFence) refused because the fence was claimed by another
// writer since (nothing was stored; never re-sent); ErrRejected for
// what re-sending cannot fix (atomic publish disabled on the stream, batch
// too large, message too large, three "incomplete" answers in a row, ...;
// nothing was stored); ErrClosed after
// Close; otherwise ctx's error, with the last attempt's error.
//
// A batch of one message is stored with a plain publish instead (with the
// same id, fence and re-send rules): one message is all-or-nothing anyway,
// and the server's atomic-batch path costs it about 25 ms (it stages every
// batch in a store of its own) where a plain publish costs about 0.1 ms.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message, opts ...BatchOption) (BatchAck, error) {
	if len(msgs) == 1 {
		if err := validateBatch(msgs, p.c.MaxBatch(), p.c.nc.MaxPayload()); err != nil {
			return BatchAck{}, err
		}
		if p.isClosed() {
			return BatchAck{}, fmt.Errorf("publishing %s: publisher %s: %w", msgs[0].ID, p.opts.Name, ErrClosed)
		}
		var o batchOptions
		for _, opt := range opts {
			opt(&o)
		}
		return p.publishEach(ctx, msgs, o.fence, "message "+msgs[0].ID, false, retry.NewBackOff(p.opts.RetryWait, p.opts.MaxRetryWait))
	}
	b, err := p.StageBatch(msgs, opts...)
	if err != nil {
		return BatchAck{}, err
	}
	return b.Commit(ctx)
}

// StagedBatch is an atomic batch whose messages, all but the last, were
// sent to the server ahead of its commit (StageBatch). The server keeps them
// apart from the stream: nothing of the batch is stored, or visible, before
// Commit succeeds. A StagedBatch is used by one goroutine at a time.
type StagedBatch struct {
	p       *Publisher
	msgs    []Message
	fence   *Fence
	desc    string
	started time.Time
	// The current attempt: its batch id, and the error that kept its body
	// from being sent completely (Commit then re-sends it).
	id        string
	nms       []*nats.Msg
	sendErr   error
	committed bool
}

// StageBatch validates msgs (1..Conn.MaxBatch, one stream, distinct ids) and
// sends every message but the last to the server as the body of a new
// atomic batch, without waiting for an answer. The batch is stored, all or
// nothing, only by Commit.
//
// Staging lets a producer overlap the transfer and the server's staging of
// its next batch with the commit of the previous one, while keeping the
// order of its batches: they are stored in the order of their Commits, and
// a caller that commits a batch only after the previous Commit returned
// successfully never has a batch stored after an earlier one that failed.
// A staged batch that is never committed is dropped by the server after its
// batch timeout (10 s by default, counted from the last message received);
// it counts against the stream's limit of atomic batches in progress (50
// by default) until then. A failure to send the body (a disconnect) is not
// reported here: Commit re-sends the body first.
//
// A fenced batch (WithFence) carries the fence on its first message; the
// server checks it at the commit.
//
// Errors: ErrInvalidMessage (nothing is sent), ErrClosed after Close.
func (p *Publisher) StageBatch(msgs []Message, opts ...BatchOption) (*StagedBatch, error) {
	var o batchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := validateBatch(msgs, p.c.MaxBatch(), p.c.nc.MaxPayload()); err != nil {
		return nil, err
	}
	if p.isClosed() {
		return nil, fmt.Errorf("publishing a batch: publisher %s: %w", p.opts.Name, ErrClosed)
	}
	b := &StagedBatch{p: p, msgs: msgs, fence: o.fence, desc: batchDesc(msgs), started: time.Now()}
	if o.fence != nil {
		b.desc += " fenced by " + o.fence.subject + "@" + strconv.FormatUint(o.fence.seq, 10)
	}
	b.sendErr = b.sendBody(context.Background(), false)
	return b, nil
}

// isClosed reports whether Close was called.
func (p *Publisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// MaxBatch is the largest batch StageBatch and PublishBatch accept: the
// connection's MaxBatch.
func (p *Publisher) MaxBatch() int { return p.c.MaxBatch() }

// Len is the number of messages in the batch.
func (b *StagedBatch) Len() int { return len(b.msgs) }

// sendBody starts an attempt: a new batch id, and every message but the
// last published without waiting. With ackFirst the first message is a
// request and the server's answer to it is returned: it tells why a batch is
// refused (e.g. too many batches in progress) where later messages, sent
// without a reply subject, get no answer.
func (b *StagedBatch) sendBody(ctx context.Context, ackFirst bool) error {
	b.id = nuid.Next()
	if cap(b.nms) < len(b.msgs) {
		b.nms = make([]*nats.Msg, len(b.msgs))
	}
	b.nms = b.nms[:len(b.msgs)]
	last := len(b.msgs) - 1
	for i := range b.msgs {
		nm := b.msgs[i].natsMsg()
		// Canonical names, assigned directly (Set would check them).
		nm.Header[hdrBatchID] = []string{b.id}
		nm.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if i == last {
			nm.Header[hdrBatchCommit] = []string{"1"}
		}
		if i == 0 && b.fence != nil {
			b.fence.fenceHeaders(nm)
		}
		b.nms[i] = nm
	}
	nc := b.p.c.nc
	for i := range last {
		if i == 0 && ackFirst {
			actx, cancel := context.WithTimeout(ctx, b.p.opts.PublishTimeout)
			resp, err := nc.RequestMsgWithContext(actx, b.nms[0])
			cancel()
			if err != nil {
				return fmt.Errorf("first message of the batch: %w", err)
			}
			if len(resp.Data) > 0 {
				var r batchAckResponse
				if err := json.Unmarshal(resp.Data, &r); err != nil {
					return fmt.Errorf("first message of the batch: unreadable answer %q: %w", resp.Data, err)
				}
				if r.Error != nil {
					return r.Error
				}
			}
			continue
		}
		if err := nc.PublishMsg(b.nms[i]); err != nil {
			return fmt.Errorf("sending message %d of the batch: %w", i+1, err)
		}
	}
	return nil
}

// commitOnce sends the commit (the last message) and waits for the answer.
func (b *StagedBatch) commitOnce(ctx context.Context) (BatchAck, error) {
	actx, cancel := context.WithTimeout(ctx, b.p.opts.PublishTimeout)
	defer cancel()
	resp, err := b.p.c.nc.RequestMsgWithContext(actx, b.nms[len(b.nms)-1])
	if err != nil {
		return BatchAck{}, err
	}
	var r batchAckResponse
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return BatchAck{}, fmt.Errorf("unreadable batch acknowledgement %q: %w", resp.Data, err)
	}
	if r.Error != nil {
		return BatchAck{}, r.Error
	}
	if r.Stream == "" || r.BatchID != b.id || r.Count != uint64(len(b.msgs)) {
		return BatchAck{}, fmt.Errorf("batch acknowledgement %q does not match batch %s of %d messages", resp.Data, b.id, len(b.msgs))
	}
	return BatchAck{Stream: r.Stream, Sequence: r.Sequence, Count: len(b.msgs)}, nil
}

// Commit sends the batch's commit and waits for the acknowledgement: the
// batch is then stored, all or nothing. Re-sends, duplicates and errors are
// as for PublishBatch. A batch is committed once; a second call is an error.
func (b *StagedBatch) Commit(ctx context.Context) (BatchAck, error) {
	p := b.p
	if b.committed {
		return BatchAck{}, fmt.Errorf("%w: %s was committed before", ErrInvalidMessage, b.desc)
	}
	b.committed = true
	bo := retry.NewBackOff(p.opts.RetryWait, p.opts.MaxRetryWait)
	incomplete := 0
	for attempt := 1; ; attempt++ {
		var err error
		if attempt == 1 {
			err = b.sendErr
		} else {
			if p.isClosed() {
				return BatchAck{}, fmt.Errorf("publishing %s: publisher %s: %w", b.desc, p.opts.Name, ErrClosed)
			}
			// After an "incomplete" answer, ask about the first message so
			// that a refusal of the whole batch is reported precisely.
			err = b.sendBody(ctx, incomplete > 0)
		}
		var ack BatchAck
		if err == nil {
			ack, err = b.commitOnce(ctx)
		}
		if err == nil {
			p.published()
			p.m.batchLat.Observe(time.Since(b.started).Seconds())
			p.m.batches.Inc()
			p.m.published.Add(float64(len(b.msgs)))
			return ack, nil
		}
		if isAPIError(err, errCodeBatchDuplicate) {
			return p.publishEach(ctx, b.msgs, b.fence, b.desc, true, bo)
		}
		if ferr := p.c.fencedErr(ctx, b.fence, b.desc, err); ferr != nil {
			p.log.Warn("fenced batch refused: another writer claimed the fence", "batch", b.desc, "err", err)
			return BatchAck{}, ferr
		}
		if !retryablePublishErr(err) && !(b.fence != nil && isAPIError(err, errCodeWrongLastSeqConstant)) {
			return BatchAck{}, fmt.Errorf("%w: %s: %w", ErrRejected, b.desc, err)
		}
		err = p.retrying(ctx, b.msgs[0].Subject, err)
		if isAPIError(err, errCodeBatchIncomplete) {
			// A message lost in transit makes a batch incomplete, but so
			// does one the stream refuses silently (the batch's messages
			// before the commit get no answer), e.g. one above the stream's
			// max message size. Only the first is worth re-sending for long.
			if incomplete++; incomplete >= maxIncompleteBatches {
				return BatchAck{}, fmt.Errorf("%w: %s: the server found the batch incomplete %d times in a row; "+
					"a message was probably refused (larger than the stream's max message size?): %w",
					ErrRejected, b.desc, incomplete, err)
			}
		} else {
			incomplete = 0
		}
		if ctx.Err() != nil {
			return BatchAck{}, fmt.Errorf("publishing %s: gave up after %d attempts: %w (last attempt: %v)", b.desc, attempt, ctx.Err(), err)
		}
		p.m.retries.Inc()
		p.log.Warn("atomic batch not acknowledged; re-sending", "batch", b.desc, "attempt", attempt, "err", err)
		if serr := retry.Sleep(ctx, bo.NextBackOff()); serr != nil {
			return BatchAck{}, fmt.Errorf("publishing %s: gave up after %d attempts: %w (last attempt: %v)", b.desc, attempt, serr, err)
		}
	}
}

// publishEach publishes msgs one at a time, in order, each deduplicated by
// its id and each fenced by fence when it is not nil; see PublishBatch.
// afterDup says that it stores what remains of an atomic batch the server
// found partly stored (rather than a batch of one, which is always sent this
// way).
func (p *Publisher) publishEach(ctx context.Context, msgs []Message, fence *Fence, desc string, afterDup bool, bo interface{ NextBackOff() time.Duration }) (BatchAck, error) {
	why := ""
	if afterDup {
		why = " after a duplicate answer"
	}
	var last *jetstream.PubAck
	dups := 0
	for i := range msgs {
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
			start := time.Now()
			nm := msgs[i].natsMsg()
			if fence != nil {
				fence.fenceHeaders(nm)
			}
			ack, err := p.c.js.PublishMsg(actx, nm)
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
			if ferr := p.c.fencedErr(ctx, fence, fmt.Sprintf("%s: message %s%s", desc, msgs[i].ID, why), err); ferr != nil {
				p.log.Warn("fenced message refused: another writer claimed the fence", "batch", desc, "id", msgs[i].ID, "err", err)
				return BatchAck{}, ferr
			}
			if !retryablePublishErr(err) && !(fence != nil && isAPIError(err, errCodeWrongLastSeqConstant)) {
				return BatchAck{}, fmt.Errorf("%w: %s: message %s%s: %w", ErrRejected, desc, msgs[i].ID, why, err)
			}
			err = p.retrying(ctx, msgs[i].Subject, err)
			if ctx.Err() != nil {
				return BatchAck{}, fmt.Errorf("publishing %s%s: message %s: %w (last attempt: %v)", desc, why, msgs[i].ID, ctx.Err(), err)
			}
			p.m.retries.Inc()
			if serr := retry.Sleep(ctx, bo.NextBackOff()); serr != nil {
				return BatchAck{}, fmt.Errorf("publishing %s%s: message %s: %w (last attempt: %v)", desc, why, msgs[i].ID, serr, err)
			}
		}
	}
	p.published()
	switch {
	case !afterDup:
	case dups < len(msgs):
		p.log.Warn("atomic batch was partly stored before; stored the rest message by message",
			"batch", desc, "stored_before", dups, "stored_now", len(msgs)-dups)
	default:
		p.log.Debug("atomic batch was stored before", "batch", desc)
	}
	return BatchAck{Stream: last.Stream, Sequence: last.Sequence, Count: len(msgs), Duplicate: dups == len(msgs)}, nil
}

func validateBatch(msgs []Message, maxBatch int, maxPayload int64) error {
	if len(msgs) == 0 || len(msgs) > maxBatch {
		return fmt.Errorf("%w: atomic batch of %d messages: must hold 1 to %d (the bus's maxBatch)", ErrInvalidMessage, len(msgs), maxBatch)
	}
	var errs []error
	seen := make(map[string]int, len(msgs))
	for i := range msgs {
		if err := msgs[i].validate(); err != nil {
			errs = append(errs, fmt.Errorf("message %d: %w", i, err))
			continue
		}
		if n := msgs[i].size(); maxPayload > 0 && int64(n) > maxPayload {
			errs = append(errs, fmt.Errorf("%w: message %d (id %q): about %d bytes exceed the server's max payload %d", ErrInvalidMessage, i, msgs[i].ID, n, maxPayload))
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
