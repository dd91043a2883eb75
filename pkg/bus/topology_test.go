package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// topologyEnv is a server, a bus connection and an inspecting client.
func topologyEnv(t *testing.T) (*bus.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	js, _ := jetstreamFor(t, srv.URL())
	return c, js
}

func streamCfg(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestEnsureTopologyCreatesStreamsWithTheDeclaredLimits: the retention of
// streams.Options reaches the servers' streams.
func TestEnsureTopologyCreatesStreamsWithTheDeclaredLimits(t *testing.T) {
	c, js := topologyEnv(t)
	topo, err := streams.Default("ret", streams.Options{
		Changes:     streams.Limits{MaxAge: time.Hour, MaxBytes: 64 << 20, MaxMsgsPerSubject: 5},
		Results:     streams.Limits{MaxAge: 30 * time.Minute, MaxBytes: 32 << 20},
		DeadLetters: streams.Limits{MaxAge: 2 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		stream         string
		age            time.Duration
		bytes, perSubj int64
	}{
		{topo.Changes.Name, time.Hour, 64 << 20, 5},
		{topo.Results.Name, 30 * time.Minute, 32 << 20, -1},
		{topo.DeadLetters.Name, 2 * time.Hour, -1, -1},
	} {
		cfg := streamCfg(t, js, w.stream)
		if cfg.MaxAge != w.age || cfg.MaxBytes != w.bytes || cfg.MaxMsgsPerSubject != w.perSubj {
			t.Errorf("%s: max age %s, max bytes %d, max msgs per subject %d; want %s, %d, %d",
				w.stream, cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgsPerSubject, w.age, w.bytes, w.perSubj)
		}
	}
}
