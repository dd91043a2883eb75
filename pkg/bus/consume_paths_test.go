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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// consEnv is one server with a stream C (subjects c.>) and a dead-letter
// stream D (d.>), a bus connection and an operator's JetStream client.
type consEnv struct {
	srv *natstest.Server
	c   *bus.Conn
	js  jetstream.JetStream
}

func newConsEnv(t testing.TB, o ...natstest.Options) *consEnv {
	t.Helper()
	srv := natstest.Start(t, o...)
	e := &consEnv{srv: srv, c: connectBus(t, srv.URL())}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "C", Subjects: []string{"c.>"}},
		{Name: "D", Subjects: []string{"d.>"}},
	} {
		if _, err := e.js.CreateStream(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newConsClusterEnv is newConsEnv on a three-node cluster with R3 streams.
func newConsClusterEnv(t testing.TB) *consEnv {
	t.Helper()
	cl := natstest.StartCluster(t)
	e := &consEnv{c: connectBus(t, cl.URLs())}
	nc, err := nats.Connect(cl.URLs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "C", Subjects: []string{"c.>"}, Replicas: 3},
		{Name: "D", Subjects: []string{"d.>"}, Replicas: 3},
	} {
		if _, err := e.js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		cl.WaitForStreamLeader(cfg.Name)
	}
	return e
}

func connectBus(t testing.TB, url string) *bus.Conn {
	t.Helper()
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: url, ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// put stores messages id-from..id-to on subject with payloads of size
// bytes (0: "payload <i>").
func (e *consEnv) put(t *testing.T, subject string, from, to, size int) {
	t.Helper()
	for i := from; i <= to; i++ {
		data := []byte(fmt.Sprintf("payload %d", i))
		if size > 0 {
			data = []byte(strings.Repeat("x", size))
		}
		if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: data,
			Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("id-%d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// putAsync stores n small messages on subject, 1000 in flight at a time,
// checking every acknowledgement.
func (e *consEnv) putAsync(t testing.TB, subject string, n int) {
	t.Helper()
	for sent := 0; sent < n; {
		var futs []jetstream.PubAckFuture
		for ; sent < n && len(futs) < 1000; sent++ {
			f, err := e.js.PublishAsync(subject, []byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatalf("publishing: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("publishing did not complete")
			}
		}
	}
}

func consOpts(durable string) bus.ConsumerOptions {
	return bus.ConsumerOptions{
		Stream: "C", Durable: durable, DeadLetterSubject: "d." + durable,
		AckWait: 5 * time.Second, FetchWait: 100 * time.Millisecond, LagInterval: 50 * time.Millisecond,
		BackOff: []time.Duration{20 * time.Millisecond},
	}
}

func startConsumer(t *testing.T, c *bus.Conn, o bus.ConsumerOptions, h bus.Handler) *bus.Consumer {
	t.Helper()
	k, err := c.Consume(context.Background(), o, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		k.Drain(ctx)
	})
	return k
}

// degradations records what a consumer reports through Degrade.
type degradations struct {
	mu   sync.Mutex
	cur  map[string]string
	ever map[string][]string
}

func newDegradations() *degradations {
	return &degradations{cur: map[string]string{}, ever: map[string][]string{}}
}

func (g *degradations) Degrade(cause, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if reason == "" {
		delete(g.cur, cause)
		return
	}
	g.cur[cause] = reason
	g.ever[cause] = append(g.ever[cause], reason)
}

func (g *degradations) current(cause string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur[cause]
}

func (g *degradations) reported(cause string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.ever[cause]...)
}

func consumerInfo(t *testing.T, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func waitSettled(t *testing.T, k *bus.Consumer) {
	t.Helper()
	testwait.Until(t, 20*time.Second, "consumer has nothing pending or unacknowledged", func() bool {
		st, err := k.State(context.Background())
		return err == nil && st.Pending == 0 && st.AckPending == 0
	})
}

func TestConsumerLeavesDeadLetteringToTheClient(t *testing.T) {
	e := newConsEnv(t)
	// A durable declared by an earlier version, with the server enforcing
	// MaxDeliver 20.
	if _, err := e.js.CreateOrUpdateConsumer(context.Background(), "C", jetstream.ConsumerConfig{
		Durable: "old", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 20, AckWait: 5 * time.Second, MaxAckPending: 1000,
	}); err != nil {
		t.Fatal(err)
	}
	for _, durable := range []string{"old", "fresh"} {
		o := consOpts(durable)
		o.MaxDeliver = 3
		k := startConsumer(t, e.c, o, func(context.Context, *bus.Delivery) error { return nil })
		if md := consumerInfo(t, e.js, "C", durable).Config.MaxDeliver; md != -1 {
			t.Fatalf("%s: server MaxDeliver %d, want -1 (the client dead-letters)", durable, md)
		}
		if err := k.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A dead letter that cannot be stored, here because the dead-letter
// headers push a message near max_payload over the limit, keeps the
// original message, on its last delivery too.
func TestDeadLetterTooLargeKeepsTheMessage(t *testing.T) {
	e := newConsEnv(t, natstest.Options{Configure: func(o *server.Options) { o.MaxPayload = 8192 }})
	e.put(t, "c.big", 1, 1, 8192-200)
	reg := prometheus.NewRegistry()
	deg := newDegradations()
	o := consOpts("w")
	o.MaxDeliver = 1
	o.BackOff = []time.Duration{50 * time.Millisecond}
	o.Registerer = reg
	o.Degrade = deg.Degrade
	var calls atomic.Int64
	var fixed atomic.Bool
	k := startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
		calls.Add(1)
		if fixed.Load() {
			return nil
		}
		return bus.Permanentf("row %s violates the schema", d.ID)
	})
	testwait.Until(t, 20*time.Second, "the message is handed to the handler again after its dead letter failed", func() bool {
		return calls.Load() >= 3
	})
	if r := deg.current("w dead letters"); !strings.Contains(r, "cannot be dead-lettered") || !strings.Contains(r, "maximum payload") {
		t.Fatalf("degraded reason %q; want it to say the dead letter is too large", r)
	}
	if v := counterValue(t, reg, "tributary_bus_dead_letter_failures_total"); v < 2 {
		t.Fatalf("dead-letter failures %v, want at least 2", v)
	}
	if _, err := e.c.LastMessage(context.Background(), "D", "d.w"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("dead-letter stream: %v, want nothing stored", err)
	}
	st, err := k.State(context.Background())
	if err != nil || st.AckPending+int(st.Pending) != 1 {
		t.Fatalf("consumer state %+v %v: the message must still be there", st, err)
	}
	fixed.Store(true)
	waitSettled(t, k)
	testwait.Until(t, 10*time.Second, "the degradation is cleared once the message is acknowledged", func() bool {
		return deg.current("w dead letters") == ""
	})
}

// A deleted dead-letter stream is recreated from the topology the
// connection applied, and the dead letter stored there.
func TestDeadLetterStreamDeletedIsRecreated(t *testing.T) {
	srv := natstest.Start(t)
	c := connectBus(t, srv.URL())
	js, _ := jetstreamFor(t, srv.URL())
	topo, err := streams.Default("t", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), topo.DeadLetters.Name); err != nil {
		t.Fatal(err)
	}
	subject := topo.ResultSubject("q")
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: []byte("bad"),
		Header: nats.Header{jetstream.MsgIDHeader: []string{"r-1"}}}); err != nil {
		t.Fatal(err)
	}
	o := bus.ConsumerOptions{Stream: topo.Results.Name, Durable: "r", DeadLetterSubject: topo.DeadLetterSubject(topo.Results.Name, "r"),
		MaxDeliver: 1, FetchWait: 100 * time.Millisecond, BackOff: []time.Duration{20 * time.Millisecond}}
	k := startConsumer(t, c, o, func(context.Context, *bus.Delivery) error { return bus.Permanentf("undecodable") })
	var dl *bus.DeadLetter
	testwait.Until(t, 20*time.Second, "the dead letter is stored in the recreated stream", func() bool {
		m, err := c.LastMessage(context.Background(), topo.DeadLetters.Name, o.DeadLetterSubject)
		if err != nil {
			return false
		}
		dl, err = bus.ParseDeadLetter(m)
		return err == nil
	})
	if dl.MsgID != "r-1" || !strings.Contains(dl.Reason, "undecodable") {
		t.Fatalf("dead letter %+v", dl)
	}
	waitSettled(t, k)
}

// Without a topology to recreate it from, a missing dead-letter stream
// keeps the message and reports the problem until the stream is back.
func TestDeadLetterStreamMissingIsReported(t *testing.T) {
	e := newConsEnv(t)
	if err := e.js.DeleteStream(context.Background(), "D"); err != nil {
		t.Fatal(err)
	}
	e.put(t, "c.x", 1, 2, 0)
	deg := newDegradations()
	o := consOpts("w")
	o.MaxDeliver = 1
	o.Degrade = deg.Degrade
	seen := map[string]int{}
	var mu sync.Mutex
	k := startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		seen[d.ID]++
		mu.Unlock()
		if d.ID == "id-1" {
			return errors.New("still failing on the last delivery")
		}
		return nil
	})
	testwait.Until(t, 20*time.Second, "the missing dead-letter stream is reported", func() bool {
		return strings.Contains(deg.current("w dead letters"), "no stream takes subject d.w")
	})
	testwait.Until(t, 20*time.Second, "the message is kept and tried again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["id-1"] >= 2
	})
	if _, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the dead letter is stored once the stream is back", func() bool {
		m, err := e.c.LastMessage(context.Background(), "D", "d.w")
		return err == nil && m.Header[bus.HeaderDLQMsgID] == "id-1"
	})
	waitSettled(t, k)
	if r := deg.current("w dead letters"); r != "" {
		t.Fatalf("still degraded: %s", r)
	}
}

// A durable consumer deleted by an operator is recreated; it resumes after
// the last acknowledged message: nothing acknowledged is handled again,
// nothing unacknowledged is skipped.
func TestDeletedConsumerIsRecreated(t *testing.T) {
	for _, tc := range []struct {
		ordered, cluster bool
	}{{false, false}, {true, false}, {true, true}} {
		ordered := tc.ordered
		t.Run(fmt.Sprintf("ordered=%v,cluster=%v", tc.ordered, tc.cluster), func(t *testing.T) {
			var e *consEnv
			if tc.cluster {
				e = newConsClusterEnv(t)
			} else {
				e = newConsEnv(t)
			}
			e.put(t, "c.x", 1, 5, 0)
			reg := prometheus.NewRegistry()
			deg := newDegradations()
			o := consOpts("w")
			o.Ordered = ordered
			o.Degrade = deg.Degrade
			o.Registerer = reg
			var mu sync.Mutex
			seen := map[string]int{}
			count := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(seen)
			}
			h := func(_ context.Context, d *bus.Delivery) error {
				mu.Lock()
				seen[d.ID]++
				mu.Unlock()
				return nil
			}
			k := startConsumer(t, e.c, o, h)
			testwait.Until(t, 20*time.Second, "the first five handled", func() bool { return count() == 5 })
			waitSettled(t, k)
			if err := e.js.DeleteConsumer(context.Background(), "C", "w"); err != nil {
				t.Fatal(err)
			}
			e.put(t, "c.x", 6, 10, 0)
			testwait.Until(t, 20*time.Second, "the deletion is reported", func() bool { return len(deg.reported("w consumer")) > 0 })
			testwait.Until(t, 20*time.Second, "the messages published after the deletion are handled", func() bool { return count() == 10 })
			waitSettled(t, k)
			mu.Lock()
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s handled %d times", id, n)
				}
			}
			mu.Unlock()
			if r := deg.reported("w consumer")[0]; !strings.Contains(r, "was deleted on the server") {
				t.Errorf("reason %q", r)
			}
			testwait.Until(t, 10*time.Second, "the degradation is cleared", func() bool { return deg.current("w consumer") == "" })
			if v := counterValue(t, reg, "tributary_bus_consumer_recreations_total"); v != 1 {
				t.Errorf("recreations %v, want 1", v)
			}
			cfg := consumerInfo(t, e.js, "C", "w").Config
			if cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq != 6 || cfg.MaxDeliver != -1 {
				t.Errorf("recreated consumer: deliver policy %s from %d, max deliver %d; want by start sequence from 6, -1",
					cfg.DeliverPolicy, cfg.OptStartSeq, cfg.MaxDeliver)
			}
			// Declaring it again keeps its start position: no conflict.
			if err := k.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			again := startConsumer(t, e.c, o, h)
			e.put(t, "c.x", 11, 11, 0)
			testwait.Until(t, 20*time.Second, "the re-declared consumer goes on", func() bool { return count() == 11 })
			waitSettled(t, again)
		})
	}
}

// A process that dies during a message's last delivery (here: a consumer
// that never settles and whose connection is closed) does not lose it: once
// AckWait passes, the next consumer gets it.
func TestLastDeliveryOfAnAbandonedConsumerComesBack(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			e := newConsEnv(t)
			e.put(t, "c.x", 1, 1, 0)
			o := consOpts("w")
			o.Ordered = ordered
			o.MaxDeliver = 1
			o.AckWait = time.Second
			dying := connectBus(t, e.srv.URL())
			release := make(chan struct{})
			started := make(chan struct{})
			abandoned, err := dying.Consume(context.Background(), o, func(ctx context.Context, d *bus.Delivery) error {
				close(started)
				<-release // never settles while the process "lives"
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
			dying.Close(context.Background()) // the process is gone
			got := make(chan *bus.Delivery, 1)
			startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
				select {
				case got <- d:
				default:
				}
				return nil
			})
			select {
			case d := <-got:
				// An ordered consumer resets the durable to its ack floor
				// when it takes over, which restarts the delivery count.
				if d.ID != "id-1" || d.NumDelivered != 2 && !(ordered && d.NumDelivered == 1) {
					t.Fatalf("got %s delivery %d, want id-1 delivery 2", d.ID, d.NumDelivered)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the message of the dead process never came back")
			}
		})
	}
}

// A stream deleted and created again (its sequences start anew) is
// reported while missing and consumed from its beginning once it is back.
func TestConsumerSurvivesItsStreamCreatedAgain(t *testing.T) {
	e := newConsEnv(t)
	e.put(t, "c.x", 1, 3, 0)
	deg := newDegradations()
	o := consOpts("w")
	o.Ordered = true
	o.Degrade = deg.Degrade
	var mu sync.Mutex
	var got []string
	startConsumer(t, e.c, o, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s@%d", d.ID, d.StreamSeq))
		mu.Unlock()
		return nil
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	testwait.Until(t, 20*time.Second, "the first three handled", func() bool { return count() == 3 })
	if err := e.js.DeleteStream(context.Background(), "C"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the missing stream is reported", func() bool {
		return strings.Contains(deg.current("w consumer"), "stream C does not exist")
	})
	if _, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "C", Subjects: []string{"c.>"}}); err != nil {
		t.Fatal(err)
	}
	e.put(t, "c.x", 11, 12, 0)
	testwait.Until(t, 20*time.Second, "the messages of the new stream handled", func() bool { return count() == 5 })
	mu.Lock()
	defer mu.Unlock()
	if want := "id-1@1 id-2@2 id-3@3 id-11@1 id-12@2"; strings.Join(got, " ") != want {
		t.Fatalf("handled %s, want %s", strings.Join(got, " "), want)
	}
	testwait.Until(t, 10*time.Second, "the degradation is cleared", func() bool { return deg.current("w consumer") == "" })
}
