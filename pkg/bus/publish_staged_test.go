package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// storedIDs lists the Nats-Msg-Ids stream holds, in stream order (deleted
// sequences skipped).
func (e *env) storedIDs(t *testing.T, stream string) []string {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading seq %d: %v", seq, err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func TestStagedBatchesAreStoredInCommitOrderAndOnlyOnCommit(t *testing.T) {
	e := newEnv(t, natstest.Options{SyncAlways: true})
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	p := e.publisher(t, bus.PublisherOptions{})
	ctx := context.Background()

	a, err := p.StageBatch(batch("b.a", 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.StageBatch(batch("b.b", 11, 20))
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is stored before a commit, even once the server has taken
	// the staged messages (the round trip of a later request on the same
	// connection proves that they reached it).
	if _, err := p.PublishBatch(ctx, batch("b.c", 21, 21)); err != nil {
		t.Fatal(err)
	}
	if got := e.storedIDs(t, "B"); len(got) != 1 || got[0] != "id-21" {
		t.Fatalf("before the commits the stream holds %v, want only id-21", got)
	}
	// Commits decide the order: b first, then a.
	ackB, err := b.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ackA, err := a.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ackB.Sequence != 11 || ackB.Count != 10 || ackA.Sequence != 21 || ackA.Count != 10 || ackA.Duplicate || ackB.Duplicate {
		t.Fatalf("acks %+v %+v, want b at 2..11 and a at 12..21", ackB, ackA)
	}
	got := e.storedIDs(t, "B")
	want := []string{"id-21"}
	for _, m := range batch("b.b", 11, 20) {
		want = append(want, m.ID)
	}
	for _, m := range batch("b.a", 1, 10) {
		want = append(want, m.ID)
	}
	if len(got) != len(want) {
		t.Fatalf("stream holds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stream holds %v, want %v", got, want)
		}
	}
	if _, err := a.Commit(ctx); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("second commit: want ErrInvalidMessage, got %v", err)
	}
}

func TestStagedBatchSurvivesALostBody(t *testing.T) {
	e := newEnv(t)
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	p := e.publisher(t, bus.PublisherOptions{PublishTimeout: 500 * time.Millisecond, RetryWait: 20 * time.Millisecond, MaxRetryWait: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Staged, then the server restarts: what it had staged is gone.
	a, err := p.StageBatch(batch("b.a", 1, 50))
	if err != nil {
		t.Fatal(err)
	}
	// A batch committed after it proves that the server staged a's body
	// (one connection, one stream: handled in order) before the restart.
	if _, err := p.PublishBatch(ctx, batch("b.z", 0, 0)); err != nil {
		t.Fatal(err)
	}
	e.srv.Restart()
	// Staged while the server is down: the body cannot even be sent.
	e.srv.Shutdown()
	b, err := p.StageBatch(batch("b.b", 51, 100))
	if err != nil {
		t.Fatalf("staging while disconnected must defer the failure to Commit, got %v", err)
	}
	done := make(chan error, 1)
	go func() {
		if _, err := a.Commit(ctx); err != nil {
			done <- err
			return
		}
		_, err := b.Commit(ctx)
		done <- err
	}()
	e.srv.RestartAfter(300 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := e.storedIDs(t, "B")
	if len(got) != 101 {
		t.Fatalf("stream holds %d messages, want 101: %v", len(got), got)
	}
	for i, id := range got {
		if want := batch("b.x", i, i)[0].ID; id != want {
			t.Fatalf("message %d is %s, want %s (order or duplicates wrong): %v", i, id, want, got)
		}
	}
}

func TestStagedBatchNeverCommittedIsDroppedByTheServer(t *testing.T) {
	e := newEnv(t, natstest.Options{Configure: func(o *server.Options) {
		o.JetStreamLimits.MaxBatchTimeout = 200 * time.Millisecond
	}})
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	_, nc := jetstreamFor(t, e.srv.URL())
	adv, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.B")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := e.publisher(t, bus.PublisherOptions{})
	if _, err := p.StageBatch(batch("b.a", 1, 10)); err != nil {
		t.Fatal(err)
	}
	m, err := adv.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no batch-abandoned advisory: %v", err)
	}
	var a struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Reason != "timeout" {
		t.Fatalf("advisory %s: want reason timeout (%v)", m.Data, err)
	}
	if got := e.storedIDs(t, "B"); len(got) != 0 {
		t.Fatalf("an uncommitted batch stored %v", got)
	}
	// The same messages still go through afterwards.
	if _, err := p.PublishBatch(context.Background(), batch("b.a", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if got := e.storedIDs(t, "B"); len(got) != 10 {
		t.Fatalf("stream holds %v, want 10 messages", got)
	}
}

// bigBatch is n messages for stream subject s.
func bigBatch(s string, n int) []bus.Message {
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{Subject: s, ID: fmt.Sprintf("big-%d", i), Data: []byte("x")}
	}
	return msgs
}

func TestMaxBatchOfTheEmbeddedServer(t *testing.T) {
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.ConnectOptions{StoreDir: filepath.Join(t.TempDir(), "store")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if c.MaxBatch() != bus.DefaultEmbeddedMaxBatch {
		t.Fatalf("embedded MaxBatch %d, want %d", c.MaxBatch(), bus.DefaultEmbeddedMaxBatch)
	}
	top, err := streams.Default("mb", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(ctx, top); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewPublisher(bus.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	subj := top.ChangeSubject("s", "t", "k")
	// The embedded server takes a batch as large as the bus allows...
	ack, err := p.PublishBatch(ctx, bigBatch(subj, c.MaxBatch()))
	if err != nil {
		t.Fatalf("a batch of %d: %v", c.MaxBatch(), err)
	}
	if ack.Count != c.MaxBatch() || ack.Sequence != uint64(c.MaxBatch()) {
		t.Fatalf("ack %+v", ack)
	}
	// ...and the bus refuses a larger one before sending anything.
	if _, err := p.PublishBatch(ctx, bigBatch(subj, c.MaxBatch()+1)); !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("a batch above MaxBatch: want ErrInvalidMessage, got %v", err)
	}
}

func TestMaxBatchAboveTheRemoteServersLimitIsRejected(t *testing.T) {
	// A remote server keeps nats-server's default limit (1000); a bus told
	// it may send more gets the server's refusal, clearly, and stores
	// nothing.
	srv := natstest.Start(t)
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL(), MaxBatch: 2 * bus.DefaultMaxBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	e := &env{srv: srv, c: c}
	e.js, _ = jetstreamFor(t, srv.URL())
	e.stream(t, jetstream.StreamConfig{Name: "B", Subjects: []string{"b.>"}, AllowAtomicPublish: true})
	p := e.publisher(t, bus.PublisherOptions{})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = p.PublishBatch(cctx, bigBatch("b.x", bus.DefaultMaxBatch+1))
	if !errors.Is(err, bus.ErrRejected) {
		t.Fatalf("want ErrRejected, got %v", err)
	}
	if got := e.storedIDs(t, "B"); len(got) != 0 {
		t.Fatalf("a refused batch stored %d messages", len(got))
	}
	if _, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL(), MaxBatch: -1}); !errors.Is(err, bus.ErrConfig) {
		t.Fatalf("MaxBatch -1: want ErrConfig, got %v", err)
	}
}
