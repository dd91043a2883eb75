package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	ctx := context.Background()
	topo, err := streams.Default("full", streams.Options{Changes: streams.Limits{MaxBytes: maxBytes}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.EnsureTopology(ctx, topo); err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(ctx, topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != maxBytes {
		t.Fatalf("stream declared with discard %v max bytes %d, want discard new %d", cfg.Discard, cfg.MaxBytes, maxBytes)
	}

	reg := prometheus.NewRegistry()
	p := e.publisher(t, bus.PublisherOptions{Name: "writer", Registerer: reg, RetryWait: 5 * time.Millisecond, MaxRetryWait: 20 * time.Millisecond})
	// 16 KiB hold about 70 of these messages: the writer fills the stream,
	// and after one purge the rest fits.
	const batches, per = 12, 10
	msgs := make([][]bus.Message, batches)
	var want []string
	for b := range msgs {
		for i := range per {
			n := b*per + i
			id := fmt.Sprintf("m-%03d", n)
			msgs[b] = append(msgs[b], bus.Message{
				Subject: topo.ChangeSubject("src", "t", fmt.Sprint(n)),
				ID:      id,
				Data:    []byte(strings.Repeat("x", 100)),
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
	var full *bus.StreamFullError
	if !errors.As(p.Stalled(), &full) || full.Stream != topo.Changes.Name || full.MaxBytes != maxBytes {
		t.Fatalf("Stalled() = %v, want a StreamFullError naming %s and %d", p.Stalled(), topo.Changes.Name, maxBytes)
	}
	if msg := p.Stalled().Error(); !strings.Contains(msg, fmt.Sprintf("stream %s is full (maxBytes %d", topo.Changes.Name, maxBytes)) {
		t.Fatalf("reason %q does not say which stream is full", msg)
	}
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
	if n := len(acked); len(before) != n*per || len(before) == 0 || before[0] != want[0] {
		t.Fatalf("while full the stream holds %d messages (first %v), want the %d of the %d acknowledged batches", len(before), before, n*per, n)
	}
	select {
	case err := <-done:
		t.Fatalf("the writer ended while the stream was full: %v", err)
	default:
	}

	// The operator frees space; the writer resumes by itself.
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
		t.Fatalf("stored before and after the purge:\n%v\nwant every message once, in order:\n%v", got, want)
	}
}
