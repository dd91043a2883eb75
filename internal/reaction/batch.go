package reaction

import (
	"context"

	"github.com/tributary/tributary/pkg/change"
)

// BatchReaction is an optional ability of a Reaction (found by type
// assertion): applying several result messages at once, for throughput.
//
// ReactBatch applies rs, which are in delivery order (each query's results
// in seq order, queries possibly mixed), all or nothing: nil means every
// result's effect is done (results already applied are skipped, as React
// skips them), an error means none is. A permanent error means at least
// one result can never succeed: the caller then applies the results one
// at a time with React to find and dead-letter it, without holding back
// the others.
type BatchReaction interface {
	Reaction
	ReactBatch(ctx context.Context, rs []*change.Result) error
}
