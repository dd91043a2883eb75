package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/pgsource"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

const (
	sourceID = "bench"
	// catchUpTimeout bounds one reader's catch-up: far above any plausible
	// run, it only keeps a wedged run from hanging forever.
	catchUpTimeout = 30 * time.Minute
	pollInterval   = 5 * time.Millisecond
)

// natsBus is a fresh embedded nats-server, started by bus.Connect exactly as
// Tributary starts it, listening on loopback for the nats CLI and for the
// benchmark's own client.
type natsBus struct {
	conn *bus.Conn
	dir  string
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
	topo streams.Topology
	// reg holds the connection's and the publisher's metrics.
	reg *prometheus.Registry
}

func startBus(ctx context.Context, sm syncMode, log *slog.Logger) (_ *natsBus, err error) {
	b := &natsBus{reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.dir, err = os.MkdirTemp("", "bench-source-nats-"); err != nil {
		return nil, fmt.Errorf("creating the JetStream directory: %w", err)
	}
	b.conn, err = bus.Connect(ctx, bus.ConnectOptions{
		URL:        bus.Embedded,
		StoreDir:   b.dir,
		Listen:     "127.0.0.1:-1", // a free port
		Sync:       sm.mode,
		Logger:     log,
		Registerer: b.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the embedded NATS server (%s): %w", sm.name, err)
	}
	b.url = b.conn.ClientURL()
	if b.topo, err = streams.Default("bench", streams.Options{}); err != nil {
		return nil, err
	}
	if err := b.conn.EnsureTopology(ctx, b.topo); err != nil {
		return nil, fmt.Errorf("creating the topology: %w", err)
	}
	if b.nc, err = nats.Connect(b.url, nats.Name("bench-observer")); err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", b.url, err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	return b, nil
}

func (b *natsBus) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.conn.Close(ctx); err != nil {
			progress("closing the NATS server: %v", err)
		}
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// streamState returns the state of a stream.
func (b *natsBus) streamState(ctx context.Context, name string) (jetstream.StreamState, error) {
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("looking up stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("reading stream %s: %w", name, err)
	}
	return info.State, nil
}

// runningSource is a pgsource.Source running in the background.
type runningSource struct {
	src    *pgsource.Source
	cancel context.CancelFunc
	done   chan error
}

func (p *pgBench) startSource(b *natsBus, pub pgsource.Publisher, slot string, create bool) (*runningSource, error) {
	cfg := pgsource.Config{
		ID:              sourceID,
		ConnString:      p.dsn,
		Tables:          []string{"bench"},
		PublicationName: publicationName,
		SlotName:        slot,
		Create:          create,
		Snapshot:        pgsource.SnapshotNever,
		// Every other setting, the batching included, is the default.
	}
	src, err := pgsource.New(cfg, pub, b.conn, b.topo, pgsource.Options{Logger: p.log})
	if err != nil {
		return nil, fmt.Errorf("creating the source: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSource{src: src, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx) }() // owned by r: stop waits for it
	return r, nil
}

// stop ends Run gracefully and returns its result.
func (r *runningSource) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("source-pg stopped with an error: %w", err)
		}
		return nil
	case <-time.After(time.Minute):
		return errors.New("source-pg did not stop within a minute of being cancelled")
	}
}

// waitFor polls the changes stream until it holds want messages. It fails
// when the source stops on its own, ctx ends or timeout passes.
func (b *natsBus) waitFor(ctx context.Context, r *runningSource, want uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		st, err := b.streamState(ctx, b.topo.Changes.Name)
		if err != nil {
			return err
		}
		if st.Msgs >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the changes stream holds %d of %d messages after %s (source state %s: %s)",
				st.Msgs, want, timeout, r.src.Status().State, r.src.Status().Reason)
		}
		select {
		case err := <-r.done:
			return fmt.Errorf("source-pg stopped before the stream held every change: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// sourceThroughput runs source-pg over slot (filled with rows changes
// beforehand) into a fresh server and times it from Run until the stream
// holds every change.
func (p *pgBench) sourceThroughput(ctx context.Context, slot string, sm syncMode, rows int) (measure, phaseStats, error) {
	b, err := startBus(ctx, sm, p.log)
	if err != nil {
		return measure{}, phaseStats{}, err
	}
	defer b.close()
	pub, err := b.conn.NewPublisher(bus.PublisherOptions{Name: "bench"})
	if err != nil {
		return measure{}, phaseStats{}, fmt.Errorf("creating the publisher: %w", err)
	}
	defer closePublisher(pub)

	start := time.Now()
	r, err := p.startSource(b, pgsource.BusPublisher(pub), slot, false)
	if err != nil {
		return measure{}, phaseStats{}, err
	}
	werr := b.waitFor(ctx, r, uint64(rows), catchUpTimeout)
	elapsed := time.Since(start)
	if err := errors.Join(werr, r.stop()); err != nil {
		return measure{}, phaseStats{}, err
	}
	st, err := b.streamState(ctx, b.topo.Changes.Name)
	if err != nil {
		return measure{}, phaseStats{}, err
	}
	if st.Msgs != uint64(rows) {
		return measure{}, phaseStats{}, fmt.Errorf("the changes stream holds %d messages, want exactly %d", st.Msgs, rows)
	}
	ps, err := b.samplePayloads(ctx, st, 200)
	if err != nil {
		return measure{}, phaseStats{}, err
	}
	m := measure{count: rows, elapsed: elapsed, rate: float64(rows) / elapsed.Seconds()}
	if m.batches, m.batchBusy, err = b.batchStats(); err != nil {
		return measure{}, phaseStats{}, err
	}
	return m, ps, nil
}

// batchStats reads the publisher's metrics: how many atomic batches it
// published and the total time they took from send to acknowledgement.
func (b *natsBus) batchStats() (batches int, busy time.Duration, err error) {
	mfs, err := b.reg.Gather()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the publisher metrics: %w", err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "tributary_bus_published_batches_total":
			for _, m := range mf.GetMetric() {
				batches += int(m.GetCounter().GetValue())
			}
		case "tributary_bus_publish_latency_seconds":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "kind" && l.GetValue() == "batch" {
						busy += time.Duration(m.GetHistogram().GetSampleSum() * float64(time.Second))
					}
				}
			}
		}
	}
	return batches, busy, nil
}

// samplePayloads reads k messages spread over the changes stream and sums
// their payload sizes.
func (b *natsBus) samplePayloads(ctx context.Context, st jetstream.StreamState, k int) (phaseStats, error) {
	s, err := b.js.Stream(ctx, b.topo.Changes.Name)
	if err != nil {
		return phaseStats{}, fmt.Errorf("looking up the changes stream: %w", err)
	}
	var ps phaseStats
	span := st.LastSeq - st.FirstSeq + 1
	for i := 0; i < k; i++ {
		seq := st.FirstSeq + span*uint64(i)/uint64(k)
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return phaseStats{}, fmt.Errorf("reading message %d: %w", seq, err)
		}
		ps.bytes += float64(len(m.Data))
		ps.msgs++
	}
	return ps, nil
}

func closePublisher(p *bus.Publisher) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Close(ctx)
}
