package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tributary/tributary/pkg/change"
)

// ErrBadChange is wrapped by errors about envelopes the engine cannot apply
// (invalid envelope, unsupported property value, an id used for a node and a
// relation). The store is left unchanged by a rejected envelope.
var ErrBadChange = errors.New("bad change")

// writeSet records, for one change (one envelope or one batch), the state of
// every written element before its first write. Together with the store it
// gives both states: the new one (the store) and the old one (the overlay).
type writeSet struct {
	old   map[elemID]elemState
	order []elemID
}

func newWriteSet() *writeSet { return &writeSet{old: make(map[elemID]elemState)} }

func (w *writeSet) touch(s *store, id elemID) {
	if _, ok := w.old[id]; ok {
		return
	}
	w.old[id] = s.elems[id].st
	w.order = append(w.order, id)
}

// changed returns the written elements whose state differs from the old
// one, sorted by external id.
func (w *writeSet) changed(s *store) []elemID {
	var out []elemID
	for _, id := range w.order {
		if !sameState(w.old[id], s.elems[id].st) {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return s.extLess(out[i], out[j]) })
	return out
}

func sameState(a, b elemState) bool {
	if a.present != b.present {
		return false
	}
	if !a.present {
		return true
	}
	if a.from != b.from || a.to != b.to || a.tsMs != b.tsMs {
		return false
	}
	if !sameLabels(a.labels, b.labels) || !sameProps(a.props, b.props) {
		return false
	}
	if (a.prev == nil) != (b.prev == nil) {
		return false
	}
	if a.prev != nil && (!sameLabels(a.prev.labels, b.prev.labels) || !sameProps(a.prev.props, b.prev.props)) {
		return false
	}
	return true
}

func sameLabels(a, b []string) bool {
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

func sameProps(a, b []prop) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].key != b[i].key || !strictEqual(a[i].val, b[i].val) {
			return false
		}
	}
	return true
}

// stale reports whether a change at position pos is not newer than the
// element's stored version. A change without position is always newer
// (arrival order is its version).
func (e *element) stale(pos string) bool {
	return e.versioned && pos != "" && e.pos != "" && change.ComparePositions(pos, e.pos) <= 0
}

func (e *element) setVersion(pos string) {
	e.versioned = true
	if pos != "" {
		e.pos = pos
	}
}

// apply writes one envelope into the store, recording old states in w.
func (s *store) apply(env *change.Envelope, w *writeSet) error {
	if err := env.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadChange, err)
	}
	if err := s.write(env, w); err != nil {
		return err
	}
	if p := env.Position; p != "" {
		if wm, ok := s.watermark[env.Source]; !ok || change.ComparePositions(p, wm) > 0 {
			s.watermark[s.str(env.Source)] = p
		}
	}
	return nil
}

func (s *store) write(env *change.Envelope, w *writeSet) error {
	rel := env.Element.Type == change.TypeRelation
	switch env.Op {
	case change.OpInsert, change.OpUpdate:
		return s.upsert(env, rel, w)
	case change.OpDelete:
		id := s.lookup(env.Source, env.Element.ID)
		if id == noElem {
			id = s.ensure(env.Source, env.Element.ID, rel)
			s.elems[id].setVersion(env.Position)
			return nil
		}
		e := &s.elems[id]
		if e.stale(env.Position) {
			return nil
		}
		if e.versioned && e.rel != rel {
			return fmt.Errorf("%w: delete of %s %q: the id belongs to a %s", ErrBadChange, env.Element.Type, env.Element.ID, kindName(e.rel))
		}
		s.remove(id, env.Position, w)
		return nil
	case change.OpTruncate:
		s.truncate(env, rel, w)
		return nil
	}
	return fmt.Errorf("%w: unknown op %q", ErrBadChange, env.Op)
}

func kindName(rel bool) string {
	if rel {
		return change.TypeRelation
	}
	return change.TypeNode
}

func (s *store) upsert(env *change.Envelope, rel bool, w *writeSet) error {
	el := &env.Element
	// Normalize first so that a bad value leaves the store untouched.
	type kv struct {
		key string
		val any
		del bool
	}
	in := make([]kv, 0, len(el.Properties))
	for k, v := range el.Properties {
		n, err := normalizeValue(v)
		if err != nil {
			return fmt.Errorf("%w: %s %q property %q: %w", ErrBadChange, el.Type, el.ID, k, err)
		}
		in = append(in, kv{key: k, val: n, del: n == nil})
	}
	slices.SortFunc(in, func(a, b kv) int { return strings.Compare(a.key, b.key) })

	id := s.lookup(env.Source, el.ID)
	if id != noElem {
		e := &s.elems[id]
		if e.rel != rel {
			if e.versioned || len(e.out) > 0 || len(e.in) > 0 {
				return fmt.Errorf("%w: %s %q: the id belongs to a %s", ErrBadChange, el.Type, el.ID, kindName(e.rel))
			}
			e.rel = rel
		}
		if e.stale(env.Position) {
			return nil
		}
	} else {
		id = s.ensure(env.Source, el.ID, rel)
	}
	var from, to elemID
	if rel {
		from = s.ensure(env.Source, el.From, false)
		to = s.ensure(env.Source, el.To, false)
		if s.elems[from].rel || s.elems[to].rel {
			return fmt.Errorf("%w: relation %q: an endpoint is a relation", ErrBadChange, el.ID)
		}
	}
	e := &s.elems[id]
	old := e.st

	next := elemState{present: true, from: from, to: to, tsMs: env.TsMs}
	merge := env.Op == change.OpUpdate && old.present
	if len(el.Labels) > 0 || !merge {
		next.labels = s.labelSet(el.Labels)
	} else {
		next.labels = old.labels
	}
	if merge {
		next.props = mergeProps(old.props, func(yield func(string, any, bool)) {
			for _, p := range in {
				yield(p.key, p.val, p.del)
			}
		})
	} else {
		next.props = make([]prop, 0, len(in))
		for _, p := range in {
			if !p.del {
				next.props = append(next.props, prop{p.key, p.val})
			}
		}
	}
	// Share key strings: with the previous version where the key is the
	// same, else through the intern table.
	for i := range next.props {
		k := next.props[i].key
		if ov, ok := findPropKey(old.props, k); ok {
			next.props[i].key = ov
		} else {
			next.props[i].key = s.str(k)
		}
	}
	if old.present {
		if old.from == next.from && old.to == next.to && sameLabels(old.labels, next.labels) && sameProps(old.props, next.props) {
			// Identical write: only the version moves.
			e.setVersion(env.Position)
			return nil
		}
		next.prev = &prevState{labels: old.labels, props: old.props}
	}
	w.touch(s, id)
	e.st = next
	e.setVersion(env.Position)
	s.reindex(id, old)
	return nil
}

// mergeProps applies updates (sorted by key; del removes) to a sorted
// property list and returns a new list.
func mergeProps(old []prop, updates func(yield func(string, any, bool))) []prop {
	out := make([]prop, 0, len(old)+2)
	i := 0
	updates(func(k string, v any, del bool) {
		for i < len(old) && old[i].key < k {
			out = append(out, old[i])
			i++
		}
		if i < len(old) && old[i].key == k {
			i++
		}
		if !del {
			out = append(out, prop{k, v})
		}
	})
	out = append(out, old[i:]...)
	return out
}

func (s *store) labelSet(labels []string) []string {
	out := make([]string, 0, len(labels))
	for _, l := range labels {
		out = append(out, s.str(l))
	}
	sort.Strings(out)
	j := 0
	for i, l := range out {
		if i == 0 || l != out[j-1] {
			out[j] = l
			j++
		}
	}
	return out[:j]
}

// remove tombstones an element; a node's relations go with it.
func (s *store) remove(id elemID, pos string, w *writeSet) {
	e := &s.elems[id]
	if e.st.present {
		if !e.rel {
			rels := append(append([]elemID(nil), e.out...), e.in...)
			for _, r := range rels {
				re := &s.elems[r]
				if !re.st.present {
					continue
				}
				w.touch(s, r)
				s.unindex(r)
				re = &s.elems[r]
				re.st = elemState{}
				if pos != "" && (re.pos == "" || change.ComparePositions(pos, re.pos) > 0) {
					re.pos = pos
				}
				re.versioned = true
			}
		}
		w.touch(s, id)
		s.unindex(id)
		e = &s.elems[id]
		e.st = elemState{}
	}
	e.setVersion(pos)
}

func (s *store) truncate(env *change.Envelope, rel bool, w *writeSet) {
	var ids []elemID
	seen := map[elemID]bool{}
	for _, l := range env.Element.Labels {
		s.labels[l].each(func(id elemID) {
			e := &s.elems[id]
			if e.source == env.Source && e.rel == rel && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		})
	}
	sort.Slice(ids, func(i, j int) bool { return s.extLess(ids[i], ids[j]) })
	for _, id := range ids {
		e := &s.elems[id]
		if !e.st.present || e.stale(env.Position) {
			continue
		}
		s.remove(id, env.Position, w)
	}
}

// precheck validates a batch before any of it is applied: envelope
// validity, property values, and that no id is used both as a node and as a
// relation (against the store and earlier envelopes of the batch).
func (s *store) precheck(envs []*change.Envelope) error {
	kinds := map[extID]bool{} // external id -> is relation, within the batch
	kindOf := func(source, id string) (rel, known bool) {
		if r, ok := kinds[extKey(source, id)]; ok {
			return r, true
		}
		x := s.lookup(source, id)
		if x == noElem {
			return false, false
		}
		e := &s.elems[x]
		if e.versioned || len(e.out) > 0 || len(e.in) > 0 {
			return e.rel, true
		}
		return false, false
	}
	for i, env := range envs {
		if env == nil {
			return fmt.Errorf("%w: envelope %d: nil", ErrBadChange, i)
		}
		if err := env.Validate(); err != nil {
			return fmt.Errorf("%w: envelope %d: %w", ErrBadChange, i, err)
		}
		el := &env.Element
		for k, v := range el.Properties {
			if _, err := normalizeValue(v); err != nil {
				return fmt.Errorf("%w: envelope %d: %s %q property %q: %w", ErrBadChange, i, el.Type, el.ID, k, err)
			}
		}
		if env.Op == change.OpTruncate {
			continue
		}
		rel := el.Type == change.TypeRelation
		if r, known := kindOf(env.Source, el.ID); known && r != rel {
			return fmt.Errorf("%w: envelope %d: %s %q: the id belongs to a %s", ErrBadChange, i, el.Type, el.ID, kindName(r))
		}
		// A delete of an unknown id leaves a tombstone of its kind too.
		kinds[extKey(env.Source, el.ID)] = rel
		if env.Op == change.OpDelete {
			continue
		}
		if rel {
			for _, end := range []string{el.From, el.To} {
				if r, known := kindOf(env.Source, end); known && r {
					return fmt.Errorf("%w: envelope %d: relation %q: endpoint %q is a relation", ErrBadChange, i, el.ID, end)
				}
				kinds[extKey(env.Source, end)] = false
			}
		}
	}
	return nil
}
