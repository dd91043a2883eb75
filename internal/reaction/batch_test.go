package reaction_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// guardedPostgres is the postgres kind wrapped in its gap check, as the
// reactor runs it.
func guardedPostgres(t *testing.T, g *pgTarget, id string) *reaction.GapGuard {
	t.Helper()
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	guard, err := reaction.GuardGaps(id, p, reaction.GapOptions{Policy: config.OnGapStop})
	if err != nil {
		t.Fatal(err)
	}
	return guard
}

// offsets reads the offset rows of reaction id, by query.
func (g *pgTarget) offsets(t testing.TB, id string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	var exists bool
	if err := g.db.QueryRow(t.Context(), `SELECT to_regclass('tributary_reaction_offsets') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists { // nothing applied yet
		return out
	}
	rows, err := g.db.Query(t.Context(), `SELECT query, seq FROM tributary_reaction_offsets WHERE reaction = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var seq int64
		if err := rows.Scan(&q, &seq); err != nil {
			t.Fatal(err)
		}
		out[q] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Many results of two queries, through the real consumer, reach the
// (gap-guarded) postgres kind in batches, several sharing a transaction;
// each is applied once, each query's in seq order, and the offset rows end
// at the last seqs.
func TestPostgresBatchesThroughConsumerApplyEachOnceInOrder(t *testing.T) {
	e := newBusEnv(t)
	g := newPGTarget(t)
	// The transaction that inserted each effect row.
	g.exec(`ALTER TABLE effects ADD COLUMN tx bigint NOT NULL DEFAULT txid_current()`)
	const n = 150
	for seq := uint64(1); seq <= n; seq++ {
		e.publishResult(reactiontest.Result("q1", seq))
		e.publishResult(reactiontest.Result("q2", seq))
	}
	e.consume("sql", []string{"q1", "q2"}, guardedPostgres(t, g, "sql"))
	testwait.Until(t, 30*time.Second, "both offset rows at the last seq", func() bool {
		o := g.offsets(t, "sql")
		return o["q1"] == n && o["q2"] == n
	})
	next := map[string]uint64{"q1": 1, "q2": 1}
	for _, ef := range g.effects(t) {
		if ef.Seq != next[ef.Query] {
			t.Fatalf("%s: effect of seq %d, want %d (once each, in order)", ef.Query, ef.Seq, next[ef.Query])
		}
		next[ef.Query]++
	}
	if next["q1"] != n+1 || next["q2"] != n+1 {
		t.Fatalf("effects end at %v, want %d per query", next, n)
	}
	var txs int
	if err := g.db.QueryRow(t.Context(), `SELECT count(DISTINCT tx) FROM effects`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs*10 > 2*n {
		t.Fatalf("%d results took %d transactions: not batched", 2*n, txs)
	}
	if dls := e.deadLetters("sql"); len(dls) != 0 {
		t.Fatalf("dead letters %+v", dls)
	}
}

// In a batch, a result the target refuses for good (a NULL the table
// forbids) and a message that is no result are dead-lettered alone: the
// results around them are applied, once and in order, and the one after
// the refused result is no gap.
func TestPostgresBatchPoisonIsDeadLetteredAlone(t *testing.T) {
	e := newBusEnv(t)
	g := newPGTarget(t)
	for seq := uint64(1); seq <= 20; seq++ {
		r := reactiontest.Result("q1", seq)
		if seq == 10 {
			r = &change.Result{Query: "q1", Seq: 10, Added: []change.Row{{"q": nil, "seq": 10, "name": "bad"}}}
		}
		e.publishResult(r)
		if seq == 15 {
			m := nats.NewMsg(e.topo.ResultSubject(bus.Token("q1")))
			m.Data = []byte(`{"query":"q1","seq":"not a number"}`)
			m.Header.Set(jetstream.MsgIDHeader, "junk")
			if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.consume("sql", []string{"q1"}, guardedPostgres(t, g, "sql"))
	testwait.Until(t, 30*time.Second, "the offset row at 20", func() bool { return g.offsets(t, "sql")["q1"] == 20 })
	var got []uint64
	for _, ef := range g.effects(t) {
		got = append(got, ef.Seq)
	}
	var want []uint64
	for seq := uint64(1); seq <= 20; seq++ {
		if seq != 10 {
			want = append(want, seq)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("effects %v, want %v", got, want)
	}
	testwait.Until(t, 10*time.Second, "two dead letters", func() bool { return len(e.deadLetters("sql")) >= 2 })
	var ids []string
	for _, dl := range e.deadLetters("sql") {
		ids = append(ids, dl.MsgID)
	}
	if strings.Join(ids, " ") != "q1:10 junk" {
		t.Fatalf("dead letters %v, want q1:10 junk", ids)
	}
}

// A gap in the middle of a batch holds the result after it (stop): the
// results before it are applied, nothing after; once the operator moves
// the offset row past it, the rest follows.
func TestPostgresBatchGapInTheMiddleHolds(t *testing.T) {
	e := newBusEnv(t)
	g := newPGTarget(t)
	d := &degradations{reasons: map[string]string{}}
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	guard, err := reaction.GuardGaps("sql", p, reaction.GapOptions{Policy: config.OnGapStop, Degrade: d.degrade})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 40; seq++ {
		if seq != 21 {
			e.publishResult(reactiontest.Result("q1", seq))
		}
		e.publishResult(reactiontest.Result("q2", seq))
	}
	e.consume("sql", []string{"q1", "q2"}, guard)
	testwait.Until(t, 20*time.Second, "the gap reported", func() bool { return d.get("gap q1") != "" })
	if r := d.get("gap q1"); !strings.Contains(r, "seq 22 follows 20") {
		t.Fatalf("reason %q", r)
	}
	testwait.Until(t, 10*time.Second, "the results before the gap applied", func() bool { return g.offsets(t, "sql")["q1"] == 20 })
	if o := g.offsets(t, "sql"); o["q2"] > 21 {
		t.Fatalf("offsets %v: results after the held one applied", o)
	}
	g.exec(`UPDATE tributary_reaction_offsets SET seq = 21 WHERE reaction = 'sql' AND query = 'q1'`)
	testwait.Until(t, 20*time.Second, "the rest applied", func() bool {
		o := g.offsets(t, "sql")
		return o["q1"] == 40 && o["q2"] == 40
	})
	if n := len(g.effects(t)); n != 39+40 {
		t.Fatalf("%d effects, want %d", n, 79)
	}
	testwait.Until(t, 5*time.Second, "Degraded cleared", func() bool { return d.get("gap q1") == "" })
}
