package reactiontest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// Queries are the query ids the suite's results belong to.
var Queries = []string{"q1", "q2"}

// Effect is one effect the target saw, named by the result message it came
// from.
type Effect struct {
	Query string
	Seq   uint64
}

func (e Effect) String() string { return fmt.Sprintf("%s:%d", e.Query, e.Seq) }

// Target is a reaction under test and the real target it writes to.
type Target struct {
	// Reaction consumes the results of Queries.
	Reaction reaction.Reaction
	// Effects returns the effects the target holds so far, in the order it
	// applied them, one per result message (the suite's results carry one
	// row each: {"q": query, "seq": seq, "name": ...}).
	Effects func(t testing.TB) []Effect
	// BreakPermanent makes the target refuse effects in a way sending again
	// cannot fix, until heal is called. Nil when the target cannot refuse
	// that way (the suite then checks nothing for it).
	BreakPermanent func(t testing.TB) (heal func())
	// BreakRetryable makes the target unavailable until heal is called. Nil
	// when the target cannot be made unavailable.
	BreakRetryable func(t testing.TB) (heal func())
	// Stall makes the target hang (accept and not answer) until release is
	// called. Nil when the target cannot hang.
	Stall func(t testing.TB) (release func())
}

// Kind is one reaction kind.
type Kind struct {
	// New builds a reaction over a fresh target.
	New func(t *testing.T) *Target
	// ExactlyOnce: the target holds every result's effect once even when
	// the reaction is given a result again (an offset, a dedup window). If
	// false, a repeat is allowed but must repeat an effect already held
	// under the same key (an idempotency key the target can drop).
	ExactlyOnce bool
	// Wait bounds each wait for effects to show. Default 10s.
	Wait time.Duration
}

// Result is the suite's result message seq of query: one added row.
func Result(query string, seq uint64) *change.Result {
	return &change.Result{Query: query, Seq: seq, TsMs: int64(seq),
		Added: []change.Row{{"q": query, "seq": seq, "name": fmt.Sprintf("row %d", seq)}}}
}

// Run runs the suite against k.
func Run(t *testing.T, k Kind) {
	if k.Wait == 0 {
		k.Wait = 10 * time.Second
	}
	t.Run("InOrderPerQuery", func(t *testing.T) { testInOrder(t, k) })
	t.Run("RedeliverySafe", func(t *testing.T) { testRedelivery(t, k) })
	t.Run("Classification", func(t *testing.T) { testClassification(t, k) })
	t.Run("RespectsContext", func(t *testing.T) { testContext(t, k) })
}

func react(t testing.TB, tg *Target, r *change.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tg.Reaction.React(ctx, r); err != nil {
		t.Fatalf("React(%s:%d) = %v", r.Query, r.Seq, err)
	}
}

// waitEffects waits until the target holds want (after dropping repeats
// unless exactly-once), and fails on anything else. Order matters within
// a query only: queries are independent streams.
func waitEffects(t testing.TB, k Kind, tg *Target, want []Effect) {
	t.Helper()
	var got []Effect
	testwait.Until(t, k.Wait, fmt.Sprintf("effects %v", want), func() bool {
		got = tg.Effects(t)
		if !k.ExactlyOnce {
			got = dropRepeats(got)
		}
		return len(got) >= len(want)
	})
	if len(got) != len(want) {
		t.Fatalf("target holds\n%v\nwant\n%v", got, want)
	}
	for _, q := range Queries {
		if !slices.Equal(perQuery(got, q), perQuery(want, q)) {
			t.Fatalf("query %s: target holds\n%v\nwant\n%v", q, perQuery(got, q), perQuery(want, q))
		}
	}
}

func dropRepeats(es []Effect) []Effect {
	seen := map[Effect]bool{}
	var out []Effect
	for _, e := range es {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

func perQuery(es []Effect, q string) []Effect {
	var out []Effect
	for _, e := range es {
		if e.Query == q {
			out = append(out, e)
		}
	}
	return out
}

// testInOrder interleaves two queries' results: each query's effects are
// in seq order.
func testInOrder(t *testing.T, k Kind) {
	tg := k.New(t)
	const n = 20
	var want []Effect
	for seq := uint64(1); seq <= n; seq++ {
		for _, q := range Queries {
			react(t, tg, Result(q, seq))
			want = append(want, Effect{q, seq})
		}
	}
	waitEffects(t, k, tg, want)
}

// testRedelivery gives results 3..5 again (a lost acknowledgement): the
// reaction succeeds, and the target holds each effect once (or repeats
// it under its key).
func testRedelivery(t *testing.T, k Kind) {
	tg := k.New(t)
	q := Queries[0]
	for seq := uint64(1); seq <= 5; seq++ {
		react(t, tg, Result(q, seq))
	}
	for seq := uint64(3); seq <= 5; seq++ {
		react(t, tg, Result(q, seq))
	}
	react(t, tg, Result(q, 6))
	var want []Effect
	for seq := uint64(1); seq <= 6; seq++ {
		want = append(want, Effect{q, seq})
	}
	waitEffects(t, k, tg, want)
	if !k.ExactlyOnce {
		// Repeats, if any, are of effects already held, and come after them.
		held := map[Effect]bool{}
		for _, e := range tg.Effects(t) {
			if e.Seq == 6 && held[e] {
				t.Fatalf("result %v repeated though it was given once", e)
			}
			held[e] = true
		}
	}
}

// testClassification breaks the target both ways: a permanent refusal is
// bus.Permanent, an outage is retryable and the same result succeeds once
// the target is back.
func testClassification(t *testing.T, k Kind) {
	tg := k.New(t)
	q := Queries[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	react(t, tg, Result(q, 1))
	seq := uint64(2)
	var want = []Effect{{q, 1}}
	if tg.BreakPermanent != nil {
		heal := tg.BreakPermanent(t)
		err := tg.Reaction.React(ctx, Result(q, seq))
		heal()
		if err == nil || !bus.IsPermanent(err) {
			t.Fatalf("target refusing for good: React = %v, want a permanent error", err)
		}
		if !errors.Is(err, reaction.ErrTargetRejected) {
			t.Fatalf("permanent error %v does not wrap ErrTargetRejected", err)
		}
		// The dead-lettered result is skipped; the next one applies.
		seq++
	}
	if tg.BreakRetryable != nil {
		heal := tg.BreakRetryable(t)
		err := tg.Reaction.React(ctx, Result(q, seq))
		if err == nil || bus.IsPermanent(err) {
			heal()
			t.Fatalf("target unavailable: React = %v, want a retryable error", err)
		}
		heal()
		react(t, tg, Result(q, seq))
		want = append(want, Effect{q, seq})
		seq++
	}
	react(t, tg, Result(q, seq))
	want = append(want, Effect{q, seq})
	waitEffects(t, k, tg, want)
}

// testContext: a cancelled context makes no effect and a retryable error;
// a hanging target is given up when the context ends.
func testContext(t *testing.T, k Kind) {
	tg := k.New(t)
	q := Queries[0]
	react(t, tg, Result(q, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tg.Reaction.React(ctx, Result(q, 2)); err == nil || bus.IsPermanent(err) {
		t.Fatalf("React with a cancelled context = %v, want a retryable error", err)
	}
	if tg.Stall != nil {
		release := tg.Stall(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := tg.Reaction.React(ctx, Result(q, 2))
		took := time.Since(start)
		cancel()
		release()
		if err == nil || bus.IsPermanent(err) {
			t.Fatalf("React against a hanging target = %v, want a retryable error", err)
		}
		if took > 5*time.Second {
			t.Fatalf("React took %s after its context ended", took)
		}
	}
	react(t, tg, Result(q, 2))
	waitEffects(t, k, tg, []Effect{{q, 1}, {q, 2}})
}
