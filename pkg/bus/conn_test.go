package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

func TestConnectEmbeddedNeedsStoreDir(t *testing.T) {
	_, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: bus.Embedded})
	if !errors.Is(err, bus.ErrConfig) {
		t.Fatalf("want ErrConfig for a missing store dir, got %v", err)
	}
}

func TestConnectEmbeddedAppliesTopologyIdempotently(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	c, err := bus.Connect(ctx, bus.ConnectOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	topo, err := streams.Default("trib", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := c.EnsureTopology(ctx, topo); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("store dir not used: %v", err)
	}
}

func TestReconnectIsCountedAndReported(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	reg := prometheus.NewRegistry()
	states := make(chan bus.StatusState, 16)
	c, err := bus.Connect(ctx, bus.ConnectOptions{
		URL:              srv.URL(),
		Registerer:       reg,
		ReconnectWait:    10 * time.Millisecond,
		MaxReconnectWait: 50 * time.Millisecond,
		OnStatus:         func(s bus.Status) { states <- s.State },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	waitState(t, states, bus.StatusConnected)
	srv.Restart()
	waitState(t, states, bus.StatusDisconnected)
	waitState(t, states, bus.StatusReconnected)
	if !c.Connected() {
		t.Fatal("not connected after reconnect")
	}
	if n, _ := testutil.GatherAndCount(reg, "tributary_bus_reconnects_total"); n != 1 {
		t.Fatalf("reconnect metric series: %d", n)
	}
}

func waitState(t *testing.T, ch <-chan bus.StatusState, want bus.StatusState) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case s := <-ch:
			if s == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %s status within 15s", want)
		}
	}
}

func TestTokenEscapesSubjectSyntax(t *testing.T) {
	cases := map[string]string{
		"orders":        "orders",
		"public.orders": "public%2Eorders",
		"a b":           "a%20b",
		"*":             "%2A",
		">":             "%3E",
		"50%":           "50%25",
		"":              "%00",
	}
	for in, want := range cases {
		if got := bus.Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

// A failed embedded start returns the reason and leaves nothing running
// (goleak in TestMain checks the server's goroutines are gone).
func TestConnectEmbeddedFailureCleansUp(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.ConnectOptions{StoreDir: file, ConnectTimeout: 3 * time.Second})
	if err == nil {
		c.Close(ctx)
		t.Fatal("the embedded server started on a store dir that is a file")
	}
	if c != nil {
		t.Fatal("a failed Connect returned a connection")
	}
}
