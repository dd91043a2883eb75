package queryservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// errRebuilding: the run's state is ahead of its output and is being
// rebuilt; the delivery is retried by the next run.
var errRebuilding = errors.New("query state is being rebuilt")

// run is one life of a query's worker: the engine state and where it
// stands. process is called by one goroutine at a time (Concurrency 1).
type run struct {
	q     *Query
	pub   *bus.Publisher
	fence *bus.Fence // every result is a write fenced by it
	eng   *engine.Query
	// applied is the changes-stream sequence the state covers; seq the
	// last result message published.
	applied uint64
	seq     uint64
	// startSeq is where the durable consumer starts when it does not
	// exist yet (0 when it exists: its ack floor decides): after what the
	// bootstrap covered, whose invalid changes the bootstrap dead-letters
	// itself, since the consumer never sees them.
	startSeq uint64

	broken   chan struct{}
	failOnce sync.Once
	failErr  error
}

func (q *Query) newRun(pub *bus.Publisher, fence *bus.Fence) (*run, error) {
	eng, err := engine.New(q.cfg.Spec)
	if err != nil {
		return nil, err
	}
	return &run{q: q, pub: pub, fence: fence, eng: eng, broken: make(chan struct{})}, nil
}

// fail records that the state can no longer be trusted (it is ahead of
// the output) and makes the worker end and rebuild.
func (r *run) fail(err error) error {
	r.failOnce.Do(func() {
		r.failErr = err
		close(r.broken)
	})
	return err
}

func (r *run) failure() error {
	select {
	case <-r.broken:
		return r.failErr
	default:
		return nil
	}
}

// progress is what the last result message on the subject says.
type progress struct {
	found    bool
	seq      uint64 // last result seq
	inputSeq uint64 // changes-stream sequence it covers
	fprint   string
}

func (r *run) readProgress(ctx context.Context) (progress, error) {
	q := r.q
	m, err := q.cfg.Bus.LastMessage(ctx, q.cfg.Topology.Results.Name, q.subject)
	if errors.Is(err, bus.ErrNotFound) {
		return progress{}, nil
	}
	if err != nil {
		return progress{}, err
	}
	seq, err1 := strconv.ParseUint(m.Header[HeaderResultSeq], 10, 64)
	in, err2 := strconv.ParseUint(m.Header[HeaderInputSeq], 10, 64)
	if err1 != nil || err2 != nil || seq == 0 {
		return progress{}, fmt.Errorf("%w: %s sequence %d has %s %q and %s %q",
			ErrCorruptProgress, q.subject, m.Sequence, HeaderResultSeq, m.Header[HeaderResultSeq], HeaderInputSeq, m.Header[HeaderInputSeq])
	}
	return progress{found: true, seq: seq, inputSeq: in, fprint: m.Header[HeaderFingerprint]}, nil
}

// bootstrap rebuilds the state from history without publishing: up to
// where the output ends (or the durable consumer acknowledged, for
// changes that produced no result), or, for a query without results yet,
// up to the stream's end, followed by one result message holding the whole
// result set.
func (r *run) bootstrap(ctx context.Context) error {
	q := r.q
	start := time.Now()
	st, err := q.cfg.Bus.DurableState(ctx, q.cfg.Topology.Changes.Name, q.durable)
	if err != nil {
		return err
	}
	floor := st.AckFloor
	p, err := r.readProgress(ctx)
	if err != nil {
		return err
	}
	if p.found && p.fprint != "" && p.fprint != q.fprint {
		q.log.Warn("the query's definition changed since its last result message; its result continues from the "+
			"old result set, which may not fold to the new query's answer", "last_seq", p.seq)
	}
	through := max(p.inputSeq, floor)
	if !p.found {
		// A new query: everything stored now.
		if through, err = q.cfg.Bus.StreamLastSequence(ctx, q.cfg.Topology.Changes.Name); err != nil {
			return err
		}
	}
	q.m.bootstrapLeft.Set(float64(through))
	n := 0
	var covered uint64
	if through > 0 {
		// (Replay reads through the stream's end for Through 0: nothing
		// is to be replayed when the output and the acknowledgements
		// cover no change yet.)
		covered, err = r.replay(ctx, through, !st.Found, &n)
		if err != nil {
			return err
		}
	}
	q.m.bootstrapLeft.Set(0)
	q.m.replayed.Add(float64(n))
	r.applied, r.seq = covered, p.seq
	if !st.Found && covered > 0 {
		r.startSeq = covered + 1
	}
	q.m.inputSeq.Set(float64(r.applied))
	q.m.elements.Set(float64(r.eng.Elements()))
	if !p.found {
		// The first message holds the whole current result (for an
		// aggregation without grouping keys, its one row, even when
		// nothing matched).
		d := engine.Diff{Added: r.eng.Result()}
		msg, err := r.resultMessage(&d, 1, covered)
		if err != nil {
			return err
		}
		if err := r.publish(ctx, []bus.Message{msg}); err != nil {
			return err
		}
		r.seq = 1
		q.m.published.Inc()
	}
	q.log.Info("query state rebuilt", "replayed", n, "input_seq", covered, "seq", r.seq,
		"initial_result", !p.found, "elements", r.eng.Elements(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// process applies every change of ds (in stream order) and publishes the
// results they produced as one atomic batch (it is the query's
// bus.BatchHandler), with gap-free seqs, each
// saying which input it covers. It returns nil when every delivery was
// handled and its results acknowledged by JetStream (the caller then
// acknowledges them all); a *BatchError when ds[Index] is invalid (wrapping
// a bus.Permanent error: dead-letter it; the ones before it were handled);
// any other error when nothing of ds may be acknowledged (retry). A
// delivery the state already covers (a redelivery, or one the bootstrap
// replayed) is acknowledged without work.
func (r *run) process(ctx context.Context, ds []*bus.Delivery) error {
	if err := r.failure(); err != nil {
		return fmt.Errorf("%w: %w", errRebuilding, err)
	}
	q := r.q
	var msgs []bus.Message
	var bad *bus.BatchError
	applied := 0
	for i := 0; i < len(ds); {
		d := ds[i]
		// Decoded first, so that an invalid change the bootstrap skipped
		// (it replayed history the consumer delivers again) is
		// dead-lettered by this consumer.
		env, err := change.Decode(d.Data)
		if err != nil {
			q.m.invalid.Inc()
			bad = &bus.BatchError{Index: i, Err: r.invalid(d, err)}
			break
		}
		if d.StreamSeq <= r.applied {
			q.m.skipped.Inc()
			i++
			continue
		}
		// The changes of one transaction that follow it in the batch are
		// applied with it, as one change: one result for the transaction.
		envs, j := r.transaction(ds, i, env)
		t0 := time.Now()
		var diff engine.Diff
		if len(envs) > 1 {
			if diff, err = r.eng.ApplyBatch(envs); err != nil {
				// One of them is refused (the state is unchanged): apply
				// them one by one, which finds it and dead-letters it alone.
				envs, j = envs[:1], i+1
			}
		}
		if len(envs) == 1 {
			diff, err = r.eng.Apply(env)
		}
		q.m.applySec.Observe(time.Since(t0).Seconds())
		if err != nil {
			// The engine refused it before changing anything.
			q.m.invalid.Inc()
			bad = &bus.BatchError{Index: i, Err: r.refused(d, err)}
			break
		}
		last := ds[j-1]
		applied += len(envs)
		r.applied = last.StreamSeq
		i = j
		for _, w := range diff.Warnings {
			q.m.warnings.Inc()
			q.log.Warn("evaluation warning", "stream_seq", last.StreamSeq, "subject", last.Subject, "warning", w)
		}
		if diff.Empty() {
			continue
		}
		msg, err := r.resultMessage(&diff, r.seq+uint64(len(msgs))+1, last.StreamSeq)
		if err != nil {
			return r.fail(err)
		}
		msgs = append(msgs, msg)
	}
	q.m.applied.Add(float64(applied))
	if len(msgs) > 0 {
		if err := r.publish(ctx, msgs); err != nil {
			// The state is ahead of the output now: rebuild from it.
			return r.fail(fmt.Errorf("query %s: publishing results %d..%d: %w", q.cfg.Spec.ID, r.seq+1, r.seq+uint64(len(msgs)), err))
		}
		r.seq += uint64(len(msgs))
		q.m.published.Add(float64(len(msgs)))
	}
	q.m.inputSeq.Set(float64(r.applied))
	q.m.elements.Set(float64(r.eng.Elements()))
	if bad != nil {
		return bad
	}
	return nil
}

// replay applies the query's changes through stream sequence through to the
// engine, publishing nothing, counting them in *n; it returns the sequence
// the replay covers. An invalid change (one the engine refuses, too) is
// skipped; with deadLetter (the durable consumer, created after what the
// replay covers, will never see it) it is dead-lettered as the consumer
// would have done, else the consumer dead-letters it when it delivers it.
func (r *run) replay(ctx context.Context, through uint64, deadLetter bool, n *int) (uint64, error) {
	q := r.q
	return q.cfg.Bus.Replay(ctx, bus.ReplayOptions{
		Stream: q.cfg.Topology.Changes.Name, FilterSubjects: q.filters, Through: through,
	}, func(d *bus.Delivery) error {
		env, err := change.Decode(d.Data)
		if err != nil {
			if deadLetter {
				return r.deadLetter(ctx, d, r.invalid(d, err))
			}
			return nil
		}
		if _, err := r.eng.Apply(env); err != nil {
			if deadLetter {
				return r.deadLetter(ctx, d, r.refused(d, err))
			}
			return nil
		}
		if *n++; *n%1000 == 0 && through > d.StreamSeq {
			q.m.bootstrapLeft.Set(float64(through - d.StreamSeq))
		}
		if *n%10000 == 0 {
			q.cfg.Component.NotReady("bootstrap", fmt.Sprintf("rebuilding the query's state: %d changes replayed, at sequence %d of %d", *n, d.StreamSeq, through))
		}
		return nil
	})
}

// invalid is why a change that does not decode is dead-lettered.
func (r *run) invalid(d *bus.Delivery, err error) error {
	return bus.Permanentf("query %s: change at stream sequence %d (%s) is invalid: %w", r.q.cfg.Spec.ID, d.StreamSeq, d.Subject, err)
}

// refused is why a change the engine refuses is dead-lettered.
func (r *run) refused(d *bus.Delivery, err error) error {
	return bus.Permanentf("query %s: change at stream sequence %d (%s) refused: %w", r.q.cfg.Spec.ID, d.StreamSeq, d.Subject, err)
}

// deadLetter stores the dead letter of a replayed change for the query's
// durable consumer, with the reason, headers and message id the consumer
// would give it (a re-run of the bootstrap stores it once).
func (r *run) deadLetter(ctx context.Context, d *bus.Delivery, reason error) error {
	q := r.q
	dl := *d
	dl.Consumer = q.durable
	subject := q.cfg.Topology.DeadLetterSubject(q.cfg.Topology.Changes.Name, q.durable)
	if err := q.cfg.Bus.PublishDeadLetter(ctx, subject, &dl, reason.Error()); err != nil {
		return fmt.Errorf("query %s: dead-lettering the replayed change at stream sequence %d: %w", q.cfg.Spec.ID, d.StreamSeq, err)
	}
	q.m.invalid.Inc()
	q.log.Warn("replayed change dead-lettered", "stream_seq", d.StreamSeq, "subject", d.Subject, "reason", reason)
	return nil
}

// transaction returns the changes of ds, from i on (ds[i] decoded as env),
// that belong to env's transaction, and the index after the last of them:
// consecutive changes of env's source whose positions share the text
// before the last '/' (source-pg's positions are <commit LSN>/<index>; see
// docs/formats.md), none of them covered by the state already. A change
// without such a position is a transaction of its own. A transaction that
// the consumer hands over in two batches gives two results.
func (r *run) transaction(ds []*bus.Delivery, i int, env *change.Envelope) ([]*change.Envelope, int) {
	envs := []*change.Envelope{env}
	key, ok := txnKey(env.Position)
	if !ok {
		return envs, i + 1
	}
	j := i + 1
	for ; j < len(ds); j++ {
		if ds[j].StreamSeq <= r.applied {
			break
		}
		next, err := change.Decode(ds[j].Data)
		if err != nil || next.Source != env.Source {
			break
		}
		if k, ok := txnKey(next.Position); !ok || k != key {
			break
		}
		envs = append(envs, next)
	}
	return envs, j
}

// txnKey is the transaction part of a position: the text before its last
// '/', when it has one.
func txnKey(position string) (string, bool) {
	k := strings.LastIndexByte(position, '/')
	if k <= 0 {
		return "", false
	}
	return position[:k], true
}

// resultMessage encodes a diff as result message seq covering input.
func (r *run) resultMessage(d *engine.Diff, seq, input uint64) (bus.Message, error) {
	q := r.q
	res := d.Result(q.cfg.Spec.ID, seq, time.Now().UnixMilli())
	data, err := json.Marshal(&res)
	if err != nil {
		return bus.Message{}, fmt.Errorf("query %s: encoding result %d: %w", q.cfg.Spec.ID, seq, err)
	}
	return bus.Message{
		Subject: q.subject,
		ID:      q.cfg.Spec.ID + ":" + strconv.FormatUint(seq, 10),
		Data:    data,
		Header: map[string]string{
			HeaderInputSeq:    strconv.FormatUint(input, 10),
			HeaderResultSeq:   strconv.FormatUint(seq, 10),
			HeaderFingerprint: q.fprint,
		},
	}, nil
}

// publish stores msgs (consecutive seqs, in order, the first one r.seq+1)
// on the results subject, fenced by the run's claim, and returns once
// JetStream acknowledged them all: the one place the query writes. Several
// messages go in atomic batches of at most the bus's MaxBatch (a crash
// between two batches leaves a prefix whose last message says which input
// it covers: a restart continues from there); a single message, the common
// case of one change at a time, is a plain publish (PublishBatch does that
// for a batch of one). An error wrapping bus.ErrFenced means another
// instance owns the query now.
func (r *run) publish(ctx context.Context, msgs []bus.Message) error {
	for len(msgs) > 0 {
		n := min(len(msgs), r.pub.MaxBatch())
		if _, err := r.pub.PublishBatch(ctx, msgs[:n], bus.WithFence(r.fence)); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}
