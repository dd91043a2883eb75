package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// A BatchHandler's result settles exactly what it says: nil all, a
// BatchError the prefix (then dead letter or retry in place from the
// failed message), any other error nothing (the whole batch again).
func TestConsumeBatchesSettleWhatTheHandlerSays(t *testing.T) {
	e := newConsEnv(t)
	const n = 30
	e.put(t, "c.x", 1, n, 0)
	o := consOpts("b")
	o.BatchSize = 8
	var mu sync.Mutex
	var calls [][]string
	var done []string
	failed := map[string]int{} // id -> the number (from 1) of the call that failed on it
	k, err := e.c.ConsumeBatches(context.Background(), o, func(_ context.Context, ds []*bus.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
			if i > 0 && d.StreamSeq <= ds[i-1].StreamSeq {
				return bus.Permanentf("batch out of stream order: %d after %d", d.StreamSeq, ds[i-1].StreamSeq)
			}
		}
		calls = append(calls, ids)
		for i, d := range ds {
			switch {
			case d.ID == "id-3":
				done = append(done, ids[:i]...)
				return &bus.BatchError{Index: i, Err: bus.Permanentf("row %s violates the schema", d.ID)}
			case d.ID == "id-7" && failed[d.ID] == 0:
				failed[d.ID] = len(calls)
				done = append(done, ids[:i]...)
				return &bus.BatchError{Index: i, Err: errors.New("flaky target")}
			case d.ID == "id-12" && failed[d.ID] == 0:
				failed[d.ID] = len(calls)
				return errors.New("the whole transaction failed")
			}
		}
		done = append(done, ids...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Drain(context.Background())
	testwait.Until(t, 20*time.Second, "every message but the dead letter done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) >= n-1
	})
	waitSettled(t, k)
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for i := 1; i <= n; i++ {
		if i != 3 {
			want = append(want, fmt.Sprintf("id-%d", i))
		}
	}
	if strings.Join(done, " ") != strings.Join(want, " ") {
		t.Fatalf("done in this order:\n%v\nwant\n%v", done, want)
	}
	for i, c := range calls {
		if len(c) > o.BatchSize {
			t.Fatalf("call %d got %d messages, BatchSize %d", i, len(c), o.BatchSize)
		}
	}
	// After the retryable BatchError at id-7, the retry starts at id-7;
	// after the plain error, the whole batch comes again.
	at7, at12 := failed["id-7"]-1, failed["id-12"]-1
	if at7 < 0 || at7+1 >= len(calls) || calls[at7+1][0] != "id-7" {
		t.Fatalf("calls %v: after id-7 failed the retry must start at id-7", calls)
	}
	if at12 < 0 || at12+1 >= len(calls) || calls[at12+1][0] != calls[at12][0] {
		t.Fatalf("calls %v: after the whole batch failed it must come again", calls)
	}
	dl, err := e.c.LastMessage(context.Background(), "D", "d.b")
	if err != nil || dl.Header[bus.HeaderDLQMsgID] != "id-3" {
		t.Fatalf("dead letter %v %v, want id-3", dl, err)
	}
}

// While an ordered consumer retries, it reports itself degraded with the
// error and the attempt, and clears that on success.
func TestOrderedRetryIsReported(t *testing.T) {
	e := newConsEnv(t)
	e.put(t, "c.x", 1, 2, 0)
	deg := newDegradations()
	o := consOpts("w")
	o.Ordered = true
	o.Degrade = deg.Degrade
	var calls atomic.Int64
	release := make(chan struct{})
	k := startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
		calls.Add(1)
		select {
		case <-release:
			return nil
		default:
			return errors.New("webhook answered 503")
		}
	})
	testwait.Until(t, 20*time.Second, "the retry is reported", func() bool {
		r := deg.current("w handler")
		return strings.Contains(r, "webhook answered 503") && strings.Contains(r, "attempt 3 failed") && strings.Contains(r, "stream sequence 1")
	})
	close(release)
	waitSettled(t, k)
	if r := deg.current("w handler"); r != "" {
		t.Fatalf("still degraded after success: %s", r)
	}
}

// The lag metrics show what waits: messages not delivered yet, messages
// delivered and not acknowledged, and the age of the oldest of those.
func TestConsumerLagMetrics(t *testing.T) {
	e := newConsEnv(t)
	e.put(t, "c.x", 1, 10, 0)
	reg := prometheus.NewRegistry()
	o := consOpts("w")
	o.Registerer = reg
	o.MaxAckPending = 1
	release := make(chan struct{})
	k := startConsumer(t, e.c, o, func(ctx context.Context, d *bus.Delivery) error {
		if d.ID == "id-1" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	testwait.Until(t, 20*time.Second, "the lag metrics show the stuck message", func() bool {
		return counterValue(t, reg, "tributary_bus_consumer_pending_messages") == 9 &&
			counterValue(t, reg, "tributary_bus_consumer_ack_pending_messages") == 1 &&
			counterValue(t, reg, "tributary_bus_consumer_oldest_unacked_age_seconds") >= 0.2
	})
	close(release)
	waitSettled(t, k)
	testwait.Until(t, 20*time.Second, "the lag metrics go back to zero", func() bool {
		return counterValue(t, reg, "tributary_bus_consumer_pending_messages") == 0 &&
			counterValue(t, reg, "tributary_bus_consumer_ack_pending_messages") == 0 &&
			counterValue(t, reg, "tributary_bus_consumer_oldest_unacked_age_seconds") == 0
	})
}

// BenchmarkConsume measures consuming b.N stored messages with a no-op
// handler: a bare pull-and-ack loop (the limit), an ordered batch consumer,
// an ordered single-message consumer (a reaction) and an unordered consumer
// (which confirms every ack).
func BenchmarkConsume(b *testing.B) {
	for _, mode := range []string{"bare", "batches", "ordered", "unordered"} {
		b.Run(mode, func(b *testing.B) {
			e := newConsEnv(b)
			e.putAsync(b, "c.x", b.N)
			b.ResetTimer()
			start := time.Now()
			switch mode {
			case "bare":
				cons, err := e.js.CreateOrUpdateConsumer(context.Background(), "C", jetstream.ConsumerConfig{Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy})
				if err != nil {
					b.Fatal(err)
				}
				for got := 0; got < b.N; {
					batch, err := cons.Fetch(min(256, b.N-got), jetstream.FetchMaxWait(time.Second))
					if err != nil {
						b.Fatal(err)
					}
					var last jetstream.Msg
					for m := range batch.Messages() {
						if last != nil {
							_ = last.Ack()
						}
						last = m
						got++
					}
					if last != nil {
						if err := last.DoubleAck(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
				}
			default:
				var got atomic.Int64
				o := consOpts("w")
				var k *bus.Consumer
				var err error
				if mode == "batches" {
					k, err = e.c.ConsumeBatches(context.Background(), o, func(_ context.Context, ds []*bus.Delivery) error {
						got.Add(int64(len(ds)))
						return nil
					})
				} else {
					o.Ordered = mode == "ordered"
					k, err = e.c.Consume(context.Background(), o, func(context.Context, *bus.Delivery) error {
						got.Add(1)
						return nil
					})
				}
				if err != nil {
					b.Fatal(err)
				}
				testwait.Until(b, 10*time.Minute, "every message handled", func() bool { return got.Load() >= int64(b.N) })
				if err := k.Drain(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// An ordered consumer that takes over from a process that died holding a
// batch gets that batch first, in order, not behind later messages after
// AckWait.
func TestOrderedConsumerTakesOverInOrder(t *testing.T) {
	e := newConsEnv(t)
	e.put(t, "c.x", 1, 5, 0)
	o := consOpts("w")
	o.Ordered = true
	o.AckWait = 30 * time.Second // far beyond the test: the takeover must not wait for it
	dying := connectBus(t, e.srv.URL())
	release := make(chan struct{})
	started := make(chan struct{})
	abandoned, err := dying.Consume(context.Background(), o, func(ctx context.Context, d *bus.Delivery) error {
		if d.ID == "id-1" {
			close(started)
			<-release // the process dies while handling id-1
		}
		return errors.New("released")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(release)
		abandoned.Drain(context.Background())
	})
	<-started
	testwait.Until(t, 10*time.Second, "the dying consumer holds the whole batch", func() bool {
		return consumerInfo(t, e.js, "C", "w").NumAckPending == 5
	})
	dying.Close(context.Background())
	e.put(t, "c.x", 6, 8, 0)
	var mu sync.Mutex
	var got []string
	k := startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		got = append(got, d.ID)
		mu.Unlock()
		return nil
	})
	testwait.Until(t, 10*time.Second, "every message handled by the new consumer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 8
	})
	waitSettled(t, k)
	mu.Lock()
	defer mu.Unlock()
	if want := "id-1 id-2 id-3 id-4 id-5 id-6 id-7 id-8"; strings.Join(got, " ") != want {
		t.Fatalf("handled %s, want %s", strings.Join(got, " "), want)
	}
}

// A batch handler call that hangs is cut off at HandlerTimeout and retried;
// a panicking one is recovered and retried; neither loses or reorders a
// message.
func TestConsumeBatchesTimeoutAndPanicAreRetried(t *testing.T) {
	e := newConsEnv(t)
	e.put(t, "c.x", 1, 3, 0)
	reg := prometheus.NewRegistry()
	o := consOpts("b")
	o.HandlerTimeout = 100 * time.Millisecond
	o.Registerer = reg
	var calls atomic.Int64
	var hung atomic.Int64
	var mu sync.Mutex
	var done []string
	k, err := e.c.ConsumeBatches(context.Background(), o, func(ctx context.Context, ds []*bus.Delivery) error {
		switch calls.Add(1) {
		case 1:
			start := time.Now()
			<-ctx.Done() // hangs until the timeout
			hung.Store(int64(time.Since(start)))
			return ctx.Err()
		case 2:
			panic("batch handler bug")
		}
		mu.Lock()
		defer mu.Unlock()
		for _, d := range ds {
			done = append(done, d.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Drain(context.Background())
	testwait.Until(t, 20*time.Second, "every message done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) >= 3
	})
	waitSettled(t, k)
	if d := time.Duration(hung.Load()); d < 80*time.Millisecond || d > 3*time.Second {
		t.Fatalf("the hanging call ran %s, want about HandlerTimeout (100ms)", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(done, " "); got != "id-1 id-2 id-3" {
		t.Fatalf("done %s, want id-1 id-2 id-3", got)
	}
	// The outcomes are counted after the server confirmed the acks, so
	// they may trail what the server shows by a moment.
	testwait.Until(t, 10*time.Second, "the retry, the panic and three acks counted", func() bool {
		return counterValue(t, reg, "tributary_bus_handled_messages_total") >= 5
	})
}
