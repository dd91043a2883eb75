package change

// Row is one row of a query result: column name to value.
type Row = map[string]any

// RowUpdate is a row whose identity stayed while its values changed.
type RowUpdate struct {
	Before Row `json:"before"`
	After  Row `json:"after"`
}

// Result is one message of a query's result stream: a gap-free sequence per
// query. After every message the result set equals evaluating the query from
// scratch on the current data.
type Result struct {
	Query   string      `json:"query"`
	Seq     uint64      `json:"seq"`
	TsMs    int64       `json:"ts_ms"`
	Added   []Row       `json:"added"`
	Updated []RowUpdate `json:"updated"`
	Deleted []Row       `json:"deleted"`
}

// Empty reports whether the result carries no diff.
func (r *Result) Empty() bool {
	return len(r.Added) == 0 && len(r.Updated) == 0 && len(r.Deleted) == 0
}
