package engine

import (
	"fmt"
	"sort"

	"github.com/tributary/tributary/internal/cypher"
)

// planMatches prepares part 0's MATCH clauses for the matcher: probes,
// joins per relationship slot, optional-clause dependencies, and the
// property indexes the store must keep.
func (q *Query) planMatches() error {
	part := q.prog.Parts[0]
	if len(part.Matches) == 0 {
		return fmt.Errorf("%w: the first query part has no MATCH clause", ErrUnsupportedQuery)
	}
	for pi, p := range q.prog.Parts[1:] {
		if len(p.Matches) > 0 {
			pos := p.Matches[0].Clause.Pos
			return fmt.Errorf("%w: %s: MATCH after WITH (query part %d) is not supported", ErrUnsupportedQuery, pos, pi+2)
		}
	}
	seenOptional := false
	introducedBy := map[int]int{} // slot -> clause index
	for ci, m := range part.Matches {
		if m.Optional {
			seenOptional = true
		} else if seenOptional {
			return fmt.Errorf("%w: %s: MATCH after OPTIONAL MATCH is not supported", ErrUnsupportedQuery, m.Clause.Pos)
		}
		c := &clausePlan{m: m, idx: ci}
		for _, s := range m.NewSlots {
			introducedBy[s] = ci
		}
		// Joins admitted by each relationship slot.
		c.joins = make([][]*joinSpec, len(m.Rels))
		for ri, r := range m.Rels {
			for _, j := range q.joins {
				if len(r.Types) == 0 || containsString(r.Types, j.id) {
					c.joins[ri] = append(c.joins[ri], j)
				}
			}
		}
		// Probes: inline property predicates and WHERE equalities.
		for _, n := range m.Nodes {
			for _, pp := range n.Props {
				c.addProbe(q, n, pp.Key, pp.Value)
			}
		}
		for _, conj := range conjuncts(m.Where) {
			b, ok := conj.(*cypher.Binary)
			if !ok || b.Op != cypher.OpEq {
				continue
			}
			for _, side := range [][2]cypher.Expr{{b.L, b.R}, {b.R, b.L}} {
				p, ok := side[0].(*cypher.Property)
				if !ok {
					continue
				}
				v, ok := p.X.(*cypher.Variable)
				if !ok || v.Scope != cypher.ScopeRow {
					continue
				}
				if n := m.Node(v.Index); n != nil {
					c.addProbe(q, n, p.Key, side[1])
				}
			}
		}
		q.clauses = append(q.clauses, c)
		if m.Optional {
			q.optional = append(q.optional, c)
		} else {
			q.required = append(q.required, c)
		}
	}
	// Dependencies of optional clauses on earlier optional clauses.
	for _, c := range q.optional {
		reads := map[int]bool{}
		for _, n := range c.m.Nodes {
			if n.Bound {
				reads[n.Slot] = true
			}
			for _, pp := range n.Props {
				exprSlots(pp.Value, func(s int) { reads[s] = true })
			}
		}
		for _, r := range c.m.Rels {
			if r.Bound {
				reads[r.Slot] = true
			}
			for _, pp := range r.Props {
				exprSlots(pp.Value, func(s int) { reads[s] = true })
			}
		}
		exprSlots(c.m.Where, func(s int) { reads[s] = true })
		deps := map[int]bool{}
		for s := range reads {
			if ci, ok := introducedBy[s]; ok && ci != c.idx && q.clauses[ci].m.Optional {
				deps[ci] = true
				for _, d := range q.clauses[ci].deps {
					deps[d] = true
				}
			}
		}
		for d := range deps {
			c.deps = append(c.deps, d)
		}
		sort.Ints(c.deps)
	}
	for _, c := range q.required {
		q.requiredSlots = append(q.requiredSlots, c.m.NewSlots...)
	}
	sort.Ints(q.requiredSlots)
	for i := range part.Vars {
		q.allSlots = append(q.allSlots, i)
	}
	for _, j := range q.joins {
		q.store.indexProperty(j.fromLabel, j.fromProp)
		q.store.indexProperty(j.toLabel, j.toProp)
	}
	return nil
}

func (c *clausePlan) addProbe(q *Query, n *cypher.NodeSlot, key string, expr cypher.Expr) {
	if len(n.Labels) == 0 {
		return // no label to index under
	}
	var needs []int
	self := false
	exprSlots(expr, func(s int) {
		if s == n.Slot {
			self = true
		}
		needs = append(needs, s)
	})
	if self {
		return
	}
	p := probe{slot: n.Slot, prop: key, labels: n.Labels[0], expr: expr, needs: needs, clause: c.idx}
	for _, l := range p.labels {
		q.store.indexProperty(l, key)
	}
	c.probes = append(c.probes, p)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// conjuncts splits a predicate on AND.
func conjuncts(e cypher.Expr) []cypher.Expr {
	if e == nil {
		return nil
	}
	if b, ok := e.(*cypher.Binary); ok && b.Op == cypher.OpAnd {
		return append(conjuncts(b.L), conjuncts(b.R)...)
	}
	return []cypher.Expr{e}
}

// exprSlots calls f for every row slot an expression reads.
func exprSlots(e cypher.Expr, f func(int)) {
	switch x := e.(type) {
	case nil:
	case *cypher.Variable:
		if x.Scope == cypher.ScopeRow {
			f(x.Index)
		}
	case *cypher.Property:
		exprSlots(x.X, f)
	case *cypher.Index:
		exprSlots(x.X, f)
		exprSlots(x.Index, f)
	case *cypher.Slice:
		exprSlots(x.X, f)
		exprSlots(x.From, f)
		exprSlots(x.To, f)
	case *cypher.Unary:
		exprSlots(x.X, f)
	case *cypher.Binary:
		exprSlots(x.L, f)
		exprSlots(x.R, f)
	case *cypher.IsNull:
		exprSlots(x.X, f)
	case *cypher.HasLabels:
		exprSlots(x.X, f)
	case *cypher.ListLit:
		for _, y := range x.Elems {
			exprSlots(y, f)
		}
	case *cypher.MapLit:
		for _, y := range x.Values {
			exprSlots(y, f)
		}
	case *cypher.Case:
		exprSlots(x.Subject, f)
		for _, y := range x.Whens {
			exprSlots(y, f)
		}
		for _, y := range x.Thens {
			exprSlots(y, f)
		}
		exprSlots(x.Else, f)
	case *cypher.Comprehension:
		exprSlots(x.List, f)
		exprSlots(x.Where, f)
		exprSlots(x.Project, f)
	case *cypher.Quantifier:
		exprSlots(x.List, f)
		exprSlots(x.Where, f)
	case *cypher.Call:
		for _, y := range x.Args {
			exprSlots(y, f)
		}
	case *cypher.KeyRef:
		exprSlots(x.Orig, f)
	}
}
