package engine

import (
	"github.com/tributary/tributary/internal/cypher"
)

// joinSpec is a configured join: a synthetic relation of type id goes from
// every node with label fromLabel to every node with label toLabel whose
// fromProp and toProp values are equal (null, missing and NaN never join).
type joinSpec struct {
	idx                int
	id                 string
	fromLabel, toLabel string
	fromProp, toProp   string
}

// holds reports whether the synthetic relation from -> to exists in v.
func (j *joinSpec) holds(v *view, from, to elemID) bool {
	fs, ts := v.state(from), v.state(to)
	if !fs.present || !ts.present || v.s.elems[from].rel || v.s.elems[to].rel {
		return false
	}
	if !hasLabel(fs.labels, j.fromLabel) || !hasLabel(ts.labels, j.toLabel) {
		return false
	}
	a, ok := findProp(fs.props, j.fromProp)
	if !ok || !joinable(a) {
		return false
	}
	b, ok := findProp(ts.props, j.toProp)
	if !ok || !joinable(b) {
		return false
	}
	return valueKey(a) == valueKey(b)
}

// probe is an equality usable to find candidates of a node slot through the
// property index instead of a label scan: slot.prop = expr, where expr reads
// only other slots (needs) and parameters.
type probe struct {
	slot   int
	prop   string
	labels []string // index labels: the slot's first label alternatives
	expr   cypher.Expr
	needs  []int
	clause int
}

// clausePlan is one MATCH clause with what the matcher needs precomputed.
type clausePlan struct {
	m      *cypher.Match
	idx    int
	probes []probe
	// deps are the earlier optional clauses whose slots this (optional)
	// clause reads, transitively.
	deps []int
	// joins are, per rel slot index, the joins its types admit.
	joins [][]*joinSpec
}

// matcher enumerates the matches of a set of active clauses in one view by
// backtracking: it extends bound nodes through adjacency and join indexes,
// binds unconnected nodes through equality probes or label scans, and
// checks property predicates and WHERE once every slot is bound.
type matcher struct {
	q      *Query
	v      *view
	active []*clausePlan
	row    []cypher.Value
	emit   func(row []cypher.Value)
	env    cypher.Env
}

func (q *Query) newMatcher(v *view, active []*clausePlan, emit func([]cypher.Value)) *matcher {
	m := &matcher{q: q, v: v, active: active, emit: emit}
	m.row = make([]cypher.Value, len(q.prog.Parts[0].Vars))
	m.env = cypher.Env{Row: m.row, Params: q.params, Host: host{}}
	return m
}

func (m *matcher) reset() {
	for i := range m.row {
		m.row[i] = nil
	}
}

// nodeFits checks a node element against every active clause's constraints
// on the slot (labels only; properties are checked at completion).
func (m *matcher) nodeFits(slot int, id elemID) bool {
	m.q.visited++
	if m.v.s.elems[id].rel {
		return false
	}
	st := m.v.state(id)
	if !st.present {
		return false
	}
	for _, c := range m.active {
		if n := c.m.Node(slot); n != nil && !labelsFit(st.labels, n.Labels) {
			return false
		}
	}
	return true
}

func (m *matcher) bindNode(slot int, id elemID) {
	m.row[slot] = &elemVal{s: m.v.s, id: id, st: m.v.state(id)}
}

// boundNode returns the element id bound to a node slot, or noElem.
func (m *matcher) boundNode(slot int) elemID {
	if v, ok := m.row[slot].(*elemVal); ok {
		return v.id
	}
	return noElem
}

// run extends the current partial row in every possible way.
func (m *matcher) run() {
	// 1. A relationship with a bound endpoint.
	for _, c := range m.active {
		for ri, r := range c.m.Rels {
			if m.row[r.Slot] != nil {
				continue
			}
			if m.row[r.From] != nil || m.row[r.To] != nil {
				m.expandRel(c, ri, r)
				return
			}
		}
	}
	// 2. An unbound node: through a probe when one is ready, else a scan.
	for _, c := range m.active {
		for _, n := range c.m.Nodes {
			if m.row[n.Slot] != nil {
				continue
			}
			m.expandNode(n)
			return
		}
	}
	// 3. Complete: check predicates.
	if m.complete() {
		out := make([]cypher.Value, len(m.row))
		copy(out, m.row)
		m.emit(out)
	}
}

func (m *matcher) expandNode(n *cypher.NodeSlot) {
	try := func(id elemID) {
		if !m.nodeFits(n.Slot, id) {
			return
		}
		m.bindNode(n.Slot, id)
		m.run()
		m.row[n.Slot] = nil
	}
	for _, c := range m.active {
		for _, p := range c.probes {
			if p.slot != n.Slot || !m.ready(p.needs) {
				continue
			}
			val, err := cypher.Eval(p.expr, &m.env)
			if err != nil || !joinable(val) {
				// An erroring or null probe value matches nothing
				// (Cypher = with null is null).
				return
			}
			key := valueKey(val)
			seen := map[elemID]bool{}
			for _, l := range p.labels {
				m.v.s.propIdx[propIndexKey{l, p.prop, key}].each(func(id elemID) {
					if !seen[id] {
						seen[id] = true
						try(id)
					}
				})
			}
			m.tryWritten(seen, try)
			return
		}
	}
	seen := map[elemID]bool{}
	if len(n.Labels) > 0 {
		for _, l := range n.Labels[0] {
			m.v.s.labels[l].each(func(id elemID) {
				if !seen[id] {
					seen[id] = true
					try(id)
				}
			})
		}
	} else {
		for i := 1; i < len(m.v.s.elems); i++ {
			seen[elemID(i)] = true
			try(elemID(i))
		}
	}
	m.tryWritten(seen, try)
}

// tryWritten offers the written elements as candidates in the old view (the
// indexes describe the new state).
func (m *matcher) tryWritten(seen map[elemID]bool, try func(elemID)) {
	if !m.v.isOld() {
		return
	}
	for _, id := range m.v.written {
		if !seen[id] {
			seen[id] = true
			try(id)
		}
	}
}

func (m *matcher) ready(slots []int) bool {
	for _, s := range slots {
		if m.row[s] == nil {
			return false
		}
	}
	return true
}

// relFree reports whether a relation is not yet used by another rel slot of
// the clause (a relationship appears at most once per match).
func (m *matcher) relFree(c *clausePlan, except int, val cypher.Value) bool {
	for ri, r := range c.m.Rels {
		if ri == except {
			continue
		}
		switch b := m.row[r.Slot].(type) {
		case *elemVal:
			if v, ok := val.(*elemVal); ok && v.id == b.id {
				return false
			}
		case *joinRel:
			if v, ok := val.(*joinRel); ok && v.j == b.j && v.from.id == b.from.id && v.to.id == b.to.id {
				return false
			}
		}
	}
	return true
}

// expandRel binds relationship slot r (one endpoint bound) to every fitting
// stored or synthetic relation, binding the other endpoint.
func (m *matcher) expandRel(c *clausePlan, ri int, r *cypher.RelSlot) {
	orients := [][2]int{{r.From, r.To}}
	if !r.Directed && r.From != r.To {
		orients = append(orients, [2]int{r.To, r.From})
	}
	for _, o := range orients {
		fs, ts := o[0], o[1]
		// Stored relations.
		if a := m.boundNode(fs); a != noElem {
			m.expandStored(c, ri, r, m.v.s.elems[a].out, fs, ts, true)
		} else if b := m.boundNode(ts); b != noElem {
			m.expandStored(c, ri, r, m.v.s.elems[b].in, fs, ts, false)
		}
		// Synthetic relations of joins.
		for _, j := range c.joins[ri] {
			m.expandJoin(c, ri, r, j, fs, ts)
		}
	}
}

// expandStored tries the relations in adj (the bound endpoint's adjacency in
// the new state, plus written relations in the old view).
func (m *matcher) expandStored(c *clausePlan, ri int, r *cypher.RelSlot, adj []elemID, fs, ts int, fromBound bool) {
	try := func(rid elemID) {
		m.q.visited++
		st := m.v.state(rid)
		if !st.present || !m.v.s.elems[rid].rel || !typesFit(st.labels, r.Types) {
			return
		}
		var other elemID
		var otherSlot int
		if fromBound {
			if st.from != m.boundNode(fs) {
				return
			}
			other, otherSlot = st.to, ts
		} else {
			if st.to != m.boundNode(ts) {
				return
			}
			other, otherSlot = st.from, fs
		}
		val := &elemVal{s: m.v.s, id: rid, st: st}
		m.bindRel(c, ri, r.Slot, val, otherSlot, other)
	}
	old := m.v.isOld()
	for _, rid := range adj {
		if old {
			if _, written := m.v.old[rid]; written {
				continue // tried below with its old state
			}
		}
		try(rid)
	}
	if old {
		for _, rid := range m.v.written {
			try(rid)
		}
	}
}

// bindRel binds the relation val at relSlot and its other endpoint at
// otherSlot (or checks it against the node already bound there), extends
// the row with run, and unbinds. Stored and synthetic relations share it.
func (m *matcher) bindRel(c *clausePlan, ri, relSlot int, val cypher.Value, otherSlot int, other elemID) {
	if !m.relFree(c, ri, val) {
		return
	}
	if b := m.boundNode(otherSlot); b != noElem {
		if b != other {
			return
		}
		m.row[relSlot] = val
		m.run()
		m.row[relSlot] = nil
		return
	}
	if m.row[otherSlot] != nil || !m.nodeFits(otherSlot, other) {
		return
	}
	m.row[relSlot] = val
	m.bindNode(otherSlot, other)
	m.run()
	m.row[otherSlot] = nil
	m.row[relSlot] = nil
}

// expandJoin tries the synthetic relations of join j for the orientation
// fs -> ts.
func (m *matcher) expandJoin(c *clausePlan, ri int, r *cypher.RelSlot, j *joinSpec, fs, ts int) {
	bindRel := func(from, to elemID, otherSlot int, other elemID) {
		if !j.holds(m.v, from, to) {
			return
		}
		val := &joinRel{j: j, from: &elemVal{s: m.v.s, id: from, st: m.v.state(from)}, to: &elemVal{s: m.v.s, id: to, st: m.v.state(to)}}
		m.bindRel(c, ri, r.Slot, val, otherSlot, other)
	}
	lookup := func(label, prop string, v any, f func(elemID)) {
		if !joinable(v) {
			return
		}
		seen := map[elemID]bool{}
		m.v.s.propIdx[propIndexKey{label, prop, valueKey(v)}].each(func(id elemID) {
			seen[id] = true
			f(id)
		})
		m.tryWritten(seen, f)
	}
	if a := m.boundNode(fs); a != noElem {
		st := m.v.state(a)
		if !hasLabel(st.labels, j.fromLabel) {
			return
		}
		v, _ := findProp(st.props, j.fromProp)
		lookup(j.toLabel, j.toProp, v, func(b elemID) { bindRel(a, b, ts, b) })
		return
	}
	if b := m.boundNode(ts); b != noElem {
		st := m.v.state(b)
		if !hasLabel(st.labels, j.toLabel) {
			return
		}
		v, _ := findProp(st.props, j.toProp)
		lookup(j.fromLabel, j.fromProp, v, func(a elemID) { bindRel(a, b, fs, a) })
	}
}

// complete checks, on a fully bound row, what binding did not: property
// predicates and every active clause's WHERE.
func (m *matcher) complete() bool {
	for _, c := range m.active {
		for _, n := range c.m.Nodes {
			if !m.propsHold(m.row[n.Slot], n.Props) {
				return false
			}
		}
		for _, r := range c.m.Rels {
			if !m.propsHold(m.row[r.Slot], r.Props) {
				return false
			}
		}
		if c.m.Where != nil && !m.truth(c.m.Where) {
			return false
		}
	}
	return true
}

func (m *matcher) propsHold(v cypher.Value, preds []cypher.PropertyPredicate) bool {
	if len(preds) == 0 {
		return true
	}
	e, ok := v.(cypher.Element)
	if !ok {
		return false
	}
	for _, p := range preds {
		want, err := cypher.Eval(p.Value, &m.env)
		if err != nil {
			m.q.noteEvalError(err)
			return false
		}
		got, _ := e.Property(p.Key)
		if eq, isNull := cypher.Equal(got, want); isNull || !eq {
			return false
		}
	}
	return true
}

// truth evaluates a predicate; null, non-boolean and errors are false (an
// error is recorded as the change's evaluation warning).
func (m *matcher) truth(e cypher.Expr) bool {
	v, err := cypher.Eval(e, &m.env)
	if err != nil {
		m.q.noteEvalError(err)
		return false
	}
	b, ok := v.(bool)
	return ok && b
}

// anchor binds element id at every slot of the given clauses it fits and
// enumerates the completions. Slots bound before the clause (Bound) are not
// anchored there: they are anchored in the clause that introduces them.
func (m *matcher) anchor(id elemID, at []*clausePlan) {
	st := m.v.state(id)
	if !st.present {
		return
	}
	rel := m.v.s.elems[id].rel
	for _, c := range at {
		if !rel {
			for _, n := range c.m.Nodes {
				if n.Bound || !m.nodeFits(n.Slot, id) {
					continue
				}
				m.reset()
				m.bindNode(n.Slot, id)
				m.run()
			}
			continue
		}
		if !typesFitAny(st.labels, c) {
			continue
		}
		for ri, r := range c.m.Rels {
			if r.Bound || !typesFit(st.labels, r.Types) {
				continue
			}
			orients := [][2]int{{r.From, r.To}}
			if !r.Directed && r.From != r.To {
				orients = append(orients, [2]int{r.To, r.From})
			}
			for _, o := range orients {
				fs, ts := o[0], o[1]
				if fs == ts && st.from != st.to {
					continue
				}
				if !m.nodeFits(fs, st.from) || !m.nodeFits(ts, st.to) {
					continue
				}
				m.reset()
				val := &elemVal{s: m.v.s, id: id, st: st}
				m.row[r.Slot] = val
				m.bindNode(fs, st.from)
				m.bindNode(ts, st.to)
				if !m.relFree(c, ri, val) {
					continue
				}
				m.run()
			}
		}
	}
	m.reset()
}

func typesFitAny(labels []string, c *clausePlan) bool {
	for _, r := range c.m.Rels {
		if typesFit(labels, r.Types) {
			return true
		}
	}
	return false
}

// verify checks that a fully bound row (built in another view) is a match
// of the active clauses in this view, rebinding its elements to this view.
// Slots not used by the active clauses are left as they are.
func (m *matcher) verify(row []cypher.Value) bool {
	copy(m.row, row)
	for _, c := range m.active {
		for _, n := range c.m.Nodes {
			id := m.boundNode(n.Slot)
			if id == noElem || !m.nodeFits(n.Slot, id) {
				return false
			}
			m.bindNode(n.Slot, id)
		}
	}
	for _, c := range m.active {
		for ri, r := range c.m.Rels {
			switch b := m.row[r.Slot].(type) {
			case *elemVal:
				st := m.v.state(b.id)
				if !st.present || !typesFit(st.labels, r.Types) {
					return false
				}
				f, t := m.boundNode(r.From), m.boundNode(r.To)
				if !(st.from == f && st.to == t) && (r.Directed || !(st.from == t && st.to == f)) {
					return false
				}
				m.row[r.Slot] = &elemVal{s: m.v.s, id: b.id, st: st}
			case *joinRel:
				if !b.j.holds(m.v, b.from.id, b.to.id) || !joinAdmitted(c, ri, b.j) {
					return false
				}
				f, t := m.boundNode(r.From), m.boundNode(r.To)
				if !(b.from.id == f && b.to.id == t) && (r.Directed || !(b.from.id == t && b.to.id == f)) {
					return false
				}
				m.row[r.Slot] = &joinRel{j: b.j, from: bindVal(m.v, b.from.id), to: bindVal(m.v, b.to.id)}
			default:
				return false
			}
		}
	}
	return m.complete()
}

func joinAdmitted(c *clausePlan, ri int, j *joinSpec) bool {
	for _, x := range c.joins[ri] {
		if x == j {
			return true
		}
	}
	return false
}
