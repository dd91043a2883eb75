package engine_test

// A from-scratch reference evaluator for the differential test, written
// independently of the engine: its own element map (with previous versions
// and tombstones), MATCH by backtracking over full scans, OPTIONAL MATCH per
// input row, grouping and aggregates recomputed from all rows. It shares
// only package cypher (parser, analyzer, expression evaluation) with the
// engine.

import (
	"math/big"
	"sort"

	"github.com/tributary/tributary/internal/cypher"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/change"
)

type refVersion struct {
	labels []string
	props  map[string]any
}

type refEl struct {
	source, id string
	rel        bool
	present    bool
	versioned  bool
	pos        string
	labels     []string
	props      map[string]any
	from, to   string
	ts         int64
	prev       *refVersion
}

type refGraph struct {
	els map[string]*refEl
}

func newRefGraph() *refGraph { return &refGraph{els: map[string]*refEl{}} }

func refKey(source, id string) string { return source + "\x00" + id }

func (g *refGraph) stale(e *refEl, pos string) bool {
	return e.versioned && pos != "" && e.pos != "" && change.ComparePositions(pos, e.pos) <= 0
}

func (g *refGraph) setPos(e *refEl, pos string) {
	e.versioned = true
	if pos != "" {
		e.pos = pos
	}
}

func sortedUnique(ls []string) []string {
	m := map[string]bool{}
	var out []string
	for _, l := range ls {
		if !m[l] {
			m[l] = true
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func (g *refGraph) apply(env *change.Envelope) {
	el := env.Element
	rel := el.Type == change.TypeRelation
	switch env.Op {
	case change.OpInsert, change.OpUpdate:
		k := refKey(env.Source, el.ID)
		e := g.els[k]
		if e == nil {
			e = &refEl{source: env.Source, id: el.ID, rel: rel}
			g.els[k] = e
		}
		if g.stale(e, env.Position) {
			return
		}
		merge := env.Op == change.OpUpdate && e.present
		props := map[string]any{}
		if merge {
			for k, v := range e.props {
				props[k] = v
			}
		}
		for k, v := range el.Properties {
			cv, err := cypher.FromJSON(v)
			if err != nil {
				panic(err)
			}
			if cv == nil {
				delete(props, k)
			} else {
				props[k] = cv
			}
		}
		labels := e.labels
		if len(el.Labels) > 0 || !merge {
			labels = sortedUnique(el.Labels)
		}
		if e.present && sameStrings(labels, e.labels) && sameMap(props, e.props) && e.from == el.From && e.to == el.To {
			g.setPos(e, env.Position)
			return
		}
		if e.present {
			e.prev = &refVersion{labels: e.labels, props: e.props}
		} else {
			e.prev = nil
		}
		e.present, e.labels, e.props, e.from, e.to, e.ts = true, labels, props, el.From, el.To, env.TsMs
		g.setPos(e, env.Position)
	case change.OpDelete:
		k := refKey(env.Source, el.ID)
		e := g.els[k]
		if e == nil {
			e = &refEl{source: env.Source, id: el.ID, rel: rel}
			g.els[k] = e
			g.setPos(e, env.Position)
			return
		}
		if g.stale(e, env.Position) {
			return
		}
		g.remove(e, env.Position)
	case change.OpTruncate:
		for _, e := range g.els {
			if !e.present || e.source != env.Source || e.rel != rel || g.stale(e, env.Position) {
				continue
			}
			hit := false
			for _, l := range env.Element.Labels {
				for _, x := range e.labels {
					hit = hit || x == l
				}
			}
			if hit {
				g.remove(e, env.Position)
			}
		}
	}
}

func (g *refGraph) remove(e *refEl, pos string) {
	if e.present && !e.rel {
		for _, r := range g.els {
			if r.present && r.rel && r.source == e.source && (r.from == e.id || r.to == e.id) {
				r.present, r.prev = false, nil
				if pos != "" && (r.pos == "" || change.ComparePositions(pos, r.pos) > 0) {
					r.pos = pos
				}
				r.versioned = true
			}
		}
	}
	e.present, e.prev = false, nil
	g.setPos(e, pos)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sameMap(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !strictSame(v, w) {
			return false
		}
	}
	return true
}

func strictSame(a, b any) bool {
	switch x := a.(type) {
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	}
	return cypher.Compare(a, b) == 0 && cypher.TypeOf(a) == cypher.TypeOf(b)
}

// refVal is a reference element as a cypher.Element.
type refVal struct {
	e      *refEl
	labels []string
	props  map[string]any
	isPrev bool
}

func (v *refVal) ElementID() string { return v.e.source + "\x00" + v.e.id }
func (v *refVal) Labels() []string  { return v.labels }
func (v *refVal) Property(n string) (cypher.Value, bool) {
	x, ok := v.props[n]
	return x, ok
}
func (v *refVal) Properties() map[string]cypher.Value { return v.props }
func (v *refVal) IsRelation() bool                    { return v.e.rel }

type refJoinVal struct {
	join     string
	from, to *refEl
}

func (v *refJoinVal) ElementID() string {
	return "\x01" + v.join + "\x00" + refKey(v.from.source, v.from.id) + "\x00" + refKey(v.to.source, v.to.id)
}
func (v *refJoinVal) Labels() []string                     { return []string{v.join} }
func (v *refJoinVal) Property(string) (cypher.Value, bool) { return nil, false }
func (v *refJoinVal) Properties() map[string]cypher.Value  { return map[string]cypher.Value{} }
func (v *refJoinVal) IsRelation() bool                     { return true }

type refHost struct{}

func (refHost) PreviousVersion(e cypher.Element) (cypher.Element, bool) {
	v, ok := e.(*refVal)
	if !ok || v.isPrev || v.e.prev == nil {
		return nil, false
	}
	return &refVal{e: v.e, labels: v.e.prev.labels, props: v.e.prev.props, isPrev: true}, true
}

func (refHost) ChangeTime(e cypher.Element) (cypher.DateTime, bool) {
	return cypher.DateTime{}, false
}

func cur(e *refEl) *refVal { return &refVal{e: e, labels: e.labels, props: e.props} }

// evaluate computes the query's result from scratch.
func (g *refGraph) evaluate(prog *cypher.Program, joins []engine.Join, params map[string]cypher.Value) []map[string]any {
	var nodes, rels []*refEl
	keys := make([]string, 0, len(g.els))
	for k := range g.els {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byID := map[string]*refEl{}
	for _, k := range keys {
		e := g.els[k]
		if !e.present {
			continue
		}
		if e.rel {
			rels = append(rels, e)
		} else {
			nodes = append(nodes, e)
			byID[k] = e
		}
	}
	// Candidate relations: stored ones with both endpoints present nodes,
	// and the synthetic ones of every join.
	var relVals []cypher.Element
	for _, r := range rels {
		if byID[refKey(r.source, r.from)] != nil && byID[refKey(r.source, r.to)] != nil {
			relVals = append(relVals, cur(r))
		}
	}
	for _, j := range joins {
		for _, a := range nodes {
			for _, b := range nodes {
				if !has(a.labels, j.Keys[0].Label) || !has(b.labels, j.Keys[1].Label) {
					continue
				}
				x, y := a.props[j.Keys[0].Property], b.props[j.Keys[1].Property]
				if x == nil || y == nil {
					continue
				}
				if eq, isNull := cypher.Equal(x, y); eq && !isNull {
					relVals = append(relVals, &refJoinVal{join: j.ID, from: a, to: b})
				}
			}
		}
	}
	endpoints := func(r cypher.Element) (from, to *refEl) {
		switch x := r.(type) {
		case *refVal:
			return byID[refKey(x.e.source, x.e.from)], byID[refKey(x.e.source, x.e.to)]
		case *refJoinVal:
			return x.from, x.to
		}
		return nil, nil
	}

	part0 := prog.Parts[0]
	rows := [][]cypher.Value{make([]cypher.Value, len(part0.Vars))}
	for _, m := range part0.Matches {
		var next [][]cypher.Value
		for _, r := range rows {
			ext := g.matchClause(m, r, nodes, relVals, endpoints, params)
			if len(ext) == 0 && m.Optional {
				next = append(next, r)
				continue
			}
			next = append(next, ext...)
		}
		rows = next
	}
	// Rows are identified by their elements.
	seen := map[string]bool{}
	var uniq [][]cypher.Value
	for _, r := range rows {
		var k []byte
		for _, v := range r {
			if e, ok := v.(cypher.Element); ok {
				k = append(k, e.ElementID()...)
			}
			k = append(k, 0xff)
		}
		if !seen[string(k)] {
			seen[string(k)] = true
			uniq = append(uniq, r)
		}
	}
	rows = uniq
	for _, p := range prog.Parts {
		rows = refPart(p, rows, params)
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		m := map[string]any{}
		for ci, c := range prog.Columns {
			m[c] = refJSON(r[ci])
		}
		out[i] = m
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (g *refGraph) matchClause(m *cypher.Match, in []cypher.Value, nodes []*refEl, rels []cypher.Element,
	endpoints func(cypher.Element) (*refEl, *refEl), params map[string]cypher.Value) [][]cypher.Value {
	for _, n := range m.Nodes {
		if n.Bound && in[n.Slot] == nil {
			return nil
		}
	}
	for _, r := range m.Rels {
		if r.Bound && in[r.Slot] == nil {
			return nil
		}
	}
	var out [][]cypher.Value
	row := append([]cypher.Value(nil), in...)
	nodeID := func(v cypher.Value) string {
		if e, ok := v.(*refVal); ok {
			return refKey(e.e.source, e.e.id)
		}
		return ""
	}
	var bindRels func(i int)
	var bindNodes func(i int)
	finish := func() {
		env := &cypher.Env{Row: row, Params: params, Host: refHost{}}
		for _, n := range m.Nodes {
			e := row[n.Slot].(cypher.Element)
			if !cypher.MatchesLabels(e, n.Labels) {
				return
			}
			for _, pp := range n.Props {
				want, err := cypher.Eval(pp.Value, env)
				got, _ := e.Property(pp.Key)
				if eq, isNull := cypher.Equal(got, want); err != nil || isNull || !eq {
					return
				}
			}
		}
		for _, r := range m.Rels {
			e := row[r.Slot].(cypher.Element)
			for _, pp := range r.Props {
				want, err := cypher.Eval(pp.Value, env)
				got, _ := e.Property(pp.Key)
				if eq, isNull := cypher.Equal(got, want); err != nil || isNull || !eq {
					return
				}
			}
		}
		if m.Where != nil {
			ok, err := cypher.EvalPredicate(m.Where, env)
			if err != nil || !ok {
				return
			}
		}
		out = append(out, append([]cypher.Value(nil), row...))
	}
	bindNodes = func(i int) {
		if i == len(m.Nodes) {
			finish()
			return
		}
		n := m.Nodes[i]
		if row[n.Slot] != nil {
			bindNodes(i + 1)
			return
		}
		for _, e := range nodes {
			row[n.Slot] = cur(e)
			bindNodes(i + 1)
		}
		row[n.Slot] = nil
	}
	bindRels = func(i int) {
		if i == len(m.Rels) {
			bindNodes(0)
			return
		}
		r := m.Rels[i]
		try := func(rv cypher.Element, from, to *refEl) {
			// Uniqueness within the clause.
			for _, o := range m.Rels[:i] {
				if e, ok := row[o.Slot].(cypher.Element); ok && e.ElementID() == rv.ElementID() {
					return
				}
			}
			for _, o := range m.Rels[i+1:] {
				if e, ok := row[o.Slot].(cypher.Element); ok && o.Bound && e.ElementID() == rv.ElementID() {
					return
				}
			}
			saveF, saveT := row[r.From], row[r.To]
			fk, tk := refKey(from.source, from.id), refKey(to.source, to.id)
			if saveF != nil && nodeID(saveF) != fk {
				return
			}
			if saveF == nil {
				row[r.From] = cur(from)
			}
			if row[r.To] != nil && nodeID(row[r.To]) != tk {
				row[r.From] = saveF
				return
			}
			if row[r.To] == nil {
				row[r.To] = cur(to)
			}
			row[r.Slot] = rv
			bindRels(i + 1)
			row[r.From], row[r.To] = saveF, saveT
		}
		if r.Bound {
			bound := row[r.Slot].(cypher.Element)
			for _, rv := range rels {
				if rv.ElementID() == bound.ElementID() {
					f, t := endpoints(rv)
					save := row[r.Slot]
					try(rv, f, t)
					if !r.Directed {
						try(rv, t, f)
					}
					row[r.Slot] = save
				}
			}
			return
		}
		for _, rv := range rels {
			if len(r.Types) > 0 && !has(r.Types, rv.Labels()[0]) && !anyHas(rv.Labels(), r.Types) {
				continue
			}
			f, t := endpoints(rv)
			try(rv, f, t)
			if !r.Directed {
				try(rv, t, f)
			}
		}
		row[r.Slot] = nil
	}
	bindRels(0)
	return out
}

func anyHas(labels, types []string) bool {
	for _, l := range labels {
		if has(types, l) {
			return true
		}
	}
	return false
}

// refPart evaluates one WITH/RETURN part from scratch.
func refPart(p *cypher.Part, in [][]cypher.Value, params map[string]cypher.Value) [][]cypher.Value {
	pad := func(r []cypher.Value) []cypher.Value {
		if len(r) >= len(p.Vars) {
			return r
		}
		return append(append([]cypher.Value(nil), r...), make([]cypher.Value, len(p.Vars)-len(r))...)
	}
	eval := func(e cypher.Expr, env *cypher.Env) cypher.Value {
		v, err := cypher.Eval(e, env)
		if err != nil {
			return nil
		}
		return v
	}
	var out [][]cypher.Value
	if !p.Aggregating {
		for _, r := range in {
			env := &cypher.Env{Row: pad(r), Params: params, Host: refHost{}}
			o := make([]cypher.Value, len(p.Items))
			for i, it := range p.Items {
				o[i] = eval(it.Expr, env)
			}
			out = append(out, o)
		}
	} else {
		type grp struct {
			keys []cypher.Value
			rows [][]cypher.Value
		}
		groups := map[string]*grp{}
		var order []string
		if len(p.GroupKeys) == 0 {
			groups[""] = &grp{}
			order = append(order, "")
		}
		for _, r := range in {
			env := &cypher.Env{Row: pad(r), Params: params, Host: refHost{}}
			var kb []byte
			var keys []cypher.Value
			for _, ki := range p.GroupKeys {
				v := eval(p.Items[ki].Expr, env)
				keys = append(keys, v)
				kb = cypher.AppendKey(kb, v)
			}
			g := groups[string(kb)]
			if g == nil {
				g = &grp{keys: keys}
				groups[string(kb)] = g
				order = append(order, string(kb))
			}
			g.rows = append(g.rows, pad(r))
		}
		for _, k := range order {
			g := groups[k]
			aggs := make([]cypher.Value, len(p.Aggregates))
			for i, a := range p.Aggregates {
				aggs[i] = refAggregate(a, g.rows, params)
			}
			env := &cypher.Env{Keys: g.keys, Aggregates: aggs, Params: params, Host: refHost{}}
			o := make([]cypher.Value, len(p.Items))
			ki := 0
			for i, it := range p.Items {
				if !it.Aggregating {
					o[i] = g.keys[ki]
					ki++
					continue
				}
				o[i] = eval(it.Expr, env)
			}
			out = append(out, o)
		}
	}
	if p.Where != nil {
		var kept [][]cypher.Value
		for _, o := range out {
			ok, err := cypher.EvalPredicate(p.Where, &cypher.Env{Row: o, Params: params, Host: refHost{}})
			if err == nil && ok {
				kept = append(kept, o)
			}
		}
		out = kept
	}
	if p.Distinct {
		seen := map[string]bool{}
		var kept [][]cypher.Value
		for _, o := range out {
			var kb []byte
			for _, v := range o {
				kb = cypher.AppendKey(kb, v)
			}
			if !seen[string(kb)] {
				seen[string(kb)] = true
				kept = append(kept, o)
			}
		}
		out = kept
	}
	return out
}

func refAggregate(a *cypher.Aggregate, rows [][]cypher.Value, params map[string]cypher.Value) cypher.Value {
	if a.Star {
		return int64(len(rows))
	}
	var vals []cypher.Value
	seen := map[string]bool{}
	for _, r := range rows {
		v, err := cypher.Eval(a.Arg, &cypher.Env{Row: r, Params: params, Host: refHost{}})
		if err != nil || v == nil {
			continue
		}
		if a.Distinct {
			k := string(cypher.AppendKey(nil, v))
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		vals = append(vals, v)
	}
	switch a.Func {
	case cypher.AggCount:
		return int64(len(vals))
	case cypher.AggSum, cypher.AggAvg:
		total := new(big.Rat)
		floats, n := false, 0
		for _, v := range vals {
			switch x := v.(type) {
			case int64:
				total.Add(total, new(big.Rat).SetInt64(x))
				n++
			case float64:
				total.Add(total, new(big.Rat).SetFloat64(x))
				floats = true
				n++
			}
		}
		if a.Func == cypher.AggAvg {
			if n == 0 {
				return nil
			}
			f, _ := total.Quo(total, new(big.Rat).SetInt64(int64(n))).Float64()
			return f
		}
		if floats {
			f, _ := total.Float64()
			return f
		}
		return total.Num().Int64()
	case cypher.AggMin, cypher.AggMax:
		var best cypher.Value
		for _, v := range vals {
			if best == nil || (a.Func == cypher.AggMin && cypher.Compare(v, best) < 0) || (a.Func == cypher.AggMax && cypher.Compare(v, best) > 0) {
				best = v
			}
		}
		return best
	case cypher.AggCollect:
		sort.SliceStable(vals, func(i, j int) bool { return cypher.Compare(vals[i], vals[j]) < 0 })
		if vals == nil {
			vals = []cypher.Value{}
		}
		return vals
	}
	panic("unknown aggregate")
}

// refJSON renders a value as the engine's result rows do.
func refJSON(v cypher.Value) any {
	switch x := v.(type) {
	case *refVal:
		props := map[string]any{}
		for k, p := range x.props {
			props[k] = refJSON(p)
		}
		labels := []any{}
		for _, l := range sortedUnique(x.labels) {
			labels = append(labels, l)
		}
		return map[string]any{"id": x.e.id, "labels": labels, "properties": props}
	case *refJoinVal:
		return map[string]any{"id": x.ElementID(), "labels": []any{x.join}, "properties": map[string]any{}}
	case []cypher.Value:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = refJSON(e)
		}
		return out
	case map[string]cypher.Value:
		out := map[string]any{}
		for k, e := range x {
			out[k] = refJSON(e)
		}
		return out
	}
	return cypher.ToJSON(v)
}
