package cypher

import (
	"errors"
	"strings"
	"testing"
)

func TestParseValidQueries(t *testing.T) {
	for _, src := range []string{
		"MATCH (n) RETURN n",
		"match (n:Person) where n.age > 30 return n.name",
		"MATCH (n:A|B) RETURN n",
		"MATCH (n:A:B) RETURN n",
		"MATCH (n:A&B) RETURN n",
		"MATCH (n {id: 1, name: 'x'}) RETURN n",
		"MATCH (n:`weird label` {`a b`: $p}) RETURN n.`a b` AS `c d`",
		"MATCH (a)-[r:REL]->(b) RETURN a, r, b",
		"MATCH (a)<-[r:REL|OTHER]-(b) RETURN a",
		"MATCH (a)-[r:REL|:OTHER]-(b) RETURN a",
		"MATCH (a)-->(b)<--(c)--(d) RETURN a",
		"MATCH (a)<-->(b) RETURN a",
		"MATCH (a)-[{since: 2020}]->(b) RETURN a",
		"MATCH (a)-[]->() RETURN a",
		"MATCH ()-[r]->() RETURN r",
		"MATCH (a), (b) WHERE a.x = b.y RETURN a, b",
		"MATCH (a) OPTIONAL MATCH (a)-[:R]->(b) WHERE b.v > 1 RETURN a, b",
		"MATCH (a) WITH a, count(*) AS c WHERE c > 1 MATCH (a)-->(b) RETURN a, b, c",
		"MATCH (a) WITH DISTINCT a.x AS x RETURN x",
		"MATCH (a) RETURN DISTINCT a.x",
		"MATCH (a) RETURN count(DISTINCT a.x) AS c, collect(a) AS all",
		"RETURN 1 AS one",
		"MATCH (a) RETURN a;",
		"// comment\nMATCH (a) /* block\ncomment */ RETURN a // trailing",
		"MATCH (a) RETURN [x IN a.list WHERE x > 1 | x * 2] AS l",
		"MATCH (a) RETURN CASE a.x WHEN 1 THEN 'one' ELSE 'other' END AS c",
		"MATCH (a) RETURN CASE WHEN a.x > 1 THEN 'big' END AS c",
		"MATCH (a) RETURN a.list[0], a.list[1..], a.list[..2], a.m['k']",
		"MATCH (a) WHERE a:Label AND NOT a:Other RETURN a",
		"MATCH (a) WHERE a.s STARTS WITH 'x' OR a.s ENDS WITH 'y' OR a.s CONTAINS 'z' OR a.s =~ 'r.*' RETURN a",
		"MATCH (a) WHERE a.x IS NULL OR a.y IS NOT NULL RETURN a",
		"MATCH (a) WHERE a.x IN [1, 2, 3] XOR a.y <> 2 RETURN a",
		"MATCH (a) WHERE a.x != 1 RETURN a",
		"MATCH (a) RETURN drasi.previousValue(a.x, 0) AS p, drasi.changeDateTime(a) AS t",
		"MATCH (a) RETURN all(x IN a.l WHERE x > 0) AS ok",
		"MATCH (a) RETURN {k: a.x, `q`: 1, 'str': 2} AS m",
		"MATCH (a) RETURN -a.x, +a.y, 2^-1",
		"MATCH (n) RETURN n.count, n.end, n.match",
		"MATCH (`match`) RETURN `match`",
	} {
		q, err := Parse(src)
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if len(q.Parts) == 0 || !q.Parts[len(q.Parts)-1].Projection.Return {
			t.Errorf("Parse(%q): no RETURN part", src)
		}
	}
}

func TestParseStructure(t *testing.T) {
	q, err := Parse("MATCH (a:A|B {x: 1})<-[r:R]-(:C), (d) OPTIONAL MATCH (a)-[:S]-(e) WHERE e.v = 2 WITH a, count(e) AS c WHERE c > 0 RETURN DISTINCT a.x AS ax, c")
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Parts) != 2 {
		t.Fatalf("parts = %d", len(q.Parts))
	}
	m := q.Parts[0].Matches
	if len(m) != 2 || m[0].Optional || !m[1].Optional {
		t.Fatalf("matches: %+v", m)
	}
	p0 := m[0].Patterns[0]
	if len(m[0].Patterns) != 2 || len(p0.Nodes) != 2 || len(p0.Rels) != 1 {
		t.Fatalf("pattern shape: %+v", p0)
	}
	if got := p0.Nodes[0].Labels; len(got) != 1 || strings.Join(got[0], ",") != "A,B" {
		t.Errorf("labels = %v", got)
	}
	if p0.Rels[0].Dir != DirLeft || p0.Rels[0].Var != "r" || p0.Rels[0].Types[0] != "R" {
		t.Errorf("rel = %+v", p0.Rels[0])
	}
	if p0.Nodes[1].Var != "" || p0.Nodes[1].Labels[0][0] != "C" {
		t.Errorf("anonymous node = %+v", p0.Nodes[1])
	}
	if m[1].Patterns[0].Rels[0].Dir != DirUndirected || m[1].Where == nil {
		t.Errorf("optional = %+v", m[1])
	}
	w := q.Parts[0].Projection
	if w.Return || w.Where == nil || len(w.Items) != 2 || w.Items[1].Alias != "c" {
		t.Errorf("with = %+v", w)
	}
	r := q.Parts[1].Projection
	if !r.Return || !r.Distinct || r.Items[0].Alias != "ax" || r.Items[1].Text != "c" {
		t.Errorf("return = %+v", r)
	}
}

func TestParseExpressionShape(t *testing.T) {
	for src, want := range map[string]string{
		"1 + 2 * 3":                   "(1 + (2 * 3))",
		"1 - 2 - 3":                   "((1 - 2) - 3)",
		"2 ^ 3 ^ 2":                   "((2 ^ 3) ^ 2)",
		"-2 ^ 2":                      "(-2 ^ 2)",
		"- a.x ^ 2":                   "((-a.x) ^ 2)",
		"a OR b AND c":                "(a OR (b AND c))",
		"a XOR b OR c":                "((a XOR b) OR c)",
		"NOT a = b":                   "(NOT (a = b))",
		"a = b IN c":                  "(a = (b IN c))",
		"a + 1 IN c":                  "((a + 1) IN c)",
		"1 < a < 3":                   "((1 < a) AND (a < 3))",
		"a.b.c[0].d":                  "a.b.c[0].d",
		"a IS NOT NULL AND b IS NULL": "((a IS NOT NULL) AND (b IS NULL))",
		"a STARTS WITH 'x'":           "(a STARTS WITH 'x')",
		"[x IN l WHERE x > 1 | x]":    "[x IN l WHERE (x > 1) | x]",
		"count(*)":                    "count(*)",
		"count(DISTINCT a)":           "count(DISTINCT a)",
		"a:X:Y":                       "a:X:Y",
		"a:X|Y":                       "(a:X OR a:Y)",
		"a:X&Y":                       "a:X:Y",
		"{a: 1, b: 'it''s'}":          "",
		"'it\\'s'":                    `'it\'s'`,
		"-9223372036854775808":        "-9223372036854775808",
		"1.5e3":                       "1500.0",
	} {
		q, err := Parse("RETURN " + src + " AS x")
		if want == "" {
			if err == nil {
				t.Errorf("%s: expected a syntax error", src)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if got := ExprString(q.Parts[0].Projection.Items[0].Expr); got != want {
			t.Errorf("%s parsed as %s, want %s", src, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		src       string
		line, col int
		msg       string
		kind      error
	}{
		{"MATCH (n)\nWHERE n.x = 1 AND (n.y RETURN n", 2, 24, "expected ')' but found 'RETURN'", nil},
		{"MATCH (n:Person\n  WHERE n.x = 1) RETURN n", 2, 3, "expected ')' but found 'WHERE'", ErrUnsupported},
		{"MATCH (n) RETURN n ORDER BY n.x", 1, 20, "ORDER BY is not supported", ErrUnsupported},
		{"MATCH (n) RETURN n SKIP 1", 1, 20, "SKIP is not supported", ErrUnsupported},
		{"MATCH (n) RETURN n LIMIT 1", 1, 20, "LIMIT is not supported", ErrUnsupported},
		{"MATCH (n) WITH n ORDER BY n.x RETURN n", 1, 18, "ORDER BY", ErrUnsupported},
		{"MATCH (n) RETURN *", 1, 18, "RETURN * is not supported", ErrUnsupported},
		{"MATCH (n) WITH * RETURN n", 1, 16, "WITH * is not supported", ErrUnsupported},
		{"MATCH (a)-[*1..3]->(b) RETURN a", 1, 12, "variable-length", ErrUnsupported},
		{"MATCH (a)-[r:R*]->(b) RETURN a", 1, 15, "variable-length", ErrUnsupported},
		{"MATCH p = (a)-->(b) RETURN p", 1, 7, "path variables", ErrUnsupported},
		{"MATCH (a) WHERE (a)-->(:B) RETURN a", 1, 17, "pattern expressions", ErrUnsupported},
		{"MATCH (a) WHERE (a)-[:R]->() RETURN a", 1, 17, "pattern expressions", ErrUnsupported},
		{"MATCH (a) WHERE EXISTS { MATCH (a) } RETURN a", 1, 17, "EXISTS subqueries", ErrUnsupported},
		{"UNWIND [1] AS x RETURN x", 1, 1, "UNWIND", ErrUnsupported},
		{"CREATE (n) RETURN n", 1, 1, "read-only", ErrUnsupported},
		{"MATCH (n) SET n.x = 1 RETURN n", 1, 11, "read-only", ErrUnsupported},
		{"MATCH (n) RETURN n UNION MATCH (m) RETURN m", 1, 20, "UNION", ErrUnsupported},
		{"MATCH (n)", 1, 10, "found end of input", nil},
		{"MATCH (n) RETURN n MATCH (m) RETURN m", 1, 20, "RETURN must be the last clause", nil},
		{"MATCH (n) RETURN n n", 1, 20, "expected end of query but found 'n'", nil},
		{"MATCH (n) RETURN", 1, 17, "expected an expression but found end of input", nil},
		{"MATCH (n) RETURN 'abc", 1, 18, "unterminated string", nil},
		{"MATCH (n) RETURN 1abc", 1, 18, "invalid number literal", nil},
		{"MATCH (n) RETURN 99999999999999999999", 1, 18, "does not fit in 64 bits", nil},
		{"MATCH (n) RETURN 9223372036854775808", 1, 18, "does not fit in 64 bits", nil},
		{"MATCH (n) RETURN '\\q'", 1, 19, "invalid escape", nil},
		{"MATCH (n) RETURN n.", 1, 20, "expected a property name", nil},
		{"MATCH (n) RETURN {a: 1, a: 2}", 1, 25, "duplicate key", nil},
		{"MATCH (n {a: 1, a: 2}) RETURN n", 1, 17, "duplicate property", nil},
		{"MATCH (n) RETURN n AS match", 1, 23, "found keyword MATCH", nil},
		{"MATCH (n) RETURN CASE END", 1, 23, "expected WHEN", nil},
		{"MATCH (n) RETURN [1, 2", 1, 23, "expected ',' or ']'", nil},
		{"MATCH (n) RETURN count(DISTINCT)", 1, 32, "argument after DISTINCT", nil},
		{"MATCH (n) RETURN n # x", 1, 20, "unexpected character '#'", nil},
		{"MATCH (n) /* open", 1, 11, "unterminated comment", nil},
		{"MATCH (n:A|B:C) RETURN n", 1, 9, "mixing", ErrUnsupported},
		{"WHERE x RETURN 1", 1, 1, "WHERE must follow", nil},
		{"MATCH (n) RETURN \"a\xffb\"", 1, 20, "invalid UTF-8", nil},
		{"MATCH (n $props) RETURN n", 1, 10, "parameter as a pattern property map", ErrUnsupported},
		{"", 1, 1, "found end of input", nil},
	} {
		_, err := Parse(c.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q): error %v is not a *SyntaxError", c.src, err)
			continue
		}
		if se.Line != c.line || se.Column != c.col || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("Parse(%q):\n got  %v\n want line %d, column %d: ...%s...", c.src, err, c.line, c.col, c.msg)
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): not ErrSyntax", c.src)
		}
		if c.kind != nil && !errors.Is(err, c.kind) {
			t.Errorf("Parse(%q): %v does not wrap %v", c.src, err, c.kind)
		}
		if c.kind == nil && errors.Is(err, ErrUnsupported) {
			t.Errorf("Parse(%q): unexpectedly ErrUnsupported", c.src)
		}
	}
}

func TestParseErrorFormat(t *testing.T) {
	_, err := Parse("MATCH (n)\nWHERE n.name = 'x' AND (n.age RETURN n")
	if err == nil || err.Error() != "line 2, column 31: expected ')' but found 'RETURN'" {
		t.Fatalf("error = %v", err)
	}
}

func TestParseDepthLimit(t *testing.T) {
	for _, src := range []string{
		"RETURN " + strings.Repeat("(", 10000) + "1" + strings.Repeat(")", 10000) + " AS x",
		"RETURN " + strings.Repeat("[", 10000) + "1" + strings.Repeat("]", 10000) + " AS x",
		"RETURN " + strings.Repeat("NOT ", 10000) + "true AS x",
		"RETURN " + strings.Repeat("- ", 10000) + "a AS x",
		"RETURN " + strings.Repeat("{a: ", 10000) + "1" + strings.Repeat("}", 10000) + " AS x",
		"RETURN " + strings.Repeat("size(", 10000) + "1" + strings.Repeat(")", 10000) + " AS x",
		"RETURN " + strings.Repeat("CASE WHEN ", 10000) + "x",
	} {
		_, err := Parse(src)
		if !errors.Is(err, ErrTooDeep) {
			t.Errorf("deep input (%.20s...): %v", src, err)
		}
	}
	// Within the limit is fine.
	src := "RETURN " + strings.Repeat("(", 50) + "1" + strings.Repeat(")", 50) + " AS x"
	if _, err := Compile(src); err != nil {
		t.Errorf("50 levels: %v", err)
	}
}

func TestParseLongFlatInput(t *testing.T) {
	// Long but flat expressions are not "deep": they parse iteratively.
	src := "RETURN 0" + strings.Repeat(" + 1", 20000) + " AS x"
	p, err := Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Eval(p.Parts[0].Items[0].Expr, nil)
	if err != nil || v != int64(20000) {
		t.Fatalf("got %v, %v", v, err)
	}
}

// TestExprStringRoundTrip: printing an expression and parsing the text
// again yields the same text.
func TestExprStringRoundTrip(t *testing.T) {
	for _, src := range []string{
		"-5.x", "(-5)[0]", "-(5)", "-(-5)", "- - 5", "-5 ^ 2", "(-5):L", "NOT -5", "+5", "-n.x",
		"`my fn`(1)", "drasi.previousValue(n.x, 1)", "$`a b`", "{`1a`: 1, b: 'x\\\\'}", "[x IN l WHERE x > 1 | x.y]",
		"all(x IN l WHERE x IS NULL)", "CASE WHEN a THEN 1 ELSE 2 END", "CASE a WHEN 1 THEN 2 END",
		"count(DISTINCT a) + count(*)", "a[1..][..2][1..2]", "a STARTS WITH 'x' AND b =~ '.*'", "1e300 + -0.0 + 1.5e-7",
		"`match`.`end`", "a:`odd label`:B",
	} {
		roundTrip(t, src)
	}
}

func roundTrip(t *testing.T, src string) {
	t.Helper()
	q, err := Parse("RETURN " + src + " AS x")
	if err != nil {
		t.Errorf("%s: %v", src, err)
		return
	}
	s1 := ExprString(q.Parts[0].Projection.Items[0].Expr)
	q2, err := Parse("RETURN " + s1 + " AS x")
	if err != nil {
		if !errors.Is(err, ErrTooDeep) {
			t.Errorf("%s printed as %s which does not parse: %v", src, s1, err)
		}
		return
	}
	if s2 := ExprString(q2.Parts[0].Projection.Items[0].Expr); s2 != s1 {
		t.Errorf("%s: printed %s, re-printed %s", src, s1, s2)
	}
}
