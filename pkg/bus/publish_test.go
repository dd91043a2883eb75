package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
)

func TestPublisherOptionsAndClose(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, AllowAtomicPublish: true})
	_, err := e.c.NewPublisher(bus.PublisherOptions{Name: "bad", PublishTimeout: -time.Second, RetryWait: time.Second, MaxRetryWait: time.Millisecond})
	if !errors.Is(err, bus.ErrConfig) || !strings.Contains(err.Error(), "publishTimeout -1s") || !strings.Contains(err.Error(), "maxRetryWait 1ms") {
		t.Fatalf("bad options: want ErrConfig naming publishTimeout and maxRetryWait, got %v", err)
	}
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()
	big := batch("p.x", 1, 2)
	big[1].Data = make([]byte, 2<<20)
	if _, err := p.PublishBatch(ctx, big); !errors.Is(err, bus.ErrInvalidMessage) || !strings.Contains(err.Error(), `message 1 (id "id-2")`) {
		t.Fatalf("a message above the server's max payload: want ErrInvalidMessage naming it, got %v", err)
	}
	if _, err := p.PublishBatch(ctx, batch("p.x", 1, 3)); err != nil {
		t.Fatal(err)
	}
	staged, err := p.StageBatch(batch("p.x", 4, 6))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if _, err := p.PublishBatch(ctx, batch("p.x", 7, 7)); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("PublishBatch after Close: want ErrClosed, got %v", err)
	}
	if _, err := p.StageBatch(batch("p.x", 8, 8)); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("StageBatch after Close: want ErrClosed, got %v", err)
	}
	// A batch staged before Close still commits: its first attempt was
	// under way.
	if _, err := staged.Commit(ctx); err != nil {
		t.Fatalf("Commit of a batch staged before Close: %v", err)
	}
	if got := e.storedIDs(t, "P"); !slices.Equal(got, []string{"id-1", "id-2", "id-3", "id-4", "id-5", "id-6"}) {
		t.Fatalf("stored %v", got)
	}
}

// TestPublishBatchSurvivesStreamLeaderLoss: on a 3-node cluster, batches
// published while the stream's leader is killed are all stored once, in
// order.
func TestPublishBatchSurvivesStreamLeaderLoss(t *testing.T) {
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
	p, err := c.NewPublisher(bus.PublisherOptions{PublishTimeout: 500 * time.Millisecond, RetryWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	const batches, per = 40, 25
	acked := make(chan int, batches)
	errc := make(chan error, 1)
	go func() {
		for b := range batches {
			if _, err := p.PublishBatch(ctx, batch("r3.x", b*per+1, b*per+per)); err != nil {
				errc <- fmt.Errorf("batch %d: %w", b, err)
				return
			}
			acked <- b
		}
		errc <- nil
	}()
	for range 8 {
		select {
		case <-acked:
		case err := <-errc:
			t.Fatalf("the writer ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("no progress")
		}
	}
	cl.Kill(leader)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 1; i <= batches*per; i++ {
		want = append(want, fmt.Sprintf("id-%d", i))
	}
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		got = append(got, m.Header.Get(jetstream.MsgIDHeader))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stored %d messages, want ids 1..%d once and in order:\n%v", len(got), batches*per, got)
	}
	if l := cl.StreamLeader("R3"); l == leader || l < 0 {
		t.Fatalf("stream leader %d after killing %d", l, leader)
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
