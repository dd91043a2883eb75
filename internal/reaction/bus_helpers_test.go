package reaction_test

import (
	"context"
	"encoding/json"
	"github.com/tributary/tributary/internal/config"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// busEnv is a real NATS server with the topology, a bus connection for
// the reaction's consumer, and a plain client that publishes results as
// the query engine does.
type busEnv struct {
	t    testing.TB
	ns   *natstest.Server
	conn *bus.Conn
	topo streams.Topology
	nc   *nats.Conn
	js   jetstream.JetStream
}

func newBusEnv(t testing.TB) *busEnv {
	t.Helper()
	ctx := t.Context()
	e := &busEnv{t: t, ns: natstest.Start(t)}
	var err error
	e.conn, err = bus.Connect(ctx, bus.ConnectOptions{URL: e.ns.URL(), ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.conn.Close(cctx)
	})
	if e.topo, err = streams.Default("trib", streams.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.EnsureTopology(ctx, e.topo); err != nil {
		t.Fatal(err)
	}
	if e.nc, err = nats.Connect(e.ns.URL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	return e
}

// publishResult publishes r the way the query engine does: JSON on
// <prefix>.results.<query>, Nats-Msg-Id <query>:<seq>.
func (e *busEnv) publishResult(r *change.Result) {
	e.t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		e.t.Fatal(err)
	}
	m := nats.NewMsg(e.topo.ResultSubject(bus.Token(r.Query)))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, r.Query+":"+strconv.FormatUint(r.Seq, 10))
	if _, err := e.js.PublishMsg(e.t.Context(), m); err != nil {
		e.t.Fatalf("publishing result %s:%d: %v", r.Query, r.Seq, err)
	}
}

// consume runs r over its durable consumer, as the reactor does
// (reaction.Consume: in batches for a BatchReaction), with fast retries;
// the consumer is drained at cleanup.
func (e *busEnv) consume(id string, queries []string, r reaction.Reaction) *bus.Consumer {
	e.t.Helper()
	return e.consumeWith(id, queries, r, nil)
}

// consumeWith is consume with tune applied to the consumer's options.
func (e *busEnv) consumeWith(id string, queries []string, r reaction.Reaction, tune func(*bus.ConsumerOptions)) *bus.Consumer {
	e.t.Helper()
	opts := reaction.ConsumerOptions(e.topo, id, queries, config.RetryConfig{})
	// Retry quickly and without limit. (The consumer is ordered: a failed
	// result is retried in place and never overtaken by the next one.)
	opts.BackOff = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond}
	opts.MaxDeliver = -1
	opts.FetchWait = 200 * time.Millisecond
	opts.AckWait = 10 * time.Second
	if tune != nil {
		tune(&opts)
	}
	cons, err := reaction.Consume(e.t.Context(), e.conn, opts, r)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cons.Drain(ctx); err != nil {
			e.t.Errorf("draining consumer %s: %v", id, err)
		}
	})
	return cons
}

// deadLetters reads every dead letter of reaction id.
func (e *busEnv) deadLetters(id string) []*bus.DeadLetter {
	e.t.Helper()
	ctx := e.t.Context()
	s, err := e.js.Stream(ctx, e.topo.DeadLetters.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*bus.DeadLetter
	subj := e.topo.DeadLetterSubject(e.topo.Results.Name, "reaction_"+bus.KeyToken(id))
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil || raw.Subject != subj {
			continue
		}
		hdr := map[string]string{}
		for k, v := range raw.Header {
			if len(v) > 0 {
				hdr[k] = v[0]
			}
		}
		dl, err := bus.ParseDeadLetter(&bus.StoredMessage{Stream: e.topo.DeadLetters.Name, Subject: raw.Subject, Sequence: raw.Sequence, Data: raw.Data, Header: hdr})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}
