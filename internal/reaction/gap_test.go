package reaction_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// recorder applies results by remembering their seqs; with keep it is a
// SeqKeeper whose position a test can move, as an operator moves an
// offset row.
type recorder struct {
	mu      sync.Mutex
	applied []uint64
	pos     map[string]uint64
	refuse  map[uint64]bool // seqs refused for good
}

func (r *recorder) React(_ context.Context, res *change.Result) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse[res.Seq] {
		return bus.Permanentf("seq %d: %w", res.Seq, reaction.ErrTargetRejected)
	}
	r.applied = append(r.applied, res.Seq)
	if r.pos != nil && res.Seq > r.pos[res.Query] {
		r.pos[res.Query] = res.Seq
	}
	return nil
}

func (r *recorder) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.applied...)
}

type keepingRecorder struct {
	recorder
	checks int // AppliedSeq calls
}

func (r *keepingRecorder) AppliedSeq(_ context.Context, q string) (uint64, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks++
	seq, ok := r.pos[q]
	return seq, ok, nil
}

func (r *keepingRecorder) setPos(q string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pos[q] = seq
}

// degradations records the reasons a guard reports, by cause.
type degradations struct {
	mu      sync.Mutex
	reasons map[string]string
}

func (d *degradations) degrade(cause, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if reason == "" {
		delete(d.reasons, cause)
	} else {
		d.reasons[cause] = reason
	}
}

func (d *degradations) get(cause string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reasons[cause]
}

// onGap: stop holds the result after a gap unacknowledged and retried in
// place (nothing after it is applied), reports it once in the metric and
// through Degrade with both seqs; when the operator moves the kind's
// position past the gap, the held result is applied and Degraded clears.
func TestGapStopHoldsTheResultUntilTheOperatorActs(t *testing.T) {
	e := newBusEnv(t)
	rec := &keepingRecorder{recorder: recorder{pos: map[string]uint64{}}}
	reg := prometheus.NewRegistry()
	d := &degradations{reasons: map[string]string{}}
	g, err := reaction.GuardGaps("gaps", rec, reaction.GapOptions{Policy: config.OnGapStop, Degrade: d.degrade, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 5, 6} { // 3 and 4 missing
		e.publishResult(reactiontest.Result("q1", seq))
	}
	e.consume("gaps", []string{"q1"}, g)
	testwait.Until(t, 10*time.Second, "the gap reported", func() bool { return d.get("gap q1") != "" })
	reason := d.get("gap q1")
	if !strings.Contains(reason, "seq 5 follows 2") || !strings.Contains(reason, "2 missing") {
		t.Fatalf("reason %q does not name both seqs", reason)
	}
	// Held: retried (the consumer keeps calling), never applied, never
	// overtaken by 6; the gap is counted once.
	testwait.Until(t, 10*time.Second, "several retries of 5", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.checks >= 6
	})
	if v := testutil.ToFloat64(gaugeVec(t, reg)); v != 1 {
		t.Fatalf("blocked gauge %v, want 1", v)
	}
	if got := rec.seqs(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("applied %v, want [1 2]", got)
	}
	if n := counterValue(t, reg, "tributary_reaction_seq_gaps_total"); n != 1 {
		t.Fatalf("gaps counted %v, want 1", n)
	}
	// The operator moves the position past the gap.
	rec.setPos("q1", 4)
	testwait.Until(t, 10*time.Second, "5 and 6 applied", func() bool { return len(rec.seqs()) == 4 })
	if got := rec.seqs(); got[2] != 5 || got[3] != 6 {
		t.Fatalf("applied %v, want [1 2 5 6]", got)
	}
	testwait.Until(t, 5*time.Second, "Degraded cleared", func() bool { return d.get("gap q1") == "" })
	if v := testutil.ToFloat64(gaugeVec(t, reg)); v != 0 {
		t.Fatalf("blocked gauge %v after the gap was resolved, want 0", v)
	}
}

// onGap: resync without a reset message reports that it cannot and
// applies the result; a kind without a position of its own (here, the
// guard's memory) is checked too.
func TestGapResyncReportsItCannotAndGoesOn(t *testing.T) {
	e := newBusEnv(t)
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	d := &degradations{reasons: map[string]string{}}
	g, err := reaction.GuardGaps("gaps", rec, reaction.GapOptions{Policy: config.OnGapResync, Degrade: d.degrade, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 4, 5} {
		e.publishResult(reactiontest.Result("q1", seq))
	}
	e.consume("gaps", []string{"q1"}, g)
	testwait.Until(t, 10*time.Second, "every result applied", func() bool { return len(rec.seqs()) == 4 })
	reason := d.get("gap q1")
	if !strings.Contains(reason, "from seq 2 to 4") || !strings.Contains(reason, "cannot resync") {
		t.Fatalf("reason %q", reason)
	}
	if n := counterValue(t, reg, "tributary_reaction_seq_gaps_total"); n != 1 {
		t.Fatalf("gaps counted %v, want 1", n)
	}
	if _, err := reaction.GuardGaps("x", rec, reaction.GapOptions{Policy: "skip"}); err == nil || !strings.Contains(err.Error(), `onGap "skip"`) {
		t.Fatalf("bad policy: %v", err)
	}
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// gaugeVec is the blocked gauge of reaction gaps, query q1.
func gaugeVec(t testing.TB, reg *prometheus.Registry) prometheus.Collector {
	t.Helper()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tributary_reaction_seq_gap_blocked", Help: "1 while a query's results wait at a gap under onGap: stop, by reaction and query."}, []string{"reaction", "query"})
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.GaugeVec).WithLabelValues("gaps", "q1")
		}
		t.Fatal(err)
	}
	t.Fatal("the blocked gauge was not registered")
	return nil
}

// The postgres kind's offset row is the gap check's position: a gap
// across results (here: 3 never published) holds 4 under stop, with
// nothing of it applied, until the operator moves the offset row past the
// gap; then 4 and 5 are applied once, in order.
func TestGapStopWithPostgresOffsetRow(t *testing.T) {
	e := newBusEnv(t)
	g := newPGTarget(t)
	p := newPostgres(t, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
	d := &degradations{reasons: map[string]string{}}
	guard, err := reaction.GuardGaps("sql", p, reaction.GapOptions{Policy: config.OnGapStop, Degrade: d.degrade})
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 4, 5} {
		e.publishResult(reactiontest.Result("q1", seq))
	}
	e.consume("sql", []string{"q1"}, guard)
	testwait.Until(t, 20*time.Second, "the gap reported", func() bool { return d.get("gap q1") != "" })
	if r := d.get("gap q1"); !strings.Contains(r, "seq 4 follows 2") {
		t.Fatalf("reason %q", r)
	}
	// The gap can be reported (in a batch of 1, 2, 4, 5) before the
	// results ahead of it are committed: wait for those, then nothing more.
	testwait.Until(t, 20*time.Second, "1 and 2 applied", func() bool { return len(g.effects(t)) >= 2 })
	if got := g.effects(t); len(got) != 2 {
		t.Fatalf("effects %v, want 1 and 2 only", got)
	}
	g.exec(`UPDATE tributary_reaction_offsets SET seq = 3 WHERE reaction = 'sql' AND query = 'q1'`)
	testwait.Until(t, 20*time.Second, "4 and 5 applied", func() bool { return len(g.effects(t)) >= 4 })
	got := g.effects(t)
	if len(got) != 4 || got[2].Seq != 4 || got[3].Seq != 5 {
		t.Fatalf("effects %v, want seqs 1 2 4 5", got)
	}
	testwait.Until(t, 5*time.Second, "Degraded cleared", func() bool { return d.get("gap q1") == "" })
}

// A result the target refuses for good is dead-lettered and the next one
// follows it: under stop that is not a gap, even for a kind whose position
// (here the keeper's) never saw the refused seq.
func TestGapDeadLetteredResultIsNotAGap(t *testing.T) {
	e := newBusEnv(t)
	rec := &keepingRecorder{recorder: recorder{pos: map[string]uint64{}, refuse: map[uint64]bool{2: true}}}
	d := &degradations{reasons: map[string]string{}}
	g, err := reaction.GuardGaps("dl", rec, reaction.GapOptions{Policy: config.OnGapStop, Degrade: d.degrade})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		e.publishResult(reactiontest.Result("q1", seq))
	}
	e.consume("dl", []string{"q1"}, g)
	testwait.Until(t, 10*time.Second, "1 and 3 applied", func() bool { return len(rec.seqs()) == 2 })
	if got := rec.seqs(); got[0] != 1 || got[1] != 3 {
		t.Fatalf("applied %v", got)
	}
	if dls := e.deadLetters("dl"); len(dls) != 1 || dls[0].MsgID != "q1:2" {
		t.Fatalf("dead letters %+v", dls)
	}
	if r := d.get("gap q1"); r != "" {
		t.Fatalf("reported a gap: %s", r)
	}
}

// After a restart the kind's position can be behind a result that was
// dead-lettered before it: the gap check finds the missing result in the
// dead-letter stream and goes on; a result missing from both is a gap.
func TestGapDeadLetteredBeforeARestartIsNotAGap(t *testing.T) {
	e := newBusEnv(t)
	rec := &keepingRecorder{recorder: recorder{pos: map[string]uint64{"q1": 1}}}
	d := &degradations{reasons: map[string]string{}}
	g, err := reaction.GuardGaps("rs", rec, reaction.GapOptions{Policy: config.OnGapStop, Degrade: d.degrade,
		DeadLettered: reaction.DeadLetteredIn(e.conn, e.topo, "rs")})
	if err != nil {
		t.Fatal(err)
	}
	// q1:2 was dead-lettered by the previous run.
	p, err := e.conn.NewPublisher(bus.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(t.Context(), []bus.Message{{
		Subject: e.topo.DeadLetterSubject(e.topo.Results.Name, "reaction_rs"), ID: "dl-2", Data: []byte(`{}`),
		Header: map[string]string{bus.HeaderDLQReason: "refused", bus.HeaderDLQSubject: e.topo.ResultSubject("q1"),
			bus.HeaderDLQSequence: "2", bus.HeaderDLQDeliveries: "1", bus.HeaderDLQMsgID: "q1:2"}}}); err != nil {
		t.Fatal(err)
	}
	e.publishResult(reactiontest.Result("q1", 3))
	e.publishResult(reactiontest.Result("q1", 5)) // 4 is missing for good
	e.consume("rs", []string{"q1"}, g)
	testwait.Until(t, 10*time.Second, "the gap before 5 reported", func() bool { return d.get("gap q1") != "" })
	if got := rec.seqs(); len(got) != 1 || got[0] != 3 {
		t.Fatalf("applied %v, want [3]", got)
	}
	if r := d.get("gap q1"); !strings.Contains(r, "seq 5 follows 3") {
		t.Fatalf("reason %q", r)
	}
}
