package queryservice_test

import (
	"fmt"
	"testing"

	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// The changes of one transaction (positions sharing their commit part, as
// source-pg writes them: <commit LSN>/<index>) that reach the query
// together are applied as one change: one result message for the
// transaction, never the states between its changes.
func TestTransactionGivesOneResult(t *testing.T) {
	f := newFixture(t)
	order := func(id int, pos string) bus.Message {
		return f.message(t, &change.Envelope{Op: change.OpInsert, Source: "shop", TsMs: 1, Position: pos,
			Element: change.Element{Type: change.TypeNode, ID: fmt.Sprintf("orders:%d", id), Labels: []string{"orders"},
				Properties: map[string]any{"id": id, "status": "new", "total": 10 * id}}})
	}
	s := f.start(t, totalQuery, "instance-a")
	s.waitRunning(t)
	if got := f.fold(t, totalQuery.spec.ID); len(got.Messages) != 1 {
		t.Fatalf("%d result messages before any change, want the initial one", len(got.Messages))
	}
	// While the query is stopped, a transaction of three inserts and one
	// insert of its own: the restarted query gets the four at once.
	s.stop(t)
	msgs := []bus.Message{
		order(1, "00000000000000A0/00000000"), order(2, "00000000000000A0/00000001"), order(3, "00000000000000A0/00000002"),
		order(4, "00000000000000B0/00000000"),
	}
	f.publish(t, msgs)
	f.start(t, totalQuery, "instance-b")
	got := f.waitFolded(t, totalQuery.spec.ID, reference(t, totalQuery.spec, msgs))
	if len(got.Messages) != 3 {
		t.Fatalf("%d result messages, want 3 (initial, the transaction, the single insert): %+v", len(got.Messages), got.Messages)
	}
	txn := got.Messages[1]
	if len(txn.Updated) != 1 || fmt.Sprint(txn.Updated[0].Before["n"]) != "0" || fmt.Sprint(txn.Updated[0].After["n"]) != "3" {
		t.Fatalf("the transaction's result %+v: want count 0 -> 3 in one update", txn)
	}
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
