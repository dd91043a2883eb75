package engine_test

import (
	"slices"
	"testing"

	"github.com/tributary/tributary/internal/engine"
)

func TestInputsNameTheLabelsAQueryReads(t *testing.T) {
	for _, tc := range []struct {
		query  string
		joins  []engine.Join
		labels []string
		all    bool
	}{
		{query: "MATCH (o:orders) WHERE o.total > 1 RETURN o.id AS id", labels: []string{"orders"}},
		{query: "MATCH (a:A:B)-[:R|S]->(c:C|D) RETURN a.x AS x", labels: []string{"A", "B", "C", "D", "R", "S"}},
		{query: "MATCH (a:A)-[:LINK]->(b:B) OPTIONAL MATCH (b)-[:X]->(c:C) RETURN a.x AS x, c.y AS y",
			joins:  []engine.Join{{ID: "LINK", Keys: []engine.JoinKey{{Label: "A", Property: "k"}, {Label: "B", Property: "k"}}}},
			labels: []string{"A", "B", "C", "LINK", "X"}},
		{query: "MATCH (n) RETURN count(n) AS n", all: true},
		{query: "MATCH (a:A)-[r]->(b:B) RETURN a.x AS x", labels: []string{"A", "B"}, all: true},
	} {
		q, err := engine.New(engine.QuerySpec{ID: "q", Query: tc.query, Joins: tc.joins})
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		in := q.Inputs()
		if !slices.Equal(in.Labels, tc.labels) || in.All != tc.all {
			t.Errorf("%s: Inputs() = %+v, want labels %v all %v", tc.query, in, tc.labels, tc.all)
		}
	}
}
