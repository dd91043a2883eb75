package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/pkg/bus"
)

// Replay reads the matching history in order up to Through, stops there
// and reports what it covers; it leaves no consumer behind.
func TestReplayReadsMatchingHistoryThroughASequence(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}})
	ctx := context.Background()
	for i := 1; i <= 60; i++ {
		subj := "r.a." + fmt.Sprint(i)
		if i%3 == 0 {
			subj = "r.b." + fmt.Sprint(i)
		}
		if _, err := e.js.Publish(ctx, subj, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	read := func(o bus.ReplayOptions) ([]uint64, uint64) {
		t.Helper()
		var seqs []uint64
		covered, err := e.c.Replay(ctx, o, func(d *bus.Delivery) error {
			if string(d.Data) != fmt.Sprint(d.StreamSeq) {
				return fmt.Errorf("sequence %d carries %q", d.StreamSeq, d.Data)
			}
			seqs = append(seqs, d.StreamSeq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seqs, covered
	}
	seqs, covered := read(bus.ReplayOptions{Stream: "R", FilterSubjects: []string{"r.b.>"}, Through: 31, Batch: 4})
	want := []uint64{3, 6, 9, 12, 15, 18, 21, 24, 27, 30}
	if !slices.Equal(seqs, want) || covered != 31 {
		t.Fatalf("replay through 31 of r.b.>: %v covering %d, want %v covering 31", seqs, covered, want)
	}
	seqs, covered = read(bus.ReplayOptions{Stream: "R"})
	if len(seqs) != 60 || covered != 60 || seqs[59] != 60 {
		t.Fatalf("replay of everything: %d messages covering %d", len(seqs), covered)
	}
	// Nothing matches: returns at once, covering the stream's end.
	seqs, covered = read(bus.ReplayOptions{Stream: "R", FilterSubjects: []string{"r.c.>"}})
	if len(seqs) != 0 || covered != 60 {
		t.Fatalf("replay of r.c.>: %v covering %d", seqs, covered)
	}
	// fn's error ends the replay and comes back as is.
	stop := errors.New("stop")
	if _, err := e.c.Replay(ctx, bus.ReplayOptions{Stream: "R"}, func(*bus.Delivery) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("err %v, want the callback's", err)
	}
	if _, err := e.c.Replay(ctx, bus.ReplayOptions{Stream: "NOPE"}, func(*bus.Delivery) error { return nil }); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Fatalf("err %v, want ErrStreamNotFound", err)
	}
	info, err := e.js.Stream(ctx, "R")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := info.Info(ctx); err != nil || st.State.Consumers != 0 {
		t.Fatalf("%v consumers left on the stream after the replays (%v)", st.State.Consumers, err)
	}
	if floor, err := e.c.ConsumerAckFloor(ctx, "R", "none"); err != nil || floor != 0 {
		t.Fatalf("ack floor of a missing consumer: %d, %v", floor, err)
	}
}
