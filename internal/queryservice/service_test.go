package queryservice_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

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
	for _, q := range []query{filterQuery, aggregateQuery, totalQuery, joinQuery} {
		f.start(t, q, "instance-a").waitRunning(t)
	}
	for range 5 {
		more := f.changes(t, w, 100)
		f.publish(t, more)
		msgs = append(msgs, more...)
	}
	for _, q := range []query{filterQuery, aggregateQuery, totalQuery, joinQuery} {
		got := f.waitFolded(t, q.spec.ID, reference(t, q.spec, msgs))
		if len(got.messages) < 2 {
			t.Errorf("%s: %d result messages: the live changes changed nothing?", q.spec.ID, len(got.messages))
		}
	}
}

// A change that fails validation goes to the dead-letter stream with the
// reason; the valid changes around it are applied.
func TestInvalidChangeIsDeadLetteredAndTheOthersApplied(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(2, "shop")
	msgs := f.changes(t, w, 50)
	f.publish(t, msgs)
	f.start(t, aggregateQuery, "instance-a").waitRunning(t)

	before := f.changes(t, w, 20)
	bad := bus.Message{Subject: f.topo.ChangeSubject("shop", "orders", "orders:1"), ID: "shop:bad",
		Data: []byte(`{"op":"upsert","source":"shop","element":{"type":"node","id":"orders:1","labels":["orders"]},"ts_ms":1}`)}
	after := f.changes(t, w, 20)
	live := append(append(append([]bus.Message{}, before...), bad), after...)
	badSeq := f.publish(t, live) - uint64(len(after))
	msgs = append(append(msgs, before...), after...)
	f.waitFolded(t, aggregateQuery.spec.ID, reference(t, aggregateQuery.spec, msgs))

	durable := "query_" + aggregateQuery.spec.ID
	var letters []*bus.Delivery
	testwait.UntilErr(context.Background(), t, 30*time.Second, "the dead letter", func() (bool, error) {
		letters = letters[:0]
		_, err := f.conn.Replay(context.Background(), bus.ReplayOptions{
			Stream: f.topo.DeadLetters.Name, FilterSubjects: []string{f.topo.DeadLetterSubject(f.topo.Changes.Name, durable)},
		}, func(d *bus.Delivery) error { letters = append(letters, d); return nil })
		return len(letters) > 0, err
	})
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	h := letters[0].Header
	if h[bus.HeaderDLQSequence] != strconv.FormatUint(badSeq, 10) || !strings.Contains(h[bus.HeaderDLQReason], `"upsert"`) ||
		string(letters[0].Data) != string(bad.Data) {
		t.Fatalf("dead letter: headers %v, body %s; want sequence %d and a reason naming the bad op", h, letters[0].Data, badSeq)
	}
}
