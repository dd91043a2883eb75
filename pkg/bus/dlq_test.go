package bus_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/pkg/bus"
)

// The dead-letter reading and deleting functions: list in order with the
// headers parsed, get by sequence on the right subject only, delete and
// purge one consumer's dead letters, each failure wrapping its sentinel.
func TestDeadLetterListGetDeletePurge(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}})
	ctx := t.Context()
	put := func(subject, reason string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte(`{"query":"q1"}`)
		m.Header.Set(bus.HeaderDLQReason, reason)
		m.Header.Set(bus.HeaderDLQSubject, "res.q1")
		m.Header.Set(bus.HeaderDLQSequence, "7")
		m.Header.Set(bus.HeaderDLQDeliveries, "1")
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	put("dlq.a", "first")                                                              // 1
	put("dlq.b", "other")                                                              // 2
	put("dlq.a", "third")                                                              // 3
	if _, err := e.js.Publish(ctx, "dlq.a", []byte("not a dead letter")); err != nil { // 4
		t.Fatal(err)
	}
	dls, err := e.c.ListDeadLetters(ctx, "DLQ", "dlq.a")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].Seq != 1 || dls[0].Reason != "first" || dls[1].Seq != 3 || dls[0].Sequence != 7 || dls[0].Time.IsZero() {
		t.Fatalf("listed %+v", dls)
	}
	if d, err := e.c.GetDeadLetter(ctx, "DLQ", "dlq.a", 3); err != nil || d.Reason != "third" {
		t.Fatalf("get 3: %+v %v", d, err)
	}
	if _, err := e.c.GetDeadLetter(ctx, "DLQ", "dlq.a", 2); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("get 2 on another subject: %v, want ErrNotFound", err)
	}
	if _, err := e.c.GetDeadLetter(ctx, "DLQ", "dlq.a", 4); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("get 4: %v, want ErrInvalidMessage", err)
	}
	if _, err := e.c.GetDeadLetter(ctx, "NOPE", "", 1); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	if err := e.c.DeleteDeadLetter(ctx, "DLQ", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteDeadLetter(ctx, "DLQ", 1); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("deleting again: %v, want ErrNotFound", err)
	}
	if _, err := e.c.PurgeDeadLetters(ctx, "DLQ", ""); !errors.Is(err, bus.ErrConfig) {
		t.Fatalf("purge without a subject: %v", err)
	}
	n, err := e.c.PurgeDeadLetters(ctx, "DLQ", "dlq.a")
	if err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2", n, err)
	}
	if dls, err := e.c.ListDeadLetters(ctx, "DLQ", "dlq.b"); err != nil || len(dls) != 1 {
		t.Fatalf("the other subject after the purge: %+v %v", dls, err)
	}
}
