package engine

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tributary/tributary/internal/cypher"
	"github.com/tributary/tributary/pkg/change"
)

// Sentinel errors of New and Restore.
var (
	// ErrInvalidSpec is wrapped by errors about the query spec itself:
	// missing id or query, malformed joins, bad parameter values.
	ErrInvalidSpec = errors.New("invalid query spec")
	// ErrUnsupportedQuery is wrapped by errors about valid Cypher the
	// engine does not evaluate incrementally (MATCH after WITH, MATCH after
	// OPTIONAL MATCH). Parse and analysis errors of the query text come
	// from package cypher (cypher.ErrSyntax, cypher.ErrSemantic,
	// cypher.ErrUnsupported) and carry line and column.
	ErrUnsupportedQuery = errors.New("unsupported query")
)

// QuerySpec is what defines a continuous query.
type QuerySpec struct {
	// ID names the query (result messages carry it).
	ID string
	// Query is the Cypher text.
	Query string
	// Joins declare synthetic relations between nodes with equal key
	// properties.
	Joins []Join
	// Parameters are the values of $name references. Values follow the
	// JSON model (numbers may be json.Number, int, int64 or float64).
	Parameters map[string]any
}

// Join declares a synthetic relation of type ID from every node labelled
// Keys[0].Label to every node labelled Keys[1].Label whose key properties
// are equal (null, missing and NaN never join). It appears and disappears as
// those properties change.
type Join struct {
	ID   string    `json:"id" yaml:"id"`
	Keys []JoinKey `json:"keys" yaml:"keys"`
}

// JoinKey is one side of a join.
type JoinKey struct {
	Label    string `json:"label" yaml:"label"`
	Property string `json:"property" yaml:"property"`
}

// Diff is the effect of one change on the result set: rows added, updated
// (same identity, different values) and deleted, each sorted by row
// identity. It never holds a no-op update nor the same identity twice.
type Diff struct {
	Added   []change.Row
	Updated []change.RowUpdate
	Deleted []change.Row
	// Warnings lists expressions that failed to evaluate during the change
	// (such a value counts as null, such a predicate as false), at most a
	// few, deduplicated.
	Warnings []string
}

// Result wraps the diff as a result message of the query's gap-free
// sequence. Empty lists are non-nil so that they encode as [].
func (d *Diff) Result(query string, seq uint64, tsMs int64) change.Result {
	r := change.Result{Query: query, Seq: seq, TsMs: tsMs, Added: d.Added, Updated: d.Updated, Deleted: d.Deleted}
	if r.Added == nil {
		r.Added = []change.Row{}
	}
	if r.Updated == nil {
		r.Updated = []change.RowUpdate{}
	}
	if r.Deleted == nil {
		r.Deleted = []change.Row{}
	}
	return r
}

// Empty reports whether the diff changes nothing.
func (d *Diff) Empty() bool {
	return len(d.Added) == 0 && len(d.Updated) == 0 && len(d.Deleted) == 0
}

// Query is one continuous query with its element index and incremental
// state. It is not safe for concurrent use: the caller serializes Apply,
// ApplyBatch, AdvanceTime, Result and Checkpoint.
type Query struct {
	spec   QuerySpec
	prog   *cypher.Program
	params map[string]cypher.Value
	joins  []*joinSpec
	store  *store

	clauses       []*clausePlan
	required      []*clausePlan
	optional      []*clausePlan
	requiredSlots []int
	allSlots      []int

	parts []*partState
	// result is the current result set: row identity -> column values
	// (JSON-friendly, in column order).
	result  map[string][]any
	initial []change.Row

	warnings []string
	now      time.Time
	// visited counts the candidate elements the matcher examined, for
	// tests that prove a change only touches its neighbourhood.
	visited uint64
}

// New compiles a query. Errors wrap ErrInvalidSpec, ErrUnsupportedQuery or
// the errors of cypher.Compile (with line and column).
func New(spec QuerySpec) (*Query, error) {
	q, err := build(spec)
	if err != nil {
		return nil, err
	}
	d := q.run(nil, &view{s: q.store, empty: true}, &view{s: q.store}, true)
	q.initial = d.Added
	return q, nil
}

func build(spec QuerySpec) (*Query, error) {
	if spec.ID == "" {
		return nil, fmt.Errorf("%w: id: missing", ErrInvalidSpec)
	}
	if spec.Query == "" {
		return nil, fmt.Errorf("%w: query %q: query text missing", ErrInvalidSpec, spec.ID)
	}
	prog, err := cypher.Compile(spec.Query)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", spec.ID, err)
	}
	q := &Query{spec: spec, prog: prog, store: newStore(), result: map[string][]any{}}
	q.params = make(map[string]cypher.Value, len(spec.Parameters))
	for k, v := range spec.Parameters {
		n, err := cypher.FromJSON(v)
		if err != nil {
			return nil, fmt.Errorf("%w: query %q: parameter %q: %w", ErrInvalidSpec, spec.ID, k, err)
		}
		q.params[k] = n
	}
	for _, name := range prog.Params {
		if _, ok := q.params[name]; !ok {
			return nil, fmt.Errorf("%w: query %q: parameter $%s is used but not given", ErrInvalidSpec, spec.ID, name)
		}
	}
	seen := map[string]bool{}
	for i, j := range spec.Joins {
		if j.ID == "" {
			return nil, fmt.Errorf("%w: query %q: joins[%d].id: missing", ErrInvalidSpec, spec.ID, i)
		}
		if seen[j.ID] {
			return nil, fmt.Errorf("%w: query %q: joins[%d].id: %q declared twice", ErrInvalidSpec, spec.ID, i, j.ID)
		}
		seen[j.ID] = true
		if len(j.Keys) != 2 {
			return nil, fmt.Errorf("%w: query %q: joins[%d].keys: want exactly 2 keys, got %d", ErrInvalidSpec, spec.ID, i, len(j.Keys))
		}
		for k, key := range j.Keys {
			if key.Label == "" || key.Property == "" {
				return nil, fmt.Errorf("%w: query %q: joins[%d].keys[%d]: label and property are required", ErrInvalidSpec, spec.ID, i, k)
			}
		}
		q.joins = append(q.joins, &joinSpec{idx: i, id: j.ID,
			fromLabel: j.Keys[0].Label, fromProp: j.Keys[0].Property,
			toLabel: j.Keys[1].Label, toProp: j.Keys[1].Property})
	}
	if err := q.planMatches(); err != nil {
		return nil, fmt.Errorf("query %q: %w", spec.ID, err)
	}
	for _, p := range prog.Parts {
		q.parts = append(q.parts, newPartState(p))
	}
	return q, nil
}

// ID returns the query's id.
func (q *Query) ID() string { return q.spec.ID }

// Columns returns the result column names in RETURN order.
func (q *Query) Columns() []string { return append([]string(nil), q.prog.Columns...) }

// Initial returns the result set before any change: empty, except for the
// single row of an aggregation without grouping keys.
func (q *Query) Initial() []change.Row { return cloneRows(q.initial) }

// Result returns the current result set, sorted by row identity.
func (q *Query) Result() []change.Row {
	ids := make([]string, 0, len(q.result))
	for id := range q.result {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]change.Row, len(ids))
	for i, id := range ids {
		out[i] = q.rowMap(q.result[id])
	}
	return out
}

// Apply applies one change envelope and returns its effect on the result.
// An envelope older than (or as old as) the element's stored version, an
// identical update, or a change to elements the query never matches gives an
// empty diff. A bad envelope returns an error wrapping ErrBadChange and
// leaves the state unchanged.
func (q *Query) Apply(env *change.Envelope) (Diff, error) {
	return q.ApplyBatch([]*change.Envelope{env})
}

// ApplyBatch applies several envelopes as one change (one transaction): the
// diff compares the result before the first and after the last envelope.
// Every envelope is checked before any is applied; an error (wrapping
// ErrBadChange) leaves the state unchanged.
func (q *Query) ApplyBatch(envs []*change.Envelope) (Diff, error) {
	// A single envelope is checked by apply itself before it writes
	// anything; a batch is checked as a whole first.
	if len(envs) > 1 {
		if err := q.store.precheck(envs); err != nil {
			return Diff{}, err
		}
	} else if len(envs) == 1 && envs[0] == nil {
		return Diff{}, fmt.Errorf("%w: nil envelope", ErrBadChange)
	}
	w := newWriteSet()
	for i, env := range envs {
		if err := q.store.apply(env, w); err != nil {
			// A single envelope fails before it writes anything; a batch
			// passed precheck, which rejects everything apply rejects.
			if len(envs) == 1 {
				return Diff{}, err
			}
			return Diff{}, fmt.Errorf("envelope %d of the batch: %w", i, err)
		}
	}
	changed := w.changed(q.store)
	if len(changed) == 0 {
		return Diff{}, nil
	}
	old := &view{s: q.store, old: make(map[elemID]*elemState, len(changed)), written: changed}
	for _, id := range changed {
		st := w.old[id]
		old.old[id] = &st
	}
	return q.run(changed, old, &view{s: q.store}, false), nil
}

// AdvanceTime tells the query that the clock reached now. Results that
// change with time alone (drasi.trueFor, trueLater, trueUntil) are not
// supported yet (cypher rejects them), so it returns an empty diff; the
// service calls it on a timer so that adding them changes no caller.
func (q *Query) AdvanceTime(now time.Time) (Diff, error) {
	if now.After(q.now) {
		q.now = now
	}
	return Diff{}, nil
}

func (q *Query) noteEvalError(err error) {
	msg := err.Error()
	for _, w := range q.warnings {
		if w == msg {
			return
		}
	}
	if len(q.warnings) < 8 {
		q.warnings = append(q.warnings, msg)
	}
}

// run computes the diff of a change whose written elements are changed,
// between views old and new, and updates the incremental state. With init
// it instead emits the rows that exist with no data (the single row of an
// aggregation without grouping keys).
func (q *Query) run(changed []elemID, old, nw *view, init bool) Diff {
	q.warnings = nil
	var deltas []rowDelta
	if !init {
		deltas = q.matchDelta(changed, old, nw)
	}
	for _, p := range q.parts {
		deltas = p.process(q, deltas, init)
	}
	d := q.commit(deltas)
	d.Warnings = q.warnings
	q.warnings = nil
	return d
}

// commit applies the last part's deltas to the result set and builds the
// diff.
func (q *Query) commit(deltas []rowDelta) Diff {
	var d Diff
	for _, x := range deltas {
		var before, after []any
		if x.old != nil {
			before = q.result[x.id]
		}
		if x.new != nil {
			after = make([]any, len(x.new))
			for i, v := range x.new {
				after[i] = toJSON(v)
			}
		}
		switch {
		case before == nil && after == nil:
		case before == nil:
			q.result[x.id] = after
			d.Added = append(d.Added, q.rowMap(after))
		case after == nil:
			delete(q.result, x.id)
			d.Deleted = append(d.Deleted, q.rowMap(before))
		default:
			if jsonEqual(before, after) {
				continue
			}
			q.result[x.id] = after
			d.Updated = append(d.Updated, change.RowUpdate{Before: q.rowMap(before), After: q.rowMap(after)})
		}
	}
	return d
}

// rowMap builds a result row (a fresh copy the caller may keep or modify).
func (q *Query) rowMap(vals []any) change.Row {
	r := make(change.Row, len(vals))
	for i, c := range q.prog.Columns {
		r[c] = cloneValue(vals[i])
	}
	return r
}

func cloneRows(rows []change.Row) []change.Row {
	out := make([]change.Row, len(rows))
	for i, r := range rows {
		out[i] = cloneRow(r)
	}
	return out
}

func cloneRow(r change.Row) change.Row {
	if r == nil {
		return nil
	}
	return cloneValue(map[string]any(r)).(map[string]any)
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneValue(e)
		}
		return out
	}
	return v
}
