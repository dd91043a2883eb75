package reaction

import (
	"context"

	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
)

// ConsumeStep is the start step that runs r over its durable consumer. A
// supervised worker of comp stops fetching as soon as the component's
// lease is lost or it shuts down; the step's undo drains in-flight results
// within the stop deadline (finished ones are acked, the rest Nak'd for the
// next instance). Unless opts has its own Degrade, the consumer reports its
// problems (a result being retried, a dead letter that cannot be stored, a
// consumer deleted on the server) through comp.Degrade.
//
// The consumer is Consume's.
func ConsumeStep(conn *bus.Conn, comp *lifecycle.Component, opts bus.ConsumerOptions, r Reaction) func(context.Context) (lifecycle.Undo, error) {
	if opts.Degrade == nil {
		opts.Degrade = comp.Degrade
	}
	return func(ctx context.Context) (lifecycle.Undo, error) {
		cons, err := Consume(ctx, conn, opts, r)
		if err != nil {
			return nil, err
		}
		undo := func(ctx context.Context) error {
			cons.Stop()
			return cons.Drain(ctx)
		}
		if err := comp.Go("results-fence", func(ctx context.Context) error {
			<-ctx.Done()
			cons.Stop()
			return nil
		}); err != nil {
			_ = undo(ctx)
			return nil, err
		}
		return undo, nil
	}
}

// Consume runs r over its durable consumer (opts, from ConsumerOptions).
// When r applies batches itself (a BatchReaction, such as the postgres
// kind, also through a GapGuard), the consumer hands it up to
// opts.BatchSize results per call (BatchHandler; several results then
// share one transaction); other kinds get one result per call (Handler).
// Errors are those of bus.Conn.Consume.
func Consume(ctx context.Context, conn *bus.Conn, opts bus.ConsumerOptions, r Reaction) (*bus.Consumer, error) {
	if br, ok := batchReaction(r); ok {
		return conn.ConsumeBatches(ctx, opts, BatchHandler(br, opts.Logger))
	}
	return conn.Consume(ctx, opts, Handler(r))
}
