package pgsource

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// TestFullStreamDegradesAndResumes: when the changes stream reaches its
// maxBytes the source pauses, is Degraded naming the full stream, and
// confirms nothing that is not stored; after an operator's purge it resumes
// by itself, and every change is stored exactly once, in order.
func TestFullStreamDegradesAndResumes(t *testing.T) {
	e := newEnv(t)
	// The operator caps the changes stream; applying the topology updates
	// the existing stream.
	capped, err := streams.Default("trib", streams.Options{Changes: streams.Limits{MaxBytes: 64 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bus.EnsureTopology(e.ctx, capped); err != nil {
		t.Fatal(err)
	}
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	cfg := e.config("full", "t")
	cfg.Snapshot = SnapshotNever
	cfg.BatchMaxMessages = 20
	cfg.MaxInFlight = 40
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	// About 560 bytes a change: the cap holds about 115 of the 200, and
	// the rest fits after one purge.
	const rows = 200
	e.exec(`INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, $1::int) g`, rows)
	want := fmt.Sprintf("stream %s is full (maxBytes %d", e.topo.Changes.Name, 64<<10)
	testwait.Until(t, 20*time.Second, "Degraded naming the full stream", func() bool {
		st := r.src.Status()
		return st.State == StateDegraded && strings.Contains(st.Reason, want)
	})
	// Paused: the stream holds part of the transaction, and the slot does
	// not confirm it.
	before := e.messages()
	if len(before) == 0 || len(before) >= rows {
		t.Fatalf("while full the stream holds %d changes", len(before))
	}
	commitLSN, _, err := change.ParsePGPosition(before[0].env.Position)
	if err != nil {
		t.Fatal(err)
	}
	if confirmed, _, _ := e.slotState(cfg.SlotName); confirmed >= commitLSN {
		t.Fatalf("slot confirmed %s, the transaction at %s of which the stream holds %d changes of %d",
			lsnString(confirmed), lsnString(commitLSN), len(before), rows)
	}
	if st := r.src.Status(); st.State != StateDegraded {
		t.Fatalf("state %s while the stream is full", st.State)
	}

	// The operator purges; the source resumes by itself.
	s, err := e.js.Stream(e.ctx, e.topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(e.ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "every change", func() bool { return len(before)+int(e.streamCount()) == rows })
	testwait.Until(t, 20*time.Second, "streaming again", func() bool { return r.src.Status().State == StateStreaming })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := append(before, e.messages()...)
	checkStreamInvariants(t, msgs)
	compareState(t, "t", replay(msgs)["t"], e.tableState("t", "SELECT id, v FROM t"))
}
