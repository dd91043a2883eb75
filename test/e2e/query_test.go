package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/queryservice/querytest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// e2eQueries are the queries of the end-to-end test with the SQL that
// answers each on the final tables.
var e2eQueries = []struct{ id, cypher, sql string }{
	{"ready", "MATCH (o:orders) WHERE o.status = 'ready' RETURN o.id AS id, o.total AS total",
		"SELECT id, total FROM orders WHERE status = 'ready'"},
	{"by-status", "MATCH (o:orders) RETURN o.status AS status, count(o) AS n, sum(o.total) AS revenue",
		"SELECT status, count(*) AS n, sum(total) AS revenue FROM orders GROUP BY status"},
	{"curbside", "MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers) WHERE o.status = 'ready' AND d.zone = 'curbside' RETURN o.id AS orderId, d.name AS driver",
		`SELECT o.id AS "orderId", d.name AS driver FROM orders o JOIN drivers d ON o.driver_id = d.id WHERE o.status = 'ready' AND d.zone = 'curbside'`},
}

// The main job on a real database: source-pg and query-engine run, a
// mixed workload changes two tables while the engine is killed twice, and
// every query's results, folded as a reaction sees them (seqs 1..n, no
// duplicate), equal the equivalent SQL on the final tables.
func TestQueriesOnPostgresEqualSQL(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	dsn, db := newDatabase(ctx, t, `
CREATE TABLE drivers (id int PRIMARY KEY, name text NOT NULL, zone text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total int NOT NULL, driver_id int);
INSERT INTO drivers SELECT i, 'driver-' || i, CASE WHEN i % 2 = 0 THEN 'curbside' ELSE 'lot' END FROM generate_series(1, 6) i;
INSERT INTO orders SELECT i, (ARRAY['new','ready','done'])[1 + i % 3], i * 7 % 100, 1 + i % 6 FROM generate_series(1, 40) i;
`)
	cfg := filepath.Join(t.TempDir(), "shop.yaml")
	body := fmt.Sprintf(`nats:
  url: %s
sources:
  - kind: postgres
    id: shop
    connectionString: %q
    tables: [orders, drivers]
    create: true
    snapshot: initial
    heartbeatInterval: 1s
    statusInterval: 1s
queries:
`, srv.URL(), dsn)
	for _, q := range e2eQueries {
		body += fmt.Sprintf("  - id: %s\n    sources: [{sourceId: shop}]\n    query: %q\n", q.id, q.cypher)
		if q.id == "curbside" {
			body += "    joins: [{id: ASSIGNED_TO, keys: [{label: orders, property: driver_id}, {label: drivers, property: id}]}]\n"
		}
	}
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	source := Start(t, "source-pg", "--config", cfg, "--metrics", "127.0.0.1:0")
	engine := Start(t, "query-engine", "run", "--config", cfg, "--metrics", "127.0.0.1:0")
	// Both ready: the source streams, the queries consume live (their
	// initial results hold the snapshot), so the workload below reaches
	// the queries as live changes.
	for _, p := range []*Process{source, engine} {
		addr := p.MetricsAddr(t)
		testwait.Until(t, 60*time.Second, p.Name+" ready", func() bool {
			code, _ := readyz(t, addr)
			return code == 200
		})
	}

	// A mixed workload in small transactions: inserts, updates that move
	// orders between statuses, drivers and zones, deletes. The engine is
	// killed (-9) twice along the way and started again.
	rng := rand.New(rand.NewPCG(21, 1))
	for i := range 300 {
		if i == 100 || i == 200 {
			engine.Kill()
			engine = Start(t, "query-engine", "run", "--config", cfg, "--metrics", "127.0.0.1:0")
		}
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 1 + rng.IntN(3) {
			id := 1 + rng.IntN(60)
			var stmt string
			var args []any
			switch rng.IntN(6) {
			case 0:
				stmt, args = "INSERT INTO orders VALUES ($1, 'new', $2, $3) ON CONFLICT (id) DO NOTHING", []any{id, rng.IntN(100), 1 + rng.IntN(6)}
			case 1:
				stmt, args = "DELETE FROM orders WHERE id = $1", []any{id}
			case 2:
				stmt, args = "UPDATE drivers SET zone = $2 WHERE id = $1", []any{1 + rng.IntN(6), []string{"curbside", "lot"}[rng.IntN(2)]}
			case 3:
				stmt, args = "UPDATE orders SET driver_id = $2 WHERE id = $1", []any{id, 1 + rng.IntN(7)}
			default:
				stmt, args = "UPDATE orders SET status = $2, total = total + $3 WHERE id = $1", []any{id, []string{"new", "ready", "done"}[rng.IntN(3)], rng.IntN(10)}
			}
			if _, err := tx.Exec(ctx, stmt, args...); err != nil {
				t.Fatalf("step %d: %s: %v", i, stmt, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	topo, err := streams.Default("tributary", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range e2eQueries {
		want := sqlRows(ctx, t, db, q.sql)
		got := querytest.WaitFolded(t, conn, topo, q.id, want, 120*time.Second)
		t.Logf("%s: %d rows, %d result messages", q.id, len(want), len(got.Messages))
	}
	for _, p := range []*Process{engine, source} {
		if code, err := p.Terminate(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("%s SIGTERM: exit %d, %v\n%s", p.Name, code, err, p.LogTail(20))
		}
	}
}

// sqlRows runs a query and returns its rows in the canonical form of
// querytest (JSON, numbers as text).
func sqlRows(ctx context.Context, t *testing.T, db *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := db.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]change.Row, len(maps))
	for i, m := range maps {
		out[i] = m
	}
	return querytest.Canonical(t, out)
}
