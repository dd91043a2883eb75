package queryservice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// A stale owner stores nothing: another instance claims the query's fence
// (as a standby that took the lease over while this owner was paused would)
// and the owner, which still believes it holds the query, keeps receiving
// changes. None of its results is stored after the claim; it steps down,
// stands by, takes the query back once its lease is free again (a newer
// lease), claims the fence anew and continues from the output with no gap
// and no double. Without the fence on every result, its results would
// follow the other instance's claim directly.
func TestStaleOwnerStoresNothingAfterAnotherClaim(t *testing.T) {
	f := newFixture(t)
	w := newWorkload(3, "shop")
	msgs := f.changes(t, w, 100)
	f.publish(t, msgs)
	s := f.start(t, filterQuery, "instance-a")
	s.waitRunning(t)
	f.waitFolded(t, filterQuery.spec.ID, reference(t, filterQuery.spec, msgs))

	// The other instance's claim, with the next lease token (a standby
	// that acquired the lease after this one's expired would hold it).
	ctx := context.Background()
	fenceSubject := f.topo.QueryFence(bus.Token(filterQuery.spec.ID))
	other, err := f.conn.ClaimFence(ctx, f.topo.Results.Name, fenceSubject, "instance-b", s.comp.LeaseToken()+1)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		more := f.changes(t, w, 40)
		f.publish(t, more)
		msgs = append(msgs, more...)
	}
	// The owner is refused, steps down, and runs the query again under a
	// newer lease and claim; then every change is reflected once.
	f.waitFolded(t, filterQuery.spec.ID, reference(t, filterQuery.spec, msgs))

	// Read claims and results in stream order: between the other claim
	// and the owner's next claim there is no result.
	type entry struct {
		seq    uint64
		claim  string // holder, for a claim
		result string // query:seq, for a result
	}
	var log []entry
	if _, err := f.conn.Replay(ctx, bus.ReplayOptions{
		Stream:         f.topo.Results.Name,
		FilterSubjects: []string{f.topo.ResultSubject(bus.Token(filterQuery.spec.ID)), fenceSubject},
	}, func(d *bus.Delivery) error {
		if d.Subject == fenceSubject {
			var c bus.FenceClaim
			if err := json.Unmarshal(d.Data, &c); err != nil {
				return fmt.Errorf("claim at %d: %w", d.StreamSeq, err)
			}
			log = append(log, entry{seq: d.StreamSeq, claim: c.Holder})
			return nil
		}
		log = append(log, entry{seq: d.StreamSeq, result: d.ID})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var afterOther []string
	sawOther, reclaimed := false, false
	for _, e := range log {
		switch {
		case e.seq == other.Sequence():
			sawOther = true
		case sawOther && !reclaimed && e.claim == "instance-a":
			reclaimed = true
		case sawOther && !reclaimed && e.result != "":
			afterOther = append(afterOther, e.result)
		}
	}
	if !sawOther || !reclaimed {
		t.Fatalf("claims and results %+v: want the other claim (seq %d), then a new claim of instance-a", log, other.Sequence())
	}
	if len(afterOther) > 0 {
		t.Fatalf("results stored after another instance's claim, before the owner claimed again: %s", strings.Join(afterOther, " "))
	}
	testwait.Until(t, 10*time.Second, "the step-down is counted", func() bool {
		return gatherAll(t, s.reg)["tributary_component_step_downs_total"] >= 1
	})
}

// gatherAll sums each counter family of reg over its labels.
func gatherAll(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[mf.GetName()] += c.GetValue()
			}
		}
	}
	return out
}
