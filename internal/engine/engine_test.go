package engine_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/cypher"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/change"
)

func node(op change.Op, id string, labels []string, props map[string]any, pos string) *change.Envelope {
	return &change.Envelope{Op: op, Source: "pg", Element: change.Element{Type: change.TypeNode, ID: id, Labels: labels, Properties: props}, TsMs: 1, Position: pos}
}

func rel(op change.Op, id, typ, from, to string, pos string) *change.Envelope {
	return &change.Envelope{Op: op, Source: "pg", Element: change.Element{Type: change.TypeRelation, ID: id, Labels: []string{typ}, From: from, To: to}, TsMs: 1, Position: pos}
}

func mustNew(t *testing.T, query string) *engine.Query {
	t.Helper()
	q, err := engine.New(engine.QuerySpec{ID: "t", Query: query})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name string
		spec engine.QuerySpec
		is   error
		want string
	}{
		{"syntax", engine.QuerySpec{ID: "q", Query: "MATCH (n:A)\nRETURN n.x AS"}, cypher.ErrSyntax, "line 2, column"},
		{"unsupported", engine.QuerySpec{ID: "q", Query: "MATCH (n) RETURN n ORDER BY n.x"}, cypher.ErrUnsupported, "line 1, column"},
		{"match after with", engine.QuerySpec{ID: "q", Query: "MATCH (n:A) WITH n MATCH (n)-->(m) RETURN m"}, engine.ErrUnsupportedQuery, "MATCH after WITH"},
		{"match after optional", engine.QuerySpec{ID: "q", Query: "MATCH (n:A) OPTIONAL MATCH (n)-->(m) MATCH (m)-->(o) RETURN o"}, engine.ErrUnsupportedQuery, "MATCH after OPTIONAL MATCH"},
		{"missing parameter", engine.QuerySpec{ID: "q", Query: "MATCH (n:A) WHERE n.x = $x RETURN n"}, engine.ErrInvalidSpec, "$x"},
		{"no id", engine.QuerySpec{Query: "MATCH (n) RETURN n"}, engine.ErrInvalidSpec, "id: missing"},
		{"bad join", engine.QuerySpec{ID: "q", Query: "MATCH (n) RETURN n", Joins: []engine.Join{{ID: "J", Keys: []engine.JoinKey{{Label: "A", Property: "x"}}}}}, engine.ErrInvalidSpec, "joins[0].keys"},
		{"duplicate join", engine.QuerySpec{ID: "q", Query: "MATCH (n) RETURN n", Joins: []engine.Join{
			{ID: "J", Keys: []engine.JoinKey{{Label: "A", Property: "x"}, {Label: "B", Property: "y"}}},
			{ID: "J", Keys: []engine.JoinKey{{Label: "A", Property: "x"}, {Label: "B", Property: "y"}}}}}, engine.ErrInvalidSpec, "declared twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := engine.New(c.spec)
			if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %v containing %q", err, c.is, c.want)
			}
		})
	}
}

func TestBadChangesLeaveStateUnchanged(t *testing.T) {
	q := mustNew(t, "MATCH (n:A) RETURN n.x AS x")
	if _, err := q.Apply(node(change.OpInsert, "1", []string{"A"}, map[string]any{"x": 1}, "1")); err != nil {
		t.Fatal(err)
	}
	cp, err := q.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		envs []*change.Envelope
	}{
		{"invalid op", []*change.Envelope{{Op: "upsert", Source: "pg", Element: change.Element{Type: "node", ID: "2"}}}},
		{"bad number", []*change.Envelope{node(change.OpInsert, "2", []string{"A"}, map[string]any{"x": json.Number("1x")}, "2")}},
		{"node id used as relation", []*change.Envelope{rel(change.OpInsert, "1", "R", "1", "1", "3")}},
		{"batch with one bad envelope", []*change.Envelope{
			node(change.OpInsert, "3", []string{"A"}, map[string]any{"x": 3}, "4"),
			node(change.OpInsert, "4", []string{"A"}, map[string]any{"x": struct{}{}}, "5"),
		}},
		{"batch: id both node and relation", []*change.Envelope{
			node(change.OpInsert, "5", []string{"A"}, nil, "6"),
			rel(change.OpInsert, "5", "R", "1", "1", "7"),
		}},
		{"nil", []*change.Envelope{nil}},
		{"batch: tombstone of a relation, then a node with its id", []*change.Envelope{
			{Op: change.OpDelete, Source: "pg", Element: change.Element{Type: change.TypeRelation, ID: "9"}, Position: "8"},
			node(change.OpInsert, "9", []string{"A"}, nil, "9"),
		}},
	}
	for _, c := range bad {
		d, err := q.ApplyBatch(c.envs)
		if !errors.Is(err, engine.ErrBadChange) || !d.Empty() {
			t.Errorf("%s: err = %v, diff = %+v; want ErrBadChange and no diff", c.name, err, d)
		}
	}
	after, err := q.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cp, after) {
		t.Fatal("a rejected change modified the state")
	}
}

func TestCheckpointRoundTripAndErrors(t *testing.T) {
	spec := engine.QuerySpec{ID: "cp", Query: "MATCH (a:A)-[:R]->(b:B) RETURN b.k AS k, count(*) AS n, collect(a.x) AS xs, drasi.previousValue(b.k) AS pk",
		Parameters: map[string]any{"unused": 1}}
	q, err := engine.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	envs := []*change.Envelope{
		node(change.OpInsert, "a1", []string{"A"}, map[string]any{"x": 1.5, "tags": []any{"p", json.Number("2")}, "m": map[string]any{"z": true}}, "1"),
		node(change.OpInsert, "b1", []string{"B"}, map[string]any{"k": "one"}, "2"),
		rel(change.OpInsert, "r1", "R", "a1", "b1", "3"),
		node(change.OpUpdate, "b1", []string{"B"}, map[string]any{"k": "uno"}, "4"),
		node(change.OpDelete, "gone", nil, nil, "5"),
		rel(change.OpInsert, "r2", "R", "a1", "nobody", "6"),
	}
	for _, e := range envs {
		if _, err := q.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	cp1, err := q.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	cp2, _ := q.Checkpoint()
	if !bytes.Equal(cp1, cp2) {
		t.Fatal("two checkpoints of the same state differ")
	}
	r, err := engine.Restore(spec, cp1)
	if err != nil {
		t.Fatal(err)
	}
	cp3, _ := r.Checkpoint()
	if !bytes.Equal(cp1, cp3) {
		t.Fatal("checkpoint after restore differs")
	}
	if a, b := jsonText(q.Result()), jsonText(r.Result()); a != b {
		t.Fatalf("restored result %s, want %s", b, a)
	}
	if w := r.Watermark(); w["pg"] != "6" {
		t.Fatalf("watermark = %v", w)
	}
	// Stale after restore: the versions survived.
	if d, err := r.Apply(node(change.OpUpdate, "b1", []string{"B"}, map[string]any{"k": "old"}, "3")); err != nil || !d.Empty() {
		t.Fatalf("stale change after restore: %+v, %v", d, err)
	}
	// Both continue identically.
	next := node(change.OpInsert, "b2", []string{"B"}, map[string]any{"k": "uno"}, "7")
	next2 := rel(change.OpInsert, "r3", "R", "a1", "b2", "8")
	for _, e := range []*change.Envelope{next, next2} {
		d1, _ := q.Apply(e)
		d2, _ := r.Apply(e)
		if a, b := jsonText(d1), jsonText(d2); a != b {
			t.Fatalf("diverged: %s vs %s", a, b)
		}
	}

	corrupt := append([]byte(nil), cp1...)
	corrupt[len(corrupt)/2] ^= 1
	if _, err := engine.Restore(spec, corrupt); !errors.Is(err, engine.ErrBadCheckpoint) {
		t.Errorf("corrupt: %v", err)
	}
	if _, err := engine.Restore(spec, cp1[:20]); !errors.Is(err, engine.ErrBadCheckpoint) {
		t.Errorf("truncated: %v", err)
	}
	other := spec
	other.Query = "MATCH (a:A) RETURN a"
	if _, err := engine.Restore(other, cp1); !errors.Is(err, engine.ErrCheckpointMismatch) {
		t.Errorf("other query: %v", err)
	}
	otherParams := spec
	otherParams.Parameters = map[string]any{"unused": 2}
	if _, err := engine.Restore(otherParams, cp1); !errors.Is(err, engine.ErrCheckpointMismatch) {
		t.Errorf("other parameters: %v", err)
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func TestInitialAndAdvanceTime(t *testing.T) {
	q := mustNew(t, "MATCH (n:A) RETURN count(n) AS c, sum(n.x) AS s, avg(n.x) AS a, min(n.x) AS lo, collect(n.x) AS xs")
	want := `[{"a":null,"c":0,"lo":null,"s":0,"xs":[]}]`
	if got := jsonText(q.Initial()); got != want {
		t.Fatalf("initial = %s, want %s", got, want)
	}
	if got := jsonText(q.Result()); got != want {
		t.Fatalf("result = %s, want %s", got, want)
	}
	d, err := q.AdvanceTime(time.Now())
	if err != nil || !d.Empty() {
		t.Fatalf("AdvanceTime = %+v, %v", d, err)
	}
	// A filtered no-group aggregate can be absent initially.
	q2 := mustNew(t, "MATCH (n:A) WITH count(n) AS c WHERE c > 0 RETURN c")
	if len(q2.Initial()) != 0 {
		t.Fatalf("initial = %v", q2.Initial())
	}
	d, _ = q2.Apply(node(change.OpInsert, "1", []string{"A"}, nil, ""))
	if jsonText(d.Added) != `[{"c":1}]` {
		t.Fatalf("diff = %s", jsonText(d))
	}
}

func TestEvaluationErrorsAreWarnings(t *testing.T) {
	q := mustNew(t, "MATCH (n:A) RETURN n.id AS id, n.x + 1 AS y")
	d, err := q.Apply(node(change.OpInsert, "1", []string{"A"}, map[string]any{"id": 1, "x": map[string]any{"a": 1}}, ""))
	if err != nil {
		t.Fatal(err)
	}
	if jsonText(d.Added) != `[{"id":1,"y":null}]` || len(d.Warnings) != 1 {
		t.Fatalf("diff = %s, warnings %v", jsonText(d.Added), d.Warnings)
	}
}

// TestDeterministicOrder: the same changes give byte-identical diffs, sorted
// by row identity, in independent queries.
func TestDeterministicOrder(t *testing.T) {
	run := func() string {
		q := mustNew(t, "MATCH (a:A)-[:R]-(b:A) RETURN a.n AS a, b.n AS b")
		var envs []*change.Envelope
		for _, id := range []string{"3", "1", "2", "5", "4"} {
			envs = append(envs, node(change.OpInsert, id, []string{"A"}, map[string]any{"n": id}, ""))
		}
		for i, p := range [][2]string{{"1", "2"}, {"2", "3"}, {"3", "1"}, {"4", "5"}, {"5", "5"}} {
			envs = append(envs, rel(change.OpInsert, "r"+p[0]+p[1]+string(rune('a'+i)), "R", p[0], p[1], ""))
		}
		d, err := q.ApplyBatch(envs)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := q.Apply(node(change.OpDelete, "2", nil, nil, ""))
		if err != nil {
			t.Fatal(err)
		}
		return jsonText(d) + jsonText(d2)
	}
	first := run()
	for i := 0; i < 5; i++ {
		if got := run(); got != first {
			t.Fatalf("run %d differs:\n%s\n%s", i, got, first)
		}
	}
	if !strings.Contains(first, `{"a":"5","b":"5"}`) {
		t.Fatalf("self-loop row missing: %s", first)
	}
}

func TestDiffResult(t *testing.T) {
	q := mustNew(t, "MATCH (n:A) RETURN n.x AS x")
	d, err := q.Apply(node(change.OpInsert, "1", []string{"A"}, map[string]any{"x": 1}, "1"))
	if err != nil {
		t.Fatal(err)
	}
	r := d.Result("q1", 7, 99)
	if got := jsonText(r); got != `{"query":"q1","seq":7,"ts_ms":99,"added":[{"x":1}],"updated":[],"deleted":[]}` {
		t.Fatalf("result = %s", got)
	}
}

// FuzzRestore feeds arbitrary checkpoint bodies (with a valid checksum, so
// that the decoder itself is exercised) to Restore: it must return an error
// or a query, never panic, and a restored query must checkpoint to the
// same bytes.
func FuzzRestore(f *testing.F) {
	spec := engine.QuerySpec{ID: "f", Query: "MATCH (a:A)-[r:R]->(b) RETURN a.x AS x, count(b) AS n"}
	q, err := engine.New(spec)
	if err != nil {
		f.Fatal(err)
	}
	_, _ = q.ApplyBatch([]*change.Envelope{
		node(change.OpInsert, "1", []string{"A"}, map[string]any{"x": 1, "l": []any{"a", 2.5}, "m": map[string]any{"k": nil}}, "1"),
		node(change.OpInsert, "2", []string{"B"}, nil, "2"),
		rel(change.OpInsert, "r", "R", "1", "2", "3"),
		node(change.OpDelete, "3", nil, nil, "4"),
	})
	cp, err := q.Checkpoint()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cp[:len(cp)-32])
	f.Add([]byte("TRIBQCP\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		sum := sha256.Sum256(body)
		data := append(append([]byte(nil), body...), sum[:]...)
		r, err := engine.Restore(spec, data)
		if err != nil {
			if !errors.Is(err, engine.ErrBadCheckpoint) && !errors.Is(err, engine.ErrCheckpointMismatch) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		again, err := r.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.Restore(spec, again); err != nil {
			t.Fatalf("restoring a fresh checkpoint: %v", err)
		}
	})
}
