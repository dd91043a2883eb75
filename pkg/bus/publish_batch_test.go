package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
)

// env is one test server, a bus connection to it and an independent
// JetStream client to inspect it.
type env struct {
	srv *natstest.Server
	c   *bus.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T, o ...natstest.Options) *env {
	t.Helper()
	srv := natstest.Start(t, o...)
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{
		URL:              srv.URL(),
		ReconnectWait:    20 * time.Millisecond,
		MaxReconnectWait: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	js, _ := jetstreamFor(t, srv.URL())
	return &env{srv: srv, c: c, js: js}
}

func (e *env) stream(t *testing.T, cfg jetstream.StreamConfig) {
	t.Helper()
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	if _, err := e.js.CreateStream(context.Background(), cfg); err != nil {
		t.Fatalf("creating stream %s: %v", cfg.Name, err)
	}
}

func (e *env) publisher(t *testing.T, o bus.PublisherOptions) *bus.Publisher {
	t.Helper()
	p, err := e.c.NewPublisher(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// ids returns how often each Nats-Msg-Id is stored in stream.
func (e *env) ids(t *testing.T, stream string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, id := range e.storedIDs(t, stream) {
		got[id]++
	}
	return got
}

func batch(subject string, from, to int) []bus.Message {
	var msgs []bus.Message
	for i := from; i <= to; i++ {
		msgs = append(msgs, bus.Message{
			Subject: subject,
			ID:      fmt.Sprintf("id-%d", i),
			Data:    []byte(fmt.Sprintf("payload %d", i)),
			Header:  map[string]string{"Position": fmt.Sprint(i)},
		})
	}
	return msgs
}

func TestPublishBatchResendIsStoredOnce(t *testing.T) {
	e := newEnv(t, natstest.Options{SyncAlways: true})
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()

	ack, err := p.PublishBatch(ctx, batch("b.x", 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != "B" || ack.Sequence != 10 || ack.Count != 10 || ack.Duplicate {
		t.Fatalf("first ack %+v", ack)
	}
	// The identical re-send (an acknowledgement lost, a restart) succeeds
	// and stores nothing.
	ack, err = p.PublishBatch(ctx, batch("b.x", 1, 10))
	if err != nil {
		t.Fatalf("re-send: %v", err)
	}
	if ack.Sequence != 10 || !ack.Duplicate {
		t.Fatalf("re-send ack %+v, want sequence 10 and duplicate", ack)
	}
	// A regrouped batch, partly stored before, stores exactly the rest.
	ack, err = p.PublishBatch(ctx, batch("b.y", 6, 15))
	if err != nil {
		t.Fatalf("overlapping batch: %v", err)
	}
	if ack.Sequence != 15 || ack.Duplicate {
		t.Fatalf("overlapping ack %+v, want sequence 15, not duplicate", ack)
	}
	got := e.ids(t, "B")
	if len(got) != 15 {
		t.Fatalf("stream holds %d ids, want 15: %v", len(got), got)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("id %s stored %d times", id, n)
		}
	}
}

func TestPublishBatchFailedOnServerStoresNothing(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true, MaxMsgSize: 256})
	p := e.publisher(t, bus.PublisherOptions{})
	msgs := batch("b.x", 1, 5)
	msgs[3].Data = []byte(strings.Repeat("x", 1000)) // above the stream's MaxMsgSize
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.PublishBatch(ctx, msgs)
	if !errors.Is(err, bus.ErrRejected) {
		t.Fatalf("want ErrRejected, got %v", err)
	}
	if got := e.ids(t, "B"); len(got) != 0 {
		t.Fatalf("a failed atomic batch stored %v", got)
	}
	// The stream still takes the good messages.
	if _, err := p.PublishBatch(ctx, batch("b.x", 1, 5)); err != nil {
		t.Fatal(err)
	}
}

func TestPublishBatchPermanentErrorsAreNotRetried(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "NOATOMIC", Subjects: []string{"n.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := p.PublishBatch(ctx, batch("n.x", 1, 3))
	if !errors.Is(err, bus.ErrRejected) || !strings.Contains(err.Error(), "atomic publish is disabled") {
		t.Fatalf("want ErrRejected naming atomic publish disabled, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("permanent error took %s: retried?", d)
	}
}

func TestPublishBatchValidates(t *testing.T) {
	e := newEnv(t)
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()
	dup := batch("b.x", 1, 3)
	dup[2].ID = dup[0].ID
	cases := map[string][]bus.Message{
		"empty":        nil,
		"too large":    batch("b.x", 1, p.MaxBatch()+1),
		"duplicate id": dup,
		"no id":        {{Subject: "b.x", Data: []byte("x")}},
		"wildcard":     {{Subject: "b.*", ID: "1"}},
		"reserved hdr": {{Subject: "b.x", ID: "1", Header: map[string]string{"Nats-Rollup": "all"}}},
	}
	for name, msgs := range cases {
		if _, err := p.PublishBatch(ctx, msgs); !errors.Is(err, bus.ErrInvalidMessage) {
			t.Errorf("%s: want ErrInvalidMessage, got %v", name, err)
		}
	}
}

func TestPublishBatchRetriesUntilServerReturns(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	reg := prometheus.NewRegistry()
	p := e.publisher(t, bus.PublisherOptions{PublishTimeout: 300 * time.Millisecond, RetryWait: 20 * time.Millisecond, Registerer: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan struct{})
	done := make(chan error, 1)
	restarted := make(chan struct{})
	// Batches published before, during and after a server restart all end
	// up stored exactly once.
	n := 0
	go func() {
		after := 0
		for after < 3 {
			ack, err := p.PublishBatch(ctx, batch("b.x", n*50+1, n*50+50))
			if err != nil {
				done <- err
				return
			}
			if ack.Count != 50 {
				done <- fmt.Errorf("ack %+v", ack)
				return
			}
			if n++; n == 1 {
				close(first)
			}
			select {
			case <-restarted:
				after++
			default:
			}
		}
		done <- nil
	}()
	<-first
	e.srv.RestartAfter(time.Second) // longer than PublishTimeout
	close(restarted)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := e.ids(t, "B")
	if len(got) != n*50 {
		t.Fatalf("stream holds %d ids, want %d", len(got), n*50)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("id %s stored %d times", id, c)
		}
	}
	if r := counterValue(t, reg, "tributary_bus_publish_retries_total"); r == 0 {
		t.Fatalf("no batch was re-sent: the restart did not interrupt publishing")
	}
}

// counterValue sums a counter family in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

func TestLastMessage(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()

	if _, err := e.c.LastMessage(ctx, "B", "b.src1.>"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("empty stream: want ErrNotFound, got %v", err)
	}
	if _, err := e.c.LastMessage(ctx, "NOPE", "b.>"); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Fatalf("missing stream: want ErrStreamNotFound, got %v", err)
	}
	if _, err := p.PublishBatch(ctx, batch("b.src1.t.k1", 1, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(ctx, batch("b.src2.t.k1", 4, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(ctx, batch("b.src1.u.k9", 6, 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(ctx, batch("b.src2.t.k2", 7, 7)); err != nil {
		t.Fatal(err)
	}
	m, err := e.c.LastMessage(ctx, "B", "b.src1.>")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "id-6" || m.Sequence != 6 || m.Subject != "b.src1.u.k9" || string(m.Data) != "payload 6" ||
		m.Header["Position"] != "6" || m.Stream != "B" || m.Time.IsZero() {
		t.Fatalf("last of b.src1.>: %+v", m)
	}
	m, err = e.c.LastMessage(ctx, "B", "b.src2.t.k1")
	if err != nil || m.ID != "id-5" {
		t.Fatalf("last of b.src2.t.k1: %+v, %v", m, err)
	}
}
