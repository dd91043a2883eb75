package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// leaseTTL is the lease bucket's TTL in these tests.
const leaseTTL = 2 * time.Second

type fixture struct {
	srv    *natstest.Server
	conn   *bus.Conn
	topo   streams.Topology
	store  *lifecycle.Store
	leases *bus.KV
	states *bus.KV
}

func connectTopology(ctx context.Context, url string) (*bus.Conn, streams.Topology, error) {
	c, err := bus.Connect(ctx, bus.ConnectOptions{URL: url, ReconnectWait: 50 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		return nil, streams.Topology{}, err
	}
	topo, err := streams.Default("lc", streams.Options{LeaseTTL: leaseTTL})
	if err == nil {
		err = c.EnsureTopology(ctx, topo)
	}
	if err != nil {
		c.Close(ctx)
		return nil, streams.Topology{}, err
	}
	return c, topo, nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	c, topo, err := connectTopology(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	f := &fixture{srv: srv, conn: c, topo: topo}
	if f.states, err = c.KV(ctx, topo.Lifecycle.Name); err != nil {
		t.Fatal(err)
	}
	if f.leases, err = c.KV(ctx, topo.Leases.Name); err != nil {
		t.Fatal(err)
	}
	f.store = lifecycle.NewStore(f.states, nil)
	return f
}

func (f *fixture) component(t *testing.T, kind, id string, mod ...func(*lifecycle.Config)) *lifecycle.Component {
	t.Helper()
	cfg := lifecycle.Config{
		Kind: kind, ID: id, Store: f.store, Leases: f.leases, LeaseTTL: leaseTTL,
		Supervisor: lifecycle.SupervisorConfig{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := lifecycle.NewComponent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cleanup: stopping %s: %v", c.ID(), err)
		}
	})
	return c
}

func (f *fixture) state(t *testing.T, id lifecycle.ComponentID) lifecycle.Record {
	t.Helper()
	r, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
