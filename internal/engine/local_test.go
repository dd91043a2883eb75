package engine

import (
	"fmt"
	"testing"

	"github.com/tributary/tributary/pkg/change"
)

// TestWorkIsLocal proves that a change is evaluated in its neighbourhood,
// never by re-evaluating the query: with thousands of elements loaded, one
// change examines a handful of candidates, for filters, comma patterns
// joined in WHERE (a key probe, not a cartesian product), configured joins,
// paths and OPTIONAL MATCH.
func TestWorkIsLocal(t *testing.T) {
	const n = 3000
	cases := []struct {
		name  string
		query string
		joins []Join
	}{
		{"filter", "MATCH (e:Emp) WHERE e.age > 30 RETURN e.name AS name", nil},
		{"comma join", "MATCH (e:Emp), (d:Dept) WHERE e.dept = d.code RETURN e.name AS e, d.name AS d", nil},
		{"configured join", "MATCH (e:Emp)-[:IN]->(d:Dept) RETURN e.name AS e, d.name AS d",
			[]Join{{ID: "IN", Keys: []JoinKey{{Label: "Emp", Property: "dept"}, {Label: "Dept", Property: "code"}}}}},
		{"path", "MATCH (a:Emp)-[:KNOWS]->(b:Emp)-[:KNOWS]->(c:Emp) RETURN a.name AS a, c.name AS c", nil},
		{"optional", "MATCH (d:Dept) OPTIONAL MATCH (e:Emp)-[:WORKS]->(d) RETURN d.name AS d, count(e) AS n, collect(e.name) AS names", nil},
		{"grouped", "MATCH (e:Emp) RETURN e.dept AS dept, avg(e.age) AS age", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := New(QuerySpec{ID: "l", Query: c.query, Joins: c.joins})
			if err != nil {
				t.Fatal(err)
			}
			var envs []*change.Envelope
			for i := 0; i < n; i++ {
				envs = append(envs,
					&change.Envelope{Op: change.OpInsert, Source: "s", Element: change.Element{Type: "node", ID: fmt.Sprint("e", i), Labels: []string{"Emp"},
						Properties: map[string]any{"name": fmt.Sprint("e", i), "age": i % 60, "dept": i % 1000}}},
					&change.Envelope{Op: change.OpInsert, Source: "s", Element: change.Element{Type: "node", ID: fmt.Sprint("d", i), Labels: []string{"Dept"},
						Properties: map[string]any{"name": fmt.Sprint("d", i), "code": i}}},
					&change.Envelope{Op: change.OpInsert, Source: "s", Element: change.Element{Type: "relation", ID: fmt.Sprint("k", i), Labels: []string{"KNOWS"},
						From: fmt.Sprint("e", i), To: fmt.Sprint("e", (i+1)%n)}},
					&change.Envelope{Op: change.OpInsert, Source: "s", Element: change.Element{Type: "relation", ID: fmt.Sprint("w", i), Labels: []string{"WORKS"},
						From: fmt.Sprint("e", i), To: fmt.Sprint("d", i%1000)}},
				)
			}
			if _, err := q.ApplyBatch(envs); err != nil {
				t.Fatal(err)
			}
			q.visited = 0
			d, err := q.Apply(&change.Envelope{Op: change.OpUpdate, Source: "s", Element: change.Element{Type: "node", ID: "e7", Labels: []string{"Emp"},
				Properties: map[string]any{"age": 45, "dept": 8, "name": "x7"}}})
			if err != nil {
				t.Fatal(err)
			}
			if d.Empty() {
				t.Fatal("the change changed nothing; the test proves nothing")
			}
			t.Logf("%d candidates examined", q.visited)
			if q.visited > 100 {
				t.Fatalf("one change examined %d candidates among %d elements", q.visited, 4*n)
			}
		})
	}
}
