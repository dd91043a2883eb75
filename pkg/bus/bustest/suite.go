package bustest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// Env is what one check runs against: a connection, an empty stream whose
// subjects include Subject+".>", and a dead-letter stream whose subjects
// include DeadLetterSubject. Every call of a Factory returns fresh streams.
type Env struct {
	Conn              *bus.Conn
	Stream            string
	Subject           string // prefix; the suite publishes on Subject+".<n>"
	DeadLetterStream  string
	DeadLetterSubject string
}

// Factory sets up a fresh Env for one check; cleanup goes through t.
type Factory func(t *testing.T) Env

// Config says which consumer the suite checks.
type Config struct {
	// Concurrency of the consumer under test.
	Concurrency int
	// Ordered runs the consumer with ConsumerOptions.Ordered (Concurrency
	// must then be 1): retries in place, no overtaking, MaxDeliver not
	// applied to retryable failures.
	Ordered bool
}

// Run runs every check as a subtest.
func Run(t *testing.T, f Factory, cfg Config) {
	if cfg.Ordered && cfg.Concurrency > 1 {
		t.Fatalf("bustest: an ordered consumer runs at concurrency 1, not %d", cfg.Concurrency)
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	s := &suite{f: f, cfg: cfg}
	t.Run("AtLeastOnce", s.atLeastOnce)
	t.Run("RetryThenSuccess", s.retryThenSuccess)
	t.Run("PermanentGoesToDeadLetters", s.permanentToDLQ)
	if cfg.Ordered {
		t.Run("RetryableFailuresOutlastMaxDeliver", s.outlastsMaxDeliver)
	} else {
		t.Run("ExhaustedRetriesGoToDeadLetters", s.exhaustedToDLQ)
	}
	t.Run("PanicIsRedelivered", s.panicRedelivered)
	t.Run("MaxAckPendingRespected", s.maxAckPending)
	t.Run("DrainFinishesInFlight", s.drainFinishes)
	t.Run("DrainDeadlineReturnsUnfinished", s.drainDeadline)
	t.Run("HandlerTimeoutIsRetryable", s.handlerTimeout)
	t.Run("LastDeliveryInterruptedByDrainComesBack", s.lastDeliveryInterrupted)
	t.Run("LastDeliveryFetchedAfterStopComesBack", s.lastDeliveryAfterStop)
	if cfg.Ordered {
		t.Run("RetriedMessageIsNotOvertaken", s.notOvertaken)
	}
}

type suite struct {
	f   Factory
	cfg Config
}

// options are the suite's consumer options; tests adjust them.
func (s *suite) options(e Env, durable string) bus.ConsumerOptions {
	return bus.ConsumerOptions{
		Stream:            e.Stream,
		Durable:           durable,
		DeadLetterSubject: e.DeadLetterSubject + "." + durable,
		AckWait:           5 * time.Second,
		MaxDeliver:        5,
		BackOff:           []time.Duration{20 * time.Millisecond},
		Concurrency:       s.cfg.Concurrency,
		FetchWait:         200 * time.Millisecond,
		Ordered:           s.cfg.Ordered,
	}
}

// publish stores n messages with ids "m-1".."m-n" on Subject.<i%3>.
func publish(t *testing.T, e Env, from, to int) {
	t.Helper()
	p, err := e.Conn.NewPublisher(bus.PublisherOptions{Name: "bustest"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	var msgs []bus.Message
	for i := from; i <= to; i++ {
		msgs = append(msgs, bus.Message{
			Subject: fmt.Sprintf("%s.%d", e.Subject, i%3),
			ID:      fmt.Sprintf("m-%d", i),
			Data:    []byte(fmt.Sprintf("data %d", i)),
			Header:  map[string]string{"Trace": fmt.Sprint(i)},
		})
	}
	for len(msgs) > 0 {
		n := min(len(msgs), p.MaxBatch())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.PublishBatch(ctx, msgs[:n])
		cancel()
		if err != nil {
			t.Fatalf("publishing: %v", err)
		}
		msgs = msgs[n:]
	}
}

func consume(t *testing.T, e Env, o bus.ConsumerOptions, h bus.Handler) *bus.Consumer {
	t.Helper()
	k, err := e.Conn.Consume(context.Background(), o, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		k.Drain(ctx)
	})
	return k
}

// settled waits until the consumer has nothing pending or unacknowledged.
func settled(t *testing.T, k *bus.Consumer) {
	t.Helper()
	testwait.Until(t, 20*time.Second, "consumer has nothing pending or unacknowledged", func() bool {
		st, err := k.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Pending == 0 && st.AckPending == 0
	})
}

// record counts events per message id, safely across handlers.
type record struct {
	mu     sync.Mutex
	counts map[string]int
	times  map[string][]time.Time
}

func newRecord() *record {
	return &record{counts: map[string]int{}, times: map[string][]time.Time{}}
}

func (r *record) add(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[id]++
	r.times[id] = append(r.times[id], time.Now())
	return r.counts[id]
}

func (r *record) get(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[id]
}

func (r *record) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.counts)
}

func (s *suite) atLeastOnce(t *testing.T) {
	e := s.f(t)
	const n = 300
	publish(t, e, 1, n)
	ok := newRecord()
	var order []uint64
	var mu sync.Mutex
	k := consume(t, e, s.options(e, "alo"), func(_ context.Context, d *bus.Delivery) error {
		if d.Data == nil || d.Header["Trace"] == "" || d.Stream != e.Stream || d.NumDelivered < 1 {
			return bus.Permanentf("malformed delivery %+v", d)
		}
		mu.Lock()
		order = append(order, d.StreamSeq)
		mu.Unlock()
		ok.add(d.ID)
		return nil
	})
	testwait.Until(t, 20*time.Second, fmt.Sprintf("all %d messages handled", n), func() bool { return ok.len() == n })
	settled(t, k)
	for i := 1; i <= n; i++ {
		if ok.get(fmt.Sprintf("m-%d", i)) == 0 {
			t.Fatalf("m-%d never handled", i)
		}
	}
	if s.cfg.Concurrency == 1 || s.cfg.Ordered {
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(order); i++ {
			if order[i] <= order[i-1] {
				t.Fatalf("concurrency 1 handled out of stream order: %d after %d", order[i], order[i-1])
			}
		}
	}
}

func (s *suite) retryThenSuccess(t *testing.T) {
	e := s.f(t)
	const n = 6
	publish(t, e, 1, n)
	tries := newRecord()
	var succeeded atomic.Int64
	o := s.options(e, "retry")
	o.BackOff = []time.Duration{100 * time.Millisecond, 400 * time.Millisecond}
	k := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		if c := tries.add(d.ID); uint64(c) != d.Attempt {
			return bus.Permanentf("attempt %d, handler saw %d attempts", d.Attempt, c)
		}
		if d.Attempt < 3 {
			return errors.New("transient failure")
		}
		succeeded.Add(1)
		return nil
	})
	testwait.Until(t, 20*time.Second, "all messages succeed on their third delivery", func() bool { return succeeded.Load() == n })
	settled(t, k)
	tries.mu.Lock()
	defer tries.mu.Unlock()
	for id, ts := range tries.times {
		if len(ts) != 3 {
			t.Fatalf("%s delivered %d times, want 3", id, len(ts))
		}
		g1, g2 := ts[1].Sub(ts[0]), ts[2].Sub(ts[1])
		if s.cfg.Ordered {
			// Retries in place: exponential backoff from BackOff[0] with
			// jitter of up to half the interval either way.
			if g1 < 45*time.Millisecond || g2 < 45*time.Millisecond {
				t.Fatalf("%s: retry gaps %s then %s; want >= 50ms (100ms less jitter)", id, g1, g2)
			}
			continue
		}
		if g1 < 90*time.Millisecond || g2 < 360*time.Millisecond || g2 <= g1 {
			t.Fatalf("%s: redelivery gaps %s then %s; want >= 100ms then >= 400ms, growing", id, g1, g2)
		}
	}
}

func (s *suite) deadLetter(t *testing.T, e Env, durable string) *bus.DeadLetter {
	t.Helper()
	var dl *bus.DeadLetter
	testwait.Until(t, 20*time.Second, "a dead letter is stored", func() bool {
		m, err := e.Conn.LastMessage(context.Background(), e.DeadLetterStream, e.DeadLetterSubject+"."+durable)
		if errors.Is(err, bus.ErrNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		dl, err = bus.ParseDeadLetter(m)
		if err != nil {
			t.Fatal(err)
		}
		return true
	})
	return dl
}

func (s *suite) permanentToDLQ(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 10)
	seen := newRecord()
	k := consume(t, e, s.options(e, "perm"), func(_ context.Context, d *bus.Delivery) error {
		seen.add(d.ID)
		if d.ID == "m-4" {
			return bus.Permanent(fmt.Errorf("row 4 violates the schema"))
		}
		return nil
	})
	dl := s.deadLetter(t, e, "perm")
	settled(t, k)
	if !strings.Contains(dl.Reason, "row 4 violates the schema") || dl.Subject != e.Subject+".1" ||
		dl.Stream != e.Stream || dl.Consumer != "perm" || dl.Sequence != 4 || dl.Deliveries != 1 ||
		dl.MsgID != "m-4" || string(dl.Data) != "data 4" || dl.Header["Trace"] != "4" {
		t.Fatalf("dead letter %+v", dl)
	}
	if c := seen.get("m-4"); c != 1 {
		t.Fatalf("permanently failed message handled %d times, want 1", c)
	}
	if seen.len() != 10 {
		t.Fatalf("%d messages handled, want 10", seen.len())
	}
}

func (s *suite) exhaustedToDLQ(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 3)
	seen := newRecord()
	o := s.options(e, "exhaust")
	o.MaxDeliver = 3
	k := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		seen.add(d.ID)
		if d.ID == "m-2" {
			return errors.New("downstream keeps failing")
		}
		return nil
	})
	dl := s.deadLetter(t, e, "exhaust")
	settled(t, k)
	if dl.MsgID != "m-2" || dl.Deliveries != 3 || !strings.Contains(dl.Reason, "gave up after 3 deliveries") ||
		!strings.Contains(dl.Reason, "downstream keeps failing") {
		t.Fatalf("dead letter %+v", dl)
	}
	if c := seen.get("m-2"); c != 3 {
		t.Fatalf("failing message handled %d times, want MaxDeliver 3", c)
	}
}

func (s *suite) panicRedelivered(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 5)
	seen := newRecord()
	var ok atomic.Int64
	k := consume(t, e, s.options(e, "panic"), func(_ context.Context, d *bus.Delivery) error {
		seen.add(d.ID)
		if d.ID == "m-3" && d.Attempt == 1 {
			panic("handler bug")
		}
		ok.Add(1)
		return nil
	})
	testwait.Until(t, 20*time.Second, "every message handled after the panic", func() bool { return ok.Load() == 5 })
	settled(t, k)
	if c := seen.get("m-3"); c != 2 {
		t.Fatalf("panicking message delivered %d times, want 2", c)
	}
}

func (s *suite) maxAckPending(t *testing.T) {
	e := s.f(t)
	const n = 40
	const maxAck = 2
	publish(t, e, 1, n)
	var cur, peak atomic.Int64
	done := newRecord()
	o := s.options(e, "map")
	o.MaxAckPending = maxAck
	k := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		c := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond) // the slow handler under test
		done.add(d.ID)
		return nil
	})
	testwait.Until(t, 20*time.Second, "all messages handled", func() bool { return done.len() == n })
	settled(t, k)
	if p := peak.Load(); p > int64(min(maxAck, s.cfg.Concurrency)) {
		t.Fatalf("%d handlers ran at once; MaxAckPending %d, concurrency %d", p, maxAck, s.cfg.Concurrency)
	}
	for i := 1; i <= n; i++ {
		if c := done.get(fmt.Sprintf("m-%d", i)); c != 1 {
			t.Fatalf("m-%d handled %d times", i, c)
		}
	}
}

func (s *suite) drainFinishes(t *testing.T) {
	e := s.f(t)
	const n = 60
	publish(t, e, 1, n)
	acked := newRecord()
	var started atomic.Int64
	slowStarted := make(chan struct{})
	h := func(_ context.Context, d *bus.Delivery) error {
		started.Add(1)
		if d.ID == "m-10" && d.NumDelivered == 1 {
			close(slowStarted)
			time.Sleep(200 * time.Millisecond) // in flight while Drain is called
		} else {
			time.Sleep(5 * time.Millisecond) // the slow handler under test
		}
		acked.add(d.ID)
		return nil
	}
	o := s.options(e, "drain")
	first, err := e.Conn.Consume(context.Background(), o, h)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-slowStarted:
	case <-time.After(20 * time.Second):
		t.Fatal("m-10 was not delivered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	byFirst := acked.len()
	if acked.get("m-10") != 1 || int64(byFirst) != started.Load() {
		t.Fatalf("drain returned with handlers unfinished: %d started, %d finished, m-10 finished %d times",
			started.Load(), byFirst, acked.get("m-10"))
	}
	second := consume(t, e, o, h)
	testwait.Until(t, 20*time.Second, "the second consumer handles the rest", func() bool { return acked.len() == n })
	settled(t, second)
	for i := 1; i <= n; i++ {
		if c := acked.get(fmt.Sprintf("m-%d", i)); c != 1 {
			t.Fatalf("m-%d handled successfully %d times, want 1 (first consumer handled %d)", i, c, byFirst)
		}
	}
}

func (s *suite) drainDeadline(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 1)
	var firstRuns atomic.Int64
	block := func(ctx context.Context, d *bus.Delivery) error {
		firstRuns.Add(1)
		<-ctx.Done() // a handler stuck until it is told to give up
		return ctx.Err()
	}
	o := s.options(e, "deadline")
	first, err := e.Conn.Consume(context.Background(), o, block)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the handler starts", func() bool { return firstRuns.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := first.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain past its deadline: want DeadlineExceeded, got %v", err)
	}
	// The interrupted message goes straight back to the next consumer,
	// well before AckWait (5s).
	got := make(chan *bus.Delivery, 1)
	start := time.Now()
	second := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		select {
		case got <- d:
		default:
		}
		return nil
	})
	select {
	case d := <-got:
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("interrupted message came back after %s (delivery %d)", el, d.NumDelivered)
		}
		// Delivery 2: the stopped consumer's own pull must not take it
		// back first (that would spend deliveries towards MaxDeliver). An
		// ordered consumer may reset the durable to its ack floor when it
		// starts, which restarts the count.
		if d.ID != "m-1" || d.NumDelivered != 2 && !(s.cfg.Ordered && d.NumDelivered == 1) {
			t.Fatalf("second consumer got %s delivery %d, want m-1 delivery 2", d.ID, d.NumDelivered)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted message was not redelivered")
	}
	settled(t, second)
}

// noDeadLetter fails the test if durable dead-lettered anything.
func noDeadLetter(t *testing.T, e Env, durable string) {
	t.Helper()
	m, err := e.Conn.LastMessage(context.Background(), e.DeadLetterStream, e.DeadLetterSubject+"."+durable)
	if err == nil {
		t.Fatalf("unexpected dead letter: %+v", m.Header)
	}
	if !errors.Is(err, bus.ErrNotFound) {
		t.Fatal(err)
	}
}

func (s *suite) handlerTimeout(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 3)
	o := s.options(e, "timeout")
	o.HandlerTimeout = 200 * time.Millisecond
	seen := newRecord()
	var hung atomic.Int64 // how long the hanging attempt ran
	var ok atomic.Int64
	k := consume(t, e, o, func(ctx context.Context, d *bus.Delivery) error {
		if seen.add(d.ID) == 1 && d.ID == "m-2" {
			start := time.Now()
			<-ctx.Done() // a call that hangs until it is told to give up
			hung.Store(int64(time.Since(start)))
			return ctx.Err()
		}
		ok.Add(1)
		return nil
	})
	testwait.Until(t, 20*time.Second, "every message handled after the timeout", func() bool { return ok.Load() == 3 })
	settled(t, k)
	if c := seen.get("m-2"); c != 2 {
		t.Fatalf("timed-out message handled %d times, want 2 (the timeout, then the retry)", c)
	}
	if d := time.Duration(hung.Load()); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("the hanging call was cut off after %s, want about HandlerTimeout (200ms)", d)
	}
	noDeadLetter(t, e, "timeout")
}

// lastDeliveryInterrupted: a handler cut off by Drain's deadline during the
// message's last allowed delivery; the message must come back.
func (s *suite) lastDeliveryInterrupted(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 1)
	o := s.options(e, "lastint")
	o.MaxDeliver = 1
	var started atomic.Int64
	first, err := e.Conn.Consume(context.Background(), o, func(ctx context.Context, d *bus.Delivery) error {
		started.Add(1)
		<-ctx.Done() // stuck until Drain's deadline
		return ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the handler starts", func() bool { return started.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := first.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain past its deadline: want DeadlineExceeded, got %v", err)
	}
	got := newRecord()
	second := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		got.add(d.ID)
		return nil
	})
	testwait.Until(t, 20*time.Second, "the interrupted last delivery comes back after the restart", func() bool { return got.get("m-1") == 1 })
	settled(t, second)
	noDeadLetter(t, e, "lastint")
}

// lastDeliveryAfterStop: a message that reaches the consumer's pull after
// Stop, on its last allowed delivery, must come back to the next consumer.
func (s *suite) lastDeliveryAfterStop(t *testing.T) {
	e := s.f(t)
	o := s.options(e, "laststop")
	o.MaxDeliver = 1
	o.FetchWait = 3 * time.Second
	var firstRuns atomic.Int64
	first, err := e.Conn.Consume(context.Background(), o, func(context.Context, *bus.Delivery) error {
		firstRuns.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the consumer's pull waits on the server", func() bool {
		st, err := first.State(context.Background())
		return err == nil && st.Waiting > 0
	})
	first.Stop()
	publish(t, e, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := firstRuns.Load(); n != 0 {
		t.Fatalf("the stopped consumer handled %d messages", n)
	}
	got := newRecord()
	second := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		got.add(d.ID)
		return nil
	})
	testwait.Until(t, 20*time.Second, "the message the stopped consumer got comes back", func() bool { return got.get("m-1") == 1 })
	settled(t, second)
	noDeadLetter(t, e, "laststop")
}

// notOvertaken: an ordered consumer retries a failing message in place; the
// later ones wait for it.
func (s *suite) notOvertaken(t *testing.T) {
	e := s.f(t)
	publish(t, e, 1, 3)
	var mu sync.Mutex
	var got []string
	o := s.options(e, "order")
	o.BackOff = []time.Duration{20 * time.Millisecond}
	k := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s#%d", d.ID, d.Attempt))
		mu.Unlock()
		if d.ID == "m-1" && d.Attempt < 3 {
			return errors.New("target unavailable")
		}
		return nil
	})
	testwait.Until(t, 20*time.Second, "five handler calls", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 5
	})
	settled(t, k)
	mu.Lock()
	defer mu.Unlock()
	if want := "m-1#1 m-1#2 m-1#3 m-2#1 m-3#1"; strings.Join(got, " ") != want {
		t.Fatalf("handled %s, want %s", strings.Join(got, " "), want)
	}
}

// outlastsMaxDeliver: the target is down for longer than MaxDeliver
// attempts; an ordered consumer dead-letters nothing and delivers every
// message in order once it is back.
func (s *suite) outlastsMaxDeliver(t *testing.T) {
	e := s.f(t)
	const n = 4
	publish(t, e, 1, n)
	o := s.options(e, "down")
	o.MaxDeliver = 2
	o.BackOff = []time.Duration{10 * time.Millisecond, 40 * time.Millisecond}
	var calls atomic.Int64
	var mu sync.Mutex
	var ok []string
	k := consume(t, e, o, func(_ context.Context, d *bus.Delivery) error {
		if calls.Add(1) <= 8 {
			return errors.New("target down")
		}
		mu.Lock()
		ok = append(ok, d.ID)
		mu.Unlock()
		return nil
	})
	testwait.Until(t, 20*time.Second, "every message delivered once the target is back", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ok) >= n
	})
	settled(t, k)
	noDeadLetter(t, e, "down")
	mu.Lock()
	defer mu.Unlock()
	if want := "m-1 m-2 m-3 m-4"; strings.Join(ok, " ") != want {
		t.Fatalf("delivered %s, want %s", strings.Join(ok, " "), want)
	}
}
