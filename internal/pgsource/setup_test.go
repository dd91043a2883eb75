package pgsource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tributary/tributary/internal/testwait"
)

// TestSetupProblemsAreFatalAndNameTheFix: a missing publication or slot
// without create, and a table without a key, stop Run at once with an
// ErrSetup error that names the SQL to run.
func TestSetupProblemsAreFatalAndNameTheFix(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE keyless (a int, b text)`)

	run := func(cfg Config) error {
		t.Helper()
		r := e.start(cfg)
		select {
		case err := <-r.done:
			close(r.done)
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return")
			return nil
		}
	}

	cfg := e.config("setup", "keyed")
	cfg.Create = false
	err := run(cfg)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), `CREATE PUBLICATION "pub_setup" FOR TABLE "public"."keyed"`) {
		t.Fatalf("missing publication: %v", err)
	}
	e.exec(`CREATE PUBLICATION pub_setup FOR TABLE keyed`)
	err = run(cfg)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), `pg_create_logical_replication_slot('slot_setup', 'pgoutput')`) {
		t.Fatalf("missing slot: %v", err)
	}

	cfg = e.config("setup2", "keyed", "keyless")
	err = run(cfg)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "keyless has no primary key") {
		t.Fatalf("table without a key: %v", err)
	}
	cfg.TableKeys = map[string][]string{"keyless": {"a"}}
	err = run(cfg)
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "SET NOT NULL") || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Fatalf("nullable key outside the replica identity: %v", err)
	}
	e.exec(`ALTER TABLE keyless ALTER COLUMN a SET NOT NULL; ALTER TABLE keyless REPLICA IDENTITY FULL;
		INSERT INTO keyless VALUES (1, 'one')`)
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "the keyless table's row by its configured key", func() bool { return e.streamCount() == 3 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	if id := msgs[2].env.Element.ID; id != "keyless:1" {
		t.Fatalf("row id %q, want keyless:1", id)
	}
}

// TestSlotInUseIsRetriedWithTheReason: a second instance on the same slot
// reports Degraded naming the PID that holds it, and takes over when the
// first stops.
func TestSlotInUseIsRetriedWithTheReason(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := e.config("busy", "t")
	cfg.Snapshot = SnapshotNever
	first := e.start(cfg)
	testwait.Until(t, 20*time.Second, "the first instance streaming", func() bool { return first.src.Status().State == StateStreaming })
	second := e.start(cfg)
	testwait.Until(t, 20*time.Second, "the second instance to report the busy slot", func() bool {
		for _, s := range second.statuses() {
			if s.State == StateDegraded && strings.Contains(s.Reason, "is active for PID") {
				return true
			}
		}
		return false
	})
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the second instance streaming", func() bool { return second.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO t VALUES (1)`)
	testwait.Until(t, 20*time.Second, "the change", func() bool { return e.streamCount() == 1 })
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestBusOutageAppliesBackpressureAndResumes: while NATS is down the source
// reports Degraded, keeps its replication connection and confirms nothing
// new; when NATS returns every change arrives once. The metrics count what
// was published.
func TestBusOutageAppliesBackpressureAndResumes(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	reg := prometheus.NewRegistry()
	cfg := e.config("outage", "t")
	cfg.Snapshot = SnapshotNever
	cfg.BatchMaxMessages = 50
	cfg.MaxInFlight = 100
	r := &running{done: make(chan error, 1)}
	src, err := New(cfg, BusPublisher(e.pub), e.bus, e.topo, Options{Logger: testLogger(), Registerer: reg, OnStatus: func(s Status) {
		r.mu.Lock()
		r.states = append(r.states, s)
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.src = src
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- src.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return src.Status().State == StateStreaming })
	e.exec(`INSERT INTO t SELECT g, g FROM generate_series(1, 10) g`)
	testwait.Until(t, 20*time.Second, "the first rows", func() bool { return e.streamCount() == 10 })
	confirmedBefore, _, _ := e.slotState(cfg.SlotName)

	e.ns.Shutdown()
	e.exec(`INSERT INTO t SELECT g, g FROM generate_series(11, 500) g`)
	e.exec(`UPDATE t SET v = -v`)
	testwait.Until(t, 20*time.Second, "Degraded while JetStream is away", func() bool {
		st := src.Status()
		return st.State == StateDegraded && strings.Contains(st.Reason, "JetStream")
	})
	confirmed, active, _ := e.slotState(cfg.SlotName)
	if !active || confirmed > e.walLSN() || confirmed < confirmedBefore {
		t.Fatalf("while NATS is down: slot active %v confirmed %s", active, lsnString(confirmed))
	}
	e.ns.Restart()
	testwait.Until(t, 60*time.Second, "every change after NATS returned", func() bool { return e.streamCount() == 10+490+500 })
	testwait.Until(t, 20*time.Second, "streaming again", func() bool { return src.Status().State == StateStreaming })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	compareState(t, "t", replay(msgs)["t"], e.tableState("t", "SELECT id, v FROM t"))
	if got := testutil.ToFloat64(src.met.published.WithLabelValues("t", "insert")); got != 500 {
		t.Errorf("changes_published_total{t,insert} = %v, want 500", got)
	}
	if got := testutil.ToFloat64(src.met.published.WithLabelValues("t", "update")); got != 500 {
		t.Errorf("changes_published_total{t,update} = %v, want 500", got)
	}
	if n, err := testutil.GatherAndCount(reg, "tributary_pgsource_confirmed_lsn_bytes", "tributary_pgsource_replication_lag_bytes",
		"tributary_pgsource_state", "tributary_pgsource_publish_duration_seconds"); err != nil || n < 4 {
		t.Errorf("gathered %d series (%v)", n, err)
	}
}

// TestDropSlotOnStop: with DropSlotOnStop the slot is gone after a stop.
func TestDropSlotOnStop(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := e.config("drop", "t")
	cfg.DropSlotOnStop = true
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	if _, _, ok := e.slotState(cfg.SlotName); !ok {
		t.Fatal("no slot while streaming")
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.slotState(cfg.SlotName); ok {
		t.Fatal("the slot survived the stop")
	}
}

// TestLostSlotWithHistoryIsRefused: when the slot vanished while the
// stream holds changes of the source, snapshot never refuses to start (the
// changes in between are lost) and snapshot initial resyncs.
func TestLostSlotWithHistoryIsRefused(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	cfg := e.config("lost", "t")
	cfg.Snapshot = SnapshotNever
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	e.exec(`INSERT INTO t VALUES (1, 1), (2, 2)`)
	testwait.Until(t, 20*time.Second, "the rows", func() bool { return e.streamCount() == 2 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the slot to be released", func() bool {
		_, active, _ := e.slotState(cfg.SlotName)
		return !active
	})
	e.exec(`SELECT pg_drop_replication_slot('slot_lost')`)
	e.exec(`DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (3, 3)`)

	r = e.start(cfg)
	if err := <-r.done; !errors.Is(err, ErrPositionConflict) || !strings.Contains(err.Error(), "snapshot: initial") {
		t.Fatalf("Run = %v, want ErrPositionConflict suggesting a resync", err)
	}
	close(r.done)

	cfg.Snapshot = SnapshotInitial
	r = e.start(cfg)
	testwait.Until(t, 20*time.Second, "the resync", func() bool { return e.streamCount() == 2+1+2 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	compareState(t, "t", replay(msgs)["t"], e.tableState("t", "SELECT id, v FROM t"))
}

// TestBatchSizeFollowsTheBus: by default a source batches as much as the bus
// accepts, and a configured batch above that is refused at New, naming the
// setting, instead of failing at the first large transaction.
func TestBatchSizeFollowsTheBus(t *testing.T) {
	e := newEnv(t)
	pub := BusPublisher(e.pub)
	cfg := e.config("limits", "t")
	src, err := New(cfg, pub, e.bus, e.topo, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if src.cfg.BatchMaxMessages != e.pub.MaxBatch() || src.cfg.MaxInFlight != max(10000, 4*e.pub.MaxBatch()) {
		t.Fatalf("defaults: batch %d, in flight %d; want %d and %d", src.cfg.BatchMaxMessages, src.cfg.MaxInFlight, e.pub.MaxBatch(), max(10000, 4*e.pub.MaxBatch()))
	}
	cfg.BatchMaxMessages = e.pub.MaxBatch() + 1
	if _, err := New(cfg, pub, e.bus, e.topo, Options{Logger: testLogger()}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "batchMaxMessages") {
		t.Fatalf("a batch above the bus's limit: want ErrConfig naming batchMaxMessages, got %v", err)
	}
}
