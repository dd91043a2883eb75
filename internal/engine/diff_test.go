package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tributary/tributary/internal/cypher"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/change"
)

// diffQueries are the queries of the differential test.
var diffQueries = []string{
	`MATCH (n:A) WHERE n.x > 0 RETURN n.name AS name, n.x AS x`,
	`MATCH (n:A) RETURN n.k AS k, count(*) AS c, sum(n.x) AS s, avg(n.x) AS a, min(n.x) AS lo, max(n.x) AS hi, collect(n.x) AS xs`,
	`MATCH (n:B) RETURN count(n) AS c, sum(n.x) AS s, avg(n.x) AS a, min(n.x) AS lo, max(n.x) AS hi`,
	`MATCH (n:A) RETURN n.name AS name, count(DISTINCT n.x) AS d, collect(DISTINCT n.x) AS dx, sum(DISTINCT n.x) AS sd`,
	`MATCH (a:A) OPTIONAL MATCH (a)-[r:R]->(b:B) RETURN a.name AS an, b.x AS bx, r.x AS rx`,
	`MATCH (a:A) OPTIONAL MATCH (a)-[:R]->(b) OPTIONAL MATCH (b)-[:S]->(c) RETURN a.x AS ax, b.x AS bx, c.x AS cx`,
	`MATCH (a:A)-[:R]->(b)-[:R]->(c) RETURN a.x AS ax, b.name AS bn, c.x AS cx`,
	`MATCH (a)-[r1]->(b)-[r2]->(c)-[r3]->(d) RETURN count(*) AS paths, collect(d.name) AS names`,
	`MATCH (a:A)-[r:R]-(b) RETURN a.name AS an, b.name AS bn, r.x AS rx`,
	`MATCH (a:A)-[:J]->(b:B) RETURN a.name AS an, b.x AS bx`,
	`MATCH (a:A), (b:B) WHERE a.k = b.k AND a.x <= b.x RETURN a.name AS an, b.name AS bn`,
	`MATCH (a:A)-[:R]->(b) WITH a.k AS k, avg(b.x) AS m WHERE m > 0 RETURN count(k) AS groups, avg(m) AS mm`,
	`MATCH (a:A) WITH a.name AS name, a.x AS x WHERE x IS NOT NULL RETURN name, sum(x) AS total, max(x) AS top`,
	`MATCH (a:A)-[:R]->(b) RETURN DISTINCT b.name AS bn`,
	`MATCH (a:A) RETURN a.name AS name, drasi.previousValue(a.x) AS px, a.x AS x`,
	`MATCH (a:A)-[r:R]->(a) RETURN a AS node, r AS rel`,
	`MATCH (b:B) OPTIONAL MATCH (a:A)-[:J]->(b) RETURN b.name AS bn, count(a) AS n, collect(a.x) AS xs`,
	`MATCH (a:A)-[:R]->(b:B) WITH DISTINCT a.k AS k, b RETURN k, count(*) AS n, min(b.x) AS mb`,
	`MATCH (a:A {k: $k})-[:R|S]->(b) RETURN a.name AS an, b.name AS bn`,
	`MATCH (a:A) WHERE drasi.previousValue(a.x, -100) < a.x RETURN a.name AS name, a.x AS x`,
	`MATCH (a:A:B) RETURN a.name AS name, a.k AS k`,
	`MATCH (a {name: 'a'})-[r:R]->(b:A|C) RETURN a.name AS an, r.x AS rx, b.name AS bn`,
	`MATCH (a)-[r:R {x: 1}]-(b) RETURN a.name AS an, b.name AS bn`,
	`MATCH (a:A), (b:B) WHERE a.x > b.x OR a.name = b.name RETURN a.name AS an, b.name AS bn`,
	`MATCH (a:A) MATCH (a)-[:R]->(b) RETURN a, count(b) AS n, collect(b) AS bs`,
	`MATCH (a)-[:R]->(b)<-[]-(c) WHERE a <> c RETURN a.name AS an, b.name AS bn, c.name AS cn`,
	`MATCH (b:B) OPTIONAL MATCH (b)-[:J]-(a) OPTIONAL MATCH (a)-[:R]->(c:C) RETURN b.name AS bn, a.name AS an, count(c) AS nc`,
	`MATCH (a:A) WITH a.k AS k, collect(a.x) AS xs, count(*) AS n WITH k, n, size(xs) AS s WHERE n > 1 RETURN k, n, s`,
	`MATCH (a:A)-[r]->(b) WITH DISTINCT type(r) AS t, b.k AS k RETURN t, k`,
}

var diffJoins = []engine.Join{{ID: "J", Keys: []engine.JoinKey{{Label: "A", Property: "k"}, {Label: "B", Property: "k"}}}}

var diffParams = map[string]any{"k": 1}

// step is one change of a generated sequence: one envelope or a batch.
type step struct {
	envs  []*change.Envelope
	stale bool // a replay of earlier envelopes: must give an empty diff
}

type gen struct {
	r   *rand.Rand
	pos int
	// sources the envelopes come from; unpositioned sequences carry no
	// positions (arrival order is the version, so replays are not stale).
	sources      []string
	unpositioned bool
	nodes        int
	labels       []string
	hist         []*change.Envelope
	// state known to the generator, to build identical updates
	cur map[string]*change.Envelope
}

func (g *gen) nextPos() string {
	g.pos++
	return strconv.Itoa(g.pos)
}

func (g *gen) value(dom []any) any { return dom[g.r.IntN(len(dom))] }

var (
	xDomain    = []any{nil, json.Number("0"), json.Number("1"), json.Number("2"), json.Number("1.0"), json.Number("2.5"), json.Number("-1")}
	kDomain    = []any{nil, json.Number("1"), json.Number("2"), json.Number("1.0")}
	nameDomain = []any{nil, "a", "b", "c"}
)

func (g *gen) props() map[string]any {
	p := map[string]any{}
	for _, f := range []struct {
		name string
		dom  []any
	}{{"x", xDomain}, {"k", kDomain}, {"name", nameDomain}} {
		if g.r.IntN(5) > 0 {
			if v := g.value(f.dom); v != nil || g.r.IntN(2) == 0 {
				p[f.name] = v
			}
		}
	}
	return p
}

func (g *gen) nodeLabels() []string {
	n := 1 + g.r.IntN(2)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, g.labels[g.r.IntN(len(g.labels))])
	}
	return out
}

func (g *gen) nodeID() string { return "n" + strconv.Itoa(g.r.IntN(g.nodes)) }

func (g *gen) env(op change.Op, el change.Element) *change.Envelope {
	e := &change.Envelope{Op: op, Source: g.sources[g.r.IntN(len(g.sources))], Element: el, TsMs: int64(1000 + g.pos), Position: g.nextPos()}
	if g.unpositioned {
		e.Position = ""
	}
	return e
}

// one generates a single envelope.
func (g *gen) one() *change.Envelope {
	switch c := g.r.IntN(100); {
	case c < 22:
		return g.env(change.OpInsert, change.Element{Type: change.TypeNode, ID: g.nodeID(), Labels: g.nodeLabels(), Properties: g.props()})
	case c < 40:
		el := change.Element{Type: change.TypeNode, ID: g.nodeID(), Properties: g.props()}
		if g.r.IntN(3) == 0 {
			el.Labels = g.nodeLabels()
		}
		e := g.env(change.OpUpdate, el)
		if g.r.IntN(4) == 0 {
			for _, p := range []string{"x", "k", "name"} {
				if _, ok := el.Properties[p]; !ok {
					e.Unchanged = append(e.Unchanged, p)
					break
				}
			}
		}
		return e
	case c < 45:
		return g.env(change.OpDelete, change.Element{Type: change.TypeNode, ID: g.nodeID()})
	case c < 75:
		types := []string{"R", "R", "S"}
		from, to := g.nodeID(), g.nodeID()
		if g.r.IntN(6) == 0 {
			to = from // self-loop
		}
		p := map[string]any{}
		if g.r.IntN(2) == 0 {
			p["x"] = g.value(xDomain)
		}
		return g.env(change.OpInsert, change.Element{Type: change.TypeRelation, ID: "r" + strconv.Itoa(g.r.IntN(12)), Labels: []string{types[g.r.IntN(3)]}, From: from, To: to, Properties: p})
	case c < 81:
		return g.env(change.OpDelete, change.Element{Type: change.TypeRelation, ID: "r" + strconv.Itoa(g.r.IntN(12))})
	case c < 82:
		return g.env(change.OpTruncate, change.Element{Type: change.TypeNode, Labels: []string{g.labels[g.r.IntN(len(g.labels))]}})
	default:
		// An identical update of the last known state of some element.
		if len(g.hist) > 0 {
			last := g.hist[g.r.IntN(len(g.hist))]
			if last.Op == change.OpInsert {
				e := *last
				e.Op = change.OpUpdate
				e.Position = g.nextPos()
				if g.unpositioned {
					e.Position = ""
				}
				return &e
			}
		}
		return g.env(change.OpInsert, change.Element{Type: change.TypeNode, ID: g.nodeID(), Labels: g.nodeLabels(), Properties: g.props()})
	}
}

func (g *gen) sequence(n int) []step {
	var out []step
	for len(out) < n {
		switch c := g.r.IntN(10); {
		case c == 0 && len(g.hist) > 0 && !g.unpositioned:
			// Stale replay of 1-2 earlier envelopes.
			k := 1 + g.r.IntN(2)
			var envs []*change.Envelope
			for i := 0; i < k; i++ {
				envs = append(envs, g.hist[g.r.IntN(len(g.hist))])
			}
			out = append(out, step{envs: envs, stale: true})
		case c == 1:
			k := 2 + g.r.IntN(3)
			var envs []*change.Envelope
			for i := 0; i < k; i++ {
				envs = append(envs, g.one())
			}
			g.hist = append(g.hist, envs...)
			out = append(out, step{envs: envs})
		default:
			e := g.one()
			g.hist = append(g.hist, e)
			out = append(out, step{envs: []*change.Envelope{e}})
		}
	}
	return out
}

func newGen(seed uint64) *gen {
	r := rand.New(rand.NewPCG(seed, 0x7269627574617279))
	g := &gen{r: r, nodes: 4 + r.IntN(5), sources: []string{"s"}}
	if r.IntN(4) == 0 {
		g.sources = append(g.sources, "t")
	}
	g.unpositioned = r.IntN(5) == 0
	g.labels = []string{"A", "B", "C"}[:2+r.IntN(2)]
	return g
}

// checker runs one query through a sequence and checks every property.
type checker struct {
	spec  engine.QuerySpec
	prog  *cypher.Program
	param map[string]cypher.Value
}

func newChecker(t testing.TB, query string) *checker {
	spec := engine.QuerySpec{ID: "q", Query: query, Joins: diffJoins, Parameters: diffParams}
	prog, err := cypher.Compile(query)
	if err != nil {
		t.Fatalf("compile %s: %v", query, err)
	}
	params := map[string]cypher.Value{}
	for k, v := range diffParams {
		params[k], _ = cypher.FromJSON(v)
	}
	return &checker{spec: spec, prog: prog, param: params}
}

// run applies the steps and returns a description of the first violated
// property, with the step index, or "" when all held.
func (c *checker) run(steps []step, restoreAt int) (int, string) {
	at, msg, _ := c.runCounting(steps, restoreAt)
	return at, msg
}

// runCounting is run, also counting the steps whose diff was not empty.
func (c *checker) runCounting(steps []step, restoreAt int) (int, string, int) {
	nonEmpty := 0
	q, err := engine.New(c.spec)
	if err != nil {
		return -1, "New: " + err.Error(), nonEmpty
	}
	ref := newRefGraph()
	want := ref.evaluate(c.prog, diffJoins, c.param)
	if msg := compareRows(q.Initial(), want); msg != "" {
		return -1, "initial result: " + msg, nonEmpty
	}
	var twin *engine.Query // restored copy, run in lockstep after restoreAt
	prev := q.Result()
	for i, st := range steps {
		if i == restoreAt {
			cp, err := q.Checkpoint()
			if err != nil {
				return i, "checkpoint: " + err.Error(), nonEmpty
			}
			twin, err = engine.Restore(c.spec, cp)
			if err != nil {
				return i, "restore: " + err.Error(), nonEmpty
			}
			cp2, err := twin.Checkpoint()
			if err != nil {
				return i, "checkpoint of restored: " + err.Error(), nonEmpty
			}
			if !bytes.Equal(cp, cp2) {
				return i, "checkpoint bytes differ after restore", nonEmpty
			}
			if msg := compareRows(twin.Result(), prev); msg != "" {
				return i, "restored result differs: " + msg, nonEmpty
			}
		}
		d, err := q.ApplyBatch(st.envs)
		if err != nil {
			return i, "apply: " + err.Error(), nonEmpty
		}
		for _, w := range d.Warnings {
			if !strings.Contains(w, "type") && !strings.Contains(w, "cannot") {
				return i, "unexpected warning: " + w, nonEmpty
			}
		}
		if twin != nil {
			d2, err := twin.ApplyBatch(st.envs)
			if err != nil {
				return i, "apply to restored: " + err.Error(), nonEmpty
			}
			if a, b := diffJSON(d), diffJSON(d2); a != b {
				return i, fmt.Sprintf("restored query diverged:\n  original: %s\n  restored: %s", a, b), nonEmpty
			}
		}
		for _, e := range st.envs {
			ref.apply(e)
		}
		got := q.Result()
		want := ref.evaluate(c.prog, diffJoins, c.param)
		if msg := compareRows(got, want); msg != "" {
			return i, "result differs from reference: " + msg + "\n  diff: " + diffJSON(d), nonEmpty
		}
		if st.stale && !d.Empty() {
			return i, "stale replay gave a diff: " + diffJSON(d), nonEmpty
		}
		for _, u := range d.Updated {
			if jsonOf(u.Before) == jsonOf(u.After) {
				return i, "no-op update: " + jsonOf(u.Before), nonEmpty
			}
		}
		applied, msg := applyDiff(prev, d)
		if msg != "" {
			return i, "diff does not apply to the previous result: " + msg + "\n  diff: " + diffJSON(d), nonEmpty
		}
		if msg := compareRows(got, applied); msg != "" {
			return i, "previous result + diff != new result: " + msg + "\n  diff: " + diffJSON(d), nonEmpty
		}
		if !d.Empty() {
			nonEmpty++
		}
		prev = got
	}
	return len(steps), "", nonEmpty
}

func jsonOf(v any) string {
	b, err := json.Marshal(normJSON(v))
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

// normJSON makes numbers comparable as text: integer-valued floats print
// like integers anyway; NaN cannot appear (no NaN in the generator).
func normJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) {
			return "NaN"
		}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normJSON(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normJSON(e)
		}
		return out
	}
	return v
}

func diffJSON(d engine.Diff) string {
	return jsonOf(map[string]any{"added": rowsAny(d.Added), "updated": updAny(d.Updated), "deleted": rowsAny(d.Deleted)})
}

func rowsAny(rs []change.Row) []any {
	out := []any{}
	for _, r := range rs {
		out = append(out, map[string]any(r))
	}
	return out
}

func updAny(us []change.RowUpdate) []any {
	out := []any{}
	for _, u := range us {
		out = append(out, map[string]any{"before": map[string]any(u.Before), "after": map[string]any(u.After)})
	}
	return out
}

// compareRows compares two result sets as multisets of JSON texts (numbers
// compare by value: 1 and 1.0 print alike).
func compareRows(got, want []map[string]any) string {
	g, w := sortedJSON(got), sortedJSON(want)
	if strings.Join(g, "\n") == strings.Join(w, "\n") {
		return ""
	}
	return fmt.Sprintf("\n    got:  %s\n    want: %s", strings.Join(g, "\n          "), strings.Join(w, "\n          "))
}

func sortedJSON(rows []map[string]any) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = jsonOf(r)
	}
	sort.Strings(out)
	return out
}

// applyDiff applies a diff to a result multiset.
func applyDiff(prev []map[string]any, d engine.Diff) ([]map[string]any, string) {
	bag := map[string]int{}
	rows := map[string]map[string]any{}
	for _, r := range prev {
		k := jsonOf(r)
		bag[k]++
		rows[k] = r
	}
	take := func(r map[string]any) bool {
		k := jsonOf(r)
		if bag[k] == 0 {
			return false
		}
		bag[k]--
		return true
	}
	put := func(r map[string]any) {
		k := jsonOf(r)
		bag[k]++
		rows[k] = r
	}
	for _, r := range d.Deleted {
		if !take(r) {
			return nil, "deleted row not in the result: " + jsonOf(r)
		}
	}
	for _, u := range d.Updated {
		if !take(u.Before) {
			return nil, "updated row not in the result: " + jsonOf(u.Before)
		}
	}
	for _, u := range d.Updated {
		put(u.After)
	}
	for _, r := range d.Added {
		put(r)
	}
	var out []map[string]any
	for k, n := range bag {
		for i := 0; i < n; i++ {
			out = append(out, rows[k])
		}
	}
	return out, ""
}

func describe(steps []step) string {
	var b strings.Builder
	for i, st := range steps {
		fmt.Fprintf(&b, "  step %d%s:\n", i, map[bool]string{true: " (stale replay)"}[st.stale])
		for _, e := range st.envs {
			j, _ := e.Encode()
			fmt.Fprintf(&b, "    %s\n", j)
		}
	}
	return b.String()
}

// shrink removes steps while the sequence still fails, to report a small
// failing sequence.
func (c *checker) shrink(steps []step, restoreAt int) ([]step, int) {
	for changed := true; changed; {
		changed = false
		for i := len(steps) - 1; i >= 0; i-- {
			cand := append(append([]step(nil), steps[:i]...), steps[i+1:]...)
			ra := restoreAt
			if i < restoreAt {
				ra--
			}
			if _, msg := c.run(cand, ra); msg != "" {
				steps, restoreAt, changed = cand, ra, true
			}
		}
	}
	return steps, restoreAt
}

func sequences() int {
	if s := os.Getenv("TRIBUTARY_DIFF_SEQUENCES"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 300
}

// TestDifferential compares the engine with the reference evaluator on
// random graphs and change sequences: after every change the result equals
// the reference, previous result + diff equals the new result, no update is
// a no-op, stale replays give empty diffs, and a checkpoint restored
// mid-sequence continues with identical diffs. Seeded and reproducible:
// TRIBUTARY_DIFF_SEED replays one seed, TRIBUTARY_DIFF_SEQUENCES sets how
// many sequences run per query.
func TestDifferential(t *testing.T) {
	n := sequences()
	base := uint64(20261127)
	fixed := false
	if s := os.Getenv("TRIBUTARY_DIFF_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TRIBUTARY_DIFF_SEED: %v", err)
		}
		base, n, fixed = v, 1, true
	}
	for qi, query := range diffQueries {
		t.Run(fmt.Sprintf("q%02d", qi), func(t *testing.T) {
			c := newChecker(t, query)
			nonEmpty, total := 0, 0
			defer func() {
				// The generator must exercise the query: a test whose
				// diffs are all empty proves nothing.
				if !t.Failed() && !fixed && nonEmpty*30 < total {
					t.Errorf("only %d of %d steps changed the result", nonEmpty, total)
				}
			}()
			for s := 0; s < n; s++ {
				seed := base + uint64(s)*1000 + uint64(qi)
				if fixed {
					seed = base
				}
				g := newGen(seed)
				steps := g.sequence(15 + g.r.IntN(25))
				restoreAt := g.r.IntN(len(steps))
				at, msg, ne := c.runCounting(steps, restoreAt)
				nonEmpty += ne
				total += len(steps)
				if msg != "" {
					small, ra := c.shrink(steps[:at+1], restoreAt)
					at2, msg2 := c.run(small, ra)
					t.Fatalf("query %s\nseed %d (TRIBUTARY_DIFF_SEED=%d), failing at step %d: %s\n\nminimal failing sequence (%d steps, restore before step %d), fails at step %d: %s\n%s",
						query, seed, seed, at, msg, len(small), ra, at2, msg2, describe(small))
				}
			}
		})
	}
}
