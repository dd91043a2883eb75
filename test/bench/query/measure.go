package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/internal/queryservice/querytest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// benchQuery is one query of the benchmark.
type benchQuery struct {
	name string // for the tables
	spec engine.QuerySpec
}

// queries are the filter and grouped aggregation, on the orders of
// querytest's workload (three quarters of its changes; the rest are
// drivers, which neither query reads).
var queries = []benchQuery{
	{name: "filter", spec: engine.QuerySpec{ID: "ready_orders",
		Query: "MATCH (o:orders) WHERE o.status = 'ready' RETURN o.id AS id, o.total AS total"}},
	{name: "grouped aggregation", spec: engine.QuerySpec{ID: "orders_by_status",
		Query: "MATCH (o:orders) RETURN o.status AS status, count(o) AS n, sum(o.total) AS revenue"}},
}

// runBound bounds every wait for a run to finish.
const runBound = 30 * time.Minute

// workload is n generated changes as the bus messages source-pg would
// publish (subject, message id, envelope), from a fixed seed.
func workload(e *env, seed uint64, n int) ([]bus.Message, error) {
	w := querytest.NewWorkload(seed, source)
	msgs := make([]bus.Message, n)
	for i := range msgs {
		m, err := e.message(w.Next())
		if err != nil {
			return nil, fmt.Errorf("encoding change %d: %w", i, err)
		}
		msgs[i] = m
	}
	return msgs, nil
}

// reads says whether q reads the change subject of m.
func reads(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches says whether a NATS subject filter (tokens, "*" for one
// token, a final ">" for one or more) matches subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// expectation is what a query must produce for a run of changes: the
// stream sequence of the last change it reads, and the result messages the
// changes give when applied one at a time (a message per change whose diff
// is not empty) with the sequence of the last of them.
type expectation struct {
	read       int    // changes the query reads
	lastRead   uint64 // stream sequence of the last of them
	results    int    // non-empty diffs
	lastResult uint64 // stream sequence of the last change with one
}

// engineLimit applies the changes the query reads (msgs stored from stream
// sequence first on) to a fresh engine, as the query does, and times the
// Apply calls only: the envelopes are decoded beforehand, in chunks, outside
// the timing. It returns the rate over all of msgs (changes of the stream
// per second, as the other figures) and what the query must produce.
func engineLimit(spec engine.QuerySpec, filters []string, msgs []bus.Message, first uint64) (measure, expectation, error) {
	eng, err := engine.New(spec)
	if err != nil {
		return measure{}, expectation{}, err
	}
	var ex expectation
	var busy time.Duration
	const chunk = 10_000
	envs := make([]*change.Envelope, 0, chunk)
	seqs := make([]uint64, 0, chunk)
	for i := 0; i < len(msgs); i += chunk {
		envs, seqs = envs[:0], seqs[:0]
		for j := i; j < min(i+chunk, len(msgs)); j++ {
			if !reads(filters, msgs[j].Subject) {
				continue
			}
			env, err := change.Decode(msgs[j].Data)
			if err != nil {
				return measure{}, expectation{}, fmt.Errorf("decoding change %d: %w", j, err)
			}
			envs = append(envs, env)
			seqs = append(seqs, first+uint64(j))
		}
		t0 := time.Now()
		for k, env := range envs {
			d, err := eng.Apply(env)
			if err != nil {
				return measure{}, expectation{}, fmt.Errorf("applying change at sequence %d: %w", seqs[k], err)
			}
			if !d.Empty() {
				ex.results++
				ex.lastResult = seqs[k]
			}
		}
		busy += time.Since(t0)
		ex.read += len(envs)
		if len(seqs) > 0 {
			ex.lastRead = seqs[len(seqs)-1]
		}
	}
	return newMeasure(len(msgs), busy), ex, nil
}

// ackLimit consumes the query's subjects with an ordered batch consumer
// configured as the query's, whose handler does nothing (so the batch is
// acknowledged at once), and times it from the consumer's creation until
// it has acknowledged the last change.
func ackLimit(ctx context.Context, e *env, durable string, filters []string, n int, lastRead uint64) (measure, error) {
	topo := e.topo
	t0 := time.Now()
	cons, err := e.conn.ConsumeBatches(ctx, bus.ConsumerOptions{
		Stream: topo.Changes.Name, Durable: durable, FilterSubjects: filters,
		DeadLetterSubject: topo.DeadLetterSubject(topo.Changes.Name, durable),
		AckWait:           5 * time.Second, MaxDeliver: -1, MaxAckPending: topo.Consumers.MaxAckPending,
		BackOff: topo.Consumers.BackOff, Concurrency: 1, Logger: e.log,
	}, func(context.Context, []*bus.Delivery) error { return nil })
	if err != nil {
		return measure{}, err
	}
	done, err := until(ctx, runBound, "the ack-only consumer acknowledged every change", func() (bool, error) {
		return e.consumed(ctx, durable, lastRead)
	})
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if derr := cons.Drain(dctx); derr != nil && err == nil {
		err = fmt.Errorf("draining the ack-only consumer: %w", derr)
	}
	if err != nil {
		return measure{}, err
	}
	return newMeasure(n, done.Sub(t0)), nil
}

// queryDone says whether the running query acknowledged every change up to
// lastRead and its last result message covers input sequence covers with
// result seq at least seq.
func queryDone(ctx context.Context, e *env, r *running, lastRead, covers, seq uint64) (bool, error) {
	found, s, in, err := e.lastResult(ctx, r.q.ResultSubject())
	if err != nil || !found || in < covers || s < seq {
		return false, err
	}
	return e.consumed(ctx, r.q.Durable(), lastRead)
}

// historyRun is the replay-path throughput and the restart of one query.
type historyRun struct {
	query    measure // start → done
	seq      uint64  // result messages published (1: the initial one only)
	restart  measure // second instance's start → consuming live
	restartQ measure // second instance's start → consumer caught up (nothing pending)
}

// historyQuery starts q on the n changes stored (stream sequences 1..n),
// times it until done, then stops it and times a restart.
func historyQuery(ctx context.Context, e *env, q benchQuery, n int, ex expectation) (h historyRun, err error) {
	t0 := time.Now()
	r, err := e.startQuery(ctx, q.spec, "bench-1")
	if err != nil {
		return h, err
	}
	// A new query replays up to the stream's end and publishes one
	// message covering it; its consumer then skips the replayed changes.
	done, err := until(ctx, runBound, q.name+" caught up with the history", func() (bool, error) {
		return queryDone(ctx, e, r, ex.lastRead, uint64(n), 1)
	})
	if err != nil {
		return h, errors.Join(err, r.stop())
	}
	h.query = newMeasure(n, done.Sub(t0))
	if _, h.seq, _, err = e.lastResult(ctx, r.q.ResultSubject()); err != nil {
		return h, errors.Join(err, r.stop())
	}
	if err := r.stop(); err != nil {
		return h, fmt.Errorf("stopping %s: %w", q.name, err)
	}

	progress("  restart of %s with %d changes of history", q.name, n)
	t0 = time.Now()
	r, err = e.startQuery(ctx, q.spec, "bench-2")
	if err != nil {
		return h, err
	}
	defer func() {
		if serr := r.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping %s: %w", q.name, serr)
		}
	}()
	live, err := until(ctx, runBound, q.name+" consumes live after the restart", func() (bool, error) {
		return r.comp.Ready() == nil, nil
	})
	if err != nil {
		return h, err
	}
	h.restart = newMeasure(n, live.Sub(t0))
	caught, err := until(ctx, runBound, q.name+" caught up after the restart", func() (bool, error) {
		return queryDone(ctx, e, r, ex.lastRead, uint64(n), h.seq)
	})
	if err != nil {
		return h, err
	}
	h.restartQ = newMeasure(n, caught.Sub(t0))
	_, s, _, err := e.lastResult(ctx, r.q.ResultSubject())
	if err != nil {
		return h, err
	}
	if s != h.seq {
		return h, fmt.Errorf("%s after the restart: last result seq %d, want %d (no change came in between)", q.name, s, h.seq)
	}
	return h, nil
}

// liveRun is the live-path throughput of one query.
type liveRun struct {
	query   measure // first publish → last result acknowledged
	publish measure // first publish → last change stored
	seq     uint64
	cycles  cycles
}

// liveQuery starts q on an empty stream, waits until it consumes live,
// then publishes msgs as fast as the bus takes them and times until the
// last result is acknowledged. It checks the number of result messages
// against ex.
func liveQuery(ctx context.Context, e *env, q benchQuery, msgs []bus.Message, ex expectation) (_ liveRun, err error) {
	var lr liveRun
	r, err := e.startQuery(ctx, q.spec, "bench-live")
	if err != nil {
		return lr, err
	}
	defer func() {
		if serr := r.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping %s: %w", q.name, serr)
		}
	}()
	if _, err := until(ctx, time.Minute, q.name+" consumes live", func() (bool, error) {
		found, _, _, err := e.lastResult(ctx, r.q.ResultSubject())
		return found && r.comp.Ready() == nil, err
	}); err != nil {
		return lr, err
	}
	t0 := time.Now()
	if _, err := e.publish(ctx, msgs); err != nil {
		return lr, err
	}
	lr.publish = newMeasure(len(msgs), time.Since(t0))
	done, err := until(ctx, runBound, q.name+" acknowledged the last change", func() (bool, error) {
		return queryDone(ctx, e, r, ex.lastRead, ex.lastResult, 1+uint64(ex.results))
	})
	if err != nil {
		return lr, err
	}
	lr.query = newMeasure(len(msgs), done.Sub(t0))
	_, lr.seq, _, err = e.lastResult(ctx, r.q.ResultSubject())
	if err != nil {
		return lr, err
	}
	if lr.cycles, err = r.cycles(); err != nil {
		return lr, err
	}
	if lr.seq != 1+uint64(ex.results) {
		return lr, fmt.Errorf("%s live: %d result messages, want 1 + %d (the initial one and one per non-empty diff)", q.name, lr.seq, ex.results)
	}
	return lr, nil
}

// latencyResult is one latency run.
type latencyResult struct {
	changes  int     // published
	samples  int     // result messages measured
	target   int     // changes per second asked
	achieved float64 // changes per second published
	batches  int     // publish calls (atomic batches, or plain for one)
	// published: result stored − the publish call of the change's batch;
	// stored: result stored − change stored (both JetStream timestamps).
	published, stored percentiles
	cycles            cycles
	read              int           // changes the query reads
	elapsed           time.Duration // first publish → last change acknowledged
}

// latencyQuery starts q on an empty stream, then publishes msgs at rate
// changes/s, each batch holding the changes due (a schedule: changes wait
// when the publisher falls behind), and measures from each change's
// publish to its result message being stored.
func latencyQuery(ctx context.Context, e *env, q benchQuery, msgs []bus.Message, rate int) (_ latencyResult, err error) {
	res := latencyResult{changes: len(msgs), target: rate}
	r, err := e.startQuery(ctx, q.spec, "bench-latency")
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := r.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stopping %s: %w", q.name, serr)
		}
	}()
	if _, err := until(ctx, time.Minute, q.name+" consumes live", func() (bool, error) {
		found, _, _, err := e.lastResult(ctx, r.q.ResultSubject())
		return found && r.comp.Ready() == nil, err
	}); err != nil {
		return res, err
	}
	base, err := e.conn.StreamLastSequence(ctx, e.topo.Changes.Name)
	if err != nil {
		return res, err
	}
	sentAt := make([]time.Time, len(msgs)) // by index: sequence base+1+i
	start := time.Now()
	for sent := 0; sent < len(msgs); {
		due := min(len(msgs), int(time.Since(start).Seconds()*float64(rate))+1)
		if due <= sent {
			// Pacing: wait for the next change's time on the schedule.
			next := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(next))
			continue
		}
		n := min(due-sent, e.pub.MaxBatch())
		now := time.Now()
		for i := sent; i < sent+n; i++ {
			sentAt[i] = now
		}
		ack, err := e.pub.PublishBatch(ctx, msgs[sent:sent+n])
		if err != nil {
			return res, fmt.Errorf("publishing changes %d..%d: %w", sent, sent+n-1, err)
		}
		if want := base + uint64(sent+n); ack.Sequence != want {
			return res, fmt.Errorf("changes %d..%d stored up to sequence %d, want %d (another publisher?)", sent, sent+n-1, ack.Sequence, want)
		}
		sent += n
		res.batches++
	}
	res.achieved = float64(len(msgs)) / time.Since(start).Seconds()
	filters := r.q.Subjects()
	var lastRead uint64
	for i, m := range msgs {
		if reads(filters, m.Subject) {
			lastRead = base + 1 + uint64(i)
			res.read++
		}
	}
	done, err := until(ctx, runBound, q.name+" acknowledged the last change", func() (bool, error) {
		return e.consumed(ctx, r.q.Durable(), lastRead)
	})
	if err != nil {
		return res, err
	}
	res.elapsed = done.Sub(start)
	storedAt := make([]time.Time, len(msgs))
	if _, err := e.conn.Replay(ctx, bus.ReplayOptions{Stream: e.topo.Changes.Name, FilterSubjects: filters}, func(d *bus.Delivery) error {
		if d.StreamSeq > base {
			storedAt[d.StreamSeq-base-1] = d.Time
		}
		return nil
	}); err != nil {
		return res, err
	}
	var fromPub, fromStored []time.Duration
	if _, err := e.conn.Replay(ctx, bus.ReplayOptions{Stream: e.topo.Results.Name, FilterSubjects: []string{r.q.ResultSubject()}}, func(d *bus.Delivery) error {
		in, err := strconv.ParseUint(d.Header[queryservice.HeaderInputSeq], 10, 64)
		if err != nil {
			return fmt.Errorf("result at %d: %s: %w", d.StreamSeq, queryservice.HeaderInputSeq, err)
		}
		if in <= base {
			return nil // the initial message
		}
		i := in - base - 1
		fromPub = append(fromPub, d.Time.Sub(sentAt[i]))
		fromStored = append(fromStored, d.Time.Sub(storedAt[i]))
		return nil
	}); err != nil {
		return res, err
	}
	if res.cycles, err = r.cycles(); err != nil {
		return res, err
	}
	res.samples = len(fromPub)
	res.published, res.stored = summarise(fromPub), summarise(fromStored)
	return res, nil
}

// percentiles summarises a latency distribution.
type percentiles struct {
	p50, p99, max time.Duration
}

func summarise(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1)+0.5)] }
	return percentiles{p50: at(0.50), p99: at(0.99), max: d[len(d)-1]}
}
