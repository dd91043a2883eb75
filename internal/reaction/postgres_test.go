package reaction_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// pgTarget is a test database with an effects table.
type pgTarget struct {
	t   testing.TB
	dsn string
	db  *pgx.Conn
}

func newPGTarget(t testing.TB) *pgTarget {
	t.Helper()
	ctx := t.Context()
	dsn := pg.CreateDatabase(ctx, t, "")
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	g := &pgTarget{t: t, dsn: dsn, db: db}
	g.exec(`CREATE TABLE effects (id bigserial PRIMARY KEY, q text NOT NULL, seq bigint NOT NULL, name text)`)
	return g
}

func (g *pgTarget) exec(sql string, args ...any) {
	g.t.Helper()
	if _, err := g.db.Exec(g.t.Context(), sql, args...); err != nil {
		g.t.Fatalf("%s: %v", sql, err)
	}
}

func (g *pgTarget) effects(t testing.TB) []reactiontest.Effect {
	t.Helper()
	rows, err := g.db.Query(context.Background(), `SELECT q, seq FROM effects ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var out []reactiontest.Effect
	for rows.Next() {
		var e reactiontest.Effect
		var seq int64
		if err := rows.Scan(&e.Query, &seq); err != nil {
			t.Fatal(err)
		}
		e.Seq = uint64(seq)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newPostgres(t testing.TB, spec *config.PostgresReaction, opts ...reaction.PostgresOptions) *reaction.Postgres {
	t.Helper()
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionPostgres, ID: "sql", Queries: reactiontest.Queries, Spec: spec}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var o reaction.PostgresOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	p, err := reaction.NewPostgres("sql", spec, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

const insertEffect = `INSERT INTO effects (q, seq, name) VALUES (@q, @seq, @name)`

func TestPostgresConformance(t *testing.T) {
	reactiontest.Run(t, reactiontest.Kind{ExactlyOnce: true, New: func(t *testing.T) *reactiontest.Target {
		g := newPGTarget(t)
		p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
		return &reactiontest.Target{
			Reaction: p,
			Effects:  g.effects,
			// A statement on a table that is gone is refused for good.
			BreakPermanent: func(testing.TB) func() {
				g.exec(`ALTER TABLE effects RENAME TO effects_away`)
				return func() { g.exec(`ALTER TABLE effects_away RENAME TO effects`) }
			},
			// The server crashes: every connection is lost.
			BreakRetryable: func(t testing.TB) func() {
				if err := pg.Kill(); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := pg.Restart(context.Background()); err != nil {
						t.Fatal(err)
					}
					db, err := pgx.Connect(context.Background(), g.dsn)
					if err != nil {
						t.Fatal(err)
					}
					old := g.db
					g.db = db
					_ = old.Close(context.Background())
					t.Cleanup(func() { _ = db.Close(context.Background()) })
				}
			},
			// Another transaction holds the table: the insert waits.
			Stall: func(t testing.TB) func() {
				tx, err := g.db.Begin(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(t.Context(), `LOCK TABLE effects IN ACCESS EXCLUSIVE MODE`); err != nil {
					t.Fatal(err)
				}
				return func() { _ = tx.Rollback(context.Background()) }
			},
		}
	}})
}

// Every change kind binds its row; an update binds before_<name> too; the
// offset table (named in config, created when missing) holds the last seq
// per (reaction, query).
func TestPostgresBindsRowsAndKeepsOffsets(t *testing.T) {
	g := newPGTarget(t)
	g.exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text, tags jsonb)`)
	g.exec(`CREATE SCHEMA ops`)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, OffsetTable: "ops.offsets",
		Added:   `INSERT INTO items (id, name, tags) VALUES (@id, @name, @tags) -- not @bound`,
		Updated: `UPDATE items SET id = @id, name = @name || ' (was ' || @before_name || ')' WHERE id = @before_id`,
		Deleted: `DELETE FROM items WHERE id = @id AND '@literal' = '@literal'`,
	})
	// Values as DecodeResult gives them (json.Number).
	decode := func(s string) *change.Result {
		r, err := reaction.DecodeResult([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, msg := range []string{
		`{"query":"q1","seq":1,"ts_ms":1,"added":[{"id":1,"name":"a","tags":["x"]},{"id":2,"name":"b","tags":{"k":1}},{"id":3,"name":"c","tags":null}],"updated":[],"deleted":[]}`,
		`{"query":"q1","seq":2,"ts_ms":2,"added":[],"updated":[{"before":{"id":1,"name":"a","tags":["x"]},"after":{"id":10,"name":"A","tags":["x"]}}],"deleted":[{"id":2,"name":"b","tags":{"k":1}}]}`,
		`{"query":"q2","seq":1,"ts_ms":2,"added":[{"id":4,"name":"d","tags":[]}],"updated":[],"deleted":[]}`,
	} {
		if err := p.React(t.Context(), decode(msg)); err != nil {
			t.Fatal(err)
		}
	}
	rows, _ := g.db.Query(t.Context(), `SELECT id, name, tags::text FROM items ORDER BY id`)
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id int64
		var name string
		var tags *string
		err := r.Scan(&id, &name, &tags)
		tv := "NULL"
		if tags != nil {
			tv = *tags
		}
		return fmt.Sprintf("%d %s %s", id, name, tv), err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`3 c NULL`, `4 d []`, `10 A (was a) ["x"]`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("items:\n%v\nwant\n%v", got, want)
	}
	rows, _ = g.db.Query(t.Context(), `SELECT reaction || '/' || query || '=' || seq FROM ops.offsets ORDER BY query`)
	offsets, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(offsets, " ") != "sql/q1=2 sql/q2=1" {
		t.Fatalf("offsets %v", offsets)
	}
}

// A redelivered result, through the real consumer after a lost ack, is
// applied once: the offset row covers it.
func TestPostgresRedeliveryThroughConsumerAppliesOnce(t *testing.T) {
	e := newBusEnv(t)
	g := newPGTarget(t)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	for seq := uint64(1); seq <= 5; seq++ {
		e.publishResult(reactiontest.Result("q1", seq))
	}
	// Apply 1..3 outside the consumer, as an instance that crashed after
	// committing and before acknowledging would have.
	for seq := uint64(1); seq <= 3; seq++ {
		if err := p.React(t.Context(), reactiontest.Result("q1", seq)); err != nil {
			t.Fatal(err)
		}
	}
	e.consume("sql", []string{"q1"}, p)
	testwait.Until(t, 20*time.Second, "5 effects", func() bool { return len(g.effects(t)) >= 5 })
	got := g.effects(t)
	if len(got) != 5 {
		t.Fatalf("effects %v", got)
	}
	for i, ef := range got {
		if ef.Seq != uint64(i+1) {
			t.Fatalf("effects %v", got)
		}
	}
}

// A connection killed between two statements of a result leaves nothing
// of it applied (rows nor offset); the retry applies it whole, once.
func TestPostgresKillBetweenStatementsLeavesNothingHalfApplied(t *testing.T) {
	g := newPGTarget(t)
	g.exec(`CREATE TABLE die (armed boolean NOT NULL)`)
	g.exec(`INSERT INTO die VALUES (true)`)
	// The second row's insert kills its own backend, as a crash would.
	g.exec(`CREATE FUNCTION kill_on_second() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.name = 'second' AND (SELECT armed FROM die) THEN
				PERFORM pg_terminate_backend(pg_backend_pid());
			END IF;
			RETURN NEW;
		END $$`)
	g.exec(`CREATE TRIGGER kill_on_second BEFORE INSERT ON effects FOR EACH ROW EXECUTE FUNCTION kill_on_second()`)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	res := &change.Result{Query: "q1", Seq: 1, Added: []change.Row{
		{"q": "q1", "seq": 1, "name": "first"}, {"q": "q1", "seq": 1, "name": "second"}, {"q": "q1", "seq": 1, "name": "third"}}}
	err := p.React(t.Context(), res)
	if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) {
		t.Fatalf("killed connection: %v, want retryable ErrTargetUnavailable", err)
	}
	if got := g.effects(t); len(got) != 0 {
		t.Fatalf("half applied: %v", got)
	}
	var offsets int
	if err := g.db.QueryRow(t.Context(), `SELECT count(*) FROM tributary_reaction_offsets`).Scan(&offsets); err != nil || offsets != 0 {
		t.Fatalf("offset rows %d (%v), want 0", offsets, err)
	}
	g.exec(`UPDATE die SET armed = false`)
	if err := p.React(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	if err := p.React(t.Context(), res); err != nil { // redelivered
		t.Fatal(err)
	}
	if got := g.effects(t); len(got) != 3 {
		t.Fatalf("after the retry: %v, want the 3 rows once", got)
	}
}

// A statement with a syntax error, a row without a parameter's column and
// a value of the wrong type are permanent.
func TestPostgresPermanentErrors(t *testing.T) {
	g := newPGTarget(t)
	res := reactiontest.Result("q1", 1)
	for _, tc := range []struct {
		name, stmt string
		res        *change.Result
		want       error
		msg        string
	}{
		{"syntax", `INSRT INTO effects (q) VALUES (@q)`, res, reaction.ErrTargetRejected, "syntax error"},
		{"missing column", `INSERT INTO effects (q, seq) VALUES (@q, @nope)`, res, reaction.ErrBadResult, "@nope"},
		{"constraint", `INSERT INTO effects (q, seq) VALUES (@q, NULL)`, res, reaction.ErrTargetRejected, "23502"},
		{"type", `INSERT INTO effects (q, seq) VALUES (@q, @seq)`,
			&change.Result{Query: "q1", Seq: 1, Added: []change.Row{{"q": "q1", "seq": json.Number("1.5e400")}}}, reaction.ErrBadResult, "seq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: tc.stmt})
			err := p.React(t.Context(), tc.res)
			if !bus.IsPermanent(err) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%v, want permanent %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	// Nothing listening: retryable, and the password is not in the error.
	p := newPostgres(t, &config.PostgresReaction{Connection: "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2", Added: insertEffect})
	err := p.React(t.Context(), res)
	if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("no server: %v", err)
	}
}

// rowsResult is a result of query with n added rows, the effects table's
// columns.
func rowsResult(query string, seq uint64, n int) *change.Result {
	r := &change.Result{Query: query, Seq: seq}
	for i := range n {
		r.Added = append(r.Added, change.Row{"q": query, "seq": seq, "name": fmt.Sprintf("row %d", i)})
	}
	return r
}

// ReactBatch applies many results in one transaction, skips what the
// offsets cover, and applies nothing when one result fails.
func TestPostgresBatch(t *testing.T) {
	g := newPGTarget(t)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	var _ reaction.BatchReaction = p
	count := func() (n int) {
		t.Helper()
		if err := g.db.QueryRow(t.Context(), `SELECT count(*) FROM effects`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var batch []*change.Result
	for seq := uint64(1); seq <= 50; seq++ {
		batch = append(batch, rowsResult("q1", seq, 3), rowsResult("q2", seq, 1))
	}
	if err := p.ReactBatch(t.Context(), batch[:60]); err != nil {
		t.Fatal(err)
	}
	if err := p.ReactBatch(t.Context(), batch[40:]); err != nil { // overlaps: 40..59 again
		t.Fatal(err)
	}
	if n := count(); n != 50*4 {
		t.Fatalf("%d effect rows, want %d", n, 50*4)
	}
	// One bad result (a NULL where the table forbids it) fails the batch
	// whole; one at a time, only it fails.
	bad := []*change.Result{rowsResult("q1", 51, 2), {Query: "q1", Seq: 52, Added: []change.Row{{"q": nil, "seq": 52, "name": "bad"}}}, rowsResult("q1", 53, 2)}
	err := p.ReactBatch(t.Context(), bad)
	if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetRejected) || !strings.Contains(err.Error(), "q1:52:0") {
		t.Fatalf("batch with a bad result: %v, want permanent ErrTargetRejected naming q1:52:0", err)
	}
	if n := count(); n != 200 {
		t.Fatalf("the failed batch left %d rows behind", n-200)
	}
	var perm []uint64
	for _, r := range bad {
		if err := p.React(t.Context(), r); bus.IsPermanent(err) {
			perm = append(perm, r.Seq)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(perm) != 1 || perm[0] != 52 || count() != 204 {
		t.Fatalf("one at a time: permanent %v, %d rows", perm, count())
	}
}

// BenchmarkPostgres measures row changes applied per second, one result
// per transaction and 100 results per transaction, 10 rows per result.
func BenchmarkPostgres(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			g := newPGTarget(b)
			p := newPostgres(b, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
			const rows = 10
			seq := uint64(0)
			b.ResetTimer()
			for b.Loop() {
				rs := make([]*change.Result, batch)
				for i := range rs {
					seq++
					rs[i] = rowsResult("q1", seq, rows)
				}
				if err := p.ReactBatch(b.Context(), rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// An offset table that cannot be created (its schema is missing) is
// retried, not a reason to dead-letter results.
func TestPostgresOffsetTableProblemIsRetryable(t *testing.T) {
	g := newPGTarget(t)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect, OffsetTable: "later.offsets"})
	err := p.React(t.Context(), reactiontest.Result("q1", 1))
	if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) {
		t.Fatalf("missing schema: %v, want retryable", err)
	}
	g.exec(`CREATE SCHEMA later`)
	if err := p.React(t.Context(), reactiontest.Result("q1", 1)); err != nil {
		t.Fatal(err)
	}
	if got := g.effects(t); len(got) != 1 {
		t.Fatalf("effects %v", got)
	}
}
