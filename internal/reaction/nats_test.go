package reaction_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

func newNATSReaction(t testing.TB, spec *config.NATSReaction, conn *bus.Conn) *reaction.NATS {
	t.Helper()
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionNATS, ID: "out", Queries: reactiontest.Queries, Spec: spec}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := reaction.NewNATS("out", spec, conn, reaction.NATSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// busConn is a bus connection to url, closed at cleanup.
func busConn(t testing.TB, url string) *bus.Conn {
	t.Helper()
	c, err := bus.Connect(t.Context(), bus.ConnectOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func natsClient(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// streamEffects reads the stream's messages in order, by their ids.
func streamEffects(t testing.TB, js jetstream.JetStream, stream string) []reactiontest.Effect {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []reactiontest.Effect
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := effectOfKey(m.Header.Get(jetstream.MsgIDHeader))
		if !ok {
			t.Fatalf("message %d without a valid id", seq)
		}
		out = append(out, e)
	}
	return out
}

var outStream = jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out.>"}, Duplicates: 2 * time.Minute}

func TestNATSJetStreamConformance(t *testing.T) {
	reactiontest.Run(t, reactiontest.Kind{ExactlyOnce: true, New: func(t *testing.T) *reactiontest.Target {
		ns := natstest.Start(t)
		_, js := natsClient(t, ns.URL())
		// outStream does not allow atomic publish: the reaction must not
		// need it.
		if _, err := js.CreateStream(t.Context(), outStream); err != nil {
			t.Fatal(err)
		}
		update := func(t testing.TB, f func(*jetstream.StreamConfig)) {
			cfg := outStream
			f(&cfg)
			if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
		}
		return &reactiontest.Target{
			Reaction: newNATSReaction(t, &config.NATSReaction{Subject: "out.{{.query}}"}, busConn(t, ns.URL())),
			Effects:  func(t testing.TB) []reactiontest.Effect { return streamEffects(t, js, "OUT") },
			// The stream refuses messages above its size limit for good.
			BreakPermanent: func(t testing.TB) func() {
				update(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 16 })
				return func() { update(t, func(*jetstream.StreamConfig) {}) }
			},
			// No stream captures the subject any more.
			BreakRetryable: func(t testing.TB) func() {
				update(t, func(c *jetstream.StreamConfig) { c.Subjects = []string{"elsewhere.>"} })
				return func() { update(t, func(*jetstream.StreamConfig) {}) }
			},
		}
	}})
}

// subscriber collects core NATS messages in arrival order.
type subscriber struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func subscribe(t testing.TB, nc *nats.Conn, subject string) *subscriber {
	t.Helper()
	s := &subscriber{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return s
}

func (s *subscriber) effects(t testing.TB) []reactiontest.Effect {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []reactiontest.Effect
	for _, m := range s.msgs {
		e, ok := effectOfKey(m.Header.Get(jetstream.MsgIDHeader))
		if !ok {
			t.Fatalf("message on %s without a valid id", m.Subject)
		}
		out = append(out, e)
	}
	return out
}

func (s *subscriber) all() []*nats.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*nats.Msg(nil), s.msgs...)
}

func TestNATSCoreConformance(t *testing.T) {
	reactiontest.Run(t, reactiontest.Kind{New: func(t *testing.T) *reactiontest.Target {
		ns := natstest.Start(t)
		pubConn := busConn(t, ns.URL())
		subConn, _ := natsClient(t, ns.URL())
		s := subscribe(t, subConn, "live.>")
		return &reactiontest.Target{
			Reaction: newNATSReaction(t, &config.NATSReaction{Subject: "live.{{.query}}", Mode: config.NATSModeCore}, pubConn),
			Effects:  s.effects,
		}
	}})
}

// perRow: one message per row change, on a subject by change kind, with
// the row's key as message id and the Debezium-like body.
func TestNATSPerRow(t *testing.T) {
	ns := natstest.Start(t)
	nc, _ := natsClient(t, ns.URL())
	s := subscribe(t, nc, "rows.>")
	conn := busConn(t, ns.URL())
	n := newNATSReaction(t, &config.NATSReaction{Subject: "rows.{{.query}}.{{.op}}", Mode: config.NATSModeCore, PerRow: true}, conn)
	r := &change.Result{Query: "q1", Seq: 7, TsMs: 99,
		Added:   []change.Row{{"id": 1}},
		Updated: []change.RowUpdate{{Before: change.Row{"id": 2, "v": 1}, After: change.Row{"id": 2, "v": 2}}},
		Deleted: []change.Row{{"id": 3}}}
	if err := n.React(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	want := []struct{ subject, id, body string }{
		{"rows.q1.c", "q1:7:0", `{"op":"c","before":null,"after":{"id":1},"query":"q1","seq":7,"ts_ms":99}`},
		{"rows.q1.u", "q1:7:1", `{"op":"u","before":{"id":2,"v":1},"after":{"id":2,"v":2},"query":"q1","seq":7,"ts_ms":99}`},
		{"rows.q1.d", "q1:7:2", `{"op":"d","before":{"id":3},"after":null,"query":"q1","seq":7,"ts_ms":99}`},
	}
	var got []*nats.Msg
	testwait.Until(t, 10*time.Second, "the row messages", func() bool { got = s.all(); return len(got) >= len(want) })
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		m := got[i]
		if m.Subject != w.subject || m.Header.Get(jetstream.MsgIDHeader) != w.id || string(m.Data) != w.body ||
			m.Header.Get(reaction.HeaderSeq) != "7" || m.Header.Get(reaction.HeaderQuery) != "q1" {
			t.Errorf("message %d: %s id %s body %s headers %v", i, m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data, m.Header)
		}
	}
	// The whole-message mode sends the result as JSON.
	whole := newNATSReaction(t, &config.NATSReaction{Subject: "rows.{{.query}}.all", Mode: config.NATSModeCore}, conn)
	if err := whole.React(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the whole message", func() bool { got = s.all(); return len(got) == 4 })
	body, _ := json.Marshal(r)
	if m := got[3]; m.Subject != "rows.q1.all" || string(m.Data) != string(body) || m.Header.Get(jetstream.MsgIDHeader) != "q1:7" {
		t.Fatalf("whole message: %s %s %s", m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data)
	}
}

// A subject that renders invalid is permanent; a closed connection is
// retryable.
func TestNATSErrors(t *testing.T) {
	ns := natstest.Start(t)
	conn := busConn(t, ns.URL())
	bad := newNATSReaction(t, &config.NATSReaction{Subject: "out.{{.op}}", Mode: config.NATSModeCore}, conn)
	err := bad.React(t.Context(), reactiontest.Result("q1", 1)) // no op per message: "out."
	if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrBadResult) {
		t.Fatalf("invalid subject: %v, want permanent ErrBadResult", err)
	}
	n := newNATSReaction(t, &config.NATSReaction{Subject: "out.{{.query}}"}, conn)
	if err := conn.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	err = n.React(t.Context(), reactiontest.Result("q1", 1))
	if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) {
		t.Fatalf("closed connection: %v, want retryable ErrTargetUnavailable", err)
	}
}
