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
		switch spec := r.Spec.(type) {
		case *config.LogReaction:
			l, err := reaction.NewLog(r.ID, spec.Format, os.Stdout)
			if err != nil {
				return nil, err
			}
			react = l
		default:
			return nil, fmt.Errorf("reaction %s: kind %q is not implemented by this reactor yet (available: log)", r.ID, r.Kind)
		}
		comp, err := rt.NewComponent("reaction", r.ID)
		if err != nil {
			return nil, err
		}
		opts := reaction.ConsumerOptions(rt.Topology, r.ID, r.Queries, retryConfig(r.Spec))
		opts.Logger = rt.Log.With("component", "reaction", "id", r.ID)
		opts.Registerer = rt.Registry
		comp.AddStep("results consumer", reaction.ConsumeStep(rt.Bus, comp, opts, react))
		comps = append(comps, comp)
	}
	return comps, nil
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
