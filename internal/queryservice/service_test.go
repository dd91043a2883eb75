package queryservice_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

var (
	filterQuery = query{spec: engine.QuerySpec{ID: "ready-orders",
		Query: "MATCH (o:orders) WHERE o.status = 'ready' RETURN o.id AS id, o.total AS total"}, sources: []string{"shop"}}
	aggregateQuery = query{spec: engine.QuerySpec{ID: "orders-by-status",
		Query: "MATCH (o:orders) RETURN o.status AS status, count(o) AS n, sum(o.total) AS revenue"}, sources: []string{"shop"}}
	totalQuery = query{spec: engine.QuerySpec{ID: "all-orders",
		Query: "MATCH (o:orders) RETURN count(o) AS n, sum(o.total) AS revenue, max(o.total) AS top"}, sources: []string{"shop"}}
	joinQuery = query{spec: engine.QuerySpec{ID: "curbside",
		Query: "MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers) WHERE o.status = 'ready' AND d.zone = 'curbside' RETURN o.id AS orderId, d.name AS driver",
		Joins: []engine.Join{{ID: "ASSIGNED_TO", Keys: []engine.JoinKey{{Label: "orders", Property: "driver_id"}, {Label: "drivers", Property: "id"}}}}},
		sources: []string{"shop"}}
)

// The main job: changes published by another producer, before and while
// the queries run, give results that fold to the query evaluated from
// scratch, for a filter, a grouped aggregation, an aggregation without
// grouping keys and a join; the first message of each holds the result
// of the history, and seqs are 1..n.
func TestResultsFoldToTheQueryEvaluatedFromScratch(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(1, "shop")
	msgs := f.changes(t, w, 300)
	f.publish(t, msgs)
	var svcs []*service
	for _, q := range []query{filterQuery, aggregateQuery, totalQuery, joinQuery} {
		s := f.start(t, q, "instance-a")
		s.waitRunning(t)
		svcs = append(svcs, s)
	}
	liveOrders := 0
	for range 5 {
		more := f.changes(t, w, 100)
		f.publish(t, more)
		msgs = append(msgs, more...)
		for _, m := range more {
			if strings.Contains(m.Subject, ".orders.") {
				liveOrders++
			}
		}
	}
	for _, q := range []query{filterQuery, aggregateQuery, totalQuery, joinQuery} {
		got := f.waitFolded(t, q.spec.ID, reference(t, q.spec, msgs))
		if len(got.Messages) < 2 {
			t.Errorf("%s: %d result messages: the live changes changed nothing?", q.spec.ID, len(got.Messages))
		}
	}
	// Metrics of the filter query: it reads orders only, so it applied
	// exactly the live changes of orders, never one of drivers.
	var m map[string]float64
	testwait.UntilErr(context.Background(), t, 30*time.Second, "the filter query applied every live change of orders", func() (bool, error) {
		m = gather(t, svcs[0].reg, filterQuery.spec.ID)
		return m["tributary_query_changes_applied_total"] >= float64(liveOrders), fmt.Errorf("metrics %v, %d live orders", m, liveOrders)
	})
	if m["tributary_query_changes_replayed_total"] == 0 || m["tributary_query_changes_applied_total"] != float64(liveOrders) ||
		m["tributary_query_results_published_total"] != float64(len(f.fold(t, filterQuery.spec.ID).Messages)) ||
		m["tributary_query_apply_seconds"] != m["tributary_query_changes_applied_total"] || m["tributary_query_elements"] == 0 || m["tributary_query_bootstrap_remaining_sequences"] != 0 ||
		// The new durable starts after what the bootstrap replayed: it
		// hands over no replayed change only to be skipped.
		m["tributary_query_changes_skipped_total"] != 0 {
		t.Errorf("metrics of %s: %v", filterQuery.spec.ID, m)
	}
}

// A change that fails validation goes to the dead-letter stream with the
// reason; the valid changes around it are applied. One in the history a
// new query replays is dead-lettered by its bootstrap (its durable starts
// after the history), one that comes live by its consumer; each once, also
// after a restart, which replays the history again.
func TestInvalidChangeIsDeadLetteredAndTheOthersApplied(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(2, "shop")
	badMsg := func(id string) bus.Message {
		return bus.Message{Subject: f.topo.ChangeSubject("shop", "orders", "orders:1"), ID: id,
			Data: []byte(`{"op":"upsert","source":"shop","element":{"type":"node","id":"orders:1","labels":["orders"]},"ts_ms":1}`)}
	}
	msgs := f.changes(t, w, 50)
	histAfter := f.changes(t, w, 10)
	histBadSeq := f.publish(t, append(append(append([]bus.Message{}, msgs...), badMsg("shop:bad-history")), histAfter...)) - uint64(len(histAfter))
	msgs = append(msgs, histAfter...)
	first := f.start(t, aggregateQuery, "instance-a")
	first.waitRunning(t)

	before := f.changes(t, w, 20)
	bad := badMsg("shop:bad")
	after := f.changes(t, w, 20)
	live := append(append(append([]bus.Message{}, before...), bad), after...)
	badSeq := f.publish(t, live) - uint64(len(after))
	msgs = append(append(msgs, before...), after...)
	f.waitFolded(t, aggregateQuery.spec.ID, reference(t, aggregateQuery.spec, msgs))

	durable := "query_" + aggregateQuery.spec.ID
	var letters []*bus.Delivery
	readLetters := func() (bool, error) {
		letters = letters[:0]
		_, err := f.conn.Replay(context.Background(), bus.ReplayOptions{
			Stream: f.topo.DeadLetters.Name, FilterSubjects: []string{f.topo.DeadLetterSubject(f.topo.Changes.Name, durable)},
		}, func(d *bus.Delivery) error { letters = append(letters, d); return nil })
		return len(letters) >= 2, err
	}
	check := func(when string) {
		t.Helper()
		if len(letters) != 2 {
			t.Fatalf("%s: %d dead letters, want 2", when, len(letters))
		}
		for i, seq := range []uint64{histBadSeq, badSeq} {
			h := letters[i].Header
			if h[bus.HeaderDLQSequence] != strconv.FormatUint(seq, 10) || h[bus.HeaderDLQConsumer] != durable ||
				!strings.Contains(h[bus.HeaderDLQReason], fmt.Sprintf("change at stream sequence %d", seq)) ||
				!strings.Contains(h[bus.HeaderDLQReason], `"upsert"`) || string(letters[i].Data) != string(bad.Data) {
				t.Fatalf("%s: dead letter %d: headers %v, body %s; want sequence %d, consumer %s and a reason naming the bad op",
					when, i, h, letters[i].Data, seq, durable)
			}
		}
	}
	testwait.UntilErr(context.Background(), t, 30*time.Second, "the dead letters", readLetters)
	check("first run")

	// A restart in another instance replays the history again: the
	// durable exists, so its consumer, not the bootstrap, dead-letters
	// what it delivers; nothing is dead-lettered twice.
	first.stop(t)
	f.start(t, aggregateQuery, "instance-b").waitRunning(t)
	more := f.changes(t, w, 5)
	f.publish(t, more)
	f.waitFolded(t, aggregateQuery.spec.ID, reference(t, aggregateQuery.spec, append(msgs, more...)))
	if _, err := readLetters(); err != nil {
		t.Fatal(err)
	}
	check("after a restart")
}

// Exactly once through restarts: the query is stopped and started again,
// in another instance each time, while changes keep coming; the results
// have seqs 1..n without a gap or a duplicate, and fold to the query
// evaluated from scratch.
func TestRestartsWhileChangesFlowAreExactlyOnce(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(3, "shop")
	msgs := f.changes(t, w, 200)
	f.publish(t, msgs)
	q := joinQuery

	var all []bus.Message
	all = append(all, msgs...)
	done := make(chan []bus.Message)
	stop := make(chan struct{})
	go func() { // the producer; the test waits for it on done
		var sent []bus.Message
		defer func() { done <- sent }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := make([]bus.Message, 10)
			for j := range batch {
				batch[j] = f.message(t, w.Next())
			}
			if _, err := f.pub.PublishBatch(context.Background(), batch); err != nil {
				t.Errorf("producer: %v", err)
				return
			}
			sent = append(sent, batch...)
			time.Sleep(5 * time.Millisecond) // pacing: changes keep flowing during the restarts
		}
	}()
	svc := f.start(t, q, "instance-0")
	for i := 1; i <= 6; i++ {
		svc.waitRunning(t)
		n := len(f.fold(t, q.spec.ID).Messages)
		testwait.Until(t, 60*time.Second, "new results", func() bool { return len(f.fold(t, q.spec.ID).Messages) > n+3 })
		svc.stop(t)
		svc = f.start(t, q, "instance-"+strconv.Itoa(i))
	}
	close(stop)
	all = append(all, <-done...)
	got := f.waitFolded(t, q.spec.ID, reference(t, q.spec, all))
	t.Logf("%d changes, %d result messages through 6 restarts", len(all), len(got.Messages))
}

// A query started after many changes rebuilds its state from history and
// publishes one message holding the whole result, equal to the query
// evaluated from scratch; then it follows live changes.
func TestQueryStartedAfterManyChangesGetsOneInitialResult(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(4, "shop")
	msgs := f.changes(t, w, 20000)
	f.publish(t, msgs)
	// One query: until the consumer acknowledges in batches, the live
	// consumer of a new query acknowledges the replayed history one
	// message at a time (about 4k/s, several times slower under -race).
	for _, q := range []query{aggregateQuery} {
		f.start(t, q, "instance-a").waitRunning(t)
		first := f.fold(t, q.spec.ID)
		if len(first.Messages) != 1 {
			t.Fatalf("%s: %d messages after the bootstrap, want 1", q.spec.ID, len(first.Messages))
		}
		m := first.Messages[0]
		if len(m.Updated) != 0 || len(m.Deleted) != 0 || !slices.Equal(canonical(t, m.Added), reference(t, q.spec, msgs)) {
			t.Fatalf("%s: the initial message is not the whole result: %+v", q.spec.ID, m)
		}
	}
	live := f.changes(t, w, 200)
	f.publish(t, live)
	msgs = append(msgs, live...)
	f.waitFoldedWithin(t, aggregateQuery.spec.ID, reference(t, aggregateQuery.spec, msgs), 150*time.Second)
}

// gather returns the value (a histogram's count) of each tributary_query_
// family for query id.
func gather(t *testing.T, reg *prometheus.Registry, id string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "tributary_query_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "query" && l.GetValue() == id {
					switch {
					case m.GetCounter() != nil:
						out[mf.GetName()] = m.GetCounter().GetValue()
					case m.GetGauge() != nil:
						out[mf.GetName()] = m.GetGauge().GetValue()
					case m.GetHistogram() != nil:
						out[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
					}
				}
			}
		}
	}
	return out
}
