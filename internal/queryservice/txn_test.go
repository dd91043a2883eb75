package queryservice_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// The changes of one transaction (positions sharing their commit part, as
// source-pg writes them: <commit LSN>/<index>) that reach the query
// together are applied as one change: one result message for the
// transaction, never the states between its changes. The consumer decides
// how many changes one batch holds (a pull may return fewer than are
// stored), so each attempt checks, through the handler-call count, that the
// four changes came in one batch, and tries again when they did not.
func TestTransactionGivesOneResult(t *testing.T) {
	f := newFixture(t)
	next := 0
	order := func(pos string) bus.Message {
		next++
		return f.message(t, &change.Envelope{Op: change.OpInsert, Source: "shop", TsMs: 1, Position: pos,
			Element: change.Element{Type: change.TypeNode, ID: fmt.Sprintf("orders:%d", next), Labels: []string{"orders"},
				Properties: map[string]any{"id": next, "status": "new", "total": 10 * next}}})
	}
	s := f.start(t, totalQuery, "instance-a")
	s.waitRunning(t)
	var sent []bus.Message
	for attempt := 1; ; attempt++ {
		before := len(f.fold(t, totalQuery.spec.ID).Messages)
		// While the query is stopped, a transaction of three inserts and
		// one insert of its own: the restarted query gets the four at once.
		s.stop(t)
		lsn := fmt.Sprintf("%016X", 0xA0*attempt)
		msgs := []bus.Message{
			order(lsn + "/00000000"), order(lsn + "/00000001"), order(lsn + "/00000002"),
			order(fmt.Sprintf("%016X/00000000", 0xA0*attempt+1)),
		}
		f.publish(t, msgs)
		sent = append(sent, msgs...)
		s = f.start(t, totalQuery, "instance-a")
		got := f.waitFolded(t, totalQuery.spec.ID, reference(t, totalQuery.spec, sent))
		if calls := handlerCalls(t, s.reg); calls != 1 {
			if attempt == 8 {
				t.Fatalf("in 8 attempts the four changes never reached the query in one batch (last: %d batches)", calls)
			}
			continue
		}
		fresh := got.Messages[before:]
		if len(fresh) != 2 {
			t.Fatalf("attempt %d: %d result messages for a transaction and a single change in one batch, want 2: %+v", attempt, len(fresh), fresh)
		}
		n0, n1 := fresh[0].Updated[0].Before["n"], fresh[0].Updated[0].After["n"]
		if fmt.Sprint(n1) != fmt.Sprint(toInt(t, n0)+3) {
			t.Fatalf("attempt %d: the transaction's result %+v: want count +3 in one update", attempt, fresh[0])
		}
		return
	}
}

// handlerCalls is how many times the query's input consumer called its
// batch handler (the count of its handler-duration histogram).
func handlerCalls(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tributary_bus_handler_duration_seconds" {
			continue
		}
		var n uint64
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
		return n
	}
	return 0
}

func toInt(t *testing.T, v any) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(fmt.Sprint(v), &n); err != nil {
		t.Fatalf("%v is not a count: %v", v, err)
	}
	return n
}

// A query restarted before its durable consumer acknowledged any change,
// with its initial result covering no change, must apply the changes
// published meanwhile (a replay "through sequence 0" once read the whole
// stream silently, and the live consumer then skipped every change as
// covered: their results were never published).
func TestRestartBeforeAnyChangeLosesNothing(t *testing.T) {
	f := newFixture(t)
	s := f.start(t, filterQuery, "instance-a")
	s.waitRunning(t)
	s.stop(t)
	w := newWorkload(9, "shop")
	msgs := f.changes(t, w, 60)
	f.publish(t, msgs)
	f.start(t, filterQuery, "instance-a")
	f.waitFolded(t, filterQuery.spec.ID, reference(t, filterQuery.spec, msgs))
}
