package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

// source is the source id of the generated changes.
const source = "shop"

// leaseTTL is the queries' lease; the default of the topology.
const leaseTTL = 10 * time.Second

// env is one embedded server (fsync always, a temporary store) with
// Tributary's topology, a connection for the queries and a publisher that
// plays source-pg.
type env struct {
	dir    string
	conn   *bus.Conn
	topo   streams.Topology
	store  *lifecycle.Store
	leases *bus.KV
	pub    *bus.Publisher
	log    *slog.Logger
}

func newEnv(ctx context.Context, sync bus.SyncMode, log *slog.Logger) (_ *env, err error) {
	dir, err := os.MkdirTemp("", "bench-query-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, log: log}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	// The defaults of the embedded server (Sync always unless -sync says
	// otherwise, atomic batches of up to bus.DefaultEmbeddedMaxBatch).
	if e.conn, err = bus.Connect(ctx, bus.ConnectOptions{URL: bus.Embedded, StoreDir: dir, Sync: sync, Logger: log}); err != nil {
		return nil, fmt.Errorf("starting the embedded server: %w", err)
	}
	if e.topo, err = streams.Default("tributary", streams.Options{LeaseTTL: leaseTTL}); err != nil {
		return nil, err
	}
	if err = e.conn.EnsureTopology(ctx, e.topo); err != nil {
		return nil, err
	}
	states, err := e.conn.KV(ctx, e.topo.Lifecycle.Name)
	if err != nil {
		return nil, err
	}
	e.store = lifecycle.NewStore(states, log)
	if e.leases, err = e.conn.KV(ctx, e.topo.Leases.Name); err != nil {
		return nil, err
	}
	if e.pub, err = e.conn.NewPublisher(bus.PublisherOptions{Name: "producer", Logger: log}); err != nil {
		return nil, err
	}
	return e, nil
}

// close stops the server and removes its store; a second call does
// nothing.
func (e *env) close() {
	if e.dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e.pub != nil {
		if err := e.pub.Close(ctx); err != nil {
			progress("closing the publisher: %v", err)
		}
	}
	if e.conn != nil {
		if err := e.conn.Close(ctx); err != nil {
			progress("closing the bus: %v", err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		progress("removing %s: %v", e.dir, err)
	}
	e.pub, e.conn, e.dir = nil, nil, ""
}

// message is the bus message source-pg would publish for env (the subject,
// and the message id that deduplicates it).
func (e *env) message(c *change.Envelope) (bus.Message, error) {
	data, err := c.Encode()
	if err != nil {
		return bus.Message{}, err
	}
	return bus.Message{
		Subject: e.topo.ChangeSubject(bus.Token(c.Source), bus.Token(c.Element.Labels[0]), bus.Token(c.Element.ID)),
		ID:      c.Source + ":" + c.Position,
		Data:    data,
	}, nil
}

// publish stores msgs in atomic batches of the bus's largest size, one at a
// time, and returns the stream sequence of the last.
func (e *env) publish(ctx context.Context, msgs []bus.Message) (uint64, error) {
	var last uint64
	for i := 0; i < len(msgs); {
		n := min(len(msgs)-i, e.pub.MaxBatch())
		ack, err := e.pub.PublishBatch(ctx, msgs[i:i+n])
		if err != nil {
			return 0, fmt.Errorf("publishing changes %d..%d: %w", i, i+n-1, err)
		}
		last = ack.Sequence
		i += n
	}
	return last, nil
}

// running is one instance of a query in a lifecycle component of its own,
// as query-engine runs it.
type running struct {
	comp *lifecycle.Component
	q    *queryservice.Query
	reg  *prometheus.Registry
}

// cycles is what the query's metrics say about its batches: handler calls
// (one per batch of changes) and their total time, and result publishes
// (one atomic batch, or a plain publish for one message) and their total
// time from send to acknowledgement.
type cycles struct {
	handled     uint64
	handlerBusy time.Duration
	published   uint64
	publishBusy time.Duration
}

// cycles reads the query's metrics.
func (r *running) cycles() (cycles, error) {
	var c cycles
	mfs, err := r.reg.Gather()
	if err != nil {
		return c, err
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			busy := time.Duration(h.GetSampleSum() * float64(time.Second))
			switch mf.GetName() {
			case "tributary_bus_handler_duration_seconds":
				c.handled += h.GetSampleCount()
				c.handlerBusy += busy
			case "tributary_bus_publish_latency_seconds":
				c.published += h.GetSampleCount()
				c.publishBusy += busy
			}
		}
	}
	return c, nil
}

func (e *env) startQuery(ctx context.Context, spec engine.QuerySpec, instance string) (*running, error) {
	reg := prometheus.NewRegistry()
	comp, err := lifecycle.NewComponent(lifecycle.Config{
		Kind: "query", ID: spec.ID, Instance: instance,
		Store: e.store, Leases: e.leases, LeaseTTL: leaseTTL, Logger: e.log, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	q, err := queryservice.New(queryservice.Config{
		Spec: spec, Sources: []string{source}, Bus: e.conn, Topology: e.topo, Component: comp,
		Logger: e.log, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	comp.AddStep("query", q.Step)
	if err := comp.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting query %s: %w", spec.ID, err)
	}
	return &running{comp: comp, q: q, reg: reg}, nil
}

func (r *running) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return r.comp.Stop(ctx)
}

// pollEvery is how often the benchmark asks the server whether a run is
// done; it bounds the timing error of a run from above.
const pollEvery = 5 * time.Millisecond

// errTimeout: a run did not finish within its bound.
var errTimeout = errors.New("timed out")

// until polls cond every pollEvery until it is true, an error, ctx ends or
// within passed; it returns when cond was first seen true.
func until(ctx context.Context, within time.Duration, what string, cond func() (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(within)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return time.Time{}, fmt.Errorf("waiting until %s: %w", what, err)
		}
		if ok {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("waiting until %s: %w after %s", what, errTimeout, within)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// consumed says whether the durable consumer exists, has acknowledged
// every message up to stream sequence through and has nothing pending.
func (e *env) consumed(ctx context.Context, durable string, through uint64) (bool, error) {
	st, err := e.conn.DurableState(ctx, e.topo.Changes.Name, durable)
	if err != nil {
		return false, err
	}
	return st.Found && st.Pending == 0 && st.AckPending == 0 && st.AckFloor >= through, nil
}

// lastResult is the last result message of a query: its result seq and the
// input sequence it covers; found is false while there is none.
func (e *env) lastResult(ctx context.Context, subject string) (found bool, seq, input uint64, err error) {
	m, err := e.conn.LastMessage(ctx, e.topo.Results.Name, subject)
	if errors.Is(err, bus.ErrNotFound) {
		return false, 0, 0, nil
	}
	if err != nil {
		return false, 0, 0, err
	}
	seq, err1 := strconv.ParseUint(m.Header[queryservice.HeaderResultSeq], 10, 64)
	input, err2 := strconv.ParseUint(m.Header[queryservice.HeaderInputSeq], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return false, 0, 0, fmt.Errorf("result message %d on %s: %w", m.Sequence, subject, err)
	}
	return true, seq, input, nil
}
