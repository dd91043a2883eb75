package pgsource

import (
	"errors"
	"fmt"
	"sync/atomic"
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

// gateSecond holds the second StageBatch until release is closed.
type gateSecond struct {
	Publisher
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (p *gateSecond) StageBatch(msgs []bus.Message) (StagedBatch, error) {
	if p.calls.Add(1) == 2 {
		close(p.entered)
		<-p.release
	}
	return p.Publisher.StageBatch(msgs)
}

// A source stopping gracefully (its lease ended) whose last batch is
// refused by the fence returns bus.ErrFenced without a final status update:
// not even the changes stored before the fence refused it are confirmed
// (the new owner skips them as stored), and although DropSlotOnStop is set
// the slot is left to the instance that claimed the source.
func TestFencedDuringStopConfirmsNothingAndKeepsTheSlot(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	cfg := e.config("fencedstop", "t")
	cfg.Snapshot = SnapshotNever
	cfg.DropSlotOnStop = true
	cfg.StatusInterval = time.Hour // positions are confirmed only by the final status update
	fence := e.topo.SourceFence(bus.Token(cfg.ID))
	fa, err := e.bus.ClaimFence(e.ctx, e.topo.Changes.Name, fence, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	pub := &gateSecond{Publisher: BusPublisher(e.pub, bus.WithFence(fa)), entered: make(chan struct{}), release: make(chan struct{})}
	a := e.startWith(cfg, pub)
	testwait.Until(t, 30*time.Second, "source a streaming", func() bool {
		return a.src.Status().State == StateStreaming
	})
	confirmedAtStart, _, _ := e.slotState(cfg.SlotName)
	// One transaction each: one batch each.
	e.exec(`INSERT INTO t SELECT g, g FROM generate_series(1, 10) g`)
	testwait.Until(t, 30*time.Second, "the first changes stored", func() bool { return len(e.messages()) == 10 })
	e.exec(`INSERT INTO t SELECT g, g FROM generate_series(11, 20) g`)
	<-pub.entered // the second batch is held before it is staged
	if _, err := e.bus.ClaimFence(e.ctx, e.topo.Changes.Name, fence, "b", 2); err != nil {
		t.Fatal(err)
	}
	a.cancel()
	testwait.Until(t, 30*time.Second, "source a stopping", func() bool {
		return a.src.Status().State == StateStopping
	})
	close(pub.release)
	if err := a.stop(); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("Run returned %v, want bus.ErrFenced", err)
	}
	if n := len(e.messages()); n != 10 {
		t.Fatalf("%d changes stored, want the 10 stored before the fence refused the source", n)
	}
	confirmed, _, ok := e.slotState(cfg.SlotName)
	if !ok {
		t.Fatal("the fenced source dropped the slot")
	}
	if confirmed != confirmedAtStart {
		t.Fatalf("the fenced source confirmed %s (at its start: %s): it confirmed after the fence refused it",
			lsnString(confirmed), lsnString(confirmedAtStart))
	}
}
