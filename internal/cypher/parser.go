package cypher

import (
	"strconv"
	"strings"
)

// Parse parses a query of the supported Cypher subset. Errors are
// *SyntaxError (wrapping ErrSyntax, and ErrUnsupported for valid Cypher a
// continuous query does not support, ErrTooDeep for nesting beyond
// MaxDepth). Parse does not check variables or functions: Analyze does.
func Parse(src string) (*Query, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: src}
	return p.query()
}

type parser struct {
	toks  []token
	p     int
	src   string
	depth int
	// comprehensionWhere > 0 while parsing the WHERE of a list
	// comprehension, where '|' ends the condition.
	comprehensionWhere int
}

// reserved words cannot be variable names (unless backtick-quoted).
var reserved = map[string]bool{
	"MATCH": true, "OPTIONAL": true, "WHERE": true, "WITH": true, "RETURN": true,
	"AND": true, "OR": true, "XOR": true, "NOT": true, "IN": true, "IS": true,
	"NULL": true, "TRUE": true, "FALSE": true, "CASE": true, "WHEN": true, "THEN": true,
	"ELSE": true, "END": true, "AS": true, "DISTINCT": true, "STARTS": true, "ENDS": true,
	"CONTAINS": true, "ORDER": true, "BY": true, "SKIP": true, "LIMIT": true, "UNWIND": true,
	"CREATE": true, "MERGE": true, "DELETE": true, "DETACH": true, "SET": true, "REMOVE": true,
	"CALL": true, "YIELD": true, "UNION": true, "FOREACH": true, "LOAD": true, "ASC": true,
	"ASCENDING": true, "DESC": true, "DESCENDING": true, "OFFSET": true, "USE": true,
}

// clauses that exist in Cypher but not in a continuous query.
var unsupportedClauses = map[string]string{
	"ORDER":   "ORDER BY is not supported: a continuous query's result is a set, its order is the reaction's business",
	"SKIP":    "SKIP is not supported in a continuous query",
	"OFFSET":  "OFFSET is not supported in a continuous query",
	"LIMIT":   "LIMIT is not supported in a continuous query",
	"UNWIND":  "UNWIND is not supported",
	"CREATE":  "CREATE is not supported: continuous queries are read-only",
	"MERGE":   "MERGE is not supported: continuous queries are read-only",
	"DELETE":  "DELETE is not supported: continuous queries are read-only",
	"DETACH":  "DETACH DELETE is not supported: continuous queries are read-only",
	"SET":     "SET is not supported: continuous queries are read-only",
	"REMOVE":  "REMOVE is not supported: continuous queries are read-only",
	"CALL":    "CALL is not supported",
	"UNION":   "UNION is not supported",
	"FOREACH": "FOREACH is not supported",
	"LOAD":    "LOAD CSV is not supported",
	"USE":     "USE is not supported",
}

func (p *parser) peek() token { return p.toks[p.p] }
func (p *parser) peekAt(k int) token {
	if p.p+k < len(p.toks) {
		return p.toks[p.p+k]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) advance() token {
	t := p.toks[p.p]
	if t.kind != tEOF {
		p.p++
	}
	return t
}

// isKw reports whether t is the (unquoted, case-insensitive) keyword kw.
func isKw(t token, kw string) bool {
	return t.kind == tIdent && !t.quoted && strings.EqualFold(t.text, kw)
}

func isPunct(t token, s string) bool { return t.kind == tPunct && t.text == s }

func (p *parser) atKw(kw string) bool   { return isKw(p.peek(), kw) }
func (p *parser) atPunct(s string) bool { return isPunct(p.peek(), s) }
func (p *parser) acceptKw(kw string) bool {
	if p.atKw(kw) {
		p.advance()
		return true
	}
	return false
}
func (p *parser) acceptPunct(s string) bool {
	if p.atPunct(s) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) errAt(t token, msg string) error {
	return &SyntaxError{Line: t.pos.Line, Column: t.pos.Column, Msg: msg}
}

func (p *parser) expected(what string) error {
	t := p.peek()
	return p.errAt(t, "expected "+what+" but found "+t.describe())
}

func (p *parser) unsupported(t token, msg string) error {
	return &SyntaxError{Line: t.pos.Line, Column: t.pos.Column, Msg: msg, kind: ErrUnsupported}
}

func (p *parser) expectPunct(s string) error {
	if !p.acceptPunct(s) {
		return p.expected("'" + s + "'")
	}
	return nil
}

func (p *parser) expectKw(kw string) error {
	if !p.acceptKw(kw) {
		return p.expected(kw)
	}
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		t := p.peek()
		return &SyntaxError{Line: t.pos.Line, Column: t.pos.Column,
			Msg: "expression nested more than " + itoa(MaxDepth) + " levels deep", kind: ErrTooDeep}
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// bracketed marks the start of a delimited construct ((...), [...], {...},
// f(...), CASE ... END), inside which '|' is unambiguous again; call the
// returned function at its end.
func (p *parser) bracketed() func() {
	saved := p.comprehensionWhere
	p.comprehensionWhere = 0
	return func() { p.comprehensionWhere = saved }
}

// checkUnsupportedClause returns an ErrUnsupported error when the next token
// starts a clause a continuous query does not support.
func (p *parser) checkUnsupportedClause() error {
	t := p.peek()
	if t.kind != tIdent || t.quoted {
		return nil
	}
	if msg, ok := unsupportedClauses[strings.ToUpper(t.text)]; ok {
		return p.unsupported(t, msg)
	}
	return nil
}

func (p *parser) query() (*Query, error) {
	q := &Query{}
	for {
		part, err := p.part()
		if err != nil {
			return nil, err
		}
		q.Parts = append(q.Parts, part)
		if part.Projection.Return {
			break
		}
	}
	p.acceptPunct(";")
	if t := p.peek(); t.kind != tEOF {
		if err := p.checkUnsupportedClause(); err != nil {
			return nil, err
		}
		if isKw(t, "MATCH") || isKw(t, "OPTIONAL") || isKw(t, "WITH") || isKw(t, "RETURN") {
			return nil, p.errAt(t, "RETURN must be the last clause, but found "+t.describe()+" after it")
		}
		return nil, p.expected("end of query")
	}
	return q, nil
}

func (p *parser) part() (*QueryPart, error) {
	part := &QueryPart{}
	for {
		if err := p.checkUnsupportedClause(); err != nil {
			return nil, err
		}
		t := p.peek()
		switch {
		case isKw(t, "MATCH"), isKw(t, "OPTIONAL"):
			m, err := p.matchClause()
			if err != nil {
				return nil, err
			}
			part.Matches = append(part.Matches, m)
		case isKw(t, "WITH"), isKw(t, "RETURN"):
			proj, err := p.projection()
			if err != nil {
				return nil, err
			}
			part.Projection = proj
			return part, nil
		case t.kind == tEOF:
			return nil, p.errAt(t, "expected MATCH, OPTIONAL MATCH, WITH or RETURN but found end of input (a query ends with RETURN)")
		case isKw(t, "WHERE"):
			return nil, p.errAt(t, "WHERE must follow MATCH, OPTIONAL MATCH or WITH")
		default:
			return nil, p.expected("MATCH, OPTIONAL MATCH, WITH or RETURN")
		}
	}
}

func (p *parser) matchClause() (*MatchClause, error) {
	start := p.peek()
	m := &MatchClause{Pos: start.pos}
	if p.acceptKw("OPTIONAL") {
		m.Optional = true
	}
	if err := p.expectKw("MATCH"); err != nil {
		return nil, err
	}
	for {
		pat, err := p.pattern()
		if err != nil {
			return nil, err
		}
		m.Patterns = append(m.Patterns, pat)
		if !p.acceptPunct(",") {
			break
		}
	}
	if p.acceptKw("WHERE") {
		w, err := p.expr()
		if err != nil {
			return nil, err
		}
		m.Where = w
	}
	return m, nil
}

func (p *parser) pattern() (*Pattern, error) {
	t := p.peek()
	if t.kind == tIdent && isPunct(p.peekAt(1), "=") {
		return nil, p.unsupported(t, "path variables ("+t.text+" = ...) are not supported")
	}
	if t.kind == tIdent && (isKw(t, "shortestPath") || isKw(t, "allShortestPaths")) {
		return nil, p.unsupported(t, t.text+" is not supported")
	}
	pat := &Pattern{Pos: t.pos}
	n, err := p.nodePattern()
	if err != nil {
		return nil, err
	}
	pat.Nodes = append(pat.Nodes, n)
	for p.atPunct("-") || p.atPunct("<") {
		r, err := p.relPattern()
		if err != nil {
			return nil, err
		}
		n, err := p.nodePattern()
		if err != nil {
			return nil, err
		}
		pat.Rels = append(pat.Rels, r)
		pat.Nodes = append(pat.Nodes, n)
	}
	return pat, nil
}

func (p *parser) variableName(what string) (string, error) {
	t := p.peek()
	if t.kind != tIdent {
		return "", p.expected(what)
	}
	if !t.quoted && reserved[strings.ToUpper(t.text)] {
		return "", p.errAt(t, "expected "+what+" but found keyword "+strings.ToUpper(t.text))
	}
	p.advance()
	return t.text, nil
}

// symbolicName reads any identifier, keywords included (labels, types,
// property keys, map keys).
func (p *parser) symbolicName(what string) (string, error) {
	t := p.peek()
	if t.kind != tIdent {
		return "", p.expected(what)
	}
	p.advance()
	return t.text, nil
}

func (p *parser) nodePattern() (*NodePattern, error) {
	t := p.peek()
	if err := p.expectPunct("("); err != nil {
		return nil, err
	}
	n := &NodePattern{Pos: t.pos}
	if p.peek().kind == tIdent && !isKw(p.peek(), "WHERE") {
		name, err := p.variableName("a variable")
		if err != nil {
			return nil, err
		}
		n.Var = name
	}
	if p.atPunct(":") {
		labels, err := p.labelExpr(true)
		if err != nil {
			return nil, err
		}
		n.Labels = labels
	}
	if p.atPunct("{") {
		props, err := p.propertyMap()
		if err != nil {
			return nil, err
		}
		n.Props = props
	} else if p.peek().kind == tParam {
		return nil, p.unsupported(p.peek(), "a parameter as a pattern property map is not supported; write {key: $param}")
	}
	if isKw(p.peek(), "WHERE") {
		return nil, p.unsupported(p.peek(), "expected ')' but found 'WHERE' (WHERE inside a node pattern is not supported; put the condition in the MATCH's WHERE)")
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	return n, nil
}

// labelExpr reads :A:B (all), :A&B (all) or :A|B (any), as a conjunction of
// disjunctions. Mixing | with : or & is rejected as ambiguous.
func (p *parser) labelExpr(allowOr bool) ([][]string, error) {
	first := p.peek()
	p.advance() // ':'
	name, err := p.symbolicName("a label")
	if err != nil {
		return nil, err
	}
	groups := [][]string{{name}}
	sawOr, sawAnd := false, false
	for {
		switch {
		case allowOr && p.atPunct("|"):
			p.advance()
			p.acceptPunct(":")
			name, err := p.symbolicName("a label")
			if err != nil {
				return nil, err
			}
			sawOr = true
			groups[len(groups)-1] = append(groups[len(groups)-1], name)
		case p.atPunct(":") || p.atPunct("&"):
			p.advance()
			name, err := p.symbolicName("a label")
			if err != nil {
				return nil, err
			}
			sawAnd = true
			groups = append(groups, []string{name})
		default:
			if sawOr && sawAnd {
				return nil, p.unsupported(first, "mixing '|' with ':' or '&' in one label expression is not supported")
			}
			return groups, nil
		}
	}
}

func (p *parser) propertyMap() ([]PropertyPredicate, error) {
	p.advance() // '{'
	var props []PropertyPredicate
	seen := map[string]bool{}
	if p.acceptPunct("}") {
		return props, nil
	}
	for {
		kt := p.peek()
		key, err := p.symbolicName("a property name")
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, p.errAt(kt, "duplicate property "+quoteName(key)+" in pattern")
		}
		seen[key] = true
		if err := p.expectPunct(":"); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		props = append(props, PropertyPredicate{Key: key, Value: v})
		if p.acceptPunct("}") {
			return props, nil
		}
		if err := p.expectPunct(","); err != nil {
			return nil, p.expected("',' or '}'")
		}
	}
}

func (p *parser) relPattern() (*RelPattern, error) {
	t := p.peek()
	r := &RelPattern{Pos: t.pos}
	left := p.acceptPunct("<")
	if err := p.expectPunct("-"); err != nil {
		return nil, err
	}
	if p.acceptPunct("[") {
		if p.peek().kind == tIdent {
			name, err := p.variableName("a variable")
			if err != nil {
				return nil, err
			}
			r.Var = name
		}
		if p.acceptPunct(":") {
			for {
				name, err := p.symbolicName("a relationship type")
				if err != nil {
					return nil, err
				}
				r.Types = append(r.Types, name)
				if !p.acceptPunct("|") {
					break
				}
				p.acceptPunct(":")
			}
		}
		if p.atPunct("*") {
			return nil, p.unsupported(p.peek(), "variable-length relationships are not supported")
		}
		if p.atPunct("{") {
			props, err := p.propertyMap()
			if err != nil {
				return nil, err
			}
			r.Props = props
		}
		if isKw(p.peek(), "WHERE") {
			return nil, p.unsupported(p.peek(), "expected ']' but found 'WHERE' (WHERE inside a relationship pattern is not supported; put the condition in the MATCH's WHERE)")
		}
		if err := p.expectPunct("]"); err != nil {
			return nil, err
		}
	}
	if err := p.expectPunct("-"); err != nil {
		return nil, err
	}
	right := p.acceptPunct(">")
	switch {
	case left && !right:
		r.Dir = DirLeft
	case right && !left:
		r.Dir = DirRight
	default:
		r.Dir = DirUndirected
	}
	return r, nil
}

func (p *parser) projection() (*Projection, error) {
	t := p.advance() // WITH or RETURN
	proj := &Projection{Pos: t.pos, Return: isKw(t, "RETURN")}
	if p.acceptKw("DISTINCT") {
		proj.Distinct = true
	}
	if p.atPunct("*") {
		return nil, p.unsupported(p.peek(), strings.ToUpper(t.text)+" * is not supported; name the items to project")
	}
	for {
		item, err := p.projectionItem()
		if err != nil {
			return nil, err
		}
		proj.Items = append(proj.Items, item)
		if !p.acceptPunct(",") {
			break
		}
	}
	if err := p.checkUnsupportedClause(); err != nil {
		return nil, err
	}
	if !proj.Return && p.acceptKw("WHERE") {
		w, err := p.expr()
		if err != nil {
			return nil, err
		}
		proj.Where = w
		if err := p.checkUnsupportedClause(); err != nil {
			return nil, err
		}
	}
	return proj, nil
}

func (p *parser) projectionItem() (*ProjectionItem, error) {
	start := p.peek()
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	end := p.toks[p.p-1].end
	item := &ProjectionItem{Pos: start.pos, Expr: e, Text: strings.TrimSpace(p.src[start.off:end])}
	if p.acceptKw("AS") {
		name, err := p.variableName("an alias")
		if err != nil {
			return nil, err
		}
		item.Alias = name
	}
	return item, nil
}

// ---- expressions ----

func (p *parser) expr() (Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.or()
}

func (p *parser) or() (Expr, error) {
	l, err := p.xor()
	if err != nil {
		return nil, err
	}
	for p.atKw("OR") {
		p.advance()
		r, err := p.xor()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: OpOr, L: l, R: r}
	}
	return l, nil
}

func (p *parser) xor() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.atKw("XOR") {
		p.advance()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: OpXor, L: l, R: r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.atKw("AND") {
		p.advance()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: OpAnd, L: l, R: r}
	}
	return l, nil
}

func (p *parser) not() (Expr, error) {
	if p.atKw("NOT") {
		t := p.advance()
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &Unary{Pos: t.pos, Op: OpNot, X: x}, nil
	}
	return p.comparison()
}

var comparisonOps = map[string]BinaryOp{"=": OpEq, "<>": OpNe, "<": OpLt, "<=": OpLe, ">": OpGt, ">=": OpGe}

// comparison handles chains: a < b <= c is (a < b) AND (b <= c).
func (p *parser) comparison() (Expr, error) {
	l, err := p.predicate()
	if err != nil {
		return nil, err
	}
	var result Expr
	for {
		t := p.peek()
		op, ok := comparisonOps[t.text]
		if t.kind != tPunct || !ok {
			break
		}
		p.advance()
		r, err := p.predicate()
		if err != nil {
			return nil, err
		}
		cmp := &Binary{Pos: l.Position(), Op: op, L: l, R: r}
		if result == nil {
			result = cmp
		} else {
			result = &Binary{Pos: result.Position(), Op: OpAnd, L: result, R: cmp}
		}
		l = r
	}
	if result == nil {
		return l, nil
	}
	return result, nil
}

// predicate handles STARTS WITH, ENDS WITH, CONTAINS, IN, =~, IS [NOT] NULL.
func (p *parser) predicate() (Expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var op BinaryOp
		switch {
		case isKw(t, "STARTS"):
			p.advance()
			if err := p.expectKw("WITH"); err != nil {
				return nil, err
			}
			op = OpStartsWith
		case isKw(t, "ENDS"):
			p.advance()
			if err := p.expectKw("WITH"); err != nil {
				return nil, err
			}
			op = OpEndsWith
		case isKw(t, "CONTAINS"):
			p.advance()
			op = OpContains
		case isKw(t, "IN"):
			p.advance()
			op = OpIn
		case isPunct(t, "=~"):
			p.advance()
			op = OpRegex
		case isKw(t, "IS"):
			p.advance()
			not := p.acceptKw("NOT")
			if err := p.expectKw("NULL"); err != nil {
				return nil, err
			}
			l = &IsNull{Pos: l.Position(), X: l, Not: not}
			continue
		default:
			return l, nil
		}
		r, err := p.additive()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: op, L: l, R: r}
	}
}

func (p *parser) additive() (Expr, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for p.atPunct("+") || p.atPunct("-") {
		op := OpAdd
		if p.advance().text == "-" {
			op = OpSub
		}
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) multiplicative() (Expr, error) {
	l, err := p.power()
	if err != nil {
		return nil, err
	}
	for p.atPunct("*") || p.atPunct("/") || p.atPunct("%") {
		var op BinaryOp
		switch p.advance().text {
		case "*":
			op = OpMul
		case "/":
			op = OpDiv
		default:
			op = OpMod
		}
		r, err := p.power()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) power() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.atPunct("^") {
		p.advance()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: l.Position(), Op: OpPow, L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	if isPunct(t, "-") || isPunct(t, "+") {
		p.advance()
		// Fold a sign into a directly following number literal, so that
		// -9223372036854775808 is expressible.
		if n := p.peek(); (n.kind == tInt || n.kind == tFloat) && !p.postfixFollows(1) {
			p.advance()
			if n.val == nil { // 9223372036854775808
				if t.text == "+" {
					return nil, p.errAt(n, "integer literal "+n.text+" does not fit in 64 bits")
				}
				return &Literal{Pos: t.pos, Value: int64(-1 << 63)}, nil
			}
			v := n.val
			if t.text == "-" {
				switch x := v.(type) {
				case int64:
					v = -x
				case float64:
					v = -x
				}
			}
			return &Literal{Pos: t.pos, Value: v}, nil
		}
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		op := OpNeg
		if t.text == "+" {
			op = OpPlus
		}
		return &Unary{Pos: t.pos, Op: op, X: x}, nil
	}
	return p.postfix()
}

// postfixFollows reports whether the token k ahead starts a postfix
// operator ('.', '[', ':'), which binds tighter than a sign. (A sign binds
// tighter than '^': -2 ^ 2 is (-2) ^ 2.)
func (p *parser) postfixFollows(k int) bool {
	t := p.peekAt(k)
	return isPunct(t, ".") || isPunct(t, "[") || isPunct(t, ":")
}

func (p *parser) postfix() (Expr, error) {
	x, err := p.atom()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case isPunct(t, "."):
			p.advance()
			key, err := p.symbolicName("a property name")
			if err != nil {
				return nil, err
			}
			x = &Property{Pos: t.pos, X: x, Key: key}
		case isPunct(t, "["):
			p.advance()
			var from, to Expr
			if !p.atPunct("..") {
				if from, err = p.expr(); err != nil {
					return nil, err
				}
			}
			if p.acceptPunct("..") {
				if !p.atPunct("]") {
					if to, err = p.expr(); err != nil {
						return nil, err
					}
				}
				if err := p.expectPunct("]"); err != nil {
					return nil, err
				}
				x = &Slice{Pos: t.pos, X: x, From: from, To: to}
				continue
			}
			if from == nil {
				return nil, p.expected("an index expression")
			}
			if err := p.expectPunct("]"); err != nil {
				return nil, err
			}
			x = &Index{Pos: t.pos, X: x, Index: from}
		case isPunct(t, ":"):
			// Inside a list comprehension's WHERE, '|' starts the projection.
			groups, err := p.labelExpr(p.comprehensionWhere == 0)
			if err != nil {
				return nil, err
			}
			if len(groups) == 1 && len(groups[0]) > 1 {
				// n:A|B is (n:A OR n:B).
				var or Expr
				for _, l := range groups[0] {
					h := &HasLabels{Pos: t.pos, X: x, Labels: []string{l}}
					if or == nil {
						or = h
					} else {
						or = &Binary{Pos: t.pos, Op: OpOr, L: or, R: h}
					}
				}
				x = or
				continue
			}
			labels := make([]string, len(groups))
			for i, g := range groups {
				labels[i] = g[0]
			}
			x = &HasLabels{Pos: t.pos, X: x, Labels: labels}
		default:
			return x, nil
		}
	}
}

func (p *parser) atom() (Expr, error) {
	t := p.peek()
	switch t.kind {
	case tInt, tFloat:
		p.advance()
		if t.val == nil {
			return nil, p.errAt(t, "integer literal "+t.text+" does not fit in 64 bits")
		}
		return &Literal{Pos: t.pos, Value: t.val}, nil
	case tString:
		p.advance()
		return &Literal{Pos: t.pos, Value: t.val}, nil
	case tParam:
		p.advance()
		return &Param{Pos: t.pos, Name: t.text}, nil
	case tPunct:
		switch t.text {
		case "(":
			return p.parenthesized()
		case "[":
			return p.listOrComprehension()
		case "{":
			return p.mapLiteral()
		}
		return nil, p.expected("an expression")
	case tIdent:
		return p.identAtom()
	}
	return nil, p.expected("an expression")
}

func (p *parser) parenthesized() (Expr, error) {
	defer p.bracketed()()
	open := p.advance()
	if p.atPunct(")") {
		return nil, p.unsupported(open, "pattern expressions are not supported in expressions; use MATCH or OPTIONAL MATCH")
	}
	x, err := p.expr()
	if err != nil {
		return nil, err
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	// (a)-[...]-(b), (a)-->(b), (a)<--(b) in an expression is a pattern
	// predicate; reject it instead of reading it as arithmetic.
	if isPatternHead(x) {
		n1, n2 := p.peekAt(0), p.peekAt(1)
		if (isPunct(n1, "-") && (isPunct(n2, "[") || isPunct(n2, "-") || isPunct(n2, ">"))) ||
			(isPunct(n1, "<") && isPunct(n2, "-")) {
			return nil, p.unsupported(open, "pattern expressions are not supported in expressions; use MATCH or OPTIONAL MATCH")
		}
	}
	return x, nil
}

func isPatternHead(x Expr) bool {
	switch v := x.(type) {
	case *Variable:
		return true
	case *HasLabels:
		_, ok := v.X.(*Variable)
		return ok
	}
	return false
}

func (p *parser) listOrComprehension() (Expr, error) {
	defer p.bracketed()()
	open := p.advance()
	if p.peek().kind == tIdent && isKw(p.peekAt(1), "IN") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		vt := p.peek()
		name, err := p.variableName("a variable")
		if err != nil {
			return nil, err
		}
		p.advance() // IN
		list, err := p.expr()
		if err != nil {
			return nil, err
		}
		c := &Comprehension{Pos: open.pos, Var: &Variable{Pos: vt.pos, Name: name, Scope: ScopeLocal}, List: list}
		if p.acceptKw("WHERE") {
			p.comprehensionWhere++
			c.Where, err = p.expr()
			p.comprehensionWhere--
			if err != nil {
				return nil, err
			}
		}
		if p.acceptPunct("|") {
			if c.Project, err = p.expr(); err != nil {
				return nil, err
			}
		}
		if err := p.expectPunct("]"); err != nil {
			return nil, err
		}
		return c, nil
	}
	l := &ListLit{Pos: open.pos}
	if p.acceptPunct("]") {
		return l, nil
	}
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		l.Elems = append(l.Elems, e)
		if p.acceptPunct("]") {
			return l, nil
		}
		if !p.acceptPunct(",") {
			return nil, p.expected("',' or ']'")
		}
	}
}

func (p *parser) mapLiteral() (Expr, error) {
	defer p.bracketed()()
	open := p.advance()
	m := &MapLit{Pos: open.pos}
	if p.acceptPunct("}") {
		return m, nil
	}
	seen := map[string]bool{}
	for {
		kt := p.peek()
		var key string
		if kt.kind == tString {
			key = kt.val.(string)
			p.advance()
		} else {
			var err error
			if key, err = p.symbolicName("a map key"); err != nil {
				return nil, err
			}
		}
		if seen[key] {
			return nil, p.errAt(kt, "duplicate key "+quoteName(key)+" in map literal")
		}
		seen[key] = true
		if err := p.expectPunct(":"); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		m.Keys = append(m.Keys, key)
		m.Values = append(m.Values, v)
		if p.acceptPunct("}") {
			return m, nil
		}
		if !p.acceptPunct(",") {
			return nil, p.expected("',' or '}'")
		}
	}
}

func (p *parser) identAtom() (Expr, error) {
	t := p.peek()
	if !t.quoted {
		switch strings.ToUpper(t.text) {
		case "NULL":
			p.advance()
			return &Literal{Pos: t.pos, Value: nil}, nil
		case "TRUE":
			p.advance()
			return &Literal{Pos: t.pos, Value: true}, nil
		case "FALSE":
			p.advance()
			return &Literal{Pos: t.pos, Value: false}, nil
		case "CASE":
			return p.caseExpr()
		case "ALL", "ANY", "NONE", "SINGLE":
			if isPunct(p.peekAt(1), "(") && p.peekAt(2).kind == tIdent && isKw(p.peekAt(3), "IN") {
				return p.quantifier()
			}
		case "EXISTS":
			if isPunct(p.peekAt(1), "{") {
				return nil, p.unsupported(t, "EXISTS subqueries are not supported")
			}
		case "COUNT":
			if isPunct(p.peekAt(1), "{") {
				return nil, p.unsupported(t, "COUNT subqueries are not supported")
			}
		}
	}
	// Function call: name ('.' name)* '('.
	j := 0
	for p.peekAt(j).kind == tIdent && isPunct(p.peekAt(j+1), ".") && p.peekAt(j+2).kind == tIdent {
		j += 2
	}
	if p.peekAt(j).kind == tIdent && isPunct(p.peekAt(j+1), "(") {
		return p.call(j)
	}
	if !t.quoted && reserved[strings.ToUpper(t.text)] {
		return nil, p.errAt(t, "expected an expression but found keyword "+strings.ToUpper(t.text))
	}
	p.advance()
	return &Variable{Pos: t.pos, Name: t.text}, nil
}

func (p *parser) call(nameToks int) (Expr, error) {
	defer p.bracketed()()
	t := p.peek()
	var name strings.Builder
	for k := 0; k <= nameToks; k++ {
		name.WriteString(p.advance().text)
	}
	p.advance() // '('
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	c := &Call{Pos: t.pos, Name: name.String(), AggIndex: -1}
	if p.atPunct("*") {
		p.advance()
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		c.Star = true
		return c, nil
	}
	if p.acceptKw("DISTINCT") {
		c.Distinct = true
	}
	if p.acceptPunct(")") {
		if c.Distinct {
			return nil, p.errAt(p.toks[p.p-1], "expected an argument after DISTINCT")
		}
		return c, nil
	}
	for {
		a, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Args = append(c.Args, a)
		if p.acceptPunct(")") {
			return c, nil
		}
		if !p.acceptPunct(",") {
			return nil, p.expected("',' or ')'")
		}
	}
}

func (p *parser) quantifier() (Expr, error) {
	defer p.bracketed()()
	t := p.advance()
	p.advance() // '('
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	var kind QuantifierKind
	switch strings.ToUpper(t.text) {
	case "ALL":
		kind = QuantAll
	case "ANY":
		kind = QuantAny
	case "NONE":
		kind = QuantNone
	default:
		kind = QuantSingle
	}
	vt := p.peek()
	name, err := p.variableName("a variable")
	if err != nil {
		return nil, err
	}
	p.advance() // IN
	list, err := p.expr()
	if err != nil {
		return nil, err
	}
	q := &Quantifier{Pos: t.pos, Kind: kind, Var: &Variable{Pos: vt.pos, Name: name, Scope: ScopeLocal}, List: list}
	if err := p.expectKw("WHERE"); err != nil {
		return nil, err
	}
	if q.Where, err = p.expr(); err != nil {
		return nil, err
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	return q, nil
}

func (p *parser) caseExpr() (Expr, error) {
	defer p.bracketed()()
	t := p.advance() // CASE
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	c := &Case{Pos: t.pos}
	if p.atKw("END") || p.atKw("ELSE") {
		return nil, p.expected("WHEN")
	}
	if !p.atKw("WHEN") {
		s, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Subject = s
	}
	for p.acceptKw("WHEN") {
		w, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.expectKw("THEN"); err != nil {
			return nil, err
		}
		th, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Whens = append(c.Whens, w)
		c.Thens = append(c.Thens, th)
	}
	if len(c.Whens) == 0 {
		return nil, p.expected("WHEN")
	}
	if p.acceptKw("ELSE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Else = e
	}
	if err := p.expectKw("END"); err != nil {
		return nil, err
	}
	return c, nil
}

func quoteName(s string) string { return "'" + s + "'" }

func itoa(n int) string { return strconv.Itoa(n) }
