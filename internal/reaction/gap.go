package reaction

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// ErrSeqGap: a query's next result is not the one after the last one the
// reaction applied (results are missing: retention removed them, or a
// producer skipped a seq). Under the stop policy it is retryable: the
// result stays unacknowledged and is retried in place until an operator
// acts.
var ErrSeqGap = errors.New("gap in the query's result sequence")

// SeqKeeper is an optional ability of a Reaction (found by type
// assertion): it keeps, in its target, the last seq it applied per query
// (the postgres kind's offset row, the sse kind's result sets). The gap
// check reads it instead of remembering seqs in memory, so it holds across
// restarts and sees an operator's change (an offset row moved past a gap).
type SeqKeeper interface {
	// AppliedSeq returns the last seq applied for query; ok is false when
	// the target holds no position for it (nothing applied yet).
	AppliedSeq(ctx context.Context, query string) (seq uint64, ok bool, err error)
}

// GapOptions tune GuardGaps.
type GapOptions struct {
	// Policy is config.OnGapStop (default) or config.OnGapResync.
	Policy string
	// Degrade reports a gap to the reaction's component (cause, reason;
	// an empty reason clears it). Optional.
	Degrade func(cause, reason string)
	// DeadLettered, when set, reports whether every seq from..to of query
	// is in the reaction's dead-letter stream (DeadLetteredIn). A gap made
	// only of dead-lettered results is then no gap: it covers a restart
	// between a dead letter and the next result. Optional.
	DeadLettered func(ctx context.Context, query string, from, to uint64) (bool, error)
	// Logger and Registerer default to discarding and a private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DeadLetteredIn is GapOptions.DeadLettered over the dead-letter stream of
// reaction id's consumer (ConsumerOptions): it lists the reaction's dead
// letters (only when a gap is found) and looks for the results' ids.
func DeadLetteredIn(conn *bus.Conn, topo streams.Topology, id string) func(ctx context.Context, query string, from, to uint64) (bool, error) {
	subject := topo.DeadLetterSubject(topo.Results.Name, "reaction_"+bus.KeyToken(id))
	return func(ctx context.Context, query string, from, to uint64) (bool, error) {
		dls, err := conn.ListDeadLetters(ctx, topo.DeadLetters.Name, subject)
		if err != nil {
			return false, err
		}
		if to < from || to-from+1 > uint64(len(dls)) {
			return false, nil
		}
		ids := make(map[string]bool, len(dls))
		for _, d := range dls {
			ids[d.MsgID] = true
		}
		for seq := from; seq <= to; seq++ {
			if !ids[query+":"+strconv.FormatUint(seq, 10)] {
				return false, nil
			}
		}
		return true, nil
	}
}

// GapGuard checks that each query's results reach the reaction without a
// gap in seq and applies the reaction's gap policy (see GuardGaps). It is a
// BatchReaction (ReactBatch); the consumer hands it batches only when the
// guarded reaction is one too (Consume).
type GapGuard struct {
	id      string
	r       Reaction
	keeper  SeqKeeper // nil: seqs remembered in memory
	policy  string
	degrade func(cause, reason string)
	deadIn  func(ctx context.Context, query string, from, to uint64) (bool, error)
	log     *slog.Logger
	gaps    prometheus.Counter
	blocked *prometheus.GaugeVec

	mu      sync.Mutex
	last    map[string]uint64 // query -> last seq applied (in memory)
	dead    map[string]uint64 // query -> last seq that failed permanently (dead-lettered)
	pending map[string]uint64 // query -> seq held back by a gap (stop), or reported (resync)
}

// GuardGaps wraps r with the gap check of reaction id. The last seq per
// query comes from r when it is a SeqKeeper, otherwise from memory (the
// first result of a query after a start sets it, so a gap across a restart
// is not seen by such kinds). A result whose seq is above the last plus
// one is a gap: it is logged with both numbers, counted
// (tributary_reaction_seq_gaps_total) and reported through Degrade, then
// handled by the policy:
//
//   - stop: React returns an error wrapping ErrSeqGap (retryable): the
//     ordered consumer retries the result in place, never skipping it,
//     until an operator acts (moves the kind's position past the gap, or
//     restarts a kind without one, or switches the policy).
//     tributary_reaction_seq_gap_blocked is 1 meanwhile.
//   - resync: a reset message (the query's whole result set) would let the
//     reaction rebuild its target; the result format has none yet, so the
//     reaction reports that it cannot resync (the component stays
//     Degraded until a restart) and applies the result: the target may
//     differ from the query's result until the rows involved change again.
//
// A result at or below the last seq (a redelivery) passes to r, which
// skips or repeats it as its kind does. A result r fails permanently (it
// is dead-lettered) counts as passed: the next one does not make a gap
// (after a restart in between, when the kind's position is behind it,
// DeadLettered finds it in the dead-letter stream; a result that does not
// decode never reaches the guard, so the next one is reported as a gap
// unless DeadLettered finds it).
func GuardGaps(id string, r Reaction, opts GapOptions) (*GapGuard, error) {
	switch opts.Policy {
	case "":
		opts.Policy = config.OnGapStop
	case config.OnGapStop, config.OnGapResync:
	default:
		return nil, fmt.Errorf("reaction %s: onGap %q is not %s or %s", id, opts.Policy, config.OnGapStop, config.OnGapResync)
	}
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Degrade == nil {
		opts.Degrade = func(string, string) {}
	}
	gaps, err := obs.Register(opts.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_reaction_seq_gaps_total",
		Help: "Gaps detected in a query's result seq (each counted once), by reaction.",
	}, []string{"reaction"}))
	if err != nil {
		return nil, fmt.Errorf("reaction %s: %w", id, err)
	}
	blocked, err := obs.Register(opts.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_reaction_seq_gap_blocked",
		Help: "1 while a query's results wait at a gap under onGap: stop, by reaction and query.",
	}, []string{"reaction", "query"}))
	if err != nil {
		return nil, fmt.Errorf("reaction %s: %w", id, err)
	}
	g := &GapGuard{
		id: id, r: r, policy: opts.Policy, degrade: opts.Degrade, deadIn: opts.DeadLettered, log: opts.Logger,
		gaps: gaps.WithLabelValues(id), blocked: blocked,
		last: make(map[string]uint64), dead: make(map[string]uint64), pending: make(map[string]uint64),
	}
	g.keeper, _ = r.(SeqKeeper)
	return g, nil
}

// Unwrap returns the guarded reaction.
func (g *GapGuard) Unwrap() Reaction { return g.r }

// React implements Reaction: the gap check, then the guarded reaction.
func (g *GapGuard) React(ctx context.Context, r *change.Result) error {
	if _, err := g.check(ctx, r, nil); err != nil {
		return err
	}
	err := g.r.React(ctx, r)
	g.reacted(r, err)
	return err
}

// ReactBatch implements BatchReaction: the gap check of each result in
// turn, exactly as React does (a result of the batch counts as applied for
// the ones after it), then the guarded reaction's ReactBatch (React one by
// one when it has none) over the results before the first one held back.
// Besides nil and an error of the whole batch (none applied), it returns
// a *bus.BatchError when a result is held at a gap (or its check failed):
// the results before its Index are applied, it and the rest are not.
func (g *GapGuard) ReactBatch(ctx context.Context, rs []*change.Result) error {
	seen := make(map[string]uint64) // query -> last seq passed in this batch
	n := len(rs)
	var held error
	for i, r := range rs {
		last, err := g.check(ctx, r, seen)
		if err != nil {
			n, held = i, err
			break
		}
		seen[r.Query] = max(last, r.Seq)
	}
	if n > 0 {
		if err := g.applyBatch(ctx, rs[:n]); err != nil {
			return err
		}
	}
	if held != nil {
		return &bus.BatchError{Index: n, Err: held}
	}
	return nil
}

// applyBatch applies rs, which passed the check, through the guarded
// reaction and records what became of them.
func (g *GapGuard) applyBatch(ctx context.Context, rs []*change.Result) error {
	br, ok := g.r.(BatchReaction)
	if !ok {
		for i, r := range rs {
			err := g.r.React(ctx, r)
			g.reacted(r, err)
			if err != nil {
				return &bus.BatchError{Index: i, Err: err}
			}
		}
		return nil
	}
	err := br.ReactBatch(ctx, rs)
	if err == nil {
		for _, r := range rs {
			g.reacted(r, nil)
		}
		return nil
	}
	var be *bus.BatchError
	if errors.As(err, &be) && be.Index >= 0 && be.Index < len(rs) {
		for _, r := range rs[:be.Index] {
			g.reacted(r, nil)
		}
		g.reacted(rs[be.Index], be.Err)
	}
	return err
}

// check is the gap check of r: nil lets it through (after the policy
// handled a gap), an error holds it. seen, when not nil, has the last seq
// of each query that earlier results of the same batch passed (not yet
// applied: the kind's position is behind them); it stands for lastSeq.
// It returns the seq r had to follow.
func (g *GapGuard) check(ctx context.Context, r *change.Result, seen map[string]uint64) (uint64, error) {
	last, known := seen[r.Query]
	if !known {
		var err error
		if last, known, err = g.lastSeq(ctx, r.Query); err != nil {
			return 0, err
		}
	}
	if known && r.Seq > last+1 && g.deadIn != nil {
		dead, err := g.deadIn(ctx, r.Query, last+1, r.Seq-1)
		if err != nil {
			return 0, fmt.Errorf("reaction %s: looking for the results before %s in the dead-letter stream: %w", g.id, IdempotencyKey(r), err)
		}
		if dead {
			g.log.Info("results missing before this one are dead letters: not a gap", "query", r.Query, "last_seq", last, "seq", r.Seq)
			g.mu.Lock()
			g.dead[r.Query] = max(g.dead[r.Query], r.Seq-1)
			g.mu.Unlock()
			last = r.Seq - 1
		}
	}
	if known && r.Seq > last+1 {
		if err := g.gap(r, last); err != nil {
			return 0, err
		}
	} else {
		g.resolved(r.Query, r.Seq)
	}
	return last, nil
}

// reacted records what the guarded reaction did with r (err nil: applied).
func (g *GapGuard) reacted(r *change.Result, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if bus.IsPermanent(err) {
			// The consumer dead-letters it and goes on: the next result
			// follows it, it is not a gap.
			g.dead[r.Query] = max(g.dead[r.Query], r.Seq)
		}
		return
	}
	if r.Seq > g.last[r.Query] {
		g.last[r.Query] = r.Seq
	}
}

// lastSeq is the seq the next result of query must follow: the last one
// applied (the kind's position, or memory) or dead-lettered since the
// start, whichever is later.
func (g *GapGuard) lastSeq(ctx context.Context, query string) (uint64, bool, error) {
	var seq uint64
	var ok bool
	if g.keeper != nil {
		var err error
		if seq, ok, err = g.keeper.AppliedSeq(ctx, query); err != nil {
			return 0, false, fmt.Errorf("reaction %s: reading the last applied seq of %s: %w", g.id, query, err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keeper == nil {
		seq, ok = g.last[query]
	}
	if dead, isDead := g.dead[query]; isDead && (!ok || dead > seq) {
		seq, ok = dead, true
	}
	return seq, ok, nil
}

// gap handles a result whose seq is above last+1; nil lets it through.
func (g *GapGuard) gap(r *change.Result, last uint64) error {
	missing := r.Seq - last - 1
	cause := "gap " + r.Query
	g.mu.Lock()
	first := g.pending[r.Query] != r.Seq
	g.pending[r.Query] = r.Seq
	g.mu.Unlock()
	if first {
		g.gaps.Inc()
	}
	if g.policy == config.OnGapResync {
		reason := fmt.Sprintf("results of %s jump from seq %d to %d (%d missing); cannot resync: the results carry no reset message, so the result is applied and the target may differ from the query's result until the rows involved change again",
			r.Query, last, r.Seq, missing)
		if first {
			g.log.Error("gap in the results; cannot resync (no reset message); applying the result", "query", r.Query, "last_seq", last, "seq", r.Seq, "missing", missing)
		}
		g.degrade(cause, reason)
		return nil
	}
	reason := fmt.Sprintf("results of %s stopped at a gap: seq %d follows %d (%d missing); the result is held and retried until an operator acts (onGap: stop)",
		r.Query, r.Seq, last, missing)
	if first {
		g.log.Error("gap in the results; holding the result (onGap: stop)", "query", r.Query, "last_seq", last, "seq", r.Seq, "missing", missing)
	}
	g.blocked.WithLabelValues(g.id, r.Query).Set(1)
	g.degrade(cause, reason)
	return fmt.Errorf("reaction %s: %w: %s: seq %d follows %d", g.id, ErrSeqGap, r.Query, r.Seq, last)
}

// resolved clears a stop-policy gap of query once its held result (seq)
// passes the check.
func (g *GapGuard) resolved(query string, seq uint64) {
	if g.policy != config.OnGapStop {
		return
	}
	g.mu.Lock()
	held, ok := g.pending[query]
	if ok && held == seq {
		delete(g.pending, query)
	}
	g.mu.Unlock()
	if ok && held == seq {
		g.log.Info("gap resolved: the held result passes", "query", query, "seq", seq)
		g.blocked.WithLabelValues(g.id, query).Set(0)
		g.degrade("gap "+query, "")
	}
}
