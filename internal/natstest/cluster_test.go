package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestClusterSurvivesLosingTheStreamLeader(t *testing.T) {
	c := natstest.StartCluster(t)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "r3.x", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publishing %d: %v", i, err)
				}
			}
		}
	}
	publish(1, 10)
	leader := c.WaitForStreamLeader("R3")
	c.Kill(leader)
	if c.Server(leader) != nil {
		t.Fatal("killed node still reported running")
	}
	next := c.WaitForStreamLeader("R3", leader)
	if next == leader {
		t.Fatalf("leader did not move from node %d", leader)
	}
	publish(11, 20)
	c.Restart(leader)
	c.WaitForMetaLeader()
	c.WaitForStreamCurrent(leader, "R3")

	// Every message is stored once, and the restarted node is a current
	// replica again.
	testwait.UntilErr(ctx, t, 30*time.Second, "current replicas", func() (bool, error) {
		s, err := js.Stream(ctx, "R3")
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.State.Msgs != 20 {
			t.Fatalf("stream holds %d messages, want 20", info.State.Msgs)
		}
		ok := info.Cluster != nil && len(info.Cluster.Replicas) == 2
		if ok {
			for _, r := range info.Cluster.Replicas {
				ok = ok && r.Current && !r.Offline
			}
		}
		return ok, fmt.Errorf("replicas %+v", info.Cluster)
	})
}
