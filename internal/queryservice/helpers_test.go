package queryservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

const leaseTTL = 2 * time.Second

// fixture is one NATS server with Tributary's topology, a bus connection
// for the services and a publisher that plays another producer.
type fixture struct {
	srv    *natstest.Server
	conn   *bus.Conn
	topo   streams.Topology
	store  *lifecycle.Store
	leases *bus.KV
	pub    *bus.Publisher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL(), ReconnectWait: 50 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	topo, err := streams.Default("tributary", streams.Options{LeaseTTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	topo.Consumers.BackOff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}
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
	pub, err := conn.NewPublisher(bus.PublisherOptions{Name: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	return &fixture{srv: srv, conn: conn, topo: topo, store: lifecycle.NewStore(states, nil), leases: leases, pub: pub}
}

// query is a query under test with its source ids.
type query struct {
	spec    engine.QuerySpec
	sources []string
}

// service is one query's component in one (simulated) process.
type service struct {
	comp *lifecycle.Component
	reg  *prometheus.Registry
}

// start runs q as instance in a component of its own and waits until its
// start returned; stop it with stop (Cleanup does too).
func (f *fixture) start(t *testing.T, q query, instance string) *service {
	t.Helper()
	reg := prometheus.NewRegistry()
	comp, err := lifecycle.NewComponent(lifecycle.Config{
		Kind: "query", ID: q.spec.ID, Instance: instance,
		Store: f.store, Leases: f.leases, LeaseTTL: leaseTTL, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := queryservice.New(queryservice.Config{
		Spec: q.spec, Sources: q.sources, Bus: f.conn, Topology: f.topo, Component: comp,
		Registerer: reg, StopTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	comp.AddStep("query", qs.Step)
	if err := comp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &service{comp: comp, reg: reg}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *service) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.comp.Stop(ctx); err != nil {
		t.Errorf("stopping %s: %v", s.comp.ID(), err)
	}
}

// waitRunning waits until the query consumes live (its bootstrap is done).
func (s *service) waitRunning(t *testing.T) {
	t.Helper()
	testwait.Until(t, 60*time.Second, "the query consumes live", func() bool { return s.comp.Ready() == nil })
}

// workload generates a deterministic mix of changes as another producer
// would send them: orders (status, total, driver_id) and drivers (id, name,
// zone), inserted, updated (partly: absent properties keep their values)
// and deleted.
type workload struct {
	rng     *rand.Rand
	source  string
	pos     int
	orders  map[int]bool
	drivers map[int]bool
}

func newWorkload(seed uint64, source string) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, 7)), source: source, orders: map[int]bool{}, drivers: map[int]bool{}}
}

var statuses = []string{"new", "ready", "done"}

// next returns one change envelope.
func (w *workload) next() *change.Envelope {
	w.pos++
	label, set, n := "orders", w.orders, 40
	if w.rng.IntN(4) == 0 {
		label, set, n = "drivers", w.drivers, 8
	}
	k := w.rng.IntN(n) + 1
	env := &change.Envelope{Source: w.source, TsMs: 1764230400000 + int64(w.pos), Position: strconv.Itoa(w.pos),
		Element: change.Element{Type: change.TypeNode, ID: fmt.Sprintf("%s:%d", label, k), Labels: []string{label}}}
	props := map[string]any{"id": k}
	if label == "orders" {
		props["status"] = statuses[w.rng.IntN(3)]
		props["total"] = w.rng.IntN(100)
		props["driver_id"] = w.rng.IntN(8) + 1
	} else {
		props["name"] = fmt.Sprintf("driver-%d", k)
		props["zone"] = []string{"curbside", "lot"}[w.rng.IntN(2)]
	}
	switch {
	case !set[k]:
		env.Op = change.OpInsert
		set[k] = true
	case w.rng.IntN(6) == 0:
		env.Op = change.OpDelete
		props = nil
		delete(set, k)
	default:
		env.Op = change.OpUpdate
		// A partial update: one property left out keeps its value.
		for key := range props {
			if key != "id" && w.rng.IntN(3) == 0 {
				delete(props, key)
				break
			}
		}
	}
	env.Element.Properties = props
	return env
}

// message is env as a producer publishes it.
func (f *fixture) message(t *testing.T, env *change.Envelope) bus.Message {
	t.Helper()
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{
		Subject: f.topo.ChangeSubject(bus.Token(env.Source), bus.Token(env.Element.Labels[0]), bus.Token(env.Element.ID)),
		ID:      env.Source + ":" + env.Position,
		Data:    data,
	}
}

// publish sends msgs in atomic batches of up to 500 and returns the
// stream sequence of the last one.
func (f *fixture) publish(t *testing.T, msgs []bus.Message) uint64 {
	t.Helper()
	var last uint64
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		ack, err := f.pub.PublishBatch(context.Background(), msgs[:n])
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
		msgs = msgs[n:]
	}
	return last
}

// changes makes n changes of w, as messages.
func (f *fixture) changes(t *testing.T, w *workload, n int) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = f.message(t, w.next())
	}
	return msgs
}

// reference evaluates the query from scratch on the published messages
// (decoded as the service decodes them; invalid ones skipped) and returns
// its rows in canonical form.
func reference(t *testing.T, spec engine.QuerySpec, msgs []bus.Message) []string {
	t.Helper()
	eng, err := engine.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		env, err := change.Decode(m.Data)
		if err != nil {
			continue
		}
		if _, err := eng.Apply(env); err != nil {
			continue
		}
	}
	return canonical(t, eng.Result())
}

func canonical(t *testing.T, rows []change.Row) []string {
	t.Helper()
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		// Round trip through the wire form, so numbers compare as text.
		var back map[string]any
		dec := json.NewDecoder(bytesReader(b))
		dec.UseNumber()
		if err := dec.Decode(&back); err != nil {
			t.Fatal(err)
		}
		b, _ = json.Marshal(back)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// folded is what a reaction sees: every result message of the query, in
// order, checked and folded into a result set.
type folded struct {
	rows     []string
	messages []*change.Result
	inputSeq []uint64
}

// fold reads the query's results subject from the start. It fails the
// test when the seqs are not exactly 1..n (a gap or a duplicate), a
// message id is not <query>:<seq>, or a diff does not apply (a deleted or
// updated row that is not in the set).
func (f *fixture) fold(t *testing.T, id string) folded {
	t.Helper()
	var out folded
	set := map[string]int{}
	var problem error
	_, err := f.conn.Replay(context.Background(), bus.ReplayOptions{
		Stream: f.topo.Results.Name, FilterSubjects: []string{f.topo.ResultSubject(bus.Token(id))},
	}, func(d *bus.Delivery) error {
		res, err := reaction.DecodeResult(d.Data)
		if err != nil {
			return err
		}
		n := uint64(len(out.messages)) + 1
		if res.Seq != n || d.ID != fmt.Sprintf("%s:%d", id, n) || res.Query != id {
			return fmt.Errorf("message %d at stream sequence %d: seq %d, id %q, query %q", n, d.StreamSeq, res.Seq, d.ID, res.Query)
		}
		in, err := strconv.ParseUint(d.Header[queryservice.HeaderInputSeq], 10, 64)
		if err != nil {
			return fmt.Errorf("message %d: input seq header: %w", n, err)
		}
		if k := len(out.inputSeq); k > 0 && in <= out.inputSeq[k-1] && n > 1 {
			return fmt.Errorf("message %d covers input %d, not after message %d's %d", n, in, n-1, out.inputSeq[k-1])
		}
		out.messages = append(out.messages, res)
		out.inputSeq = append(out.inputSeq, in)
		take := func(r change.Row, what string) {
			k := canonical(t, []change.Row{r})[0]
			if set[k] == 0 && problem == nil {
				problem = fmt.Errorf("message %d %s row %s, which the result does not hold", n, what, k)
			}
			set[k]--
			if set[k] <= 0 {
				delete(set, k)
			}
		}
		for _, r := range res.Deleted {
			take(r, "deletes")
		}
		for _, u := range res.Updated {
			take(u.Before, "updates")
			set[canonical(t, []change.Row{u.After})[0]]++
		}
		for _, r := range res.Added {
			set[canonical(t, []change.Row{r})[0]]++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("folding the results of %s: %v", id, err)
	}
	if problem != nil {
		t.Fatalf("folding the results of %s: %v", id, problem)
	}
	for k, n := range set {
		for range n {
			out.rows = append(out.rows, k)
		}
	}
	slices.Sort(out.rows)
	return out
}

// waitFolded waits until the folded results equal want.
func (f *fixture) waitFolded(t *testing.T, id string, want []string) folded {
	t.Helper()
	return f.waitFoldedWithin(t, id, want, 90*time.Second)
}

func (f *fixture) waitFoldedWithin(t *testing.T, id string, want []string, within time.Duration) folded {
	t.Helper()
	var got folded
	testwait.UntilErr(context.Background(), t, within, "the folded results equal the query evaluated from scratch", func() (bool, error) {
		got = f.fold(t, id)
		if slices.Equal(got.rows, want) {
			return true, nil
		}
		return false, fmt.Errorf("query %s: %d messages fold to\n%v\nwant\n%v", id, len(got.messages), got.rows, want)
	})
	return got
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
