package engine

import (
	"sort"
	"time"

	"github.com/tributary/tributary/internal/cypher"
)

// view reads the store in one of the two states of a change: the new state
// (the store itself) or the old state (the store with the write set's old
// states laid over it). Index lookups return the current state's candidates;
// in the old view the written elements are candidates too, and every
// candidate is verified against the view's state.
type view struct {
	s   *store
	old map[elemID]*elemState // nil in the new view
	// written lists the elements of the write set (old view only).
	written []elemID
	// empty makes every element absent (the state before any data, used
	// to evaluate the whole result from scratch).
	empty bool
}

var absent = &elemState{}

func (v *view) state(id elemID) *elemState {
	if v.empty {
		return absent
	}
	if v.old != nil {
		if st, ok := v.old[id]; ok {
			return st
		}
	}
	return &v.s.elems[id].st
}

func (v *view) isOld() bool { return v.old != nil }

// elemVal is a stored element as a cypher.Element, read in one view.
type elemVal struct {
	s  *store
	id elemID
	st *elemState
	// prev is true for a previous version (it has no history of its own).
	prev bool
}

var _ cypher.Element = (*elemVal)(nil)

func (v *elemVal) ElementID() string {
	e := &v.s.elems[v.id]
	return e.source + "\x00" + e.id
}
func (v *elemVal) Labels() []string { return v.st.labels }
func (v *elemVal) Property(name string) (cypher.Value, bool) {
	return findProp(v.st.props, name)
}
func (v *elemVal) Properties() map[string]cypher.Value {
	m := make(map[string]cypher.Value, len(v.st.props))
	for _, p := range v.st.props {
		m[p.key] = p.val
	}
	return m
}
func (v *elemVal) IsRelation() bool { return v.s.elems[v.id].rel }

// joinRel is a synthetic relation of a configured join: it exists from a
// node with the join's first label to a node with its second label whenever
// their key properties are equal.
type joinRel struct {
	j        *joinSpec
	from, to *elemVal
}

var _ cypher.Element = (*joinRel)(nil)

func (r *joinRel) ElementID() string {
	return "\x01" + r.j.id + "\x00" + r.from.ElementID() + "\x00" + r.to.ElementID()
}
func (r *joinRel) Labels() []string                     { return []string{r.j.id} }
func (r *joinRel) Property(string) (cypher.Value, bool) { return nil, false }
func (r *joinRel) Properties() map[string]cypher.Value  { return map[string]cypher.Value{} }
func (r *joinRel) IsRelation() bool                     { return true }

func bindVal(v *view, id elemID) *elemVal { return &elemVal{s: v.s, id: id, st: v.state(id)} }

// labelsFit checks a conjunction of disjunctions of labels.
func labelsFit(labels []string, groups [][]string) bool {
	for _, g := range groups {
		ok := false
		for _, l := range g {
			if hasLabel(labels, l) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// typesFit checks a relation's type against alternatives (none = any).
func typesFit(labels []string, types []string) bool {
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if hasLabel(labels, t) {
			return true
		}
	}
	return false
}

// host gives expressions the element history: the previous version for
// drasi.previousValue, the commit time for drasi.changeDateTime. Both are
// pure functions of the stored element, so replays and a from-scratch
// evaluation agree.
type host struct{}

func (host) PreviousVersion(e cypher.Element) (cypher.Element, bool) {
	v, ok := e.(*elemVal)
	if !ok || v.prev || v.st.prev == nil {
		return nil, false
	}
	return &elemVal{s: v.s, id: v.id, prev: true, st: &elemState{
		present: true, labels: v.st.prev.labels, props: v.st.prev.props, from: v.st.from, to: v.st.to,
	}}, true
}

func (host) ChangeTime(e cypher.Element) (cypher.DateTime, bool) {
	v, ok := e.(*elemVal)
	if !ok || v.prev || !v.st.present {
		return cypher.DateTime{}, false
	}
	return cypher.NewDateTime(time.UnixMilli(v.st.tsMs).UTC()), true
}

// elementJSON is an element as a result value: {id, labels, properties}.
func elementJSON(e cypher.Element) map[string]any {
	props := e.Properties()
	out := make(map[string]any, len(props))
	for k, v := range props {
		out[k] = toJSON(v)
	}
	labels := append([]any{}, anySlice(e.Labels())...)
	id := e.ElementID()
	if v, ok := e.(*elemVal); ok {
		id = v.s.elems[v.id].id
	}
	return map[string]any{"id": id, "labels": labels, "properties": out}
}

func anySlice(s []string) []any {
	c := append([]string(nil), s...)
	sort.Strings(c)
	out := make([]any, len(c))
	for i, x := range c {
		out[i] = x
	}
	return out
}

// toJSON converts a cypher value into a JSON-friendly row value.
func toJSON(v cypher.Value) any {
	switch x := v.(type) {
	case cypher.Element:
		return elementJSON(x)
	case []cypher.Value:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	case map[string]cypher.Value:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toJSON(e)
		}
		return out
	}
	return cypher.ToJSON(v)
}
