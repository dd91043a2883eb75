package engine

import (
	"sort"
)

// elemID is the interned id of an element (source, id) inside one store. It
// is never serialized and never part of an identity: checkpoints and row
// identities use the external ids.
type elemID uint32

const noElem elemID = 0 // index 0 of the element table is never used

// prop is one property; an element's properties are sorted by key.
type prop struct {
	key string
	val any
}

// prevState is an element's previous distinct version, read by
// drasi.previousValue.
type prevState struct {
	labels []string
	props  []prop
}

// elemState is the part of an element that a change writes. Its slices are
// never mutated in place (a write replaces them), so copying the struct is a
// snapshot.
type elemState struct {
	present bool
	labels  []string // sorted, distinct
	props   []prop   // sorted by key
	from    elemID   // relations only
	to      elemID   // relations only
	tsMs    int64    // commit time of the change that produced this state
	prev    *prevState
}

// element is one entry of the element table: a live element, a tombstone, or
// a placeholder that relations refer to before the node itself arrived.
type element struct {
	source string
	id     string
	rel    bool
	st     elemState
	// versioned is true once a change (not only a reference) wrote the
	// element; pos is that change's position ("" when it had none).
	versioned bool
	pos       string
	// Adjacency of nodes: relations whose from (out) or to (in) is this
	// element, present or not yet matched. Kept sorted by external id.
	out []elemID
	in  []elemID
}

func (e *element) prop(key string) (any, bool) {
	return findProp(e.st.props, key)
}

func findProp(ps []prop, key string) (any, bool) {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].key >= key })
	if i < len(ps) && ps[i].key == key {
		return ps[i].val, true
	}
	return nil, false
}

// findPropKey returns the stored key string equal to key, if any.
func findPropKey(ps []prop, key string) (string, bool) {
	i := sort.Search(len(ps), func(i int) bool { return ps[i].key >= key })
	if i < len(ps) && ps[i].key == key {
		return ps[i].key, true
	}
	return "", false
}

func hasLabel(labels []string, l string) bool {
	for _, x := range labels {
		if x == l {
			return true
		}
	}
	return false
}

// idSet is a set of element ids that stays a slice while small.
type idSet struct {
	list []elemID
	m    map[elemID]struct{}
}

const idSetMapThreshold = 16

func (s *idSet) add(id elemID) {
	if s.m != nil {
		s.m[id] = struct{}{}
		return
	}
	for _, x := range s.list {
		if x == id {
			return
		}
	}
	s.list = append(s.list, id)
	if len(s.list) > idSetMapThreshold {
		s.m = make(map[elemID]struct{}, len(s.list)*2)
		for _, x := range s.list {
			s.m[x] = struct{}{}
		}
		s.list = nil
	}
}

func (s *idSet) remove(id elemID) {
	if s.m != nil {
		delete(s.m, id)
		return
	}
	for i, x := range s.list {
		if x == id {
			last := len(s.list) - 1
			s.list[i] = s.list[last]
			s.list = s.list[:last]
			return
		}
	}
}

func (s *idSet) size() int {
	if s == nil {
		return 0
	}
	if s.m != nil {
		return len(s.m)
	}
	return len(s.list)
}

// each calls f for every id; the order is unspecified, callers that need a
// deterministic order sort afterwards (matching deduplicates by identity, so
// order never reaches output).
func (s *idSet) each(f func(elemID)) {
	if s == nil {
		return
	}
	if s.m != nil {
		for id := range s.m {
			f(id)
		}
		return
	}
	for _, id := range s.list {
		f(id)
	}
}

// propIndexKey addresses the property-value index.
type propIndexKey struct {
	label string
	prop  string
	key   string // canonical value key
}

// store is the element index of one query: every element of the change
// stream with its current and previous version, tombstones, and the indexes
// the query's plan needs (label, property value, adjacency). Indexes describe
// the current state only; the state before a change is read through a view
// that overlays the write set (see view).
type store struct {
	elems  []element
	byExt  map[extID]elemID
	labels map[string]*idSet // label -> present elements carrying it
	// indexed lists the (label, property) pairs kept in propIdx.
	indexed map[string][]string // label -> properties
	propIdx map[propIndexKey]*idSet
	intern  map[string]string
	// watermark is the latest position applied per source.
	watermark map[string]string
}

func newStore() *store {
	return &store{
		elems:     make([]element, 1),
		byExt:     make(map[extID]elemID),
		labels:    make(map[string]*idSet),
		indexed:   make(map[string][]string),
		propIdx:   make(map[propIndexKey]*idSet),
		intern:    make(map[string]string),
		watermark: make(map[string]string),
	}
}

// indexProperty asks the store to keep a value index of (label, property).
// Must be called before the first element is written.
func (s *store) indexProperty(label, property string) {
	for _, p := range s.indexed[label] {
		if p == property {
			return
		}
	}
	s.indexed[label] = append(s.indexed[label], property)
}

func (s *store) str(x string) string {
	if v, ok := s.intern[x]; ok {
		return v
	}
	s.intern[x] = x
	return x
}

// extID is an element's external identity.
type extID struct{ source, id string }

func extKey(source, id string) extID { return extID{source, id} }

// lookup returns the interned id of (source, id) or noElem.
func (s *store) lookup(source, id string) elemID {
	return s.byExt[extKey(source, id)]
}

// ensure interns (source, id), creating a placeholder when unknown.
func (s *store) ensure(source, id string, rel bool) elemID {
	k := extKey(source, id)
	if x, ok := s.byExt[k]; ok {
		return x
	}
	x := elemID(len(s.elems))
	src := s.str(source)
	s.elems = append(s.elems, element{source: src, id: id, rel: rel})
	s.byExt[extID{src, id}] = x
	return x
}

// extLess orders elements by (source, id), the deterministic order used for
// adjacency lists and checkpoints.
func (s *store) extLess(a, b elemID) bool {
	ea, eb := &s.elems[a], &s.elems[b]
	if ea.source != eb.source {
		return ea.source < eb.source
	}
	return ea.id < eb.id
}

// reindex moves an element's index entries from state old to its current
// state, touching only what changed (an update of a property nobody indexes
// costs no index work).
func (s *store) reindex(id elemID, old elemState) {
	e := &s.elems[id]
	nw := e.st
	if !old.present || !nw.present || !sameLabels(old.labels, nw.labels) {
		e.st = old
		s.unindex(id)
		e.st = nw
		s.index(id)
		return
	}
	if e.rel {
		if old.from != nw.from || old.to != nw.to {
			s.removeAdj(old.from, id, true)
			s.removeAdj(old.to, id, false)
			s.addAdj(nw.from, id, true)
			s.addAdj(nw.to, id, false)
		}
		return
	}
	for _, l := range nw.labels {
		for _, p := range s.indexed[l] {
			ov, ook := findProp(old.props, p)
			nv, nok := findProp(nw.props, p)
			ook = ook && joinable(ov)
			nok = nok && joinable(nv)
			var ok, nk string
			if ook {
				ok = valueKey(ov)
			}
			if nok {
				nk = valueKey(nv)
			}
			if ook == nok && ok == nk {
				continue
			}
			if ook {
				k := propIndexKey{l, p, ok}
				if set := s.propIdx[k]; set != nil {
					set.remove(id)
					if set.size() == 0 {
						delete(s.propIdx, k)
					}
				}
			}
			if nok {
				k := propIndexKey{l, p, nk}
				set := s.propIdx[k]
				if set == nil {
					set = &idSet{}
					s.propIdx[k] = set
				}
				set.add(id)
			}
		}
	}
}

// unindex removes a present element's current state from the indexes.
func (s *store) unindex(id elemID) {
	e := &s.elems[id]
	if !e.st.present {
		return
	}
	for _, l := range e.st.labels {
		if set := s.labels[l]; set != nil {
			set.remove(id)
			if set.size() == 0 {
				delete(s.labels, l)
			}
		}
		if !e.rel {
			for _, p := range s.indexed[l] {
				if v, ok := e.prop(p); ok && joinable(v) {
					k := propIndexKey{l, p, valueKey(v)}
					if set := s.propIdx[k]; set != nil {
						set.remove(id)
						if set.size() == 0 {
							delete(s.propIdx, k)
						}
					}
				}
			}
		}
	}
	if e.rel {
		s.removeAdj(e.st.from, id, true)
		s.removeAdj(e.st.to, id, false)
	}
}

// index adds a present element's current state to the indexes.
func (s *store) index(id elemID) {
	e := &s.elems[id]
	if !e.st.present {
		return
	}
	for _, l := range e.st.labels {
		set := s.labels[l]
		if set == nil {
			set = &idSet{}
			s.labels[l] = set
		}
		set.add(id)
		if !e.rel {
			for _, p := range s.indexed[l] {
				if v, ok := e.prop(p); ok && joinable(v) {
					k := propIndexKey{l, p, valueKey(v)}
					set := s.propIdx[k]
					if set == nil {
						set = &idSet{}
						s.propIdx[k] = set
					}
					set.add(id)
				}
			}
		}
	}
	if e.rel {
		s.addAdj(e.st.from, id, true)
		s.addAdj(e.st.to, id, false)
	}
}

func (s *store) addAdj(node, rel elemID, out bool) {
	n := &s.elems[node]
	list := &n.in
	if out {
		list = &n.out
	}
	i := sort.Search(len(*list), func(i int) bool { return !s.extLess((*list)[i], rel) })
	if i < len(*list) && (*list)[i] == rel {
		return
	}
	*list = append(*list, noElem)
	copy((*list)[i+1:], (*list)[i:])
	(*list)[i] = rel
}

func (s *store) removeAdj(node, rel elemID, out bool) {
	n := &s.elems[node]
	list := &n.in
	if out {
		list = &n.out
	}
	for i, x := range *list {
		if x == rel {
			*list = append((*list)[:i], (*list)[i+1:]...)
			if len(*list) == 0 {
				*list = nil
			}
			return
		}
	}
}
