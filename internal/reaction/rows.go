package reaction

import (
	"strconv"

	"github.com/tributary/tributary/pkg/change"
)

// Op is the kind of one row change, as Debezium names it.
type Op string

// Row change kinds.
const (
	OpCreate Op = "c" // an added row
	OpUpdate Op = "u" // an updated row
	OpDelete Op = "d" // a deleted row
)

// RowChange is one row of a result message, in the Debezium-like shape the
// per-row reaction modes send: Before is nil for an added row, After for a
// deleted one.
type RowChange struct {
	Op     Op         `json:"op"`
	Before change.Row `json:"before"`
	After  change.Row `json:"after"`
	Query  string     `json:"query"`
	Seq    uint64     `json:"seq"`
	TsMs   int64      `json:"ts_ms"`
	// Index is the row's position in the result message: added rows first,
	// then updated, then deleted, counting from 0. It completes the row's
	// idempotency key.
	Index int `json:"-"`
}

// RowChanges lists r's row changes in message order: added, updated,
// deleted.
func RowChanges(r *change.Result) []RowChange {
	out := make([]RowChange, 0, len(r.Added)+len(r.Updated)+len(r.Deleted))
	add := func(op Op, before, after change.Row) {
		out = append(out, RowChange{Op: op, Before: before, After: after, Query: r.Query, Seq: r.Seq, TsMs: r.TsMs, Index: len(out)})
	}
	for _, row := range r.Added {
		add(OpCreate, nil, row)
	}
	for _, u := range r.Updated {
		add(OpUpdate, u.Before, u.After)
	}
	for _, row := range r.Deleted {
		add(OpDelete, row, nil)
	}
	return out
}

// templateData is what a reaction template sees for a row change (or, with
// a nil row, for a whole result message).
func (rc *RowChange) templateData() map[string]any {
	return map[string]any{
		"op": string(rc.Op), "before": rc.Before, "after": rc.After,
		"query": rc.Query, "seq": rc.Seq, "ts_ms": rc.TsMs,
	}
}

// IdempotencyKey is the key of a whole result message: <query>:<seq>.
func IdempotencyKey(r *change.Result) string {
	return r.Query + ":" + strconv.FormatUint(r.Seq, 10)
}

// Key is the idempotency key of the row change: <query>:<seq>:<index>.
func (rc *RowChange) Key() string {
	return rc.Query + ":" + strconv.FormatUint(rc.Seq, 10) + ":" + strconv.Itoa(rc.Index)
}
