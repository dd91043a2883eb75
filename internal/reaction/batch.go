package reaction

import (
	"context"
	"errors"
	"log/slog"

	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// BatchReaction is an optional ability of a Reaction (found by type
// assertion): applying several result messages at once, for throughput.
//
// ReactBatch applies rs, which are in delivery order (each query's results
// in seq order, queries possibly mixed), all or nothing: nil means every
// result's effect is done (results already applied are skipped, as React
// skips them), an error means none is, except a *bus.BatchError, which
// means rs[:Index] are applied and rs[Index] failed with its Err (the rest
// not done). A permanent error (not a BatchError) means at least one
// result can never succeed: the caller then applies the results one at a
// time with React to find and dead-letter it, without holding back the
// others.
type BatchReaction interface {
	Reaction
	ReactBatch(ctx context.Context, rs []*change.Result) error
}

// batchReaction returns r as a BatchReaction when it applies batches
// itself: it is one and, when it wraps another reaction (Unwrap, as the
// GapGuard does), so is the wrapped one.
func batchReaction(r Reaction) (BatchReaction, bool) {
	br, ok := r.(BatchReaction)
	if !ok {
		return nil, false
	}
	if w, ok := r.(interface{ Unwrap() Reaction }); ok {
		if _, ok := batchReaction(w.Unwrap()); !ok {
			return nil, false
		}
	}
	return br, true
}

// BatchHandler adapts a BatchReaction to a bus batch handler: it decodes
// the messages strictly and hands the results to ReactBatch. A message
// that does not decode fails permanently (dead letter) at its index, after
// the results before it are applied. When ReactBatch fails permanently,
// the results are applied one at a time with React: the first that fails
// (permanently: dead letter; or retryably: retried in place) is the
// failing index, so one bad result does not dead-letter its neighbours.
func BatchHandler(r BatchReaction, log *slog.Logger) bus.BatchHandler {
	if log == nil {
		log = logging.Discard()
	}
	return func(ctx context.Context, ds []*bus.Delivery) error {
		rs := make([]*change.Result, 0, len(ds))
		var bad error
		for _, d := range ds {
			res, err := DecodeResult(d.Data)
			if err != nil {
				bad = err
				break
			}
			rs = append(rs, res)
		}
		if len(rs) > 0 {
			if err := applyBatch(ctx, r, rs, log); err != nil {
				return err
			}
		}
		if bad != nil {
			return &bus.BatchError{Index: len(rs), Err: bus.Permanent(bad)}
		}
		return nil
	}
}

// applyBatch is ReactBatch of rs, falling back to React one at a time
// when the batch fails permanently.
func applyBatch(ctx context.Context, r BatchReaction, rs []*change.Result, log *slog.Logger) error {
	err := r.ReactBatch(ctx, rs)
	var be *bus.BatchError
	if err == nil || errors.As(err, &be) || !bus.IsPermanent(err) {
		return err
	}
	log.Warn("a batch of results failed permanently; applying them one at a time to find the bad one",
		"results", len(rs), "first", IdempotencyKey(rs[0]), "err", err)
	for i, res := range rs {
		if err := r.React(ctx, res); err != nil {
			return &bus.BatchError{Index: i, Err: err}
		}
	}
	return nil
}
