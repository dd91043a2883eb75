package queryservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

// Headers of a result message, beside Nats-Msg-Id (<query>:<seq>).
const (
	// HeaderInputSeq is the changes-stream sequence a result message
	// covers: its state includes every change up to it. A restarted query
	// replays silently up to it and publishes from the next seq.
	HeaderInputSeq = "Tributary-Input-Seq"
	// HeaderResultSeq repeats the body's seq, so that a restart reads it
	// without decoding the body.
	HeaderResultSeq = "Tributary-Result-Seq"
	// HeaderFingerprint identifies the query definition (text, joins,
	// parameters) that produced the message.
	HeaderFingerprint = "Tributary-Query-Fingerprint"
)

// ErrInvalidConfig is wrapped by New's errors about its Config (the query
// text's own errors come from engine.New, with line and column).
var ErrInvalidConfig = errors.New("invalid query service config")

// ErrCorruptProgress: the last message on the query's results subject does
// not say where the query's output ends (no or bad Tributary-Input-Seq or
// seq header): something else published there. The query does not guess.
var ErrCorruptProgress = errors.New("results subject does not record the query's progress")

// Config configures one query's service.
type Config struct {
	// Spec is the query (id, text, joins, parameters).
	Spec engine.QuerySpec
	// Sources are the source ids whose changes the query reads. Required.
	Sources []string
	// Bus, Topology and Component are required: the connection, the bus
	// layout, and the lifecycle component (kind "query", id = query id)
	// whose lease makes this instance the query's only writer.
	Bus       *bus.Conn
	Topology  streams.Topology
	Component *lifecycle.Component
	// Logger and Registerer default to discarding and a private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// StopTimeout bounds the drain of the input when the query stops.
	// Default 30s.
	StopTimeout time.Duration
	// AckWait of the input consumer: after a crash, the change that was in
	// flight comes back after it, and nothing else comes before it (one
	// change in flight keeps stream order). Default 5s.
	AckWait time.Duration
}

// Query runs one continuous query on the bus. Create it with New, add its
// Step to its component; the component's Start runs it, Stop drains it.
type Query struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	subject string // results subject
	durable string
	filters []string
	inputs  engine.Inputs
	fprint  string
}

// New checks cfg and compiles the query. A query that does not compile
// returns engine.New's error (with line and column); bad cfg wraps
// ErrInvalidConfig.
func New(cfg Config) (*Query, error) {
	var probs []string
	if cfg.Bus == nil {
		probs = append(probs, "bus: required")
	}
	if cfg.Component == nil {
		probs = append(probs, "component: required")
	}
	if cfg.Topology.Prefix == "" {
		probs = append(probs, "topology: required")
	}
	if len(cfg.Sources) == 0 {
		probs = append(probs, "sources: at least one source id")
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("%w: query %q: %v", ErrInvalidConfig, cfg.Spec.ID, probs)
	}
	eng, err := engine.New(cfg.Spec)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 5 * time.Second
	}
	m, err := newMetrics(cfg.Registerer, cfg.Spec.ID)
	if err != nil {
		return nil, err
	}
	fp := engine.Fingerprint(cfg.Spec)
	q := &Query{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "query", "id", cfg.Spec.ID),
		m:       m,
		subject: cfg.Topology.ResultSubject(bus.Token(cfg.Spec.ID)),
		durable: "query_" + bus.KeyToken(cfg.Spec.ID),
		inputs:  eng.Inputs(),
		fprint:  fmt.Sprintf("%x", fp[:8]),
	}
	q.filters = Filters(cfg.Topology, cfg.Sources, q.inputs)
	return q, nil
}

// Filters are the change subjects a query reads: for each source,
// <prefix>.changes.<source>.<label>.> for each label it reads, or every
// change of the source when a pattern element has no label.
func Filters(topo streams.Topology, sources []string, in engine.Inputs) []string {
	var out []string
	for _, s := range sources {
		st := bus.Token(s)
		if in.All {
			out = append(out, topo.ChangeFilter(st))
			continue
		}
		for _, l := range in.Labels {
			out = append(out, topo.Prefix+".changes."+st+"."+bus.Token(l)+".>")
		}
	}
	return out
}

// Subjects returns the change subject filters the query reads.
func (q *Query) Subjects() []string { return append([]string(nil), q.filters...) }

// ResultSubject is where the query publishes.
func (q *Query) ResultSubject() string { return q.subject }

// Durable is the name of the query's durable consumer on the changes
// stream.
func (q *Query) Durable() string { return q.durable }

// Step is the component's start step: it starts the query's worker
// (bootstrap, then live consumption) under the component's supervisor,
// which restarts it after a failure; each run rebuilds the state from the
// output and the history, so a restart is exactly-once like a process
// restart. The step returns at once: the component is NotReady
// ("bootstrap") until the worker consumes live. The supervisor stops the
// worker (which drains its input) when the component stops.
func (q *Query) Step(ctx context.Context) (lifecycle.Undo, error) {
	q.cfg.Component.NotReady("bootstrap", "rebuilding the query's state")
	return nil, q.cfg.Component.Go("query", q.run)
}

// run is one life of the worker: bootstrap, then live input until ctx
// ends (nil) or the state can no longer be trusted (the error; the
// supervisor restarts the worker, which rebuilds).
func (q *Query) run(ctx context.Context) error {
	pub, err := q.cfg.Bus.NewPublisher(bus.PublisherOptions{
		Name: "query_" + bus.KeyToken(q.cfg.Spec.ID), Logger: q.cfg.Logger, Registerer: q.cfg.Registerer,
	})
	if err != nil {
		return err
	}
	defer func() {
		// Every message handed to it is acknowledged by now, or the run
		// failed and the next one reads what was stored.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.cfg.StopTimeout)
		defer cancel()
		if err := pub.Close(cctx); err != nil {
			q.log.Warn("closing the result publisher", "err", err)
		}
	}()
	// Claim the query's fence before reading where the output ends: from
	// the claim on, a former owner (paused past its lease) can store
	// nothing more, so what is read below stays the output's end, and
	// every result of this run is a fenced write (a refusal, bus.ErrFenced,
	// ends the run and steps the component down).
	topo := q.cfg.Topology
	fence, err := q.cfg.Bus.ClaimFence(ctx, topo.Results.Name, topo.QueryFence(bus.Token(q.cfg.Spec.ID)),
		q.cfg.Component.Instance(), q.cfg.Component.LeaseToken())
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("query %s: claiming its results: %w", q.cfg.Spec.ID, err)
	}
	r, err := q.newRun(pub, fence)
	if err != nil {
		return err
	}
	q.cfg.Component.NotReady("bootstrap", "rebuilding the query's state")
	if err := r.bootstrap(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("bootstrap of query %s: %w", q.cfg.Spec.ID, err)
	}
	// Read before the consumer starts: from then on only its handler
	// touches the run.
	q.log.Info("query consuming live", "seq", r.seq, "input_seq", r.applied, "subjects", q.filters)
	cons, err := q.cfg.Bus.ConsumeBatches(ctx, bus.ConsumerOptions{
		Stream:         topo.Changes.Name,
		Durable:        q.durable,
		FilterSubjects: q.filters,
		// A new durable starts after what the bootstrap covered (it
		// dead-lettered the invalid changes there): handing the replayed
		// history over again only to skip it would halve a new query's
		// throughput. An existing one resumes at its ack floor.
		StartSeq:          r.startSeq,
		DeadLetterSubject: topo.DeadLetterSubject(topo.Changes.Name, q.durable),
		AckWait:           q.cfg.AckWait,
		// Ordered batches: the changes of a batch are applied in stream
		// order and their results published as one atomic batch before the
		// batch is acknowledged. A retryable failure is retried in place
		// for as long as it takes (dead-lettering a valid change would make
		// the result wrong), and no later change overtakes it, nor one that
		// a crashed instance held (the durable is reset to its ack floor on
		// takeover), so the skip of what the state covers is sound. Invalid
		// changes are dead-lettered at once (bus.Permanent).
		MaxDeliver:    -1,
		MaxAckPending: topo.Consumers.MaxAckPending,
		BackOff:       topo.Consumers.BackOff,
		Concurrency:   1,
		Degrade:       q.cfg.Component.Degrade,
		Logger:        q.cfg.Logger,
		Registerer:    q.cfg.Registerer,
	}, r.process)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("query %s: consuming changes: %w", q.cfg.Spec.ID, err)
	}
	q.cfg.Component.NotReady("bootstrap", "")
	var failed error
	select {
	case <-ctx.Done():
	case <-r.broken:
		failed = r.failure()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.cfg.StopTimeout)
	defer cancel()
	if err := cons.Drain(dctx); err != nil {
		q.log.Warn("draining the query's input", "err", err)
	}
	return failed
}
