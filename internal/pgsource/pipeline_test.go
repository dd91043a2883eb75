package pgsource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// recordingPublisher passes every batch to the real publisher and records
// the sizes of the batches JetStream acknowledged.
type recordingPublisher struct {
	Publisher
	mu    sync.Mutex
	sizes []int
}

func (p *recordingPublisher) StageBatch(msgs []bus.Message) (StagedBatch, error) {
	sb, err := p.Publisher.StageBatch(msgs)
	if err != nil {
		return nil, err
	}
	return &recordedBatch{p: p, sb: sb, n: len(msgs)}, nil
}

type recordedBatch struct {
	p  *recordingPublisher
	sb StagedBatch
	n  int
}

func (b *recordedBatch) Commit(ctx context.Context) (bus.BatchAck, error) {
	ack, err := b.sb.Commit(ctx)
	if err == nil {
		b.p.mu.Lock()
		b.p.sizes = append(b.p.sizes, b.n)
		b.p.mu.Unlock()
	}
	return ack, err
}

func (p *recordingPublisher) batchSizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.sizes...)
}

// startWith runs a Source for cfg with pub as its publisher.
func (e *env) startWith(cfg Config, pub Publisher) *running {
	e.t.Helper()
	r := &running{done: make(chan error, 1)}
	src, err := New(cfg, pub, e.bus, e.topo, Options{Logger: testLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	r.src = src
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- src.Run(ctx) }()
	e.t.Cleanup(func() { _ = r.stop() })
	return r
}

// burst commits n one-row transactions in one statement.
func (e *env) burst(from, n int) {
	e.t.Helper()
	e.exec(fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP INSERT INTO t VALUES (i, i); COMMIT; END LOOP; END $$`, from, from+n-1))
}

// TestBacklogDrainsWithoutWaitingForStatus: a burst that leaves far more
// batches queued than the acknowledgements the session takes between two
// replication messages is published at the publisher's pace once the
// writer stops, not in steps of StatusInterval (the session must react to
// acknowledgements while the replication stream is quiet, and the
// publisher must never wait for the session to take them).
func TestBacklogDrainsWithoutWaitingForStatus(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	cfg := e.config("drain", "t")
	cfg.Snapshot = SnapshotNever
	cfg.StatusInterval = 20 * time.Second
	cfg.BatchMaxMessages = 5
	cfg.MaxInFlight = 5000
	cfg.BatchMaxDelay = time.Millisecond
	pub := &recordingPublisher{Publisher: BusPublisher(e.pub)}
	r := e.startWith(cfg, pub)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	const n = 600
	e.burst(1, n)
	committed := time.Now()
	// 120 or more batches: more acknowledgements than the old bounded
	// channel held. The publisher needs about a second for them under
	// -race; a session that waits for its next status update needs
	// StatusInterval (20s).
	testwait.Until(t, 8*time.Second, "every change of the burst", func() bool { return e.streamCount() >= n })
	t.Logf("%d changes in %d batches stored %s after the last commit", n, len(pub.batchSizes()), time.Since(committed).Round(time.Millisecond))
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != n {
		t.Fatalf("the stream holds %d changes, want %d", len(msgs), n)
	}
}

// TestCatchUpBatchesGrowToMax: in catch-up over many one-row transactions,
// with the in-flight bound reached, batches fill up to BatchMaxMessages
// instead of keeping the size of the first small batches.
func TestCatchUpBatchesGrowToMax(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	cfg := e.config("grow", "t")
	cfg.Snapshot = SnapshotNever
	cfg.BatchMaxMessages = 100
	cfg.MaxInFlight = 300
	cfg.BatchMaxDelay = time.Millisecond
	pub := &recordingPublisher{Publisher: BusPublisher(e.pub)}
	r := e.startWith(cfg, pub)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	const n = 6000
	e.burst(1, n)
	testwait.Until(t, 60*time.Second, "every change of the burst", func() bool { return e.streamCount() >= n })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	checkStreamInvariants(t, e.messages())
	sizes := pub.batchSizes()
	full := 0
	for _, s := range sizes {
		if s > cfg.BatchMaxMessages {
			t.Fatalf("a batch of %d changes, above BatchMaxMessages %d", s, cfg.BatchMaxMessages)
		}
		if s == cfg.BatchMaxMessages {
			full++
		}
	}
	t.Logf("%d changes in %d batches, %d full", n, len(sizes), full)
	// The first batches are as small as the batch delay makes them; once
	// the window is full, every batch should be (nearly) full.
	if len(sizes) > 2*n/cfg.BatchMaxMessages {
		t.Fatalf("%d changes took %d batches (first sizes %v), want at most %d", n, len(sizes), sizes[:min(len(sizes), 40)], 2*n/cfg.BatchMaxMessages)
	}
}

// testBatch makes a batch of n changes of source src at the positions
// after *next (which it advances), confirming confirm.
func (e *env) testBatch(src string, next *int, n int, confirm uint64) *batch {
	items := make([]item, n)
	for i := range items {
		pos := change.FormatPGPosition(1, uint32(*next))
		*next++
		items[i] = item{msg: bus.Message{
			Subject: e.topo.ChangeSubject(src, "t", fmt.Sprint(*next)),
			ID:      src + ":" + pos, Data: []byte("{}"), Header: map[string]string{PositionHeader: pos},
		}, table: "t", op: "insert"}
	}
	return makeBatch(items, confirm)
}

// gatedPublisher holds the first StageBatch until release is closed (the
// injected fault: a slow publisher), then passes batches on.
type gatedPublisher struct {
	recordingPublisher
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *gatedPublisher) StageBatch(msgs []bus.Message) (StagedBatch, error) {
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return p.recordingPublisher.StageBatch(msgs)
}

// TestQueueMergesWaitingBatchesInOrder: batches that wait behind one in
// flight are published as few atomic batches of at most max messages, in
// order, and their acknowledgement confirms the highest position among
// them.
func TestQueueMergesWaitingBatchesInOrder(t *testing.T) {
	e := newEnv(t)
	met, err := newMetrics(prometheus.NewRegistry(), "q")
	if err != nil {
		t.Fatal(err)
	}
	pub := &gatedPublisher{recordingPublisher: recordingPublisher{Publisher: BusPublisher(e.pub)}, entered: make(chan struct{}), release: make(chan struct{})}
	q := startPublishQueue(e.ctx, pub, met, 10)
	defer q.stop()
	next := 0
	mk := func(n int, confirm uint64) *batch { return e.testBatch("q", &next, n, confirm) }
	q.push(mk(1, 100))
	<-pub.entered
	for i, n := range []int{3, 4, 5, 6} {
		q.push(mk(n, uint64(200+i)))
	}
	close(pub.release)

	var confirms []uint64
	deadline := time.After(20 * time.Second)
	for len(q.unacked) > 0 {
		select {
		case <-q.ready:
		case <-deadline:
			t.Fatalf("%d batches unacknowledged", len(q.unacked))
		}
		for _, r := range q.takeAcks() {
			c, err := q.acked(r)
			if err != nil {
				t.Fatal(err)
			}
			confirms = append(confirms, c)
		}
	}
	if got, want := fmt.Sprint(pub.batchSizes()), "[1 7 5 6]"; got != want {
		t.Errorf("published batch sizes %s, want %s (3+4 merged, 5 and 6 do not fit together in 10)", got, want)
	}
	if got, want := fmt.Sprint(confirms), "[100 201 202 203]"; got != want {
		t.Errorf("confirmed positions %s, want %s", got, want)
	}
	if q.unackedMsgs != 0 {
		t.Errorf("%d messages still counted in flight", q.unackedMsgs)
	}
	s, err := e.js.Stream(e.ctx, e.topo.Changes.Name)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= uint64(next); seq++ {
		m, err := s.GetMsg(e.ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if want := change.FormatPGPosition(1, uint32(seq-1)); m.Header.Get(PositionHeader) != want {
			t.Fatalf("message %d has position %s, want %s", seq, m.Header.Get(PositionHeader), want)
		}
	}
}

// failFirstPublisher fails the first commit, once the next batch has been
// staged behind it (the injected fault: a batch the server refused), and
// records every commit that reaches the real publisher.
type failFirstPublisher struct {
	recordingPublisher
	staged   chan struct{} // one token per StageBatch
	commits  sync.Mutex
	attempts int
}

var errInjected = errors.New("injected: the server refused the batch")

func (p *failFirstPublisher) StageBatch(msgs []bus.Message) (StagedBatch, error) {
	sb, err := p.recordingPublisher.StageBatch(msgs)
	if err != nil {
		return nil, err
	}
	p.staged <- struct{}{}
	return &failFirstBatch{p: p, sb: sb}, nil
}

type failFirstBatch struct {
	p  *failFirstPublisher
	sb StagedBatch
}

func (b *failFirstBatch) Commit(ctx context.Context) (bus.BatchAck, error) {
	b.p.commits.Lock()
	b.p.attempts++
	first := b.p.attempts == 1
	b.p.commits.Unlock()
	if first {
		// Fail only once the next batch is staged, so that it is in
		// progress on the server when this one fails.
		<-b.p.staged // this batch's token
		select {
		case <-b.p.staged:
		case <-ctx.Done():
			return bus.BatchAck{}, ctx.Err()
		}
		return bus.BatchAck{}, errInjected
	}
	return b.sb.Commit(ctx)
}

// TestQueueNeverCommitsPastAFailedBatch: when a batch fails, the batch
// staged behind it is never committed (the stream must never hold a change
// whose predecessors are missing), and the failure is reported.
func TestQueueNeverCommitsPastAFailedBatch(t *testing.T) {
	e := newEnv(t)
	met, err := newMetrics(prometheus.NewRegistry(), "f")
	if err != nil {
		t.Fatal(err)
	}
	pub := &failFirstPublisher{recordingPublisher: recordingPublisher{Publisher: BusPublisher(e.pub)}, staged: make(chan struct{}, 4)}
	q := startPublishQueue(e.ctx, pub, met, 10)
	defer q.stop()
	next := 0
	mk := func(n int) *batch { return e.testBatch("f", &next, n, 0) }
	q.push(mk(10))
	q.push(mk(10)) // cannot merge with the first (max 10): staged behind it
	var acks []ackResult
	deadline := time.After(20 * time.Second)
	for len(acks) == 0 {
		select {
		case <-q.ready:
		case <-deadline:
			t.Fatal("no acknowledgement")
		}
		acks = append(acks, q.takeAcks()...)
	}
	if _, err := q.acked(acks[0]); !errors.Is(err, errInjected) {
		t.Fatalf("first outcome: want the injected error, got %v", err)
	}
	q.stop() // waits for the queue's goroutines: nothing can commit after this
	acks = append(acks, q.takeAcks()...)
	if len(acks) != 1 {
		t.Fatalf("%d outcomes, want only the failure: %+v", len(acks), acks)
	}
	if sizes := pub.batchSizes(); len(sizes) != 0 {
		t.Fatalf("batches committed after the failure: %v", sizes)
	}
	if n := e.streamCount(); n != 0 {
		t.Fatalf("the stream holds %d changes after a failed first batch, want 0", n)
	}
}
