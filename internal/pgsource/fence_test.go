package pgsource

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// A source whose fence another instance claimed stops at its next batch:
// Run returns at once with bus.ErrFenced (no retry), nothing it published
// is stored after the other claim, and it confirms nothing more to
// Postgres. The new owner, fenced with its own claim, then streams every
// change exactly once, in commit order.
func TestFencedSourceStopsAndConfirmsNothing(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	cfg := e.config("fenced", "t")
	cfg.Snapshot = SnapshotNever
	fence := e.topo.SourceFence(bus.Token(cfg.ID))

	fa, err := e.bus.ClaimFence(e.ctx, e.topo.Changes.Name, fence, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	a := e.startWith(cfg, BusPublisher(e.pub, bus.WithFence(fa)))
	testwait.Until(t, 30*time.Second, "source a streaming", func() bool {
		return a.src.Status().State == StateStreaming
	})
	e.burst(1, 50)
	testwait.Until(t, 30*time.Second, "a's 50 changes stored", func() bool { return len(e.messages()) == 50 })

	// Another instance takes over: it claims the fence with a newer token.
	fb, err := e.bus.ClaimFence(e.ctx, e.topo.Changes.Name, fence, "b", 2)
	if err != nil {
		t.Fatal(err)
	}
	before := e.walLSN()
	e.burst(51, 50)
	var runErr error
	select {
	case runErr = <-a.done:
		close(a.done)
	case <-time.After(30 * time.Second):
		t.Fatal("the fenced source did not stop within 30s")
	}
	if !errors.Is(runErr, bus.ErrFenced) {
		t.Fatalf("Run of the fenced source returned %v, want bus.ErrFenced", runErr)
	}
	if st := a.src.Status(); st.State != StateFailed {
		t.Fatalf("fenced source's state %s, want %s", st.State, StateFailed)
	}
	for _, m := range e.messages() {
		if m.seq > fb.Sequence() {
			t.Fatalf("%s stored at sequence %d, after b's claim at %d", m.id, m.seq, fb.Sequence())
		}
	}
	confirmed, active, ok := e.slotState(cfg.SlotName)
	if !ok {
		t.Fatal("the slot is gone")
	}
	if confirmed > before {
		t.Fatalf("the fenced source confirmed %s, beyond %s where the changes it could not store begin",
			lsnString(confirmed), lsnString(before))
	}
	testwait.Until(t, 30*time.Second, "the fenced source's walsender to exit", func() bool {
		_, active, _ = e.slotState(cfg.SlotName)
		return !active
	})

	// The new owner streams everything once, in order.
	b := e.startWith(cfg, BusPublisher(e.pub, bus.WithFence(fb)))
	testwait.Until(t, 30*time.Second, "every change stored", func() bool { return len(e.messages()) >= 100 })
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != 100 {
		t.Fatalf("%d changes stored, want 100", len(msgs))
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("t:%d", i+1); m.env.Element.ID != want {
			t.Fatalf("change %d is of %s, want %s", i, m.env.Element.ID, want)
		}
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
}
