package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
)

func msg(subject string, i int) bus.Message {
	return bus.Message{Subject: subject, ID: fmt.Sprintf("id-%d", i), Data: []byte(fmt.Sprintf("payload %d", i))}
}

func TestPublishInterruptedByDisconnectIsStoredOnce(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}})
	reg := prometheus.NewRegistry()
	p := e.publisher(t, bus.PublisherOptions{
		MaxPending:     200,
		PublishTimeout: 300 * time.Millisecond,
		RetryWait:      20 * time.Millisecond,
		MaxRetryWait:   200 * time.Millisecond,
		Registerer:     reg,
	})
	const n = 3000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if err := p.Publish(ctx, uint64(i), msg(fmt.Sprintf("p.k%d", i%7), i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	// Wait until publishing is under way, then take the server away for
	// longer than the publish timeout while messages are in flight.
	var seen []uint64
	for p.AckedThrough() < 500 {
		select {
		case <-p.Acked():
			seen = append(seen, p.AckedThrough())
		case err := <-errc:
			t.Fatalf("publishing ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("no progress")
		}
	}
	e.srv.RestartAfter(time.Second)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.AckedThrough(); got != n {
		t.Fatalf("AckedThrough %d after Close, want %d", got, n)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("AckedThrough went backwards: %v", seen)
		}
	}
	got := e.ids(t, "P")
	if len(got) != n {
		t.Fatalf("stream holds %d ids, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("id %s stored %d times", id, c)
		}
	}
	if r := counterValue(t, reg, "tributary_bus_publish_retries_total"); r == 0 {
		t.Fatal("nothing was re-sent: the outage did not interrupt publishing")
	}
	if v := counterValue(t, reg, "tributary_bus_published_messages_total"); v != n {
		t.Fatalf("published metric %v, want %d", v, n)
	}
	if v := counterValue(t, reg, "tributary_bus_publish_in_flight"); v != 0 {
		t.Fatalf("in-flight gauge %v after Close", v)
	}
}

func TestPublishKeepsOrderPerSubjectAcrossResends(t *testing.T) {
	// Re-sends go out in position order: the stream's order of the messages
	// of one subject is their position order even after an outage.
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}})
	p := e.publisher(t, bus.PublisherOptions{MaxPending: 100, PublishTimeout: 200 * time.Millisecond, RetryWait: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 1000
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if err := p.Publish(ctx, uint64(i), msg("p.one", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for p.AckedThrough() < 100 {
		select {
		case <-p.Acked():
		case <-ctx.Done():
			t.Fatal("no progress")
		}
	}
	e.srv.RestartAfter(500 * time.Millisecond)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(ctx, "P")
	if err != nil {
		t.Fatal(err)
	}
	prev := 0
	for seq := uint64(1); seq <= n; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		var i int
		fmt.Sscanf(m.Header.Get(jetstream.MsgIDHeader), "id-%d", &i)
		if i != prev+1 {
			t.Fatalf("seq %d holds message %d after %d", seq, i, prev)
		}
		prev = i
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()
	if err := p.Publish(ctx, 0, msg("p.x", 1)); !errors.Is(err, bus.ErrPositionOrder) {
		t.Fatalf("position 0: want ErrPositionOrder, got %v", err)
	}
	if err := p.Publish(ctx, 5, msg("p.x", 5)); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, 5, msg("p.x", 6)); !errors.Is(err, bus.ErrPositionOrder) {
		t.Fatalf("repeated position: want ErrPositionOrder, got %v", err)
	}
	if err := p.Publish(ctx, 6, bus.Message{Subject: "p.>", ID: "x"}); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("wildcard subject: want ErrInvalidMessage, got %v", err)
	}
	big := msg("p.x", 7)
	big.Data = make([]byte, 2<<20)
	if err := p.Publish(ctx, 7, big); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("payload above max: want ErrInvalidMessage, got %v", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if p.AckedThrough() != 5 {
		t.Fatalf("AckedThrough %d, want 5", p.AckedThrough())
	}
	if err := p.Publish(ctx, 8, msg("p.x", 8)); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("after Close: want ErrClosed, got %v", err)
	}
	if _, err := e.c.NewPublisher(bus.PublisherOptions{MaxPending: -1}); !errors.Is(err, bus.ErrConfig) {
		t.Fatalf("bad options: want ErrConfig, got %v", err)
	}
}

func TestPublishPermanentRejectionStopsThePublisher(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, MaxMsgSize: 128})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Publish(ctx, 1, msg("p.x", 1)); err != nil {
		t.Fatal(err)
	}
	big := msg("p.x", 2)
	big.Data = []byte(strings.Repeat("x", 1000))
	if err := p.Publish(ctx, 2, big); err != nil {
		t.Fatal(err)
	}
	err := p.Close(ctx)
	if !errors.Is(err, bus.ErrPublisherFailed) || !errors.Is(err, bus.ErrRejected) || !strings.Contains(err.Error(), "id-2") {
		t.Fatalf("Close: want ErrPublisherFailed/ErrRejected naming id-2, got %v", err)
	}
	if p.AckedThrough() != 1 {
		t.Fatalf("AckedThrough %d, want 1", p.AckedThrough())
	}
	if err := p.Publish(ctx, 3, msg("p.x", 3)); !errors.Is(err, bus.ErrPublisherFailed) {
		t.Fatalf("after failure: want ErrPublisherFailed, got %v", err)
	}
}

func TestPublishSurvivesStreamLeaderLoss(t *testing.T) {
	cl := natstest.StartCluster(t)
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{
		URL: cl.URLs(), ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	js, _ := jetstreamFor(t, cl.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, AllowAtomicPublish: true}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitForStreamLeader("R3")
	p, err := c.NewPublisher(bus.PublisherOptions{MaxPending: 100, PublishTimeout: 500 * time.Millisecond, RetryWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if err := p.Publish(ctx, uint64(i), msg("r3.x", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for p.AckedThrough() < 200 {
		select {
		case <-p.Acked():
		case <-ctx.Done():
			t.Fatal("no progress")
		}
	}
	cl.Kill(leader)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if p.AckedThrough() != n {
		t.Fatalf("AckedThrough %d, want %d", p.AckedThrough(), n)
	}
	// An atomic batch after the failover, re-sent once: stored once.
	for range 2 {
		if _, err := publisherFor(t, c).PublishBatch(ctx, batch("r3.b", n+1, n+50)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != n+50 {
		t.Fatalf("stream holds %d messages, want %d", got, n+50)
	}
	if l := cl.StreamLeader("R3"); l == leader || l < 0 {
		t.Fatalf("stream leader %d after killing %d", l, leader)
	}
}

func publisherFor(t *testing.T, c *bus.Conn) *bus.Publisher {
	t.Helper()
	p, err := c.NewPublisher(bus.PublisherOptions{PublishTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func TestPublishBlocksAtMaxPending(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}})
	p := e.publisher(t, bus.PublisherOptions{MaxPending: 2, PublishTimeout: 100 * time.Millisecond, RetryWait: 10 * time.Millisecond})
	e.srv.Shutdown() // nothing will be acknowledged
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if err := p.Publish(ctx, uint64(i), msg("p.x", i)); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := p.Publish(short, 3, msg("p.x", 3)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third publish with MaxPending 2: want to block until the deadline, got %v", err)
	}
	closeCtx, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	err := p.Close(closeCtx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 messages left unacknowledged") {
		t.Fatalf("Close with the server down: %v", err)
	}
	if p.AckedThrough() != 0 {
		t.Fatalf("AckedThrough %d with the server down", p.AckedThrough())
	}
	if again := p.Close(ctx); again != err {
		t.Fatalf("second Close: %v, want the first result", again)
	}
}

func benchEnv(b *testing.B, sync bool) (*bus.Conn, func()) {
	b.Helper()
	srv := natstest.Start(b, natstest.Options{SyncAlways: sync})
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, AllowAtomicPublish: true}); err != nil {
		b.Fatal(err)
	}
	return c, func() { c.Close(context.Background()) }
}

// BenchmarkPublish measures the pipelined publisher (fsync every write).
func BenchmarkPublish(b *testing.B) {
	c, done := benchEnv(b, true)
	defer done()
	p, err := c.NewPublisher(bus.PublisherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if err := p.Publish(ctx, uint64(i), msg(fmt.Sprintf("p.k%d", i%100), i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkPublishBatch measures atomic batches of 500 (fsync every batch).
func BenchmarkPublishBatch(b *testing.B) {
	c, done := benchEnv(b, true)
	defer done()
	p, err := c.NewPublisher(bus.PublisherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	const size = 500
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.PublishBatch(context.Background(), batch("p.x", i*size+1, i*size+size)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msg/s")
}
