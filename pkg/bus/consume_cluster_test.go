package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/bus/bustest"
)

// The ordered consumer's guarantees hold on a three-node cluster with
// replicated streams and consumers (retries in place, the reset at a
// takeover, the last-delivery paths).
func TestConsumerConformanceOrderedCluster(t *testing.T) {
	cl := natstest.StartCluster(t)
	var n atomic.Int64
	bustest.Run(t, func(t *testing.T) bustest.Env {
		i := n.Add(1)
		c, err := bus.Connect(context.Background(), bus.ConnectOptions{URL: cl.URLs(), ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		js, _ := jetstreamFor(t, cl.URLs())
		e := bustest.Env{
			Conn: c, Stream: fmt.Sprintf("S%d", i), Subject: fmt.Sprintf("s%d", i),
			DeadLetterStream: fmt.Sprintf("DLQ%d", i), DeadLetterSubject: fmt.Sprintf("dlq%d", i),
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, cfg := range []jetstream.StreamConfig{
			{Name: e.Stream, Subjects: []string{e.Subject + ".>"}, AllowAtomicPublish: true, Replicas: 3},
			{Name: e.DeadLetterStream, Subjects: []string{e.DeadLetterSubject + ".>"}, Replicas: 3},
		} {
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			cl.WaitForStreamLeader(cfg.Name)
		}
		return e
	}, bustest.Config{Concurrency: 1, Ordered: true})
}
