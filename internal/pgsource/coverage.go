package pgsource

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// checkCoverage finds watched tables whose changes are no longer captured
// although the source streams: pgoutput says nothing when a table leaves
// the publication, is dropped, or is dropped and created again (the new
// table is not in a FOR TABLE publication, which holds tables by OID). It
// returns one problem per such table, naming what happened and what to do;
// none when every table is captured. A renamed table is still captured (by
// OID, see stream.relation) and is not a problem here.
func checkCoverage(ctx context.Context, conn *pgx.Conn, publication string, tables []*table) ([]string, error) {
	schemas := make([]string, len(tables))
	names := make([]string, len(tables))
	oids := make([]uint32, len(tables))
	for i, t := range tables {
		schemas[i], names[i], oids[i] = t.Name.Schema, t.Name.Name, t.OID
	}
	rows, err := conn.Query(ctx, `
		SELECT w.i::int, c.oid,
			EXISTS (SELECT 1 FROM pg_publication_tables p
				WHERE p.pubname = $4 AND p.schemaname = w.s AND p.tablename = w.n),
			EXISTS (SELECT 1 FROM pg_class o WHERE o.oid = w.o)
		FROM unnest($1::text[], $2::text[], $3::oid[]) WITH ORDINALITY AS w(s, n, o, i)
		LEFT JOIN pg_namespace ns ON ns.nspname = w.s
		LEFT JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = w.n`,
		schemas, names, oids, publication)
	if err != nil {
		return nil, fmt.Errorf("checking that the publication still holds the watched tables: %w", err)
	}
	pub := pgx.Identifier{publication}.Sanitize()
	var probs []string
	var i int
	var cur *uint32
	var published, oldExists bool
	_, err = pgx.ForEachRow(rows, []any{&i, &cur, &published, &oldExists}, func() error {
		t := tables[i-1]
		switch {
		case cur != nil && *cur == t.OID && !published:
			probs = append(probs, fmt.Sprintf("table %s left publication %s: its changes are not captured; run ALTER PUBLICATION %s ADD TABLE %s, or restart the source (create: true adds it)",
				t.Name, publication, pub, t.Name.ident()))
		case cur == nil && !oldExists:
			probs = append(probs, fmt.Sprintf("table %s was dropped: nothing of it is captured, and a restart fails until it exists again or leaves tables", t.Name))
		case cur != nil && *cur != t.OID && !published:
			probs = append(probs, fmt.Sprintf("table %s was dropped and created again: the new table is not in publication %s, so its changes are not captured; "+
				"run ALTER PUBLICATION %s ADD TABLE %s, or restart the source (create: true adds it); rows written before that are not captured",
				t.Name, publication, pub, t.Name.ident()))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checking that the publication still holds the watched tables: %w", err)
	}
	slices.Sort(probs)
	return probs, nil
}

// setUncaptured records the problems checkCoverage found, logging and
// reporting (Status.Uncaptured) only when they change.
func (s *Source) setUncaptured(probs []string) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	s.mu.Lock()
	changed := !slices.Equal(s.status.Uncaptured, probs)
	if changed {
		s.status.Uncaptured = probs
	}
	cur := s.status
	s.mu.Unlock()
	if !changed {
		return
	}
	s.met.uncaptured.Set(float64(len(probs)))
	if len(probs) > 0 {
		s.log.Error("watched tables are not captured", "problems", strings.Join(probs, "; "))
	} else {
		s.log.Info("every watched table is captured again")
	}
	if s.onStatus != nil {
		s.onStatus(cur)
	}
}
