package cypher

import (
	"errors"
	"strings"
	"testing"
)

func varNames(p *Part) []string {
	var out []string
	for _, v := range p.Vars {
		out = append(out, v.Name)
	}
	return out
}

func TestAnalyzeSlots(t *testing.T) {
	p, err := Compile(`MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers)<-[x:DRIVES]-(v), (o {id: 1})-[]-(:other)
		OPTIONAL MATCH (d)-[r]->(w)
		RETURN o.id AS orderId, d, r`)
	if err != nil {
		t.Fatal(err)
	}
	part := p.Parts[0]
	if got := strings.Join(varNames(part), ","); got != "o,_anon_rel_1,d,x,v,_anon_rel_2,_anon_node_3,r,w" {
		t.Fatalf("vars = %s", got)
	}
	if part.NumInputs != 0 || len(part.Matches) != 2 {
		t.Fatalf("part = %+v", part)
	}
	m := part.Matches[0]
	if len(m.Nodes) != 4 || len(m.Rels) != 3 {
		t.Fatalf("nodes %d rels %d", len(m.Nodes), len(m.Rels))
	}
	o := m.Node(0)
	if o.Name != "o" || len(o.Labels) != 1 || o.Labels[0][0] != "orders" || len(o.Props) != 1 || o.Props[0].Key != "id" {
		t.Errorf("o merged = %+v", o)
	}
	// (o)-[:ASSIGNED_TO]->(d): From o(0) To d(2).
	if r := m.Rels[0]; r.From != 0 || r.To != 2 || !r.Directed || r.Types[0] != "ASSIGNED_TO" || !r.Anonymous || r.Slot != 1 {
		t.Errorf("rel0 = %+v", r)
	}
	// (d)<-[x:DRIVES]-(v): normalized From v(4) To d(2).
	if r := m.Rels[1]; r.From != 4 || r.To != 2 || !r.Directed || r.Name != "x" {
		t.Errorf("rel1 = %+v", r)
	}
	// (o)-[]-(:other): undirected, From o To anon node.
	if r := m.Rels[2]; r.From != 0 || r.To != 6 || r.Directed {
		t.Errorf("rel2 = %+v", r)
	}
	if got := m.NewSlots; len(got) != 7 {
		t.Errorf("match0 new slots = %v", got)
	}
	opt := part.Matches[1]
	if !opt.Optional || len(opt.NewSlots) != 2 || opt.NewSlots[0] != 7 || opt.NewSlots[1] != 8 {
		t.Errorf("optional = %+v", opt)
	}
	if d := opt.Node(2); d == nil || !d.Bound {
		t.Errorf("d in optional should be bound: %+v", d)
	}
	if w := opt.Node(8); w == nil || w.Bound {
		t.Errorf("w should be new: %+v", w)
	}
	if part.Items[1].Kind != VarNode || part.Items[2].Kind != VarRelation || part.Items[0].Kind != VarValue {
		t.Errorf("item kinds: %v %v %v", part.Items[0].Kind, part.Items[1].Kind, part.Items[2].Kind)
	}
	if strings.Join(p.Columns, ",") != "orderId,d,r" {
		t.Errorf("columns = %v", p.Columns)
	}
	// AST slots are filled in.
	pat := p.Query.Parts[0].Matches[0].Patterns[0]
	if pat.Nodes[0].Slot != 0 || pat.Rels[0].Slot != 1 || pat.Nodes[2].Slot != 4 {
		t.Errorf("AST slots: %d %d %d", pat.Nodes[0].Slot, pat.Rels[0].Slot, pat.Nodes[2].Slot)
	}
}

func TestAnalyzeParts(t *testing.T) {
	p, err := Compile(`MATCH (a:A)-[:R]->(b:B)
		WITH a, count(b) AS n, sum(b.v) AS s WHERE n > 1
		MATCH (a)-[:S]->(c)
		RETURN a.name AS name, n, s, c.x AS cx, $threshold AS t`)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Parts) != 2 {
		t.Fatal("parts")
	}
	p0, p1 := p.Parts[0], p.Parts[1]
	if !p0.Aggregating || len(p0.GroupKeys) != 1 || p0.GroupKeys[0] != 0 || len(p0.Aggregates) != 2 {
		t.Fatalf("part0 = %+v", p0)
	}
	if p0.Aggregates[0].Func != AggCount || p0.Aggregates[1].Func != AggSum || p0.Items[0].Kind != VarNode {
		t.Errorf("aggregates = %+v %+v", p0.Aggregates[0], p0.Aggregates[1])
	}
	// The WITH ... WHERE reads the output row: n is column 1.
	w := p0.Where.(*Binary).L.(*Variable)
	if w.Name != "n" || w.Index != 1 || w.Scope != ScopeRow {
		t.Errorf("where var = %+v", w)
	}
	if p1.NumInputs != 3 || strings.Join(varNames(p1), ",") != "a,n,s,_anon_rel_2,c" {
		t.Errorf("part1 vars = %v (inputs %d)", varNames(p1), p1.NumInputs)
	}
	if !p1.Matches[0].Node(0).Bound || p1.Vars[0].Kind != VarNode {
		t.Errorf("a should be a bound node input")
	}
	if p1.Aggregating || strings.Join(p.Params, ",") != "threshold" {
		t.Errorf("params = %v", p.Params)
	}
}

func TestAnalyzeAggregation(t *testing.T) {
	p, err := Compile(`MATCH (o:orders)
		RETURN o.status AS status, count(*) AS n, count(*) + 1 AS n1, toUpper(o.status) + ':' + count(o) AS label,
		       avg(o.total) AS a, collect(DISTINCT o.id) AS ids, max(o.x) - min(o.x) AS spread,
		       size([x IN collect(o.total) WHERE x > 10]) AS big, 2 AS two`)
	if err != nil {
		t.Fatal(err)
	}
	part := p.Parts[0]
	if !part.Aggregating {
		t.Fatal("not aggregating")
	}
	if got := part.GroupKeys; len(got) != 2 || got[0] != 0 || got[1] != 8 {
		t.Errorf("group keys = %v", got)
	}
	// count(*) is shared between n and n1.
	var funcs []string
	for _, a := range part.Aggregates {
		s := a.Func.String()
		if a.Star {
			s += "*"
		}
		if a.Distinct {
			s += "D"
		}
		funcs = append(funcs, s)
	}
	if strings.Join(funcs, ",") != "count*,count,avg,collectD,max,min,collect" {
		t.Errorf("aggregates = %v", funcs)
	}
	// Evaluate the aggregating items for one group.
	env := &Env{Keys: []Value{"ready", int64(2)}, Aggregates: []Value{int64(4), int64(3), 7.5, l(int64(1)), int64(9), int64(2), l(5.0, 20.0, 30.0)}}
	want := []Value{nil, int64(4), int64(5), "READY:3", 7.5, l(int64(1)), int64(7), int64(2), nil}
	for i, it := range part.Items {
		if !it.Aggregating {
			continue
		}
		v, err := Eval(it.Expr, env)
		if err != nil || !sameValue(v, want[i]) {
			t.Errorf("item %s = %v, %v; want %v", it.Name, v, err, want[i])
		}
	}
	// The grouping subexpression inside label was rewritten to a KeyRef.
	if !strings.Contains(canonical(part.Items[3].Expr), "#K0") {
		t.Errorf("label expr = %s", canonical(part.Items[3].Expr))
	}
	if ExprString(part.Items[3].Expr) != "((toUpper(o.status) + ':') + count(o))" {
		t.Errorf("label text = %s", ExprString(part.Items[3].Expr))
	}
}

func TestAnalyzeAggregationNoKeys(t *testing.T) {
	p, err := Compile("MATCH (n) RETURN count(n) AS c")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Parts[0].Aggregating || len(p.Parts[0].GroupKeys) != 0 {
		t.Fatal("want aggregation without keys")
	}
	// A grouping key that is an element variable, used inside the
	// aggregating item through a property.
	p, err = Compile("MATCH (n)-->(m) RETURN n, n.x + count(m) AS c")
	if err != nil {
		t.Fatal(err)
	}
	it := p.Parts[0].Items[1]
	v, err := Eval(it.Expr, &Env{Keys: []Value{nodeN}, Aggregates: []Value{int64(2)}})
	if err != nil || v != nil {
		t.Fatalf("nodeN has no x, want null + 2 = null: %v, %v", v, err)
	}
	v, err = Eval(it.Expr, &Env{Keys: []Value{relR}, Aggregates: []Value{int64(2)}})
	if err != nil || v != nil {
		t.Fatalf("got %v, %v", v, err)
	}
	withX := &testElem{id: "x", props: map[string]Value{"x": int64(40)}}
	if v, err = Eval(it.Expr, &Env{Keys: []Value{withX}, Aggregates: []Value{int64(2)}}); err != nil || v != int64(42) {
		t.Fatalf("got %v, %v", v, err)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	for _, c := range []struct {
		src       string
		line, col int
		msg       string
		kind      error
	}{
		{"MATCH (n) RETURN m", 1, 18, "unknown variable 'm'", ErrSemantic},
		{"MATCH (n)\nWHERE foo(n.x) RETURN n", 2, 7, "unknown function 'foo'", ErrSemantic},
		{"MATCH (n) WHERE count(n) > 1 RETURN n", 1, 17, "aggregate function count is not allowed in WHERE", ErrSemantic},
		{"MATCH (n {x: count(*)}) RETURN n", 1, 14, "not allowed in a pattern property", ErrSemantic},
		{"MATCH (n) WITH n, count(*) AS c WHERE sum(c) > 1 RETURN n", 1, 39, "not allowed in WITH ... WHERE", ErrSemantic},
		{"MATCH (n) RETURN count(sum(n.x)) AS c", 1, 24, "cannot be nested", ErrSemantic},
		{"MATCH (n) RETURN n.x + count(*) AS c", 1, 18, "variable 'n' is used in an aggregating expression but is not a grouping key", ErrSemantic},
		{"MATCH (n) RETURN n.y AS y, n.x + count(*) AS c", 1, 28, "not a grouping key", ErrSemantic},
		{"MATCH (n) RETURN datetime() AS now", 1, 18, "datetime() without arguments returns the current time", ErrUnsupported},
		{"MATCH (n) RETURN date() AS d", 1, 18, "non-deterministic", ErrUnsupported},
		{"MATCH (n) RETURN localdatetime() AS d", 1, 18, "non-deterministic", ErrUnsupported},
		{"MATCH (n) RETURN timestamp() AS t", 1, 18, "timestamp() is not allowed", ErrUnsupported},
		{"MATCH (n) RETURN rand() AS t", 1, 18, "non-deterministic", ErrUnsupported},
		{"MATCH (n) WHERE drasi.trueFor(n.x > 1, duration('PT5M')) RETURN n", 1, 17, "drasi.trueFor is not yet supported", ErrUnsupported},
		{"MATCH (n) WHERE drasi.trueLater(n.x, datetime('2020-01-01')) RETURN n", 1, 17, "not yet supported", ErrUnsupported},
		{"MATCH (n) WHERE drasi.trueUntil(n.x, datetime('2020-01-01')) RETURN n", 1, 17, "not yet supported", ErrUnsupported},
		{"MATCH (n) RETURN toUpper() AS x", 1, 18, "toUpper expects 1 argument, got 0", ErrSemantic},
		{"MATCH (n) RETURN substring('a') AS x", 1, 18, "substring expects 2 to 3 arguments, got 1", ErrSemantic},
		{"MATCH (n) RETURN coalesce() AS x", 1, 18, "at least 1", ErrSemantic},
		{"MATCH (n) RETURN toUpper(*) AS x", 1, 18, "only count accepts *", ErrSemantic},
		{"MATCH (n) RETURN toUpper(DISTINCT n.x) AS x", 1, 18, "DISTINCT is only allowed in aggregate", ErrSemantic},
		{"MATCH (n) RETURN drasi.previousValue(count(n)) AS x", 1, 38, "cannot be used inside drasi.previousValue", ErrSemantic},
		{"MATCH (n) WITH n.x RETURN 1 AS one", 1, 16, "must be aliased", ErrSemantic},
		{"MATCH (n) RETURN n.x AS a, n.y AS a", 1, 28, "duplicate column name 'a'", ErrSemantic},
		{"MATCH (n) RETURN n, n", 1, 21, "duplicate column name 'n'", ErrSemantic},
		{"MATCH (n)-[n]->(m) RETURN n", 1, 10, "variable 'n' is a node, not a relationship", ErrSemantic},
		{"MATCH (a)-[r]->(b), (c)-[r]->(d) RETURN r", 1, 24, "used more than once", ErrSemantic},
		{"MATCH (a) WITH a.x AS v MATCH (v)-->(b) RETURN b", 1, 31, "variable 'v' is a value, not a node", ErrSemantic},
		{"MATCH (a) WITH a.x AS v RETURN a", 1, 32, "unknown variable 'a'", ErrSemantic},
		{"MATCH (a) WITH a.x AS v WHERE a.y > 1 RETURN v", 1, 31, "unknown variable 'a'", ErrSemantic},
		{"MATCH (a) RETURN [x IN a.l | count(x)] AS c", 1, 36, "unknown variable 'x'", ErrSemantic},
		{"MATCH (a) RETURN x AS y", 1, 18, "unknown variable 'x'", ErrSemantic},
		{"MATCH (a) RETURN [x IN [1] | x] AS l, x AS y", 1, 39, "unknown variable 'x'", ErrSemantic},
		{"MATCH (a) WHERE a.s =~ '(?=x)' RETURN a", 1, 24, "invalid regular expression", ErrSemantic},
	} {
		_, err := Compile(c.src)
		var se *SemanticError
		if !errors.As(err, &se) {
			t.Errorf("Compile(%q): %v is not a *SemanticError", c.src, err)
			continue
		}
		if se.Line != c.line || se.Column != c.col || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Compile(%q):\n got  %v\n want line %d, column %d: ...%s...", c.src, err, c.line, c.col, c.msg)
		}
		if !errors.Is(err, c.kind) {
			t.Errorf("Compile(%q): %v does not wrap %v", c.src, err, c.kind)
		}
	}
}

func TestAnalyzeOnce(t *testing.T) {
	q, err := Parse("MATCH (n) RETURN n.x AS x, count(*) AS c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Analyze(q); err != nil {
		t.Fatal(err)
	}
	if _, err := Analyze(q); !errors.Is(err, ErrSemantic) {
		t.Fatalf("second Analyze: %v", err)
	}
	if _, err := Analyze(nil); !errors.Is(err, ErrSemantic) {
		t.Fatalf("nil query: %v", err)
	}
	if _, err := Analyze(&Query{}); !errors.Is(err, ErrSemantic) {
		t.Fatalf("empty query: %v", err)
	}
}

func TestAnalyzeAnonymousNamesAvoidUserNames(t *testing.T) {
	p, err := Compile("MATCH (_anon_node_1)-->() RETURN _anon_node_1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range p.Parts[0].Vars {
		if seen[v.Name] {
			t.Fatalf("duplicate slot name %s", v.Name)
		}
		seen[v.Name] = true
	}
}

func TestLookupFunction(t *testing.T) {
	if known, agg := LookupFunction("COUNT"); !known || !agg {
		t.Error("count")
	}
	if known, agg := LookupFunction("toUpper"); !known || agg {
		t.Error("toUpper")
	}
	if known, _ := LookupFunction("nope"); known {
		t.Error("nope")
	}
}

func TestSlotPredicates(t *testing.T) {
	p, err := Compile("MATCH (a:orders {status: 'ready'})-[r:ASSIGNED_TO|OTHER {since: 2020}]->(b {name: a.nope, id: 3 + 4}), (a {qty: $p}) RETURN a")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Parts[0].Matches[0]
	a, b, r := m.Node(0), m.Nodes[1], m.Rels[0]
	if len(a.Props) != 2 || a.PropsReadRow || !b.PropsReadRow || r.PropsReadRow {
		t.Fatalf("a=%+v b=%+v r=%+v", a, b, r)
	}
	if lit, ok := b.Props[1].Value.(*Literal); !ok || lit.Value != int64(7) {
		t.Errorf("3 + 4 not folded: %#v", b.Props[1].Value)
	}
	env := &Env{Row: make([]Value, len(p.Parts[0].Vars)), Params: map[string]Value{"p": int64(3)}}
	if !a.Accepts(nodeN) || a.Accepts(nodeM) || a.Accepts(relR) {
		t.Error("a.Accepts")
	}
	if ok, err := a.PropsHold(nodeN, env); !ok || err != nil {
		t.Errorf("a.PropsHold = %v, %v", ok, err)
	}
	env.Params["p"] = 3.0 // 3 = 3.0
	if ok, _ := a.PropsHold(nodeN, env); !ok {
		t.Error("3 = 3.0 in property predicate")
	}
	env.Params["p"] = nil
	if ok, _ := a.PropsHold(nodeN, env); ok {
		t.Error("null predicate must fail")
	}
	if !r.Accepts(relR) || r.Accepts(nodeN) || (&RelSlot{Types: []string{"X"}}).Accepts(relR) || !(&RelSlot{}).Accepts(relR) {
		t.Error("r.Accepts")
	}
	if ok, _ := r.PropsHold(relR, env); !ok {
		t.Error("r.PropsHold")
	}
	if _, err := a.PropsHold(nodeN, &Env{}); !errors.Is(err, ErrMissingParameter) {
		t.Errorf("missing param: %v", err)
	}
}

func TestConstantFolding(t *testing.T) {
	p, err := Compile("MATCH (n) WHERE n.d < date('2024-01-01') - duration('P30D') AND n.x IN [1, 2, [3]] RETURN {a: [1, 2.5, 'x'], b: {c: null}} AS m, 1 / 0 AS bad")
	if err != nil {
		t.Fatal(err)
	}
	w := ExprString(p.Parts[0].Matches[0].Where)
	if w != "((n.d < date('2023-12-02')) AND (n.x IN [1, 2, [3]]))" {
		t.Errorf("where = %s", w)
	}
	if got := ExprString(p.Parts[0].Items[0].Expr); got != "{a: [1, 2.5, 'x'], b: {c: null}}" {
		t.Errorf("item = %s", got)
	}
	// 1 / 0 is not folded: its error belongs to evaluation.
	if _, ok := p.Parts[0].Items[1].Expr.(*Binary); !ok {
		t.Errorf("1 / 0 was folded")
	}
	// Folded literals print as Cypher that re-parses to the same value.
	for _, it := range p.Parts[0].Items[:1] {
		lit := it.Expr.(*Literal)
		q, err := Compile("RETURN " + ExprString(lit) + " AS x")
		if err != nil {
			t.Fatal(err)
		}
		v, err := Eval(q.Parts[0].Items[0].Expr, nil)
		if err != nil || !sameValue(v, lit.Value) {
			t.Errorf("re-parsed %s = %v, %v", ExprString(lit), v, err)
		}
	}
}

func TestAnalyzeHandBuiltQuery(t *testing.T) {
	q, err := Parse("MATCH (n) WITH n RETURN n")
	if err != nil {
		t.Fatal(err)
	}
	q.Parts[0].Projection.Return = true // RETURN in the middle
	if _, err := Analyze(q); !errors.Is(err, ErrSemantic) {
		t.Fatalf("middle RETURN: %v", err)
	}
	q2, _ := Parse("MATCH (n) RETURN n")
	q2.Parts[0].Projection.Return = false // no RETURN at all
	if _, err := Analyze(q2); !errors.Is(err, ErrSemantic) {
		t.Fatalf("no RETURN: %v", err)
	}
}
