package pgsource

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/tributary/tributary/pkg/change"
)

// relColumn is one column of a relation as the stream (or a snapshot query)
// describes it.
type relColumn struct {
	name string
	typ  *pgType
	// ident marks a column of the replica identity (pgoutput's key flag).
	ident bool
}

// relation maps the columns of a watched table to their conversions.
type relation struct {
	tbl  *table
	cols []relColumn
	// keyIdx are the indexes in cols of tbl.Keys, in key order.
	keyIdx []int
}

func newRelation(tbl *table, cols []relColumn) (*relation, error) {
	r := &relation{tbl: tbl, cols: cols}
	for _, k := range tbl.Keys {
		idx := -1
		for i, c := range cols {
			if c.name == k {
				idx = i
				break
			}
		}
		if idx < 0 {
			return nil, fatal(fmt.Errorf("%w: key column %q of table %s is no longer in the table", ErrSetup, k, tbl.Name))
		}
		r.keyIdx = append(r.keyIdx, idx)
	}
	return r, nil
}

// oldProps converts an old tuple: a key tuple ('K', REPLICA IDENTITY DEFAULT
// or USING INDEX) holds only the identity columns (the others are sent as
// NULL and left out here); an old tuple ('O', FULL) holds the whole row.
func (c *converter) oldProps(r *relation, kind uint8, tup *pglogrepl.TupleData) (map[string]any, error) {
	props, _, err := c.props(r, tup)
	if err != nil || kind != 'K' {
		return props, err
	}
	for _, col := range r.cols {
		if !col.ident {
			delete(props, col.name)
		}
	}
	return props, nil
}

// props converts a tuple: NULL to nil, unchanged TOAST values ('u') left
// out and named in unchanged.
func (c *converter) props(r *relation, tup *pglogrepl.TupleData) (map[string]any, []string, error) {
	if len(tup.Columns) != len(r.cols) {
		return nil, nil, fmt.Errorf("%w: table %s: tuple has %d columns, the relation %d", ErrDecode, r.tbl.Name, len(tup.Columns), len(r.cols))
	}
	props := make(map[string]any, len(r.cols))
	var unchanged []string
	for i, col := range tup.Columns {
		rc := r.cols[i]
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			props[rc.name] = nil
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, rc.name)
		case pglogrepl.TupleDataTypeText:
			v, err := c.convert(rc.typ, col.Data)
			if err != nil {
				return nil, nil, fmt.Errorf("table %s column %s: %w", r.tbl.Name, rc.name, err)
			}
			props[rc.name] = v
		default:
			return nil, nil, fmt.Errorf("%w: table %s column %s: tuple data type %q (binary values are not requested)", ErrDecode, r.tbl.Name, rc.name, col.DataType)
		}
	}
	return props, unchanged, nil
}

// rowKey joins the text forms of the key columns with '_', taking each from
// the new tuple or, when it is not there (unchanged TOAST), the old one.
func rowKey(r *relation, tup, old *pglogrepl.TupleData) (string, error) {
	parts := make([]string, len(r.keyIdx))
	for i, idx := range r.keyIdx {
		var val []byte
		found := false
		for _, t := range []*pglogrepl.TupleData{tup, old} {
			if t == nil || idx >= len(t.Columns) {
				continue
			}
			if col := t.Columns[idx]; col.DataType == pglogrepl.TupleDataTypeText {
				val, found = col.Data, true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("%w: table %s: key column %s has no value in the change", ErrDecode, r.tbl.Name, r.cols[idx].name)
		}
		parts[i] = string(val)
	}
	return strings.Join(parts, "_"), nil
}

// keyOf returns the row key of a snapshot row (values in r.cols order).
func keyOf(r *relation, vals [][]byte) (string, error) {
	parts := make([]string, len(r.keyIdx))
	for i, idx := range r.keyIdx {
		if vals[idx] == nil {
			return "", fmt.Errorf("%w: table %s: key column %s is NULL", ErrDecode, r.tbl.Name, r.cols[idx].name)
		}
		parts[i] = string(vals[idx])
	}
	return strings.Join(parts, "_"), nil
}

// rowEnvelope builds the envelope of one row change.
func (s *Source) rowEnvelope(op change.Op, r *relation, key string, props, before map[string]any, unchanged []string, ts time.Time, pos string) *change.Envelope {
	return &change.Envelope{
		Op:     op,
		Source: s.cfg.ID,
		Element: change.Element{
			Type:       change.TypeNode,
			ID:         r.tbl.Label + ":" + key,
			Labels:     []string{r.tbl.Label},
			Properties: props,
		},
		Before:    before,
		Unchanged: unchanged,
		TsMs:      ts.UnixMilli(),
		Position:  pos,
	}
}

// truncateEnvelope builds the envelope that removes every row of a table.
func (s *Source) truncateEnvelope(tbl *table, ts time.Time, pos string) *change.Envelope {
	return &change.Envelope{
		Op:       change.OpTruncate,
		Source:   s.cfg.ID,
		Element:  change.Element{Type: change.TypeNode, Labels: []string{tbl.Label}},
		TsMs:     ts.UnixMilli(),
		Position: pos,
	}
}
