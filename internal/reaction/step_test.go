package reaction

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

// flakyTarget fails until it has been called fail times, recording the
// results it delivered.
type flakyTarget struct {
	mu    sync.Mutex
	fail  int
	calls int
	done  []string
}

func (f *flakyTarget) React(_ context.Context, r *change.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fail {
		return errors.New("target answered 503")
	}
	f.done = append(f.done, fmt.Sprintf("%s/%d", r.Query, r.Seq))
	return nil
}

func (f *flakyTarget) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.done...)
}

// A reaction whose target is down for longer than its maxDeliver attempts
// keeps its results in order and dead-letters none, and its component is
// Degraded (with the error) while it retries.
func TestReactionOutlastsItsTargetInOrderAndDegrades(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	topo, err := streams.Default("rx", streams.Options{LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.EnsureTopology(ctx, topo); err != nil {
		t.Fatal(err)
	}
	states, err := conn.KV(ctx, topo.Lifecycle.Name)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := conn.KV(ctx, topo.Leases.Name)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := lifecycle.NewComponent(lifecycle.Config{Kind: "reaction", ID: "hook",
		Store: lifecycle.NewStore(states, nil), Leases: leases, LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	target := &flakyTarget{fail: 6}
	opts := ConsumerOptions(topo, "hook", []string{"q"}, config.RetryConfig{
		Initial: config.Duration(20 * time.Millisecond), Max: config.Duration(100 * time.Millisecond), MaxDeliver: 2,
	})
	opts.FetchWait = 100 * time.Millisecond
	comp.AddStep("results consumer", ConsumeStep(conn, comp, opts, target))

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for seq := 1; seq <= 3; seq++ {
		body := fmt.Sprintf(`{"query":"q","seq":%d,"ts_ms":1,"added":[],"updated":[],"deleted":[]}`, seq)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: topo.ResultSubject("q"), Data: []byte(body),
			Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("q-%d", seq)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := comp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := comp.Stop(sctx); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	testwait.Until(t, 10*time.Second, "the component is Degraded while the target is down", func() bool {
		return comp.State() == lifecycle.Degraded
	})
	testwait.Until(t, 20*time.Second, "every result delivered once the target is back", func() bool {
		return len(target.delivered()) == 3
	})
	if got := strings.Join(target.delivered(), " "); got != "q/1 q/2 q/3" {
		t.Fatalf("delivered %s, want q/1 q/2 q/3", got)
	}
	testwait.Until(t, 10*time.Second, "the component is Running again", func() bool {
		return comp.State() == lifecycle.Running
	})
	if _, err := conn.LastMessage(ctx, topo.DeadLetters.Name, opts.DeadLetterSubject); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("dead letters: %v, want none", err)
	}
}
