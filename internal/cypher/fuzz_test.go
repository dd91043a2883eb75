package cypher

import (
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	`MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers)-[:DRIVES]->(v:vehicles)
	 WHERE o.status = 'ready' AND v.zone = 'curbside'
	 RETURN o.id AS orderId, d.name AS driver, v.plate AS plate`,
	`MATCH (o:orders) RETURN o.status AS status, count(o) AS orders, sum(o.total) AS revenue`,
	`MATCH (r:Room)<-[:IN]-(s:Sensor) WITH r, avg(s.temp) AS t WHERE t < 18 OR t > 24 RETURN r.name AS room, t`,
	`MATCH (i:invoices) WHERE i.paid = false AND i.due < date('2024-01-01') - duration('P30D') RETURN i.id`,
	`MATCH (a) OPTIONAL MATCH (a)-[r:R {w: 1}]-(b:B|C) WHERE b.x IN [1, 2.5, null] RETURN a, collect(DISTINCT b.x) AS xs`,
	`MATCH (n) WHERE drasi.previousValue(n.status, 'none') <> n.status RETURN n.id, drasi.changeDateTime(n) AS at`,
	`MATCH (n) RETURN [x IN n.l WHERE x > 1 | x ^ 2][1..] AS l, CASE n.k WHEN 1 THEN 'a' ELSE 'b' END AS k, {m: n.m}.m AS m`,
	`MATCH (n) RETURN all(x IN n.l WHERE x IS NOT NULL) AS ok, n.s =~ '^a.*' AS re, toString(n.f) + 'x' AS s, -9223372036854775808 AS min`,
	"MATCH (n:`odd label`) RETURN n.`odd key` AS `col`, $param AS p // comment",
	`MATCH (n) RETURN n ORDER BY n.x LIMIT 3`,
	`MATCH (a)-[*1..2]->(b) RETURN b`,
	"RETURN 0x1F + 0o17 + 1_000 + .5e3 AS n, '\\u00e9\\n' AS s",
}

// FuzzParse checks that Parse and Analyze never panic or hang, and that
// whatever they accept can be evaluated (with unbound slots) without panic.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Parse(src)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("Parse error %T is not *SyntaxError: %v", err, err)
			}
			return
		}
		for _, qp := range q.Parts {
			for _, it := range qp.Projection.Items {
				roundTrip(t, ExprString(it.Expr))
			}
		}
		p, err := Analyze(q)
		if err != nil {
			if _, ok := err.(*SemanticError); !ok {
				t.Fatalf("Analyze error %T is not *SemanticError: %v", err, err)
			}
			return
		}
		if strings.Contains(strings.ToLower(src), "range") {
			return // range() may legitimately build huge lists
		}
		for _, part := range p.Parts {
			env := &Env{Row: make([]Value, len(part.Vars)), Keys: make([]Value, len(part.GroupKeys)),
				Aggregates: make([]Value, len(part.Aggregates))}
			for _, m := range part.Matches {
				_, _ = EvalPredicate(m.Where, env)
			}
			for _, it := range part.Items {
				_, _ = Eval(it.Expr, env)
				_ = ExprString(it.Expr)
			}
		}
	})
}

// FuzzEval evaluates arbitrary expressions over a fixed binding: no panics,
// and every error is one of the package's typed errors.
func FuzzEval(f *testing.F) {
	for _, s := range []string{
		"n.total * 2 + n.qty", "toString(n.total) + n.status", "[x IN n.tags | x + 1]",
		"substring(n.status, 1, 2)", "date('2020-01-01') + duration('P1M')", "n.meta[n.status]",
		"1 / 0", "-9223372036854775808 / -1", "round(2.5, 3)", "split('a,b', ',')[-1]",
		"datetime({year: 2020, timezone: '+01:00'}).epochMillis", "duration({seconds: 1.5}) * 3",
		"drasi.previousValue(n.total, 0) - n.total", "$list[0] IN n.tags",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if strings.Contains(strings.ToLower(src), "range") {
			return
		}
		e, env, err := exprEnv(t, src)
		if err != nil {
			return
		}
		_, err = Eval(e, env)
		if err == nil {
			return
		}
		switch err.(type) {
		case *EvalError:
		default:
			t.Fatalf("Eval(%q): untyped error %T: %v", src, err, err)
		}
	})
}
