package cypher

import (
	"errors"
	"math"
	"testing"
	"time"
)

// testElem is a minimal Element for tests.
type testElem struct {
	id     string
	labels []string
	props  map[string]Value
	rel    bool
}

func (e *testElem) ElementID() string { return e.id }
func (e *testElem) Labels() []string  { return e.labels }
func (e *testElem) Property(name string) (Value, bool) {
	v, ok := e.props[name]
	return v, ok
}
func (e *testElem) Properties() map[string]Value { return e.props }
func (e *testElem) IsRelation() bool             { return e.rel }

// testHost serves previous versions and change times from maps.
type testHost struct {
	prev  map[string]Element
	times map[string]DateTime
}

func (h *testHost) PreviousVersion(e Element) (Element, bool) {
	p, ok := h.prev[e.ElementID()]
	return p, ok
}

func (h *testHost) ChangeTime(e Element) (DateTime, bool) {
	t, ok := h.times[e.ElementID()]
	return t, ok
}

var (
	nodeN = &testElem{id: "orders:1", labels: []string{"orders", "Urgent"}, props: map[string]Value{
		"id": int64(1), "status": "ready", "total": 12.5, "qty": int64(3), "tags": []Value{"a", "b"},
		"meta": map[string]Value{"k": "v"}, "none": nil,
	}}
	nodeM = &testElem{id: "drivers:7", labels: []string{"drivers"}, props: map[string]Value{"name": "Ann", "id": int64(7)}}
	relR  = &testElem{id: "rel:1", labels: []string{"ASSIGNED_TO"}, props: map[string]Value{"since": int64(2020)}, rel: true}
	prevN = &testElem{id: "orders:1", labels: []string{"orders"}, props: map[string]Value{"id": int64(1), "status": "new", "total": 10.0}}
)

// exprEnv compiles src as the single RETURN item of a query that binds n,
// r and m, and returns the expression with an Env binding them.
func exprEnv(t testing.TB, src string) (Expr, *Env, error) {
	t.Helper()
	p, err := Compile("MATCH (n)-[r]->(m) RETURN " + src + " AS x")
	if err != nil {
		return nil, nil, err
	}
	part := p.Parts[0]
	row := make([]Value, len(part.Vars))
	for i, v := range part.Vars {
		switch v.Name {
		case "n":
			row[i] = nodeN
		case "m":
			row[i] = nodeM
		case "r":
			row[i] = relR
		}
	}
	env := &Env{
		Row:    row,
		Params: map[string]Value{"p": int64(5), "s": "abc", "list": []Value{int64(1), int64(2)}, "nul": nil},
		Host: &testHost{
			prev:  map[string]Element{"orders:1": prevN},
			times: map[string]DateTime{"orders:1": NewDateTime(mustTime("2024-05-01T10:00:00Z"))},
		},
	}
	return part.Items[0].Expr, env, nil
}

func evalSrc(t testing.TB, src string) (Value, error) {
	t.Helper()
	e, env, err := exprEnv(t, src)
	if err != nil {
		return nil, err
	}
	return Eval(e, env)
}

// sameValue is strict equality for tests: same dynamic type and Compare 0,
// NaN equal to NaN, -0.0 distinct from 0.0 only through the type check.
func sameValue(a, b Value) bool {
	if TypeName(a) != TypeName(b) {
		return false
	}
	switch x := a.(type) {
	case float64:
		y := b.(float64)
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.IsNaN(x) && math.IsNaN(y)
		}
		return x == y && math.Signbit(x) == math.Signbit(y)
	case []Value:
		y := b.([]Value)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]Value:
		y := b.(map[string]Value)
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	}
	return Compare(a, b) == 0
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func mustTime(s string) (t time.Time) {
	dt, err := ParseDateTime(s)
	if err != nil {
		panic(err)
	}
	return dt.Time()
}
