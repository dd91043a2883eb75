package bus_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// seqRecorder records the stream sequences a handler was given.
type seqRecorder struct {
	mu   sync.Mutex
	seqs []uint64
}

func (r *seqRecorder) handle(_ context.Context, d *bus.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs = append(r.seqs, d.StreamSeq)
	return nil
}

func (r *seqRecorder) get() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs)
}

// A new durable starts at StartSeq; declaring it again with another
// StartSeq neither fails nor moves it: its ack floor decides.
func TestConsumeStartSeqOnlyForANewDurable(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}, AllowAtomicPublish: true})
	e.stream(t, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()
	if _, err := p.PublishBatch(ctx, batch("c.x", 1, 5)); err != nil {
		t.Fatal(err)
	}
	opts := bus.ConsumerOptions{
		Stream: "C", Durable: "w", DeadLetterSubject: "d.w", StartSeq: 4,
		Ordered: true, FetchWait: 100 * time.Millisecond,
	}
	var first seqRecorder
	k, err := e.c.Consume(ctx, opts, first.handle)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "sequences 4 and 5 handled", func() bool { return len(first.get()) >= 2 })
	if err := k.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := first.get(); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("new durable at StartSeq 4 handled %v, want [4 5]", got)
	}

	if _, err := p.PublishBatch(ctx, batch("c.x", 6, 6)); err != nil {
		t.Fatal(err)
	}
	opts.StartSeq = 1
	var second seqRecorder
	k, err = e.c.Consume(ctx, opts, second.handle)
	if err != nil {
		t.Fatalf("declaring the existing durable with another StartSeq: %v", err)
	}
	testwait.Until(t, 10*time.Second, "sequence 6 handled", func() bool { return len(second.get()) >= 1 })
	if err := k.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := second.get(); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("existing durable declared with StartSeq 1 handled %v, want [6]", got)
	}
	c, err := e.js.Consumer(ctx, "C", "w")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := c.CachedInfo().Config; cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq != 4 {
		t.Fatalf("durable's deliver policy %s at %d, want by start sequence at 4", cfg.DeliverPolicy, cfg.OptStartSeq)
	}
}

// PublishDeadLetter stores a dead letter with a consumer's headers, once
// however often it is called for the same message.
func TestPublishDeadLetterByHand(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}, AllowAtomicPublish: true})
	e.stream(t, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()
	if _, err := p.PublishBatch(ctx, batch("c.x", 1, 2)); err != nil {
		t.Fatal(err)
	}
	var ds []*bus.Delivery
	if _, err := e.c.Replay(ctx, bus.ReplayOptions{Stream: "C"}, func(d *bus.Delivery) error {
		ds = append(ds, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := ds[1]
	if err := e.c.PublishDeadLetter(ctx, "d.w", d, "by hand"); err == nil {
		t.Fatal("a delivery without a consumer name was dead-lettered")
	}
	d.Consumer = "w"
	for range 2 {
		if err := e.c.PublishDeadLetter(ctx, "d.w", d, "bad\nthing"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.storedIDs(t, "D"); !slices.Equal(got, []string{"dlq.C.w.2"}) {
		t.Fatalf("dead-letter stream holds %v, want one dead letter with id dlq.C.w.2", got)
	}
	m, err := e.c.LastMessage(ctx, "D", "d.w")
	if err != nil {
		t.Fatal(err)
	}
	dl, err := bus.ParseDeadLetter(m)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Reason != "bad thing" || dl.Subject != "c.x" || dl.Stream != "C" || dl.Consumer != "w" || dl.Sequence != 2 || dl.MsgID != "id-2" || string(dl.Data) != "payload 2" {
		t.Fatalf("dead letter %+v", dl)
	}
}
