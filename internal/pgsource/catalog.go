package pgsource

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// column is one column of a watched table.
type column struct {
	Name    string
	TypeOID uint32
	NotNull bool
}

// table is what the source knows about one watched table.
type table struct {
	Name  tableName
	Label string
	OID   uint32
	// Columns in attribute order (dropped columns left out).
	Columns []column
	// Keys are the columns that identify a row: the configured tableKeys,
	// otherwise the primary key.
	Keys []string
	// ReplicaIdentity is relreplident: 'd' default, 'f' full, 'i' index,
	// 'n' nothing.
	ReplicaIdentity byte
}

func (t *table) column(name string) (column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return column{}, false
}

// ident quotes the table for SQL.
func (t tableName) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// loadTables reads every watched table from the catalog and checks that its
// rows can be identified. Problems are reported together, wrapping ErrSetup.
func loadTables(ctx context.Context, conn *pgx.Conn, cfg *Config) ([]*table, error) {
	keys := map[string][]string{}
	for t, cols := range cfg.TableKeys {
		q, _ := parseTableName(t) // validated by Config.Validate
		keys[q.String()] = cols
	}
	var out []*table
	var probs []string
	for _, raw := range cfg.Tables {
		name, _ := parseTableName(raw)
		t, prob, err := loadTable(ctx, conn, name, keys[name.String()])
		if err != nil {
			return nil, err
		}
		if prob != "" {
			probs = append(probs, prob)
			continue
		}
		out = append(out, t)
	}
	if len(probs) > 0 {
		return nil, fatal(fmt.Errorf("%w: %s", ErrSetup, strings.Join(probs, "; ")))
	}
	return out, nil
}

// loadTable returns the table, or a problem description when it cannot be
// watched, or an error when the catalog could not be read.
func loadTable(ctx context.Context, conn *pgx.Conn, name tableName, keyCols []string) (*table, string, error) {
	t := &table{Name: name, Label: name.Label()}
	var ident, kind string
	err := conn.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, name.Schema, name.Name).Scan(&t.OID, &ident, &kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Sprintf("table %s does not exist", name), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the catalog entry of table %s: %w", name, err)
	}
	if kind != "r" {
		return nil, fmt.Sprintf("%s is not an ordinary table (relkind %q)", name, kind), nil
	}
	t.ReplicaIdentity = ident[0]

	rows, err := conn.Query(ctx, `
		SELECT a.attname, a.atttypid, a.attnotnull
		FROM pg_attribute a
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.OID)
	if err != nil {
		return nil, "", fmt.Errorf("reading the columns of table %s: %w", name, err)
	}
	t.Columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.Name, &c.TypeOID, &c.NotNull)
		return c, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading the columns of table %s: %w", name, err)
	}

	pk, err := indexColumns(ctx, conn, t.OID, "indisprimary")
	if err != nil {
		return nil, "", fmt.Errorf("reading the primary key of table %s: %w", name, err)
	}
	var identCols []string
	switch t.ReplicaIdentity {
	case 'd':
		identCols = pk
	case 'i':
		identCols, err = indexColumns(ctx, conn, t.OID, "indisreplident")
		if err != nil {
			return nil, "", fmt.Errorf("reading the replica identity index of table %s: %w", name, err)
		}
	case 'f':
		for _, c := range t.Columns {
			identCols = append(identCols, c.Name)
		}
	}

	t.Keys = keyCols
	if len(t.Keys) == 0 {
		t.Keys = pk
	}
	if len(t.Keys) == 0 {
		return nil, fmt.Sprintf("table %s has no primary key: add one, or name its key columns in tableKeys "+
			"(and run ALTER TABLE %s REPLICA IDENTITY FULL so that deletes carry them); row ids are never invented",
			name, name.ident()), nil
	}
	var probs []string
	for _, k := range t.Keys {
		c, ok := t.column(k)
		switch {
		case !ok:
			probs = append(probs, fmt.Sprintf("key column %q of table %s does not exist", k, name))
		case !c.NotNull:
			probs = append(probs, fmt.Sprintf("key column %q of table %s may be NULL: run ALTER TABLE %s ALTER COLUMN %s SET NOT NULL",
				k, name, name.ident(), pgx.Identifier{k}.Sanitize()))
		}
	}
	if t.ReplicaIdentity == 'n' || len(identCols) == 0 {
		probs = append(probs, fmt.Sprintf("table %s has REPLICA IDENTITY NOTHING (or DEFAULT without a primary key), so updates and deletes "+
			"cannot be identified: run ALTER TABLE %s REPLICA IDENTITY FULL", name, name.ident()))
	} else {
		for _, k := range t.Keys {
			if !slices.Contains(identCols, k) {
				probs = append(probs, fmt.Sprintf("key column %q of table %s is not part of its replica identity, so deletes would not carry it: "+
					"run ALTER TABLE %s REPLICA IDENTITY FULL", k, name, name.ident()))
				break
			}
		}
	}
	if len(probs) > 0 {
		return nil, strings.Join(probs, "; "), nil
	}
	return t, "", nil
}

// indexColumns returns the columns, in index order, of the table's index
// with the given boolean pg_index flag set (indisprimary, indisreplident).
func indexColumns(ctx context.Context, conn *pgx.Conn, relid uint32, flag string) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT a.attname
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.`+flag+`
		ORDER BY k.ord`, relid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// typeRegistry resolves column type OIDs to their JSON conversion; types
// this package does not know natively (enums, domains, arrays of those,
// extension types) are looked up in pg_type once and cached.
type typeRegistry struct {
	mu    sync.Mutex
	types map[uint32]*pgType
}

func newTypeRegistry() *typeRegistry {
	return &typeRegistry{types: map[uint32]*pgType{}}
}

// lookup returns the type if it is known without a query.
func (r *typeRegistry) lookup(oid uint32) (*pgType, bool) {
	if t, ok := builtinTypes[oid]; ok {
		return t, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.types[oid]
	return t, ok
}

// resolve returns how to convert values of the type, reading pg_type through
// conn when the type is not known yet.
func (r *typeRegistry) resolve(ctx context.Context, conn *pgx.Conn, oid uint32) (*pgType, error) {
	return r.resolveDepth(ctx, conn, oid, 0)
}

func (r *typeRegistry) resolveDepth(ctx context.Context, conn *pgx.Conn, oid uint32, depth int) (*pgType, error) {
	if t, ok := r.lookup(oid); ok {
		return t, nil
	}
	if depth > 8 {
		return &pgType{kind: kindString, name: fmt.Sprintf("type %d", oid)}, nil
	}
	var typtype, category, delim, name string
	var elem, base uint32
	err := conn.QueryRow(ctx, `
		SELECT typtype::text, typcategory::text, typelem, typbasetype, typdelim::text, format_type(oid, NULL)
		FROM pg_type WHERE oid = $1`, oid).Scan(&typtype, &category, &elem, &base, &delim, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		// A type dropped since: its values still have a text form.
		return &pgType{kind: kindString, name: fmt.Sprintf("type %d", oid)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pg_type for type oid %d: %w", oid, err)
	}
	var t *pgType
	switch {
	case typtype == "d" && base != 0:
		t, err = r.resolveDepth(ctx, conn, base, depth+1)
		if err != nil {
			return nil, err
		}
	case category == "A" && elem != 0:
		et, err := r.resolveDepth(ctx, conn, elem, depth+1)
		if err != nil {
			return nil, err
		}
		d := byte(',')
		if len(delim) == 1 {
			d = delim[0]
		}
		t = &pgType{kind: kindArray, elem: et, delim: d, name: name}
	default:
		// Enums, ranges, composites, extension types: their text form.
		t = &pgType{kind: kindString, name: name}
	}
	r.mu.Lock()
	r.types[oid] = t
	r.mu.Unlock()
	return t, nil
}
