package engine

import "slices"

// Inputs says which elements can affect a query's result, by label: the
// query-engine service subscribes to exactly these labels' change subjects.
type Inputs struct {
	// Labels are the node labels and relationship types the query's
	// patterns name (every alternative of every conjunct) and the labels
	// its joins name: sorted, distinct.
	Labels []string
	// All is true when some pattern node has no label, or some pattern
	// relationship no type, so that an element of any label can match:
	// the query must read every label.
	All bool
}

// Inputs returns the labels the query reads. An element whose labels are
// all outside Inputs().Labels changes nothing in the result (unless All);
// deleting such an element can still remove relations the query reads,
// which their own changes carry.
func (q *Query) Inputs() Inputs {
	var in Inputs
	for _, m := range q.prog.Parts[0].Matches {
		for _, n := range m.Nodes {
			if len(n.Labels) == 0 && !n.Bound {
				in.All = true
			}
			for _, alts := range n.Labels {
				in.Labels = append(in.Labels, alts...)
			}
		}
		for _, r := range m.Rels {
			if len(r.Types) == 0 && !r.Bound {
				in.All = true
			}
			in.Labels = append(in.Labels, r.Types...)
		}
	}
	for _, j := range q.joins {
		in.Labels = append(in.Labels, j.fromLabel, j.toLabel)
	}
	slices.Sort(in.Labels)
	in.Labels = slices.Compact(in.Labels)
	return in
}

// Elements is the number of elements the query's index holds, tombstones
// of deleted elements included (they keep a late write from resurrecting
// the element).
func (q *Query) Elements() int { return len(q.store.byExt) }
