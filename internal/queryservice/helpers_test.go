package queryservice_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/internal/queryservice/querytest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

const leaseTTL = 2 * time.Second

// fixture is one NATS server with Tributary's topology, a bus connection
// for the services and a publisher that plays another producer.
type fixture struct {
	srv    *natstest.Server
	conn   *bus.Conn
	topo   streams.Topology
	store  *lifecycle.Store
	leases *bus.KV
	pub    *bus.Publisher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL(), ReconnectWait: 50 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	topo, err := streams.Default("tributary", streams.Options{LeaseTTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	topo.Consumers.BackOff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}
	if err := conn.EnsureTopology(ctx, topo); err != nil {
		t.Fatal(err)
	}
	states, err := conn.KV(ctx, topo.Lifecycle.Name)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := conn.KV(ctx, topo.Leases.Name)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := conn.NewPublisher(bus.PublisherOptions{Name: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	return &fixture{srv: srv, conn: conn, topo: topo, store: lifecycle.NewStore(states, nil), leases: leases, pub: pub}
}

// query is a query under test with its source ids.
type query struct {
	spec    engine.QuerySpec
	sources []string
}

// service is one query's component in one (simulated) process.
type service struct {
	comp *lifecycle.Component
	reg  *prometheus.Registry
}

// start runs q as instance in a component of its own and waits until its
// start returned; stop it with stop (Cleanup does too).
func (f *fixture) start(t *testing.T, q query, instance string) *service {
	t.Helper()
	reg := prometheus.NewRegistry()
	comp, err := lifecycle.NewComponent(lifecycle.Config{
		Kind: "query", ID: q.spec.ID, Instance: instance,
		Store: f.store, Leases: f.leases, LeaseTTL: leaseTTL, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := queryservice.New(queryservice.Config{
		Spec: q.spec, Sources: q.sources, Bus: f.conn, Topology: f.topo, Component: comp,
		Registerer: reg, StopTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	comp.AddStep("query", qs.Step)
	if err := comp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &service{comp: comp, reg: reg}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *service) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.comp.Stop(ctx); err != nil {
		t.Errorf("stopping %s: %v", s.comp.ID(), err)
	}
}

// waitRunning waits until the query consumes live (its bootstrap is done).
func (s *service) waitRunning(t *testing.T) {
	t.Helper()
	testwait.Until(t, 60*time.Second, "the query consumes live", func() bool { return s.comp.Ready() == nil })
}

func newWorkload(seed uint64, source string) *querytest.Workload {
	return querytest.NewWorkload(seed, source)
}

func (f *fixture) message(t *testing.T, env *change.Envelope) bus.Message {
	return querytest.Message(t, f.topo, env)
}

func (f *fixture) publish(t *testing.T, msgs []bus.Message) uint64 {
	return querytest.Publish(t, f.pub, msgs)
}

func (f *fixture) changes(t *testing.T, w *querytest.Workload, n int) []bus.Message {
	return w.Changes(t, f.topo, n)
}

func reference(t *testing.T, spec engine.QuerySpec, msgs []bus.Message) []string {
	return querytest.Reference(t, spec, msgs)
}

func canonical(t *testing.T, rows []change.Row) []string { return querytest.Canonical(t, rows) }

func (f *fixture) fold(t *testing.T, id string) querytest.Folded {
	return querytest.Fold(t, f.conn, f.topo, id)
}

func (f *fixture) waitFolded(t *testing.T, id string, want []string) querytest.Folded {
	return querytest.WaitFolded(t, f.conn, f.topo, id, want, 90*time.Second)
}

func (f *fixture) waitFoldedWithin(t *testing.T, id string, want []string, within time.Duration) querytest.Folded {
	return querytest.WaitFolded(t, f.conn, f.topo, id, want, within)
}
