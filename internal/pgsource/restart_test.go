package pgsource

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary/tributary/internal/testwait"
)

const writerDDL = `
CREATE TABLE events (id serial PRIMARY KEY, k int NOT NULL, note text);
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL, last int)`

// writer commits transactions until stopped: each inserts one event (every
// 25th inserts 23 events in one transaction) and increments a counter. It
// reconnects after errors (Postgres restarts under it).
type writer struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	committed atomic.Int64
}

func (e *env) startWriter(limit int) *writer {
	ctx, cancel := context.WithCancel(e.ctx)
	w := &writer{cancel: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				closeConn(conn)
			}
		}()
		for i := 1; i <= limit && ctx.Err() == nil; {
			if conn == nil || conn.IsClosed() {
				c, err := pgx.Connect(ctx, e.dsn)
				if err != nil {
					// Postgres is restarting: this pause is part of the fault.
					time.Sleep(20 * time.Millisecond)
					continue
				}
				conn = c
			}
			rows := 1
			if i%25 == 0 {
				rows = 23
			}
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO events (k, note) SELECT $1, 'row ' || g FROM generate_series(1, $2::int) g`, i, rows); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1, last = $1 WHERE id = $1 % 5`, i)
				return err
			})
			if err != nil {
				closeConn(conn)
				conn = nil
				continue
			}
			w.committed.Add(1)
			i++
		}
	}()
	return w
}

func (w *writer) stop() {
	w.cancel()
	w.wg.Wait()
}

// expectedChanges is the number of row changes the tables' history holds:
// the counters' inserts, every event, every counter increment.
func (e *env) expectedChanges() uint64 {
	var events, incs int64
	if err := e.db.QueryRow(e.ctx, "SELECT (SELECT count(*) FROM events), (SELECT coalesce(sum(n), 0) FROM counters)").Scan(&events, &incs); err != nil {
		e.t.Fatal(err)
	}
	return uint64(5 + events + incs)
}

// checkExactlyOnce waits until the stream holds every committed change and
// checks that it holds each exactly once and replays to the tables.
func (e *env) checkExactlyOnce(extraMsgs uint64) {
	t := e.t
	t.Helper()
	want := e.expectedChanges() + extraMsgs
	testwait.Until(t, 60*time.Second, "every committed change in the stream", func() bool { return e.streamCount() >= want })
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if uint64(len(msgs)) != want {
		t.Fatalf("the stream holds %d changes, the tables' history %d", len(msgs), want)
	}
	state := replay(msgs)
	compareState(t, "events", state["events"], e.tableState("events", "SELECT id, k, note FROM events"))
	compareState(t, "counters", state["counters"], e.tableState("counters", "SELECT id, n, last FROM counters"))
}

// newWriterEnv is an env whose changes stream forgets message ids after
// 100ms, so that only the source's own resume logic keeps re-sent changes
// from being stored twice.
func newWriterEnv(t *testing.T) *env {
	e := newEnv(t)
	s, err := e.js.Stream(e.ctx, e.topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := e.js.UpdateStream(e.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	e.exec(writerDDL)
	return e
}

func (e *env) writerConfig(id string) Config {
	cfg := e.config(id, "events", "counters")
	cfg.Snapshot = SnapshotNever
	cfg.BatchMaxMessages = 10 // transactions of 23 rows span batches
	cfg.MaxInFlight = 40
	return cfg
}

// TestRestartMidStreamStoresEveryChangeOnce: the source is stopped and
// started again (gracefully, then as after a crash, with nothing confirmed
// since its start) while a writer commits; the stream holds every committed
// change exactly once, in commit order, although the stream's duplicate
// window is far shorter than the restart.
func TestRestartMidStreamStoresEveryChangeOnce(t *testing.T) {
	e := newWriterEnv(t)
	cfg := e.writerConfig("restart")
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO counters SELECT g, 0, NULL FROM generate_series(0, 4) g`)
	w := e.startWriter(600)

	testwait.Until(t, 30*time.Second, "progress", func() bool { return e.streamCount() > 150 })
	if err := r.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	// This run confirms nothing after its start (status updates are an
	// hour apart) and loses its final status update with its walsender, as
	// a crash would: the next run receives again everything it stored.
	crash := cfg
	crash.StatusInterval = time.Hour
	r = e.start(crash)
	testwait.Until(t, 30*time.Second, "progress after the restart", func() bool { return e.streamCount() > 400 })
	e.exec(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, cfg.SlotName)
	if err := r.stop(); err != nil && !errors.Is(err, ErrStopIncomplete) {
		t.Fatalf("abrupt stop: %v", err)
	}
	time.Sleep(150 * time.Millisecond) // the injected fault: outlive the dedup window
	r = e.start(cfg)
	w.wg.Wait()
	e.checkExactlyOnce(0)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestWalsenderTerminatedAndPostgresRestarted: the walsender is terminated,
// then Postgres restarts, while a writer commits; the source reconnects by
// itself (reporting Degraded meanwhile) and the stream holds every committed
// change exactly once.
func TestWalsenderTerminatedAndPostgresRestarted(t *testing.T) {
	e := newWriterEnv(t)
	cfg := e.writerConfig("faults")
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO counters SELECT g, 0, NULL FROM generate_series(0, 4) g`)
	w := e.startWriter(500)

	testwait.Until(t, 30*time.Second, "progress", func() bool { return e.streamCount() > 100 })
	var terminated bool
	if err := e.db.QueryRow(e.ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, cfg.SlotName).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminating the walsender: %v %v", terminated, err)
	}
	testwait.Until(t, 30*time.Second, "progress after the walsender was terminated", func() bool { return e.streamCount() > 300 })

	closeConn(e.db)
	if err := pg.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	e.db, err = pgx.Connect(e.ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	w.wg.Wait()
	e.checkExactlyOnce(0)
	degraded := 0
	for _, s := range r.statuses() {
		if s.State == StateDegraded && s.Reason != "" {
			degraded++
		}
	}
	if degraded < 2 {
		t.Errorf("saw %d Degraded states with a reason, want one per fault", degraded)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStopConfirmsTheLastCommit: after a graceful stop the slot's
// confirmed_flush_lsn is the end of the last published commit, the slot is
// inactive, and a new run publishes nothing again.
func TestStopConfirmsTheLastCommit(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := e.config("stop", "t")
	cfg.Snapshot = SnapshotNever
	cfg.StatusInterval = time.Hour // only the final status update confirms
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO t SELECT g, 'v' FROM generate_series(1, 50) g`)
	e.exec(`UPDATE t SET v = 'w' WHERE id <= 10`)
	end := e.walLSN() // the end of the last commit: nothing else writes
	testwait.Until(t, 20*time.Second, "the changes", func() bool { return e.streamCount() == 60 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the slot to be released", func() bool {
		_, active, ok := e.slotState(cfg.SlotName)
		return ok && !active
	})
	confirmed, _, _ := e.slotState(cfg.SlotName)
	if confirmed != end {
		t.Fatalf("confirmed_flush_lsn = %s, want the last commit's end %s", lsnString(confirmed), lsnString(end))
	}

	r = e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming again", func() bool { return r.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO t VALUES (100, 'after')`)
	testwait.Until(t, 20*time.Second, "the new change", func() bool { return e.streamCount() == 61 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkStreamInvariants(t, e.messages())
}
