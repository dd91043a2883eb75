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
	"github.com/tributary/tributary/pkg/lifecycle"
)

func main() {
	app.Main(app.Binary{Kind: "reactor", Build: build}, "Deliver continuous query results to their reactions.", "127.0.0.1:9466")
}

func build(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
	var comps []*lifecycle.Component
	for _, r := range rt.Config.Reactions {
		var react reaction.Reaction
		var closeReaction func() // releases the reaction's clients after its consumer drained
		switch spec := r.Spec.(type) {
		case *config.LogReaction:
			l, err := reaction.NewLog(r.ID, spec.Format, os.Stdout)
			if err != nil {
				return nil, err
			}
			react = l
		case *config.HTTPReaction:
			h, err := reaction.NewHTTP(r.ID, spec, reaction.HTTPOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID), Registerer: rt.Registry})
			if err != nil {
				return nil, err
			}
			react, closeReaction = h, h.Close
		case *config.PostgresReaction:
			p, err := reaction.NewPostgres(r.ID, spec, reaction.PostgresOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID), Registerer: rt.Registry})
			if err != nil {
				return nil, err
			}
			react, closeReaction = p, p.Close
		case *config.NATSReaction:
			n, err := reaction.NewNATS(r.ID, spec, rt.Bus.NATS(), reaction.NATSOptions{
				Logger: rt.Log.With("component", "reaction", "id", r.ID)})
			if err != nil {
				return nil, err
			}
			react = n
		default:
			return nil, fmt.Errorf("reaction %s: kind %q is not implemented by this reactor yet (available: log, http, postgres, nats)", r.ID, r.Kind)
		}
		comp, err := rt.NewComponent("reaction", r.ID)
		if err != nil {
			return nil, err
		}
		if closeReaction != nil {
			comp.AddStep("reaction clients", closeStep(closeReaction))
		}
		opts := reaction.ConsumerOptions(rt.Topology, r.ID, r.Queries)
		opts.Logger = rt.Log.With("component", "reaction", "id", r.ID)
		opts.Registerer = rt.Registry
		comp.AddStep("results consumer", reaction.ConsumeStep(rt.Bus, comp, opts, react))
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
