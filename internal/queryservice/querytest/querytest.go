// Package querytest holds what tests of the query service share: a
// deterministic workload of changes as another producer sends them, the
// query evaluated from scratch on them, and the results read back from the
// results stream, checked (seq 1..n, ids, input sequences) and folded into
// a result set.
package querytest

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

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// Workload generates a deterministic mix of changes as another producer
// would send them: orders (status, total, driver_id) and drivers (id, name,
// zone), inserted, updated (partly: absent properties keep their values)
// and deleted.
type Workload struct {
	rng     *rand.Rand
	source  string
	pos     int
	orders  map[int]bool
	drivers map[int]bool
}

// NewWorkload returns the workload of seed for a source id.
func NewWorkload(seed uint64, source string) *Workload {
	return &Workload{rng: rand.New(rand.NewPCG(seed, 7)), source: source, orders: map[int]bool{}, drivers: map[int]bool{}}
}

var statuses = []string{"new", "ready", "done"}

// Next returns one change envelope.
func (w *Workload) Next() *change.Envelope {
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
func Message(t testing.TB, topo streams.Topology, env *change.Envelope) bus.Message {
	t.Helper()
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return bus.Message{
		Subject: topo.ChangeSubject(bus.Token(env.Source), bus.Token(env.Element.Labels[0]), bus.Token(env.Element.ID)),
		ID:      env.Source + ":" + env.Position,
		Data:    data,
	}
}

// Publish sends msgs in atomic batches of up to 500 and returns the
// stream sequence of the last one.
func Publish(t testing.TB, pub *bus.Publisher, msgs []bus.Message) uint64 {
	t.Helper()
	var last uint64
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		ack, err := pub.PublishBatch(context.Background(), msgs[:n])
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
		msgs = msgs[n:]
	}
	return last
}

// Changes makes n changes of w, as messages.
func (w *Workload) Changes(t testing.TB, topo streams.Topology, n int) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = Message(t, topo, w.Next())
	}
	return msgs
}

// Reference evaluates the query from scratch on the published messages
// (decoded as the service decodes them; invalid ones skipped) and returns
// its rows in canonical form.
func Reference(t testing.TB, spec engine.QuerySpec, msgs []bus.Message) []string {
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
	return Canonical(t, eng.Result())
}

// Canonical encodes rows as sorted JSON texts with numbers as on the wire.
func Canonical(t testing.TB, rows []change.Row) []string {
	t.Helper()
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		// Round trip through the wire form, so numbers compare as text.
		var back map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
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

// Folded is what a reaction sees: every result message of the query, in
// order, checked and folded into a result set.
type Folded struct {
	Rows     []string
	Messages []*change.Result
	InputSeq []uint64
}

// Fold reads the query's results subject from the start. It fails the
// test when the seqs are not exactly 1..n (a gap or a duplicate), a
// message id is not <query>:<seq>, or a diff does not apply (a deleted or
// updated row that is not in the set).
func Fold(t testing.TB, conn *bus.Conn, topo streams.Topology, id string) Folded {
	t.Helper()
	var out Folded
	set := map[string]int{}
	var problem error
	_, err := conn.Replay(context.Background(), bus.ReplayOptions{
		Stream: topo.Results.Name, FilterSubjects: []string{topo.ResultSubject(bus.Token(id))},
	}, func(d *bus.Delivery) error {
		res, err := reaction.DecodeResult(d.Data)
		if err != nil {
			return err
		}
		n := uint64(len(out.Messages)) + 1
		if res.Seq != n || d.ID != fmt.Sprintf("%s:%d", id, n) || res.Query != id {
			return fmt.Errorf("message %d at stream sequence %d: seq %d, id %q, query %q", n, d.StreamSeq, res.Seq, d.ID, res.Query)
		}
		in, err := strconv.ParseUint(d.Header[queryservice.HeaderInputSeq], 10, 64)
		if err != nil {
			return fmt.Errorf("message %d: input seq header: %w", n, err)
		}
		if k := len(out.InputSeq); k > 0 && in <= out.InputSeq[k-1] && n > 1 {
			return fmt.Errorf("message %d covers input %d, not after message %d's %d", n, in, n-1, out.InputSeq[k-1])
		}
		out.Messages = append(out.Messages, res)
		out.InputSeq = append(out.InputSeq, in)
		take := func(r change.Row, what string) {
			k := Canonical(t, []change.Row{r})[0]
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
			set[Canonical(t, []change.Row{u.After})[0]]++
		}
		for _, r := range res.Added {
			set[Canonical(t, []change.Row{r})[0]]++
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
			out.Rows = append(out.Rows, k)
		}
	}
	slices.Sort(out.Rows)
	return out
}

// WaitFolded waits, within a deadline, until query id has published (its
// initial message at least) and its folded results equal want.
func WaitFolded(t testing.TB, conn *bus.Conn, topo streams.Topology, id string, want []string, within time.Duration) Folded {
	t.Helper()
	var got Folded
	testwait.UntilErr(context.Background(), t, within, "the folded results equal the query evaluated from scratch", func() (bool, error) {
		got = Fold(t, conn, topo, id)
		// A running query always published its initial message.
		if len(got.Messages) > 0 && slices.Equal(got.Rows, want) {
			return true, nil
		}
		return false, fmt.Errorf("query %s: %d messages fold to\n%v\nwant\n%v", id, len(got.Messages), got.Rows, want)
	})
	return got
}
