package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nats-io/nats.go"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/change"
)

// rowEvent is one committed change of one row, as the writer saw it.
type rowEvent struct {
	Op      change.Op
	Version int64
}

func (e rowEvent) String() string { return fmt.Sprintf("%s@%d", e.Op, e.Version) }

// writer commits mixed transactions on table items(id, version, payload)
// and records, per row, the changes that committed, in commit order.
type writer struct {
	dsn    string
	conn   *pgx.Conn
	txn    int64 // transactions attempted; each writes its number to txlog
	rng    *rand.Rand
	nextID int64
	live   []int64 // ids present now
	events map[int64][]rowEvent
	total  int
}

func newWriter(ctx context.Context, t *testing.T, dsn string, seed uint64) *writer {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	w := &writer{dsn: dsn, conn: conn, rng: rand.New(rand.NewPCG(seed, 1)), nextID: 1, events: map[int64][]rowEvent{}}
	t.Cleanup(func() {
		if w.conn != nil {
			w.conn.Close(context.Background())
		}
	})
	return w
}

// step runs one transaction. When the connection fails (Postgres restarted
// under it) it reconnects and learns from txlog whether the transaction
// committed, so the model stays exact even when COMMIT's answer was lost.
func (w *writer) step(ctx context.Context) error {
	w.txn++
	pending, live, nextID, n, err := w.tx(ctx)
	if err == nil {
		w.apply(pending, live, nextID, n)
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if w.conn != nil {
			w.conn.Close(ctx)
		}
		w.conn, err = pgx.Connect(ctx, w.dsn)
		if err == nil {
			var committed bool
			err = w.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM txlog WHERE n = $1)`, w.txn).Scan(&committed)
			if err == nil {
				if committed {
					w.apply(pending, live, nextID, n)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reconnecting the writer: %w", err)
		}
		time.Sleep(100 * time.Millisecond) // Postgres is restarting: retry
	}
}

func (w *writer) apply(pending map[int64][]rowEvent, live []int64, nextID int64, n int) {
	for id, evs := range pending {
		w.events[id] = append(w.events[id], evs...)
	}
	w.live, w.nextID = live, nextID
	w.total += n
}

// tx runs one random transaction of 1-8 statements: single and multi-row
// inserts, updates and deletes, and returns what it did; the caller applies
// it to the model once it knows the transaction committed.
func (w *writer) tx(ctx context.Context) (pending map[int64][]rowEvent, live []int64, nextID int64, n int, err error) {
	pending = map[int64][]rowEvent{}
	live = slices.Clone(w.live)
	nextID = w.nextID
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return
	}
	defer tx.Rollback(ctx)
	if _, err = tx.Exec(ctx, `INSERT INTO txlog(n) VALUES ($1)`, w.txn); err != nil {
		return
	}
	pick := func(k int) []int64 {
		if len(live) == 0 {
			return nil
		}
		out := map[int64]bool{}
		for i := 0; i < k; i++ {
			out[live[w.rng.IntN(len(live))]] = true
		}
		ids := make([]int64, 0, len(out))
		for id := range out {
			ids = append(ids, id)
		}
		return ids
	}
	for s := 0; s < 1+w.rng.IntN(8); s++ {
		switch r := w.rng.IntN(10); {
		case r < 4 || len(live) < 5: // insert 1..20 rows in one statement
			k := int64(1 + w.rng.IntN(20))
			var rows pgx.Rows
			rows, err = tx.Query(ctx, `INSERT INTO items(id, version, payload)
				SELECT g, 1, repeat('x', (g % 50)::int) FROM generate_series($1::bigint, $2::bigint) g RETURNING id`, nextID, nextID+k-1)
			if err != nil {
				return
			}
			var ids []int64
			ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return
			}
			for _, id := range ids {
				pending[id] = append(pending[id], rowEvent{change.OpInsert, 1})
				live = append(live, id)
			}
			nextID += k
			n += len(ids)
		case r < 8: // update 1..10 rows in one statement
			ids := pick(1 + w.rng.IntN(10))
			var rows pgx.Rows
			rows, err = tx.Query(ctx, `UPDATE items SET version = version + 1, payload = payload || 'y' WHERE id = ANY($1) RETURNING id, version`, ids)
			if err != nil {
				return
			}
			type iv struct {
				ID      int64
				Version int64
			}
			var got []iv
			got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[iv])
			if err != nil {
				return
			}
			for _, g := range got {
				pending[g.ID] = append(pending[g.ID], rowEvent{change.OpUpdate, g.Version})
			}
			n += len(got)
		default: // delete 1..5 rows in one statement
			ids := pick(1 + w.rng.IntN(5))
			var rows pgx.Rows
			rows, err = tx.Query(ctx, `DELETE FROM items WHERE id = ANY($1) RETURNING id, version`, ids)
			if err != nil {
				return
			}
			type iv struct {
				ID      int64
				Version int64
			}
			var got []iv
			got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[iv])
			if err != nil {
				return
			}
			for _, g := range got {
				pending[g.ID] = append(pending[g.ID], rowEvent{change.OpDelete, g.Version})
				live = slices.DeleteFunc(live, func(x int64) bool { return x == g.ID })
			}
			n += len(got)
		}
	}
	err = tx.Commit(ctx)
	return
}

// newDatabase creates a database of its own for the test, runs schema in
// it, and returns its DSN and a connection to it, closed at the test's end.
func newDatabase(ctx context.Context, t *testing.T, schema string) (string, *pgx.Conn) {
	t.Helper()
	dsn := pg.CreateDatabase(ctx, t, "")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, schema); err != nil {
		t.Fatalf("creating the test schema: %v", err)
	}
	return dsn, conn
}

func sourceConfig(t *testing.T, natsURL, dsn string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "source.yaml")
	body := fmt.Sprintf(`nats:
  url: %s
  leaseTTL: 2s
sources:
  - kind: postgres
    id: shop
    connectionString: %q
    tables: [items]
    create: true
    snapshot: initial
    heartbeatInterval: 1s
    statusInterval: 1s
    backoff: {initial: 100ms, max: 1s}
`, natsURL, dsn)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// streamEvents reads every change of source "shop" from the stream, in
// stream order, and checks positions only grow.
func streamEvents(ctx context.Context, t *testing.T, js jetstream.JetStream) (map[int64][]rowEvent, int) {
	t.Helper()
	cons, err := js.OrderedConsumer(ctx, "TRIBUTARY_CHANGES", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"tributary.changes.shop.>"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := changeCount(ctx, js, "shop")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64][]rowEvent{}
	last := ""
	seen := map[string]bool{}
	truncates := 0
	var msgs []jetstream.Msg
	for uint64(len(msgs)) < want {
		// No more than remain: a fetch waits for as many as it asks for.
		batch, err := cons.Fetch(int(min(1000, want-uint64(len(msgs)))), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatalf("reading changes after %d of %d: %v", len(msgs), want, err)
		}
		before := len(msgs)
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("reading changes after %d of %d: %v", len(msgs), want, err)
		}
		if len(msgs) == before {
			t.Fatalf("no more changes after %d of %d", len(msgs), want)
		}
	}
	for _, m := range msgs {
		env, err := change.Decode(m.Data())
		if err != nil {
			t.Fatalf("stream holds an invalid envelope: %v", err)
		}
		if env.Op == change.OpTruncate {
			// The initial snapshot starts by clearing the label: harmless
			// here (the table was empty), but only before any row change.
			if len(got) > 0 {
				t.Fatalf("unexpected truncate at stream sequence %d", mustSeq(m))
			}
			truncates++
			continue
		}
		if seen[env.Position] {
			t.Fatalf("position %s (%s %s) stored twice, at stream sequence %d", env.Position, env.Op, env.Element.ID, mustSeq(m))
		}
		seen[env.Position] = true
		if change.ComparePositions(env.Position, last) <= 0 {
			t.Errorf("position %s (%s %s, stream sequence %d) after %s: not in commit order", env.Position, env.Op, env.Element.ID, mustSeq(m), last)
		}
		last = env.Position
		var id int64
		if _, err := fmt.Sscanf(env.Element.ID, "items:%d", &id); err != nil {
			t.Fatalf("unexpected envelope at stream sequence %d on %s: %s", mustSeq(m), m.Subject(), m.Data())
		}
		props := env.Element.Properties
		if env.Op == change.OpDelete {
			props = env.Before
		}
		v, err := props["version"].(interface{ Int64() (int64, error) }).Int64()
		if err != nil {
			t.Fatalf("version of %s: %v", env.Element.ID, err)
		}
		got[id] = append(got[id], rowEvent{env.Op, v})
	}
	return got, int(want) - truncates
}

// faultRun is one whole-system run of source-pg under repeated faults.
type faultRun struct {
	t   *testing.T
	cfg string
	src *Process
	dsn string
}

// startSource starts a source-pg process and returns it.
func (r *faultRun) startSource() {
	r.src = Start(r.t, "source-pg", "--config", r.cfg, "--metrics", "127.0.0.1:0")
}

// runSourceUnderFaults: a writer commits 20,000 row changes in mixed
// transactions while fault is injected at random moments (each time after
// 0.3-2.8 s). The stream must then hold every committed change exactly once,
// in commit order per row, and nothing else but the snapshot's truncate.
func runSourceUnderFaults(t *testing.T, minFaults int, fault func(ctx context.Context, r *faultRun)) {
	ctx := context.Background()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%8s %s", time.Since(t0).Round(time.Millisecond), what) }
	defer phase("done")
	dsn, _ := newDatabase(ctx, t, `CREATE TABLE items(id bigint PRIMARY KEY, version bigint NOT NULL, payload text NOT NULL);
		ALTER TABLE items REPLICA IDENTITY FULL;
		CREATE TABLE txlog(n bigint PRIMARY KEY)`)

	srv := natstest.Start(t)
	r := &faultRun{t: t, cfg: sourceConfig(t, srv.URL(), dsn), dsn: dsn}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	phase("setup")
	r.startSource()
	// The writer starts once the snapshot is done: the model below counts
	// versions from each row's insert.
	testwait.UntilErr(ctx, t, 60*time.Second, "source-pg streaming", func() (bool, error) {
		return strings.Contains(r.src.Log(), "msg=streaming"), nil
	})

	phase("source streaming")
	w := newWriter(ctx, t, dsn, seed)
	const target = 20000
	done := make(chan error, 1)
	go func() {
		for w.total < target {
			if err := w.step(ctx); err != nil {
				done <- err
				return
			}
			// Pace the writer so the run spans several fault points (its
			// own generator: rng belongs to the fault loop).
			time.Sleep(time.Duration(w.rng.IntN(60)) * time.Millisecond)
		}
		done <- nil
	}()

	began := time.Now()
	faults := 0
	var werr error
writing:
	for {
		select {
		case werr = <-done:
			break writing
		case <-time.After(time.Duration(300+rng.IntN(2500)) * time.Millisecond):
		}
		fault(ctx, r)
		faults++
	}
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	t.Logf("writer committed %d row changes on %d rows in %d transactions in %s; %d faults", w.total, len(w.events), w.txn, time.Since(began).Round(time.Millisecond), faults)
	caughtUp := time.Now()
	if faults < minFaults {
		t.Fatalf("only %d faults: the test did not exercise recovery", faults)
	}

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	testwait.UntilErr(ctx, t, 120*time.Second, "every committed change in the stream", func() (bool, error) {
		n, err := changeCount(ctx, js, "shop")
		if err != nil {
			return false, err
		}
		// More than committed: stop waiting; the comparison below names
		// the duplicates.
		return n >= uint64(w.total)+1, fmt.Errorf("%d of %d (+1 truncate before the snapshot)", n, w.total)
	})
	t.Logf("the stream caught up %s after the writer finished", time.Since(caughtUp).Round(time.Millisecond))
	got, n := streamEvents(ctx, t, js)
	phase("stream read")
	for id, want := range w.events {
		if !slices.Equal(got[id], want) {
			t.Errorf("row %d: stream has %v, committed %v", id, got[id], want)
		}
	}
	if n != w.total {
		t.Fatalf("read %d changes, want %d", n, w.total)
	}
	if len(got) != len(w.events) {
		t.Fatalf("stream has changes of %d rows, committed %d", len(got), len(w.events))
	}
	if code, err := r.src.Terminate(60 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	// Nothing more arrived while the last source ran and stopped.
	left, err := changeCount(ctx, js, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if left != uint64(w.total)+1 {
		t.Fatalf("after the stop the stream holds %d changes, want %d", left, w.total+1)
	}
}

// Kill -9 the source process at random points and restart it at once.
func TestSourceSurvivesKill9(t *testing.T) {
	runSourceUnderFaults(t, 5, func(ctx context.Context, r *faultRun) {
		r.src.Kill()
		r.startSource()
	})
}

// Terminate the walsender (pg_terminate_backend) mid-stream.
func TestSourceSurvivesWalsenderTermination(t *testing.T) {
	runSourceUnderFaults(t, 5, func(ctx context.Context, r *faultRun) {
		conn, err := pgx.Connect(ctx, r.dsn)
		if err != nil {
			r.t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'tributary_shop' AND active_pid IS NOT NULL`); err != nil {
			r.t.Fatal(err)
		}
	})
}

// H1 with the real binary: a second source-pg with the same source id
// stands by on the lease while the first captures. At random points the
// active one is killed with -9; the standby must take over by itself (within
// the lease TTL of 2 s, plus the slot's release by the dead walsender), and
// a new standby is started for the next round. The stream still holds every
// committed change exactly once, in commit order per row.
func TestSourceStandbyTakesOverAfterKill(t *testing.T) {
	runSourceUnderFaults(t, 3, func(ctx context.Context, r *faultRun) {
		standby := Start(r.t, "source-pg", "--config", r.cfg, "--metrics", "127.0.0.1:0")
		testwait.UntilErr(ctx, r.t, 30*time.Second, "the second source-pg standing by", func() (bool, error) {
			return strings.Contains(standby.Log(), "standing by"), nil
		})
		if strings.Contains(standby.Log(), "msg=streaming") {
			r.t.Fatalf("the standby streams while another instance is active:\n%s", standby.LogTail(20))
		}
		r.src.Kill()
		killed := time.Now()
		testwait.UntilErr(ctx, r.t, 60*time.Second, "the standby to take over", func() (bool, error) {
			return strings.Contains(standby.Log(), "msg=streaming"), nil
		})
		r.t.Logf("the standby took over %s after kill -9 (lease TTL 2s)", time.Since(killed).Round(time.Millisecond))
		r.src = standby
	})
}

// Restart Postgres (fast shutdown, start on the same port) mid-stream.
func TestSourceSurvivesPostgresRestart(t *testing.T) {
	runSourceUnderFaults(t, 3, func(ctx context.Context, r *faultRun) {
		if err := pg.Restart(ctx); err != nil {
			r.t.Fatal(err)
		}
	})
}

func mustSeq(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}
