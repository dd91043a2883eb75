package cypher

import (
	"slices"
	"strings"
)

// Compile parses and analyzes src. Errors are *SyntaxError or
// *SemanticError (see Parse and Analyze).
func Compile(src string) (*Program, error) {
	q, err := Parse(src)
	if err != nil {
		return nil, err
	}
	return Analyze(q)
}

// Analyze checks a parsed query and resolves it into a Program: variables
// get row slots (see Part), function calls their definitions, aggregates
// their indexes, grouping keys inside aggregating items become *KeyRef.
// Analyze modifies q in place and takes ownership of it; a Query can be
// analyzed once, successfully or not (a second call returns an error).
//
// Errors are *SemanticError with the position of the offending expression,
// wrapping ErrSemantic (unknown variable or function, wrong argument count,
// aggregate in WHERE or nested in an aggregate, variable kind conflicts,
// duplicate columns, WITH items without alias, implicit grouping) or
// ErrUnsupported (non-deterministic functions such as datetime() without
// argument or timestamp(), drasi.trueFor/trueLater/trueUntil).
func Analyze(q *Query) (*Program, error) {
	if q == nil || len(q.Parts) == 0 {
		return nil, &SemanticError{Line: 1, Column: 1, Msg: "empty query", kind: ErrSemantic}
	}
	for i, part := range q.Parts {
		if part == nil || part.Projection == nil {
			return nil, &SemanticError{Line: 1, Column: 1, Msg: "query part without WITH or RETURN", kind: ErrSemantic}
		}
		if part.Projection.Return != (i == len(q.Parts)-1) {
			return nil, semErr(part.Projection.Pos, "a query ends with exactly one RETURN, as its last clause")
		}
	}
	if q.analyzed {
		return nil, &SemanticError{Line: 1, Column: 1, Msg: "query was already analyzed", kind: ErrSemantic}
	}
	q.analyzed = true
	a := &analyzer{prog: &Program{Query: q}, params: map[string]bool{}, names: map[string]bool{}}
	a.collectNames(q)
	var inputs []VarInfo
	for i, qp := range q.Parts {
		part, err := a.part(i, qp, inputs)
		if err != nil {
			return nil, err
		}
		a.prog.Parts = append(a.prog.Parts, part)
		inputs = inputs[:0:0]
		for _, it := range part.Items {
			inputs = append(inputs, VarInfo{Name: it.Name, Kind: it.Kind})
		}
	}
	last := a.prog.Parts[len(a.prog.Parts)-1]
	for _, it := range last.Items {
		a.prog.Columns = append(a.prog.Columns, it.Name)
	}
	for p := range a.params {
		a.prog.Params = append(a.prog.Params, p)
	}
	slices.Sort(a.prog.Params)
	return a.prog, nil
}

type analyzer struct {
	prog   *Program
	params map[string]bool
	names  map[string]bool // every user-written variable name, to keep generated ones unique
	anon   int
}

// collectNames records user variable names so that generated names of
// anonymous pattern elements never collide with them.
func (a *analyzer) collectNames(q *Query) {
	for _, qp := range q.Parts {
		for _, m := range qp.Matches {
			for _, pat := range m.Patterns {
				for _, n := range pat.Nodes {
					a.names[n.Var] = true
				}
				for _, r := range pat.Rels {
					a.names[r.Var] = true
				}
			}
		}
		for _, it := range qp.Projection.Items {
			a.names[it.Alias] = true
			a.names[it.Text] = true
		}
	}
}

func (a *analyzer) anonName(kind string) string {
	for {
		a.anon++
		name := "_anon_" + kind + "_" + itoa(a.anon)
		if !a.names[name] {
			return name
		}
	}
}

// scope maps visible variable names to row slots.
type scope struct {
	part *Part
	vars map[string]int
}

func (s *scope) add(name string, kind VarKind, anonymous bool) int {
	idx := len(s.part.Vars)
	s.part.Vars = append(s.part.Vars, VarInfo{Name: name, Kind: kind, Anonymous: anonymous})
	if !anonymous {
		s.vars[name] = idx
	}
	return idx
}

func (a *analyzer) part(index int, qp *QueryPart, inputs []VarInfo) (*Part, error) {
	part := &Part{Index: index, NumInputs: len(inputs), Return: qp.Projection.Return}
	sc := &scope{part: part, vars: map[string]int{}}
	for _, in := range inputs {
		sc.add(in.Name, in.Kind, false)
	}
	for _, mc := range qp.Matches {
		m, err := a.match(sc, mc)
		if err != nil {
			return nil, err
		}
		part.Matches = append(part.Matches, m)
	}
	if err := a.projection(sc, qp.Projection); err != nil {
		return nil, err
	}
	return part, nil
}

func kindOf(v VarInfo) string {
	if v.Kind == VarValue {
		return "a value"
	}
	return "a " + v.Kind.String()
}

func (a *analyzer) match(sc *scope, mc *MatchClause) (*Match, error) {
	m := &Match{Optional: mc.Optional, Clause: mc}
	boundBefore := len(sc.part.Vars) // slots < boundBefore existed before this clause
	relSeen := map[int]bool{}
	nodeSlot := func(np *NodePattern) (*NodeSlot, error) {
		if np.Var == "" {
			np.Var = a.anonName("node")
			np.Anonymous = true
			idx := sc.add(np.Var, VarNode, true)
			ns := &NodeSlot{Slot: idx, Name: np.Var, Anonymous: true}
			m.Nodes = append(m.Nodes, ns)
			m.NewSlots = append(m.NewSlots, idx)
			np.Slot = idx
			return ns, nil
		}
		idx, ok := sc.vars[np.Var]
		if !ok {
			idx = sc.add(np.Var, VarNode, false)
			m.NewSlots = append(m.NewSlots, idx)
		} else if k := sc.part.Vars[idx]; k.Kind != VarNode {
			return nil, semErr(np.Pos, "variable '%s' is %s, not a node", np.Var, kindOf(k))
		}
		np.Slot = idx
		ns := m.Node(idx)
		if ns == nil {
			ns = &NodeSlot{Slot: idx, Name: np.Var, Bound: idx < boundBefore}
			m.Nodes = append(m.Nodes, ns)
		}
		return ns, nil
	}
	for _, pat := range mc.Patterns {
		var prev *NodeSlot
		for i, np := range pat.Nodes {
			// Slots follow the text: the relation before the node it leads to.
			var rs *RelSlot
			if i > 0 {
				var err error
				if rs, err = a.relSlot(sc, m, pat.Rels[i-1], boundBefore, relSeen); err != nil {
					return nil, err
				}
			}
			ns, err := nodeSlot(np)
			if err != nil {
				return nil, err
			}
			ns.Labels = append(ns.Labels, np.Labels...)
			if i > 0 {
				rp := pat.Rels[i-1]
				rs.From, rs.To = prev.Slot, ns.Slot
				if rp.Dir == DirLeft {
					rs.From, rs.To = rs.To, rs.From
				}
				rs.Directed = rp.Dir != DirUndirected
			}
			prev = ns
		}
	}
	// Property predicates and WHERE see every variable of the clause.
	ctx := &exprCtx{sc: sc, what: "a pattern property"}
	for _, pat := range mc.Patterns {
		for _, np := range pat.Nodes {
			if err := a.resolveProps(ctx, np.Props); err != nil {
				return nil, err
			}
		}
		for _, rp := range pat.Rels {
			if err := a.resolveProps(ctx, rp.Props); err != nil {
				return nil, err
			}
		}
	}
	// Merge each node's (now resolved) property predicates over all its
	// occurrences in the clause.
	for _, pat := range mc.Patterns {
		for _, np := range pat.Nodes {
			ns := m.Node(np.Slot)
			ns.Props = append(ns.Props, np.Props...)
		}
	}
	for _, n := range m.Nodes {
		n.PropsReadRow = propsReadRow(n.Props)
	}
	for _, r := range m.Rels {
		r.PropsReadRow = propsReadRow(r.Props)
	}
	if mc.Where != nil {
		w, err := a.expr(&exprCtx{sc: sc, what: "WHERE"}, mc.Where)
		if err != nil {
			return nil, err
		}
		mc.Where, m.Where = w, w
	}
	return m, nil
}

func (a *analyzer) resolveProps(ctx *exprCtx, props []PropertyPredicate) error {
	for i := range props {
		v, err := a.expr(ctx, props[i].Value)
		if err != nil {
			return err
		}
		props[i].Value = v
	}
	return nil
}

func (a *analyzer) relSlot(sc *scope, m *Match, rp *RelPattern, boundBefore int, seen map[int]bool) (*RelSlot, error) {
	var idx int
	bound := false
	if rp.Var == "" {
		rp.Var = a.anonName("rel")
		rp.Anonymous = true
		idx = sc.add(rp.Var, VarRelation, true)
		m.NewSlots = append(m.NewSlots, idx)
	} else if existing, ok := sc.vars[rp.Var]; ok {
		if k := sc.part.Vars[existing]; k.Kind != VarRelation {
			return nil, semErr(rp.Pos, "variable '%s' is %s, not a relationship", rp.Var, kindOf(k))
		}
		if seen[existing] {
			return nil, semErr(rp.Pos, "relationship variable '%s' is used more than once in one MATCH", rp.Var)
		}
		idx, bound = existing, existing < boundBefore
	} else {
		idx = sc.add(rp.Var, VarRelation, false)
		m.NewSlots = append(m.NewSlots, idx)
	}
	seen[idx] = true
	rp.Slot = idx
	rs := &RelSlot{Slot: idx, Name: rp.Var, Anonymous: rp.Anonymous, Bound: bound, Types: rp.Types, Props: rp.Props}
	m.Rels = append(m.Rels, rs)
	return rs, nil
}

func (a *analyzer) projection(sc *scope, proj *Projection) error {
	part := sc.part
	part.Distinct = proj.Distinct
	seen := map[string]bool{}
	aggCount := 0
	aggKeys := map[string]int{}
	for _, pi := range proj.Items {
		name := pi.Alias
		if name == "" {
			if v, ok := pi.Expr.(*Variable); ok {
				name = v.Name
			} else if !proj.Return {
				return semErr(pi.Pos, "expression '%s' in WITH must be aliased (use AS)", pi.Text)
			} else {
				name = pi.Text
			}
		}
		if seen[name] {
			return semErr(pi.Pos, "duplicate column name '%s'", name)
		}
		seen[name] = true
		ctx := &exprCtx{sc: sc, allowAgg: true, part: part, aggKeys: aggKeys, what: strings.ToUpper(clauseName(proj))}
		e, err := a.expr(ctx, pi.Expr)
		if err != nil {
			return err
		}
		pi.Expr = e
		it := &Item{Name: name, Expr: e, Aggregating: ctx.sawAgg}
		if v, ok := e.(*Variable); ok && v.Scope == ScopeRow {
			it.Kind = part.Vars[v.Index].Kind
		}
		if ctx.sawAgg {
			aggCount++
		}
		part.Items = append(part.Items, it)
	}
	if aggCount > 0 {
		part.Aggregating = true
		keys := groupKeys{text: map[string]int{}}
		for i, it := range part.Items {
			if !it.Aggregating {
				c := canonical(it.Expr)
				keys.text[c] = len(part.GroupKeys)
				keys.maxLen = max(keys.maxLen, len(c))
				part.GroupKeys = append(part.GroupKeys, i)
			}
		}
		for i, it := range part.Items {
			if !it.Aggregating {
				continue
			}
			e, err := rewriteGrouped(it.Expr, &keys)
			if err != nil {
				return err
			}
			it.Expr = e
			proj.Items[i].Expr = e
		}
	}
	if proj.Where != nil {
		out := &scope{part: &Part{}, vars: map[string]int{}}
		for _, it := range part.Items {
			out.add(it.Name, it.Kind, false)
		}
		w, err := a.expr(&exprCtx{sc: out, what: "WITH ... WHERE"}, proj.Where)
		if err != nil {
			return err
		}
		proj.Where, part.Where = w, w
	}
	return nil
}

func clauseName(p *Projection) string {
	if p.Return {
		return "RETURN"
	}
	return "WITH"
}

// rewriteGrouped replaces, outside aggregate calls, every subexpression equal
// to a grouping key by a KeyRef; any other row variable left is an error
// (Cypher's implicit grouping keys are not allowed).
func rewriteGrouped(e Expr, keys *groupKeys) (Expr, error) {
	if c, ok := e.(*Call); ok && c.AggIndex >= 0 {
		return e, nil
	}
	if k, ok := keys.lookup(e); ok {
		switch e.(type) {
		case *Literal, *Param:
			return e, nil
		}
		return &KeyRef{Pos: e.Position(), Key: k, Orig: e}, nil
	}
	var err error
	rw := func(x *Expr) {
		if err != nil || *x == nil {
			return
		}
		*x, err = rewriteGrouped(*x, keys)
	}
	switch x := e.(type) {
	case *Variable:
		if x.Scope == ScopeRow {
			return nil, semErr(x.Pos, "variable '%s' is used in an aggregating expression but is not a grouping key: project it as its own item, or use it inside an aggregate function", x.Name)
		}
	case *Property:
		rw(&x.X)
	case *Index:
		rw(&x.X)
		rw(&x.Index)
	case *Slice:
		rw(&x.X)
		rw(&x.From)
		rw(&x.To)
	case *Unary:
		rw(&x.X)
	case *Binary:
		rw(&x.L)
		rw(&x.R)
	case *IsNull:
		rw(&x.X)
	case *HasLabels:
		rw(&x.X)
	case *ListLit:
		for i := range x.Elems {
			rw(&x.Elems[i])
		}
	case *MapLit:
		for i := range x.Values {
			rw(&x.Values[i])
		}
	case *Case:
		rw(&x.Subject)
		for i := range x.Whens {
			rw(&x.Whens[i])
			rw(&x.Thens[i])
		}
		rw(&x.Else)
	case *Comprehension:
		rw(&x.List)
		rw(&x.Where)
		rw(&x.Project)
	case *Quantifier:
		rw(&x.List)
		rw(&x.Where)
	case *Call:
		for i := range x.Args {
			rw(&x.Args[i])
		}
	}
	return e, err
}

// groupKeys indexes the canonical text of the grouping key expressions.
type groupKeys struct {
	text   map[string]int
	maxLen int
}

func (g *groupKeys) lookup(e Expr) (int, bool) {
	if len(g.text) == 0 {
		return 0, false
	}
	c, ok := canonicalUpTo(e, g.maxLen)
	if !ok {
		return 0, false
	}
	k, ok := g.text[c]
	return k, ok
}

// exprCtx is the context an expression is resolved in.
type exprCtx struct {
	sc       *scope
	locals   []string // comprehension variables, innermost last
	allowAgg bool
	inAgg    bool
	inPrev   bool
	sawAgg   bool
	part     *Part
	aggKeys  map[string]int // canonical aggregate text -> index, to share identical calls
	what     string         // where the expression is, for messages
}

func (a *analyzer) expr(ctx *exprCtx, e Expr) (Expr, error) {
	var err error
	sub := func(x *Expr) {
		if err != nil || *x == nil {
			return
		}
		*x, err = a.expr(ctx, *x)
	}
	switch x := e.(type) {
	case *Literal:
	case *Param:
		a.params[x.Name] = true
	case *Variable:
		for i := len(ctx.locals) - 1; i >= 0; i-- {
			if ctx.locals[i] == x.Name {
				x.Scope, x.Index = ScopeLocal, i
				return x, nil
			}
		}
		idx, ok := ctx.sc.vars[x.Name]
		if !ok {
			return nil, semErr(x.Pos, "unknown variable '%s'", x.Name)
		}
		x.Scope, x.Index = ScopeRow, idx
	case *Property:
		sub(&x.X)
	case *Index:
		sub(&x.X)
		sub(&x.Index)
	case *Slice:
		sub(&x.X)
		sub(&x.From)
		sub(&x.To)
	case *Unary:
		sub(&x.X)
	case *Binary:
		sub(&x.L)
		sub(&x.R)
		if err == nil && x.Op == OpIn {
			if lit, ok := x.R.(*Literal); ok {
				if list, ok := lit.Value.([]Value); ok {
					x.set = newInSet(list)
				}
			}
		}
		if err == nil && x.Op == OpRegex {
			if lit, ok := x.R.(*Literal); ok {
				if pattern, ok := lit.Value.(string); ok {
					re, cerr := compileRegexUncached(pattern)
					if cerr != nil {
						return nil, semErr(x.R.Position(), "%s (=~ uses RE2 syntax: no backreferences or lookaround)", cerr.Error())
					}
					x.re = re
				}
			}
		}
	case *IsNull:
		sub(&x.X)
	case *HasLabels:
		sub(&x.X)
	case *ListLit:
		for i := range x.Elems {
			sub(&x.Elems[i])
		}
	case *MapLit:
		for i := range x.Values {
			sub(&x.Values[i])
		}
	case *Case:
		sub(&x.Subject)
		for i := range x.Whens {
			sub(&x.Whens[i])
			sub(&x.Thens[i])
		}
		sub(&x.Else)
	case *Comprehension:
		sub(&x.List)
		if err != nil {
			return nil, err
		}
		ctx.locals = append(ctx.locals, x.Var.Name)
		x.Var.Scope, x.Var.Index = ScopeLocal, len(ctx.locals)-1
		sub(&x.Where)
		sub(&x.Project)
		ctx.locals = ctx.locals[:len(ctx.locals)-1]
	case *Quantifier:
		sub(&x.List)
		if err != nil {
			return nil, err
		}
		ctx.locals = append(ctx.locals, x.Var.Name)
		x.Var.Scope, x.Var.Index = ScopeLocal, len(ctx.locals)-1
		sub(&x.Where)
		ctx.locals = ctx.locals[:len(ctx.locals)-1]
	case *Call:
		return a.call(ctx, x)
	case *KeyRef:
		return nil, semErr(x.Pos, "expression was already analyzed")
	default:
		return nil, &SemanticError{Line: 1, Column: 1, Msg: "unknown expression node", kind: ErrSemantic}
	}
	if err != nil {
		return nil, err
	}
	return fold(e), nil
}

// fold replaces an expression whose operands are all literals by its value
// (constant folding), so that literal lists, maps and temporal constructors
// are built once at analysis instead of at every evaluation. An expression
// whose evaluation fails is kept: the error surfaces at evaluation, where it
// belongs.
func fold(e Expr) Expr {
	lit := func(x Expr) bool {
		if x == nil {
			return true
		}
		_, ok := x.(*Literal)
		return ok
	}
	constant := false
	switch x := e.(type) {
	case *ListLit:
		constant = true
		for _, el := range x.Elems {
			constant = constant && lit(el)
		}
	case *MapLit:
		constant = true
		for _, v := range x.Values {
			constant = constant && lit(v)
		}
	case *Unary:
		constant = lit(x.X)
	case *Binary:
		constant = lit(x.L) && lit(x.R)
	case *IsNull:
		constant = lit(x.X)
	case *Property:
		constant = lit(x.X)
	case *Index:
		constant = lit(x.X) && lit(x.Index)
	case *Slice:
		constant = lit(x.X) && lit(x.From) && lit(x.To)
	case *Case:
		constant = lit(x.Subject) && lit(x.Else)
		for i := range x.Whens {
			constant = constant && lit(x.Whens[i]) && lit(x.Thens[i])
		}
	case *Call:
		if x.fn != nil && x.fn.agg == 0 && (x.fn.special == specialNone || x.fn.special == specialCoalesce) {
			constant = true
			for _, a := range x.Args {
				constant = constant && lit(a)
			}
		}
	}
	if !constant {
		return e
	}
	v, err := Eval(e, nil)
	if err != nil {
		return e
	}
	return &Literal{Pos: e.Position(), Value: v}
}

// clockFunctions read the current time when called without arguments.
var clockFunctions = map[string]bool{"date": true, "datetime": true, "localdatetime": true}

func (a *analyzer) call(ctx *exprCtx, c *Call) (Expr, error) {
	lname := strings.ToLower(c.Name)
	fd, ok := functions[lname]
	if !ok {
		return nil, semErr(c.Pos, "unknown function '%s'", c.Name)
	}
	if fd.rejected != "" {
		return nil, unsupportedErr(c.Pos, "%s", fd.rejected)
	}
	if clockFunctions[lname] && len(c.Args) == 0 && !c.Star {
		return nil, unsupportedErr(c.Pos, "%s() without arguments returns the current time, which is not allowed in a continuous query (it is non-deterministic); pass an ISO string or a map", c.Name)
	}
	if c.Star && fd.agg != AggCount {
		return nil, semErr(c.Pos, "only count accepts *, not %s", c.Name)
	}
	if c.Distinct && fd.agg == 0 {
		return nil, semErr(c.Pos, "DISTINCT is only allowed in aggregate functions, not in %s", c.Name)
	}
	if !c.Star {
		n := len(c.Args)
		if n < fd.min || (fd.max >= 0 && n > fd.max) {
			return nil, semErr(c.Pos, "%s expects %s, got %d", fd.name, argCount(fd), n)
		}
	}
	c.fn = fd
	if fd.agg != 0 {
		switch {
		case ctx.inAgg:
			return nil, semErr(c.Pos, "aggregate function %s cannot be nested in another aggregate", fd.name)
		case ctx.inPrev:
			return nil, semErr(c.Pos, "aggregate function %s cannot be used inside drasi.previousValue", fd.name)
		case !ctx.allowAgg:
			return nil, semErr(c.Pos, "aggregate function %s is not allowed in %s", fd.name, ctx.what)
		}
		ctx.sawAgg = true
		ctx.inAgg = true
		savedLocals := ctx.locals
		if len(ctx.locals) > 0 {
			// An aggregate argument is evaluated per input row, where the
			// enclosing comprehension's variable does not exist.
			ctx.locals = nil
		}
		for i := range c.Args {
			arg, err := a.expr(ctx, c.Args[i])
			if err != nil {
				ctx.inAgg = false
				ctx.locals = savedLocals
				return nil, err
			}
			c.Args[i] = arg
		}
		ctx.inAgg = false
		ctx.locals = savedLocals
		key := canonical(c)
		if idx, ok := ctx.aggKeys[key]; ok {
			c.AggIndex = idx
			return c, nil
		}
		ag := &Aggregate{Index: len(ctx.part.Aggregates), Func: fd.agg, Distinct: c.Distinct, Star: c.Star, Call: c}
		if !c.Star {
			ag.Arg = c.Args[0]
		}
		c.AggIndex = ag.Index
		ctx.aggKeys[key] = ag.Index
		ctx.part.Aggregates = append(ctx.part.Aggregates, ag)
		return c, nil
	}
	savedPrev := ctx.inPrev
	if fd.special == specialPreviousValue {
		ctx.inPrev = true
	}
	for i := range c.Args {
		if fd.special == specialPreviousValue && i == 1 {
			ctx.inPrev = savedPrev // the default is evaluated normally
		}
		arg, err := a.expr(ctx, c.Args[i])
		if err != nil {
			ctx.inPrev = savedPrev
			return nil, err
		}
		c.Args[i] = arg
	}
	ctx.inPrev = savedPrev
	return fold(c), nil
}

func argCount(fd *funcDef) string {
	switch {
	case fd.max < 0:
		return "at least " + itoa(fd.min) + " argument(s)"
	case fd.min == fd.max && fd.min == 1:
		return "1 argument"
	case fd.min == fd.max:
		return itoa(fd.min) + " arguments"
	}
	return itoa(fd.min) + " to " + itoa(fd.max) + " arguments"
}
