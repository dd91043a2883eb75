package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/bus/bustest"
)

// suiteFactory gives every check fresh streams on one shared server.
func suiteFactory(t *testing.T) bustest.Factory {
	srv := natstest.Start(t)
	var n atomic.Int64
	return func(t *testing.T) bustest.Env {
		i := n.Add(1)
		c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		js, _ := jetstreamFor(t, srv.URL())
		e := bustest.Env{
			Conn:              c,
			Stream:            fmt.Sprintf("S%d", i),
			Subject:           fmt.Sprintf("s%d", i),
			DeadLetterStream:  fmt.Sprintf("DLQ%d", i),
			DeadLetterSubject: fmt.Sprintf("dlq%d", i),
		}
		ctx := context.Background()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: e.Stream, Subjects: []string{e.Subject + ".>"}, AllowAtomicPublish: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: e.DeadLetterStream, Subjects: []string{e.DeadLetterSubject + ".>"}}); err != nil {
			t.Fatal(err)
		}
		return e
	}
}

func TestConsumerConformanceOrdered(t *testing.T) {
	bustest.Run(t, suiteFactory(t), bustest.Config{Concurrency: 1, Ordered: true})
}

func TestConsumerConformanceUnordered(t *testing.T) {
	bustest.Run(t, suiteFactory(t), bustest.Config{Concurrency: 1})
}

func TestConsumerConformanceConcurrent(t *testing.T) {
	bustest.Run(t, suiteFactory(t), bustest.Config{Concurrency: 4})
}

func TestConsumePanicIsCounted(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}, AllowAtomicPublish: true})
	e.stream(t, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	if _, err := p.PublishBatch(context.Background(), batch("c.x", 1, 2)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var oks atomic.Int64
	k, err := e.c.Consume(context.Background(), bus.ConsumerOptions{
		Stream: "C", Durable: "w", DeadLetterSubject: "d.w", Registerer: reg,
		BackOff: []time.Duration{10 * time.Millisecond}, FetchWait: 100 * time.Millisecond,
	}, func(_ context.Context, d *bus.Delivery) error {
		if d.ID == "id-1" && d.NumDelivered == 1 {
			panic("boom")
		}
		oks.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "both messages handled", func() bool { return oks.Load() >= 2 })
	if err := k.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := counterValue(t, reg, "tributary_bus_redeliveries_total"); v != 1 {
		t.Fatalf("redeliveries %v, want 1", v)
	}
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "tributary_bus_handled_messages_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" {
						got[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if got["panic"] != 1 || got["ack"] != 2 {
		t.Fatalf("handled by outcome %v, want panic 1, ack 2", got)
	}
}

func TestConsumeValidatesOptions(t *testing.T) {
	e := newEnv(t)
	_, err := e.c.Consume(context.Background(), bus.ConsumerOptions{Durable: "a.b", MaxDeliver: 2,
		BackOff: []time.Duration{time.Second, -time.Second}}, func(context.Context, *bus.Delivery) error { return nil })
	if err == nil {
		t.Fatal("no error for bad options")
	}
	for _, want := range []string{"stream: required", "durable", "deadLetterSubject", "backOff"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	_, err = e.c.Consume(context.Background(), bus.ConsumerOptions{Stream: "NOPE", Durable: "x", DeadLetterSubject: "d.x"},
		func(context.Context, *bus.Delivery) error { return nil })
	if err == nil || !errors.Is(err, bus.ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
}

func TestConsumeDefaultRetryDelaysGrow(t *testing.T) {
	// Without BackOff, retries wait 1s, 2s, 4s, ...
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}, AllowAtomicPublish: true})
	e.stream(t, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	if _, err := p.PublishBatch(context.Background(), batch("c.x", 1, 1)); err != nil {
		t.Fatal(err)
	}
	times := make(chan time.Time, 3)
	k, err := e.c.Consume(context.Background(), bus.ConsumerOptions{
		Stream: "C", Durable: "w", DeadLetterSubject: "d.w", FetchWait: 100 * time.Millisecond,
	}, func(_ context.Context, d *bus.Delivery) error {
		times <- time.Now()
		if d.NumDelivered < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Drain(context.Background())
	var ts []time.Time
	for len(ts) < 3 {
		select {
		case tm := <-times:
			ts = append(ts, tm)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d deliveries", len(ts))
		}
	}
	g1, g2 := ts[1].Sub(ts[0]), ts[2].Sub(ts[1])
	if g1 < 950*time.Millisecond || g1 > 1500*time.Millisecond || g2 < 1950*time.Millisecond || g2 > 2500*time.Millisecond {
		t.Fatalf("gaps %s, %s; want about 1s then 2s", g1, g2)
	}
}
