package pgsource

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary/tributary/internal/testwait"
)

// TestIdleSlotAdvancesWhileOtherTablesAreBusy: with the watched table quiet
// and another table busy, heartbeats keep moving the slot's confirmed
// position, so the slot does not pin WAL.
func TestIdleSlotAdvancesWhileOtherTablesAreBusy(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE watched (id int PRIMARY KEY); CREATE TABLE busy (id serial PRIMARY KEY, v int)`)
	cfg := e.config("idle", "watched")
	cfg.Snapshot = SnapshotNever
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.Timeouts.SnapshotStep = 2 * time.Second // bounds each step, not the whole snapshot
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, e.dsn)
		if err != nil {
			return
		}
		defer closeConn(conn)
		for ctx.Err() == nil {
			_, _ = conn.Exec(ctx, `INSERT INTO busy (v) SELECT g FROM generate_series(1, 100) g`)
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	for round := 0; round < 3; round++ {
		target := e.walLSN()
		testwait.Until(t, 20*time.Second, "the slot to confirm past the busy table's writes", func() bool {
			confirmed, _, _ := e.slotState(cfg.SlotName)
			return confirmed >= target
		})
	}
	if n := e.streamCount(); n != 0 {
		t.Fatalf("the stream holds %d messages; the watched table never changed", n)
	}
}

// TestSnapshotUnderConcurrentWrites: tables that change while the initial
// snapshot reads them end up exactly reproduced by replaying the stream by
// position.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	e.exec(writerDDL)
	e.exec(`INSERT INTO counters SELECT g, 0, NULL FROM generate_series(0, 4) g;
		INSERT INTO events (k, note) SELECT g, 'pre ' || g FROM generate_series(1, 3000) g`)
	w := e.startWriter(400)
	// Deletes and updates of snapshot rows while the snapshot runs.
	e.exec(`CREATE TABLE churn_done (x int)`)
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, e.dsn)
		if err != nil {
			return
		}
		defer closeConn(conn)
		for id := 1; id <= 3000 && ctx.Err() == nil; id += 7 {
			_, _ = conn.Exec(ctx, `UPDATE events SET note = 'changed' WHERE id = $1`, id)
			_, _ = conn.Exec(ctx, `DELETE FROM events WHERE id = $1`, id+3)
		}
	}()

	cfg := e.config("snap", "events", "counters")
	cfg.SnapshotChunkRows = 250
	cfg.BatchMaxMessages = 100
	cfg.MaxInFlight = 300
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.Timeouts.SnapshotStep = 2 * time.Second // bounds each step, not the whole snapshot
	r := e.start(cfg)
	w.wg.Wait()
	wg.Wait()
	cancel()

	// Every write is done: once the slot confirms past the WAL written so
	// far (heartbeats carry it past the last commit), the stream holds it all.
	target := e.walLSN()
	testwait.Until(t, 60*time.Second, "the slot to confirm every write", func() bool {
		confirmed, _, _ := e.slotState(cfg.SlotName)
		return confirmed >= target
	})
	state := replay(e.messages())
	compareState(t, "events", state["events"], e.tableState("events", "SELECT id, k, note FROM events"))
	compareState(t, "counters", state["counters"], e.tableState("counters", "SELECT id, n, last FROM counters"))
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if msgs[0].env.Op != "truncate" || msgs[1].env.Op != "truncate" {
		t.Errorf("the snapshot does not start with a truncate per table")
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrapBlockedByLockFailsWithinItsDeadline: a snapshot that cannot
// start because a session holds an ACCESS EXCLUSIVE lock fails within the
// step timeout with a clear reason, releases its connections, and succeeds
// once the lock is gone.
func TestBootstrapBlockedByLockFailsWithinItsDeadline(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE locked (id int PRIMARY KEY, v int);
		INSERT INTO locked SELECT g, g FROM generate_series(1, 20) g;
		CREATE PUBLICATION pub_lock FOR TABLE locked`)
	locker, err := pgx.Connect(e.ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(locker)
	tx, err := locker.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, `LOCK TABLE locked IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	cfg := e.config("lock", "locked")
	cfg.Timeouts.SnapshotStep = time.Second
	cfg.Timeouts.Query = 2 * time.Second
	cfg.Backoff = Backoff{Initial: 3 * time.Second, Max: 3 * time.Second}
	started := time.Now()
	r := e.start(cfg)
	var failure Status
	testwait.Until(t, 10*time.Second, "the snapshot to fail", func() bool {
		for _, s := range r.statuses() {
			if s.State == StateDegraded {
				failure = s
				return true
			}
		}
		return false
	})
	if took := time.Since(started); took > cfg.Timeouts.SnapshotStep+2*time.Second {
		t.Errorf("the blocked snapshot failed after %s, want about its step timeout %s", took, cfg.Timeouts.SnapshotStep)
	}
	if !errors.Is(failure.Err, ErrSnapshot) || !strings.Contains(failure.Reason, "timeouts.snapshotStep") {
		t.Fatalf("failure = %v, want an ErrSnapshot naming the step timeout", failure.Err)
	}
	testwait.Until(t, 2*time.Second, "the snapshot's connections to be released", func() bool {
		var n int
		if err := e.db.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tributary-lock-%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if err := tx.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the snapshot after the lock is gone", func() bool { return e.streamCount() == 21 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedSnapshotIsRedoneExactly: a snapshot stopped half way
// leaves no slot; rows change; the next run takes the snapshot again and
// the replayed stream equals the table (rows the first attempt published and
// that were deleted since are removed by the new snapshot's truncate).
func TestInterruptedSnapshotIsRedoneExactly(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g`)
	cfg := e.config("redo", "t")
	cfg.SnapshotChunkRows = 100
	cfg.BatchMaxMessages = 20
	cfg.MaxInFlight = 20
	cfg.HeartbeatInterval = 100 * time.Millisecond
	r := e.start(cfg)
	testwait.Until(t, 30*time.Second, "the snapshot under way", func() bool { return e.streamCount() > 200 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.slotState(cfg.SlotName); ok {
		t.Fatal("the slot exists after an interrupted snapshot")
	}
	if n := e.streamCount(); n >= 5001 {
		t.Fatalf("the snapshot was not interrupted (%d messages)", n)
	}
	e.exec(`DELETE FROM t WHERE id <= 100; UPDATE t SET v = 'changed' WHERE id % 10 = 0`)

	r = e.start(cfg)
	testwait.Until(t, 60*time.Second, "the new slot", func() bool {
		_, _, ok := e.slotState(cfg.SlotName)
		return ok
	})
	target := e.walLSN()
	testwait.Until(t, 60*time.Second, "the slot to confirm every write", func() bool {
		confirmed, _, _ := e.slotState(cfg.SlotName)
		return confirmed >= target
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	compareState(t, "t", replay(msgs)["t"], e.tableState("t", "SELECT id, v FROM t"))
}
