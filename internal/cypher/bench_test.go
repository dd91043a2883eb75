package cypher

import (
	"strings"
	"testing"
	"time"
)

const benchFilter = "n.status = 'ready' AND n.total > 10 AND m.name STARTS WITH 'A' AND n.qty IN [1, 2, 3] AND r.since >= $p"

// TestFilterEvaluationDoesNotAllocate: predicates evaluate without
// allocating. A regular expression match reuses regexp's pooled matchers,
// which the race detector's sync.Pool drops at random, so that case is
// checked only without it: scripts/test.sh runs this test once more
// without -race.
func TestFilterEvaluationDoesNotAllocate(t *testing.T) {
	pooled := map[string]bool{"n.status =~ 'r.*y'": true}
	for _, src := range []string{
		benchFilter,
		"n.status <> 'x' OR n.none IS NULL",
		"NOT (n.total < 1.5) AND n:orders",
		"coalesce(n.none, n.qty) = 3",
		"CASE WHEN n.qty > 2 THEN true ELSE false END",
		"coalesce(n.due, date('2000-01-01')) < date('2024-01-01') - duration('P30D')",
		"n.tags = ['a', 'b'] AND n.meta = {k: 'v'}",
		"n.status IN ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'ready'] AND n.qty IN [1, 2, 3.0, 4, 5, 6, 7, 8, null]",
		"n.status =~ 'r.*y'",
	} {
		e, env, err := exprEnv(t, src)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := EvalPredicate(e, env); err != nil || !ok {
			t.Fatalf("%s: %v %v", src, ok, err)
		}
		allocs := testing.AllocsPerRun(200, func() { _, _ = EvalPredicate(e, env) })
		if pooled[src] && raceEnabled {
			t.Logf("%s: %.1f allocations per evaluation under the race detector (not checked: pooled matchers)", src, allocs)
			continue
		}
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per evaluation, want 0", src, allocs)
		}
	}
}

func TestNestedComprehensionBudget(t *testing.T) {
	src := "size(" + strings.Repeat("[x IN [1, 2, 3, 4] | ", 20) + "1" + strings.Repeat("]", 20) + ")"
	start := time.Now()
	_, err := evalSrc(t, src)
	if !isErr(err, ErrInvalidArgument) {
		t.Fatalf("exponential comprehension: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("budget took %v", d)
	}
}

func TestLongAggregatingItemCompilesFast(t *testing.T) {
	src := "MATCH (n) RETURN n.k AS k, count(*)" + strings.Repeat(" + n.k", 20000) + " AS c"
	start := time.Now()
	p, err := Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("compile took %v", d)
	}
	v, err := Eval(p.Parts[0].Items[1].Expr, &Env{Keys: []Value{int64(1)}, Aggregates: []Value{int64(5)}})
	if err != nil || v != int64(20005) {
		t.Fatalf("got %v, %v", v, err)
	}
}

func BenchmarkEvalFilter(b *testing.B) {
	e, env, err := exprEnv(b, benchFilter)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := EvalPredicate(e, env); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkEvalProjection(b *testing.B) {
	e, env, err := exprEnv(b, "{id: n.id, status: toUpper(n.status), total: n.total * 1.2, driver: m.name + ' (' + toString(m.id) + ')'}")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Eval(e, env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendKey(b *testing.B) {
	v := []Value{"ready", int64(42), 12.5, map[string]Value{"a": int64(1), "b": "x"}}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendKey(buf[:0], v[0])
		buf = AppendKey(buf, v[1])
		buf = AppendKey(buf, v[2])
	}
}

func BenchmarkCompile(b *testing.B) {
	src := fuzzSeeds[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(src); err != nil {
			b.Fatal(err)
		}
	}
}
