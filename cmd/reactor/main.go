// Command reactor runs the reactions of a Tributary config: it consumes
// query results from JetStream and delivers them, acknowledging each result
// only after its effect succeeded.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
)

func main() {
	app.Main(app.Binary{Kind: "reactor", Build: build}, "Deliver continuous query results to their reactions.", "127.0.0.1:9466")
}

func build(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
	var comps []*lifecycle.Component
	for _, r := range rt.Config.Reactions {
		var react reaction.Reaction
		// startReaction, when set, is a start step before the consumer's:
		// its undo runs after the consumer drained.
		var startReaction func(context.Context) (lifecycle.Undo, error)
		switch spec := r.Spec.(type) {
		case *config.LogReaction:
			l, err := reaction.NewLogFromConfig(r.ID, spec, os.Stdout)
			if err != nil {
				return nil, err
			}
			react, startReaction = l, closeStep(func() {
				if err := l.Close(); err != nil {
					rt.Log.Error("closing the log reaction's file failed", "component", "reaction", "id", r.ID, "err", err)
				}
			})
		case *config.HTTPReaction:
			h, err := reaction.NewHTTP(r.ID, spec, reaction.HTTPOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID), Registerer: rt.Registry})
			if err != nil {
				return nil, err
			}
			react, startReaction = h, closeStep(h.Close)
		case *config.PostgresReaction:
			p, err := reaction.NewPostgres(r.ID, spec, reaction.PostgresOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID), Registerer: rt.Registry})
			if err != nil {
				return nil, err
			}
			react, startReaction = p, closeStep(p.Close)
		case *config.NATSReaction:
			n, err := reaction.NewNATS(r.ID, spec, rt.Bus, reaction.NATSOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID)})
			if err != nil {
				return nil, err
			}
			react = n
		case *config.SSEReaction:
			s, err := reaction.NewSSE(r.ID, spec, r.Queries, reaction.SSEOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID), Registerer: rt.Registry})
			if err != nil {
				return nil, err
			}
			react, startReaction = s, sseStep(rt, s)
		default:
			return nil, fmt.Errorf("reaction %s: kind %q is not known to this reactor", r.ID, r.Kind)
		}
		comp, err := rt.NewComponent("reaction", r.ID)
		if err != nil {
			return nil, err
		}
		if startReaction != nil {
			comp.AddStep("reaction target", startReaction)
		}
		guarded, err := reaction.GuardGaps(r.ID, react, reaction.GapOptions{
			Policy: r.OnGap, Degrade: comp.Degrade, Registerer: rt.Registry,
			Logger: rt.Log.With("component", "reaction", "id", r.ID)})
		if err != nil {
			return nil, err
		}
		opts := reaction.ConsumerOptions(rt.Topology, r.ID, r.Queries, retryConfig(r.Spec))
		opts.Logger = rt.Log.With("component", "reaction", "id", r.ID)
		opts.Registerer = rt.Registry
		comp.AddStep("results consumer", reaction.ConsumeStep(rt.Bus, comp, opts, guarded))
		comps = append(comps, comp)
	}
	return comps, nil
}

// closeStep undoes to close: steps are undone in reverse, so close runs
// after the consumer step's drain.
func closeStep(close func()) func(context.Context) (lifecycle.Undo, error) {
	return func(context.Context) (lifecycle.Undo, error) {
		return func(context.Context) error { close(); return nil }, nil
	}
}

// sseStep rebuilds the sse reaction's result sets from the results history,
// then serves them; undo stops the server.
func sseStep(rt *app.Runtime, s *reaction.SSE) func(context.Context) (lifecycle.Undo, error) {
	return func(ctx context.Context) (lifecycle.Undo, error) {
		subject := func(q string) string { return rt.Topology.ResultSubject(bus.Token(q)) }
		if err := s.Bootstrap(ctx, rt.Bus, rt.Topology.Results.Name, subject); err != nil {
			return nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		return s.Stop, nil
	}
}

// retryConfig is the retry config of the reaction kinds that have one; the
// zero value (the topology's defaults) for the others.
func retryConfig(spec config.ReactionSpec) config.RetryConfig {
	switch s := spec.(type) {
	case *config.HTTPReaction:
		return s.Retry
	case *config.PostgresReaction:
		return s.Retry
	}
	return config.RetryConfig{}
}
