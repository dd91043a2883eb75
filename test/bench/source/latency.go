package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/pgsource"
	"github.com/tributary/tributary/pkg/bus"
)

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

// latencyResult is one latency run.
type latencyResult struct {
	count    int
	target   int     // commits per second asked of the writer
	achieved float64 // commits per second the writer achieved
	// stored: JetStream's timestamp of the message minus the commit time;
	// acked: when source-pg received the batch's acknowledgement minus the
	// commit time.
	stored, acked percentiles
}

// timedPublisher records when each message's batch was acknowledged.
type timedPublisher struct {
	pub *bus.Publisher
	mu  sync.Mutex
	at  map[string]time.Time
}

func (t *timedPublisher) MaxBatch() int { return t.pub.MaxBatch() }

func (t *timedPublisher) StageBatch(msgs []bus.Message) (pgsource.StagedBatch, error) {
	sb, err := t.pub.StageBatch(msgs)
	if err != nil {
		return nil, err
	}
	return &timedBatch{t: t, sb: sb, msgs: msgs}, nil
}

// timedBatch records the time its commit was acknowledged.
type timedBatch struct {
	t    *timedPublisher
	sb   *bus.StagedBatch
	msgs []bus.Message
}

func (b *timedBatch) Commit(ctx context.Context) (bus.BatchAck, error) {
	ack, err := b.sb.Commit(ctx)
	if err == nil {
		now := time.Now()
		b.t.mu.Lock()
		for i := range b.msgs {
			b.t.at[b.msgs[i].ID] = now
		}
		b.t.mu.Unlock()
	}
	return ack, err
}

func (t *timedPublisher) ackedAt(id string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.at[id]
	return at, ok
}

// latency streams live while a writer commits one-row transactions at
// o.rate for o.latencyFor, then measures each change's commit-to-ack time.
func (p *pgBench) latency(ctx context.Context, sm syncMode, o options) (latencyResult, error) {
	b, err := startBus(ctx, sm, p.log)
	if err != nil {
		return latencyResult{}, err
	}
	defer b.close()
	bp, err := b.conn.NewPublisher(bus.PublisherOptions{Name: "bench"})
	if err != nil {
		return latencyResult{}, fmt.Errorf("creating the publisher: %w", err)
	}
	defer closePublisher(bp)
	tp := &timedPublisher{pub: bp, at: map[string]time.Time{}}

	slot := "lat_" + string(sm.mode)
	defer func() {
		if err := p.dropSlot(slot); err != nil {
			progress("%v", err)
		}
	}()
	r, err := p.startSource(b, tp, slot, true)
	if err != nil {
		return latencyResult{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = r.stop()
		}
	}()
	if err := waitStreaming(ctx, r); err != nil {
		return latencyResult{}, err
	}

	total := int(float64(o.rate) * o.latencyFor.Seconds())
	first := p.nextID
	p.nextID += int64(total)
	writeTime, err := p.write(ctx, first, total, o.rate, o.writers)
	if err != nil {
		return latencyResult{}, err
	}
	if err := b.waitFor(ctx, r, uint64(total), 2*time.Minute); err != nil {
		return latencyResult{}, err
	}
	stopped = true
	if err := r.stop(); err != nil {
		return latencyResult{}, err
	}

	samples, err := b.latencies(ctx, tp, total)
	if err != nil {
		return latencyResult{}, err
	}
	if o.latencyCSV != "" {
		if err := writeSamples(o.latencyCSV+"."+string(sm.mode)+".csv", samples); err != nil {
			return latencyResult{}, err
		}
	}
	stored := make([]time.Duration, len(samples))
	acked := make([]time.Duration, len(samples))
	for i, s := range samples {
		stored[i], acked[i] = s.stored, s.acked
	}
	return latencyResult{
		count:    total,
		target:   o.rate,
		achieved: float64(total) / writeTime.Seconds(),
		stored:   summarise(stored),
		acked:    summarise(acked),
	}, nil
}

// waitStreaming waits until the source has created its slot and streams.
func waitStreaming(ctx context.Context, r *runningSource) error {
	deadline := time.Now().Add(time.Minute)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for r.src.Status().State != pgsource.StateStreaming {
		if time.Now().After(deadline) {
			st := r.src.Status()
			return fmt.Errorf("source-pg is %s, not streaming, after a minute: %s", st.State, st.Reason)
		}
		select {
		case err := <-r.done:
			return fmt.Errorf("source-pg stopped before streaming: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// write commits total one-row transactions (synchronous_commit on), paced
// at rate per second over writers connections, and returns how long it
// took. A pacer hands out the rows on schedule; when the writers fall
// behind, the rows wait and the achieved rate shows it.
func (p *pgBench) write(ctx context.Context, first int64, total, rate, writers int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make([]*pgx.Conn, 0, writers)
	defer func() {
		for _, c := range conns {
			closeConn(c)
		}
	}()
	for range writers {
		c, err := pgx.Connect(ctx, p.dsn)
		if err != nil {
			return 0, fmt.Errorf("connecting a writer: %w", err)
		}
		conns = append(conns, c)
	}
	ids := make(chan int64, total)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if _, err := c.Exec(ctx, "INSERT INTO bench VALUES ($1, $2, md5($3))", id, int32(id), strconv.FormatInt(id, 10)); err != nil {
					errs <- fmt.Errorf("writing row %d: %w", id, err)
					cancel()
					return
				}
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	issued := 0
pace:
	for issued < total {
		due := min(int(time.Since(start).Seconds()*float64(rate)), total)
		for ; issued < due; issued++ {
			ids <- first + int64(issued)
		}
		select {
		case <-ctx.Done():
			break pace
		case <-tick.C:
		}
	}
	tick.Stop()
	close(ids)
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := errors.Join(<-errs, ctx.Err()); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// sample is the latency of one change.
type sample struct {
	seq           uint64
	commit        time.Time
	stored, acked time.Duration
}

// writeSamples writes samples as CSV: stream sequence, commit time (Unix
// ms), commit-to-stored and commit-to-ack (ms).
func writeSamples(path string, samples []sample) error {
	var b strings.Builder
	b.WriteString("seq,commit_unix_ms,stored_ms,acked_ms\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%d,%d,%.3f,%.3f\n", s.seq, s.commit.UnixMilli(),
			float64(s.stored)/float64(time.Millisecond), float64(s.acked)/float64(time.Millisecond))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the latency samples: %w", err)
	}
	progress("  samples in %s", path)
	return nil
}

// latencies reads the changes stream and returns, per change, the stored
// and acknowledged latencies from its commit time (the envelope's ts_ms).
func (b *natsBus) latencies(ctx context.Context, tp *timedPublisher, total int) ([]sample, error) {
	cons, err := b.js.OrderedConsumer(ctx, b.topo.Changes.Name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("reading the changes stream: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("reading the changes stream: %w", err)
	}
	defer it.Stop()
	samples := make([]sample, 0, total)
	for range total {
		m, err := it.Next(jetstream.NextMaxWait(10 * time.Second))
		if err != nil {
			return nil, fmt.Errorf("reading the changes stream after %d messages: %w", len(samples), err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("message metadata: %w", err)
		}
		var env struct {
			TsMs int64 `json:"ts_ms"`
		}
		if err := json.Unmarshal(m.Data(), &env); err != nil {
			return nil, fmt.Errorf("message %d: %w", md.Sequence.Stream, err)
		}
		commit := time.UnixMilli(env.TsMs)
		id := m.Headers().Get(jetstream.MsgIDHeader)
		at, ok := tp.ackedAt(id)
		if !ok {
			return nil, fmt.Errorf("message %d (%s) was stored but its acknowledgement was not recorded", md.Sequence.Stream, id)
		}
		samples = append(samples, sample{seq: md.Sequence.Stream, commit: commit,
			stored: md.Timestamp.Sub(commit), acked: at.Sub(commit)})
	}
	return samples, nil
}
