package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// PublishMsg stores one message in a stream that does not allow atomic
// publish, deduplicates a re-send by id, and classifies every refusal with
// a sentinel: permanent ones (ErrRejected, ErrInvalidMessage) apart from
// those a re-send can fix (ErrNoStream, ErrClosed).
func TestPublishMsgSingleMessageAndErrors(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}, Duplicates: time.Minute})
	ctx := t.Context()
	m := bus.Message{Subject: "out.a", ID: "a:1", Data: []byte("one"), Header: map[string]string{"Tributary-Seq": "1"}}
	ack, err := e.c.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != "OUT" || ack.Sequence != 1 || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	ack, err = e.c.PublishMsg(ctx, m)
	if err != nil || !ack.Duplicate || ack.Sequence != 1 {
		t.Fatalf("re-send: %+v, %v; want a duplicate of 1", ack, err)
	}
	stored, err := e.c.LastMessage(ctx, "OUT", "out.a")
	if err != nil {
		t.Fatal(err)
	}
	if string(stored.Data) != "one" || stored.ID != "a:1" || stored.Header["Tributary-Seq"] != "1" {
		t.Fatalf("stored %+v", stored)
	}

	// No stream captures the subject.
	if _, err := e.c.PublishMsg(ctx, bus.Message{Subject: "nowhere.a", ID: "x"}); !errors.Is(err, bus.ErrNoStream) {
		t.Fatalf("no stream: %v, want ErrNoStream", err)
	}
	// The stream refuses a message above its limit for good.
	if _, err := e.js.UpdateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}, Duplicates: time.Minute, MaxMsgSize: 8, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PublishMsg(ctx, bus.Message{Subject: "out.a", ID: "a:2", Data: []byte(strings.Repeat("x", 64))}); !errors.Is(err, bus.ErrRejected) {
		t.Fatalf("above the stream's maximum: %v, want ErrRejected", err)
	}
	// Client-side checks.
	if _, err := e.c.PublishMsg(ctx, bus.Message{Subject: "out.*", ID: "y"}); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("wildcard subject: %v, want ErrInvalidMessage", err)
	}
	if _, err := e.c.PublishMsg(ctx, bus.Message{Subject: "out.b", ID: "z", Data: make([]byte, 2<<20)}); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("above max payload: %v, want ErrInvalidMessage", err)
	}
	if err := e.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PublishMsg(ctx, bus.Message{Subject: "out.a", ID: "a:3"}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("closed: %v, want ErrClosed", err)
	}
}

// PublishCore delivers messages in order with their headers (the id as
// Nats-Msg-Id only when set) and returns after the flush.
func TestPublishCoreFlushedInOrder(t *testing.T) {
	e := newEnv(t)
	_, nc := jetstreamFor(t, e.srv.URL())
	got := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("live.>", got)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	err = e.c.PublishCore(ctx,
		bus.Message{Subject: "live.a", ID: "k1", Data: []byte("1"), Header: map[string]string{"H": "v"}},
		bus.Message{Subject: "live.b", Data: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	testwait.Until(t, 5*time.Second, "both messages", func() bool {
		for {
			select {
			case m := <-got:
				msgs = append(msgs, m)
			default:
				return len(msgs) == 2
			}
		}
	})
	if msgs[0].Subject != "live.a" || msgs[0].Header.Get(jetstream.MsgIDHeader) != "k1" || msgs[0].Header.Get("H") != "v" ||
		msgs[1].Subject != "live.b" || msgs[1].Header.Get(jetstream.MsgIDHeader) != "" || string(msgs[1].Data) != "2" {
		t.Fatalf("messages %v %v", msgs[0], msgs[1])
	}
	if err := e.c.PublishCore(ctx, bus.Message{Subject: "live..a"}); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("bad subject: %v", err)
	}
	if err := e.c.PublishCore(ctx, bus.Message{Subject: "live.a", Header: map[string]string{"Nats-Expected-Stream": "X"}}); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("reserved header: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.c.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.PublishCore(ctx, bus.Message{Subject: "live.a"}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("closed: %v, want ErrClosed", err)
	}
}
