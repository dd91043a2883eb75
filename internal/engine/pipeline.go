package engine

import (
	"encoding/binary"
	"sort"

	"github.com/tributary/tributary/internal/cypher"
)

// rowDelta is one row identity's change between the old and the new state
// at some point of the pipeline: old or new is nil when the row does not
// exist in that state.
type rowDelta struct {
	id       string
	old, new []cypher.Value
}

// rowIdentity encodes the elements bound to slots (length-prefixed element
// ids, 0 for null) as a row identity.
func rowIdentity(row []cypher.Value, slots []int) string {
	var b []byte
	for _, s := range slots {
		e, ok := row[s].(cypher.Element)
		if !ok {
			b = append(b, 0)
			continue
		}
		id := e.ElementID()
		b = binary.AppendUvarint(b, uint64(len(id))+1)
		b = append(b, id...)
	}
	return string(b)
}

// matchDelta computes the MATCH stage's delta for the written elements:
// every match containing one of them, before and after, plus (with
// OPTIONAL MATCH) every row whose optional extensions contain one.
func (q *Query) matchDelta(changed []elemID, old, nw *view) []rowDelta {
	before := map[string][]cypher.Value{}
	after := map[string][]cypher.Value{}
	if len(q.optional) == 0 {
		collect := func(v *view, into map[string][]cypher.Value) {
			m := q.newMatcher(v, q.required, func(row []cypher.Value) {
				into[rowIdentity(row, q.allSlots)] = row
			})
			for _, id := range changed {
				m.anchor(id, q.required)
			}
		}
		collect(old, before)
		collect(nw, after)
	} else {
		// Affected rows of the required part, found in either state.
		keys := map[string][]cypher.Value{}
		addKey := func(row []cypher.Value) {
			k := rowIdentity(row, q.requiredSlots)
			if _, ok := keys[k]; ok {
				return
			}
			kr := make([]cypher.Value, len(row))
			for _, s := range q.requiredSlots {
				kr[s] = row[s]
			}
			keys[k] = kr
		}
		for _, v := range []*view{old, nw} {
			m := q.newMatcher(v, q.required, addKey)
			for _, id := range changed {
				m.anchor(id, q.required)
			}
			for _, c := range q.optional {
				active := append([]*clausePlan{}, q.required...)
				for _, d := range c.deps {
					active = append(active, q.clauses[d])
				}
				active = append(active, c)
				m := q.newMatcher(v, active, addKey)
				for _, id := range changed {
					m.anchor(id, []*clausePlan{c})
				}
			}
		}
		ks := make([]string, 0, len(keys))
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			q.expandKey(old, keys[k], before)
			q.expandKey(nw, keys[k], after)
		}
	}
	return diffMaps(before, after)
}

// expandKey adds to into the complete rows of one required row in view v:
// nothing when it is not a match there, else its extensions through every
// OPTIONAL MATCH (or one row with the optional slots null).
func (q *Query) expandKey(v *view, key []cypher.Value, into map[string][]cypher.Value) {
	m := q.newMatcher(v, q.required, nil)
	if !m.verify(key) {
		return
	}
	start := make([]cypher.Value, len(m.row))
	copy(start, m.row)
	rows := [][]cypher.Value{start}
	for _, c := range q.optional {
		var next [][]cypher.Value
		for _, r := range rows {
			var ext [][]cypher.Value
			if optionalInputsBound(c, r) {
				om := q.newMatcher(v, []*clausePlan{c}, func(row []cypher.Value) { ext = append(ext, row) })
				copy(om.row, r)
				om.run()
			}
			if len(ext) == 0 {
				next = append(next, r) // the clause's slots stay null
				continue
			}
			next = append(next, ext...)
		}
		rows = next
	}
	for _, r := range rows {
		into[rowIdentity(r, q.allSlots)] = r
	}
}

// optionalInputsBound reports whether every slot an optional clause takes
// from earlier clauses is non-null in row r (a null input matches nothing).
func optionalInputsBound(c *clausePlan, r []cypher.Value) bool {
	for _, n := range c.m.Nodes {
		if n.Bound && r[n.Slot] == nil {
			return false
		}
	}
	for _, rs := range c.m.Rels {
		if rs.Bound && r[rs.Slot] == nil {
			return false
		}
	}
	return true
}

// diffMaps pairs rows by identity, sorted by identity.
func diffMaps(before, after map[string][]cypher.Value) []rowDelta {
	ids := make([]string, 0, len(before)+len(after))
	for id := range before {
		ids = append(ids, id)
	}
	for id := range after {
		if _, ok := before[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := make([]rowDelta, len(ids))
	for i, id := range ids {
		out[i] = rowDelta{id: id, old: before[id], new: after[id]}
	}
	return out
}

// partState is the incremental state of one WITH/RETURN part.
type partState struct {
	p *cypher.Part
	// Aggregating parts: groups by canonical grouping-key bytes.
	groups map[string]*group
	// DISTINCT: rows by canonical value bytes.
	distinct map[string]*distinctRow
	env      cypher.Env
}

// group is one group of an aggregating part.
type group struct {
	keys    []cypher.Value // grouping key values (latest representation)
	members int64
	accs    []accumulator
	last    []cypher.Value // last row emitted downstream (nil: none)
}

type distinctRow struct {
	row []cypher.Value
	n   int64
}

func newPartState(p *cypher.Part) *partState {
	ps := &partState{p: p}
	if p.Aggregating {
		ps.groups = map[string]*group{}
	}
	if p.Distinct {
		ps.distinct = map[string]*distinctRow{}
	}
	return ps
}

func (ps *partState) eval(q *Query, e cypher.Expr, row []cypher.Value) cypher.Value {
	if len(row) < len(ps.p.Vars) {
		// A part's row has len(Vars) slots; the previous part's output
		// fills the first NumInputs.
		padded := make([]cypher.Value, len(ps.p.Vars))
		copy(padded, row)
		row = padded
	}
	ps.env.Row = row
	ps.env.Params = q.params
	ps.env.Host = host{}
	v, err := cypher.Eval(e, &ps.env)
	if err != nil {
		q.noteEvalError(err)
		return nil
	}
	return v
}

func (ps *partState) truth(q *Query, e cypher.Expr, row []cypher.Value) bool {
	b, ok := ps.eval(q, e, row).(bool)
	return ok && b
}

// process turns the part's input deltas into its output deltas.
func (ps *partState) process(q *Query, in []rowDelta, init bool) []rowDelta {
	var out []rowDelta
	if ps.p.Aggregating {
		out = ps.aggregate(q, in, init)
	} else {
		out = make([]rowDelta, 0, len(in))
		for _, d := range in {
			var o, n []cypher.Value
			if d.old != nil {
				o = ps.project(q, d.old)
			}
			if d.new != nil {
				n = ps.project(q, d.new)
			}
			if o == nil && n == nil {
				continue
			}
			out = append(out, rowDelta{id: d.id, old: o, new: n})
		}
	}
	if ps.p.Distinct {
		out = ps.dedup(out)
	}
	return dropNoops(out)
}

// project evaluates a non-aggregating part's items on an input row, then
// its WHERE; nil when the row is filtered out.
func (ps *partState) project(q *Query, row []cypher.Value) []cypher.Value {
	out := make([]cypher.Value, len(ps.p.Items))
	for i, it := range ps.p.Items {
		out[i] = freeze(ps.eval(q, it.Expr, row))
	}
	if ps.p.Where != nil && !ps.truth(q, ps.p.Where, out) {
		return nil
	}
	return out
}

// aggregate retracts old rows from their groups, adds new rows to theirs,
// and emits each touched group's row change.
func (ps *partState) aggregate(q *Query, in []rowDelta, init bool) []rowDelta {
	p := ps.p
	touched := map[string]*group{}
	keyOf := func(row []cypher.Value) (string, []cypher.Value) {
		vals := make([]cypher.Value, len(p.GroupKeys))
		var b []byte
		for i, ki := range p.GroupKeys {
			v := canonicalGroupValue(freeze(ps.eval(q, p.Items[ki].Expr, row)))
			vals[i] = v
			b = cypher.AppendKey(b, v)
		}
		return string(b), vals
	}
	get := func(k string) *group {
		g := ps.groups[k]
		if g == nil {
			g = &group{accs: make([]accumulator, len(p.Aggregates))}
			for i, a := range p.Aggregates {
				g.accs[i] = newAccumulator(aggKindOf(a), a.Distinct)
			}
			ps.groups[k] = g
		}
		touched[k] = g
		return g
	}
	if init && len(p.GroupKeys) == 0 {
		get("")
	}
	feed := func(g *group, row []cypher.Value, w int) {
		g.members += int64(w)
		for i, a := range p.Aggregates {
			var v cypher.Value
			if a.Star {
				v = true
			} else {
				v = freeze(ps.eval(q, a.Arg, row))
			}
			g.accs[i].add(v, w)
		}
	}
	for _, d := range in {
		if d.old != nil {
			k, _ := keyOf(d.old)
			feed(get(k), d.old, -1)
		}
		if d.new != nil {
			k, vals := keyOf(d.new)
			g := get(k)
			g.keys = vals
			feed(g, d.new, +1)
		}
	}
	ks := make([]string, 0, len(touched))
	for k := range touched {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	out := make([]rowDelta, 0, len(ks))
	for _, k := range ks {
		g := touched[k]
		var row []cypher.Value
		if g.members > 0 || len(p.GroupKeys) == 0 {
			row = ps.groupRow(q, g)
		}
		if g.members <= 0 && len(p.GroupKeys) > 0 {
			delete(ps.groups, k)
		}
		if g.last == nil && row == nil {
			continue
		}
		out = append(out, rowDelta{id: "g" + k, old: g.last, new: row})
		g.last = row
	}
	return out
}

// groupRow builds an aggregating part's output row for a group, then
// applies the part's WHERE; nil when filtered out.
func (ps *partState) groupRow(q *Query, g *group) []cypher.Value {
	p := ps.p
	aggs := make([]cypher.Value, len(g.accs))
	for i, a := range g.accs {
		aggs[i] = a.result()
	}
	env := cypher.Env{Keys: g.keys, Aggregates: aggs, Params: q.params, Host: host{}}
	out := make([]cypher.Value, len(p.Items))
	ki := 0
	for i, it := range p.Items {
		if !it.Aggregating {
			if ki < len(g.keys) {
				out[i] = g.keys[ki]
			}
			ki++
			continue
		}
		v, err := cypher.Eval(it.Expr, &env)
		if err != nil {
			q.noteEvalError(err)
			v = nil
		}
		out[i] = freeze(v)
	}
	if p.Where != nil && !ps.truth(q, p.Where, out) {
		return nil
	}
	return out
}

func aggKindOf(a *cypher.Aggregate) aggKind {
	switch a.Func {
	case cypher.AggCount:
		if a.Star {
			return aggCountStar
		}
		return aggCount
	case cypher.AggSum:
		return aggSum
	case cypher.AggAvg:
		return aggAvg
	case cypher.AggMin:
		return aggMin
	case cypher.AggMax:
		return aggMax
	case cypher.AggCollect:
		return aggCollect
	}
	panic("engine: unknown aggregate function " + a.Func.String())
}

// dedup applies DISTINCT: rows are identified by their canonical values and
// counted; a value class appears with its first row and disappears with its
// last. A class whose representation changed (an element's properties) is
// updated.
func (ps *partState) dedup(in []rowDelta) []rowDelta {
	type touch struct {
		before []cypher.Value
	}
	touched := map[string]*touch{}
	mark := func(k string) {
		if _, ok := touched[k]; ok {
			return
		}
		t := &touch{}
		if r := ps.distinct[k]; r != nil && r.n > 0 {
			t.before = r.row
		}
		touched[k] = t
	}
	for _, d := range in {
		if d.old != nil {
			k := rowKey(d.old)
			mark(k)
			if r := ps.distinct[k]; r != nil {
				r.n--
			}
		}
		if d.new != nil {
			k := rowKey(d.new)
			mark(k)
			r := ps.distinct[k]
			if r == nil {
				r = &distinctRow{}
				ps.distinct[k] = r
			}
			r.n++
			r.row = canonicalRow(d.new)
		}
	}
	ks := make([]string, 0, len(touched))
	for k := range touched {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	out := make([]rowDelta, 0, len(ks))
	for _, k := range ks {
		var after []cypher.Value
		if r := ps.distinct[k]; r != nil && r.n > 0 {
			after = r.row
		} else {
			delete(ps.distinct, k)
		}
		out = append(out, rowDelta{id: "d" + k, old: touched[k].before, new: after})
	}
	return out
}

func rowKey(row []cypher.Value) string {
	var b []byte
	for _, v := range row {
		b = cypher.AppendKey(b, v)
	}
	return string(b)
}

func canonicalRow(row []cypher.Value) []cypher.Value {
	out := make([]cypher.Value, len(row))
	for i, v := range row {
		out[i] = canonicalGroupValue(v)
	}
	return out
}

// dropNoops removes deltas that change nothing (both sides absent, or equal
// in every value and representation). It must be strict: a later part
// retracts exactly the values it was given, so a change from 1 to 1.0 has to
// reach it even though the JSON result cannot show it.
func dropNoops(in []rowDelta) []rowDelta {
	out := in[:0]
	for _, d := range in {
		if d.old == nil && d.new == nil {
			continue
		}
		if d.old != nil && d.new != nil && rowsEqual(d.old, d.new) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func rowsEqual(a, b []cypher.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strictEqual(toJSON(a[i]), toJSON(b[i])) {
			return false
		}
	}
	return true
}

// freeze copies the state of every element inside v, so that a value kept
// in part state (a group key, an accumulator, a last row) keeps showing the
// version it was computed from after the store moves on.
func freeze(v cypher.Value) cypher.Value {
	switch x := v.(type) {
	case *elemVal:
		st := *x.st
		return &elemVal{s: x.s, id: x.id, st: &st, prev: x.prev}
	case *joinRel:
		return &joinRel{j: x.j, from: freeze(x.from).(*elemVal), to: freeze(x.to).(*elemVal)}
	case []cypher.Value:
		out := make([]cypher.Value, len(x))
		for i, e := range x {
			out[i] = freeze(e)
		}
		return out
	case map[string]cypher.Value:
		out := make(map[string]cypher.Value, len(x))
		for k, e := range x {
			out[k] = freeze(e)
		}
		return out
	}
	return v
}
