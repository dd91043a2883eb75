// Command source-pg streams Postgres row changes into JetStream through
// logical replication (pgoutput). It confirms a WAL position to Postgres
// only after JetStream acknowledged every change up to it.
package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/pgsource"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
)

func main() {
	app.Main(app.Binary{Kind: "source-pg", Build: build}, "Capture Postgres changes into NATS JetStream.", "127.0.0.1:9464")
}

func build(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
	var comps []*lifecycle.Component
	for _, src := range rt.Config.Sources {
		if src.External() != nil {
			continue // another producer publishes it; nothing to capture
		}
		pg := src.Postgres()
		if pg == nil {
			return nil, fmt.Errorf("source %s: kind %q is not run by source-pg", src.ID, src.Kind)
		}
		comp, err := rt.NewComponent("source", src.ID)
		if err != nil {
			return nil, err
		}
		comp.AddStep("replication", replicationStep(rt, comp, src.ID, pg))
		comps = append(comps, comp)
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("the config has no postgres sources")
	}
	return comps, nil
}

// replicationStep claims the source's fence with the lease's token,
// creates the publisher and runs the source as a supervised worker under
// the component's lease. Every batch the source commits is fenced: once
// another instance claimed the fence (it took the lease while this one was
// paused or cut off), the server refuses this instance's batches, the
// source stops without confirming anything more to Postgres, and the
// component steps down and stands by (lifecycle.Component.Go). Stopping the
// component cancels the worker's context, which stops the source
// gracefully (final status update with the last durable LSN).
func replicationStep(rt *app.Runtime, comp *lifecycle.Component, id string, pg *config.PostgresSource) func(context.Context) (lifecycle.Undo, error) {
	return func(ctx context.Context) (lifecycle.Undo, error) {
		log := rt.Log // pgsource adds the component and id attributes
		pub, err := rt.Bus.NewPublisher(bus.PublisherOptions{Name: "source_" + id, Logger: log, Registerer: rt.Registry})
		if err != nil {
			return nil, err
		}
		// Claimed before anything is published: the previous holder's
		// batches are refused from here on, and the source reads where the
		// stream ends only after this claim.
		fence, err := rt.Bus.ClaimFence(ctx, rt.Topology.Changes.Name, rt.Topology.SourceFence(bus.Token(id)), comp.Instance(), comp.LeaseToken())
		if err != nil {
			_ = pub.Close(ctx)
			return nil, err
		}
		src, err := pgsource.New(sourceConfig(id, pg), pgsource.BusPublisher(pub, bus.WithFence(fence)), rt.Bus, rt.Topology, pgsource.Options{
			Logger:     log,
			Registerer: rt.Registry,
			OnStatus: func(s pgsource.Status) {
				// A watched table that is not captured any more degrades
				// the source whatever its state (an empty reason clears).
				comp.Degrade("tables", strings.Join(s.Uncaptured, "; "))
				switch s.State {
				case pgsource.StateDegraded:
					comp.Degrade("postgres", s.Reason)
				case pgsource.StateSnapshotting:
					comp.Degrade("postgres", "")
					comp.NotReady("postgres", "taking the initial snapshot")
				case pgsource.StateStreaming:
					comp.Degrade("postgres", "")
					comp.NotReady("postgres", "")
				}
			},
		})
		if err != nil {
			_ = pub.Close(ctx)
			return nil, err
		}
		// Ready (/readyz) only once the source streams: before that the
		// slot may not exist yet, and rows written meanwhile reach the
		// stream through the snapshot rather than as changes, or, with
		// snapshot: never, not at all.
		comp.NotReady("postgres", "connecting to Postgres")
		if err := comp.Go("replication", src.Run); err != nil {
			_ = pub.Close(ctx)
			return nil, err
		}
		// The worker is stopped by the component's supervisor before the
		// steps are undone; then nothing publishes any more.
		return pub.Close, nil
	}
}

func sourceConfig(id string, pg *config.PostgresSource) pgsource.Config {
	keys := map[string][]string{}
	for _, k := range pg.TableKeys {
		keys[k.Table] = k.KeyColumns
	}
	return pgsource.Config{
		ID:                    id,
		ConnString:            pg.ConnString(),
		ReplicationConnString: pg.ReplicationConnString(),
		Tables:                pg.Tables,
		PublicationName:       pg.PublicationName,
		SlotName:              pg.SlotName,
		Create:                pg.Create,
		Snapshot:              pgsource.SnapshotMode(pg.Snapshot),
		TableKeys:             keys,
		HeartbeatInterval:     pg.HeartbeatInterval.D(),
		StatusInterval:        pg.StatusInterval.D(),
		DropSlotOnStop:        pg.DropSlotOnStop,
		MaxInFlight:           pg.MaxInFlight,
		BatchMaxMessages:      pg.Batch.MaxMessages,
		BatchMaxDelay:         pg.Batch.MaxDelay.D(),
		Timeouts: pgsource.Timeouts{
			Connect:      pg.Timeouts.Connect.D(),
			Query:        pg.Timeouts.Query.D(),
			Snapshot:     pg.Timeouts.Snapshot.D(),
			SnapshotStep: pg.Timeouts.SnapshotStep.D(),
			Stop:         pg.Timeouts.Stop.D(),
			Idle:         pg.Timeouts.Idle.D(),
		},
		Backoff: pgsource.Backoff{
			Initial:    pg.Backoff.Initial.D(),
			Max:        pg.Backoff.Max.D(),
			MaxElapsed: pg.Backoff.MaxElapsed.D(),
		},
	}
}
