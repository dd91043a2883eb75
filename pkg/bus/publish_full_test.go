package bus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// TestFullStreamPausesTheWriterAndLosesNothing: a stream at its MaxBytes
// refuses new batches instead of dropping old messages; the writer keeps
// re-sending, Stalled and the metric say which stream is full, and after
// an operator's purge the writer resumes by itself. Every message is
// stored exactly once, in order.
func TestFullStreamPausesTheWriterAndLosesNothing(t *testing.T) {
	const maxBytes = 16 << 10
	e := newEnv(t)
	topo, err := streams.Default("full", streams.Options{Changes: streams.Limits{MaxBytes: maxBytes}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(context.Background(), topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != maxBytes {
		t.Fatalf("stream declared with discard %v max bytes %d, want discard new %d", cfg.Discard, cfg.MaxBytes, maxBytes)
	}
	// 16 KiB hold about 70 of these messages: the writer fills the stream,
	// and after one purge the rest fits.
	fillPurgeResume(t, e, topo, 12, 100, false, func(err error) {
		var full *bus.StreamFullError
		if !errors.As(err, &full) || full.Stream != topo.Changes.Name || full.MaxBytes != maxBytes {
			t.Fatalf("Stalled() = %v, want a StreamFullError naming %s and %d", err, topo.Changes.Name, maxBytes)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("stream %s is full (maxBytes %d", topo.Changes.Name, maxBytes)) {
			t.Fatalf("reason %q does not say which stream is full", msg)
		}
	})
}

// TestExhaustedStorageIsRetriedLikeAFullStream: a stream without MaxBytes
// on a server whose JetStream storage is used up (error 10023) pauses the
// writer the same way, instead of failing it, and nothing is lost or
// stored twice.
func TestExhaustedStorageIsRetriedLikeAFullStream(t *testing.T) {
	e := newEnv(t, natstest.Options{Configure: func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 }})
	topo, err := streams.Default("store", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	// 1 MiB holds about 900 of these messages. Out of storage, nats-server
	// 2.15 may store part of the refused atomic batch (seen: 8 of 10); the
	// writer's re-send completes it, each message once (deduplicated by
	// its id).
	fillPurgeResume(t, e, topo, 120, 1000, true, func(err error) {
		if msg := err.Error(); !strings.Contains(msg, "JetStream storage is exhausted") {
			t.Fatalf("reason %q does not say that storage is exhausted", msg)
		}
	})
}

// TestAccountStorageLimitIsRetriedLikeAFullStream: an account at its
// JetStream storage limit answers 10002 (a 400, which would otherwise be a
// permanent rejection); the writer pauses and resumes the same way. As with
// the server's storage, the refused batch may be partly stored.
func TestAccountStorageLimitIsRetriedLikeAFullStream(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "accounts.conf")
	if err := os.WriteFile(conf, []byte(`accounts: { A: { jetstream: { max_file: 1MB, max_mem: 1MB }, users: [ {user: u, password: p} ] } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) { o.Accounts, o.Users = parsed.Accounts, parsed.Users }})
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: srv.URL(), User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	js, _ := jetstreamFor(t, strings.Replace(srv.URL(), "nats://", "nats://u:p@", 1))
	e := &env{srv: srv, c: c, js: js}
	topo, err := streams.Default("acct", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	fillPurgeResume(t, e, topo, 120, 1000, true, func(err error) {
		if msg := err.Error(); !strings.Contains(msg, "JetStream storage is exhausted") || !strings.Contains(msg, "10002") {
			t.Fatalf("reason %q does not say that the account's storage is exhausted", msg)
		}
	})
}

// fillPurgeResume publishes batches of 10 messages of size bytes to the
// changes stream of topo until the stream refuses them, checks the pause
// (checkReason gets Stalled's error), purges the stream and checks that the
// writer resumes and that every message was stored once, in order. With
// partialOK the refused batch may be partly stored (see the caller).
func fillPurgeResume(t *testing.T, e *env, topo streams.Topology, batches, size int, partialOK bool, checkReason func(error)) {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	p := e.publisher(t, bus.PublisherOptions{Name: "writer", Registerer: reg, PublishTimeout: time.Second, RetryWait: 5 * time.Millisecond, MaxRetryWait: 20 * time.Millisecond})
	const per = 10
	msgs := make([][]bus.Message, batches)
	var want []string
	for b := range msgs {
		for i := range per {
			n := b*per + i
			id := fmt.Sprintf("m-%04d", n)
			msgs[b] = append(msgs[b], bus.Message{
				Subject: topo.ChangeSubject("src", "t", fmt.Sprint(n)),
				ID:      id,
				Data:    []byte(strings.Repeat("x", size)),
			})
			want = append(want, id)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	acked := make(chan int, batches)
	go func() {
		for b := range msgs {
			if _, err := p.PublishBatch(wctx, msgs[b]); err != nil {
				done <- fmt.Errorf("batch %d: %w", b, err)
				return
			}
			acked <- b
		}
		done <- nil
	}()

	testwait.Until(t, 20*time.Second, "the writer to report the full stream", func() bool {
		return errors.Is(p.Stalled(), bus.ErrStreamFull)
	})
	checkReason(p.Stalled())
	if got := counterValue(t, reg, "tributary_bus_publish_stream_full"); got != 1 {
		t.Fatalf("tributary_bus_publish_stream_full = %v, want 1", got)
	}
	// Paused: several re-sends are refused while the stream holds exactly
	// the acknowledged batches, the oldest message included.
	retries := counterValue(t, reg, "tributary_bus_publish_retries_total")
	testwait.Until(t, 20*time.Second, "more refused re-sends", func() bool {
		return counterValue(t, reg, "tributary_bus_publish_retries_total") >= retries+3
	})
	before := e.storedIDs(t, topo.Changes.Name)
	n := len(acked)
	stored := n * per
	if partialOK {
		stored = min(max(len(before), stored), stored+per-1)
	}
	if len(before) == 0 || len(before) != stored || !slices.Equal(before, want[:stored]) {
		t.Fatalf("while full the stream holds %d messages, want the %d of the %d acknowledged batches in order", len(before), n*per, n)
	}
	select {
	case err := <-done:
		t.Fatalf("the writer ended while the stream was full: %v", err)
	default:
	}

	// The operator frees space; the writer resumes by itself.
	s, err := e.js.Stream(ctx, topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the writer did not resume after the purge; Stalled() = %v", p.Stalled())
	}
	if err := p.Stalled(); err != nil {
		t.Fatalf("Stalled() after resuming = %v", err)
	}
	if got := counterValue(t, reg, "tributary_bus_publish_stream_full"); got != 0 {
		t.Fatalf("tributary_bus_publish_stream_full = %v after resuming, want 0", got)
	}
	got := append(before, e.storedIDs(t, topo.Changes.Name)...)
	if !slices.Equal(got, want) {
		t.Fatalf("stored %d messages before and after the purge, want every one of the %d once, in order", len(got), len(want))
	}
}
