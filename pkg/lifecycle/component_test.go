package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
	"go.uber.org/goleak"
)

func TestTransitionTable(t *testing.T) {
	// The table as the design states it, written out independently.
	allowed := map[string]bool{
		"stopped->starting": true,
		"starting->running": true, "starting->stopping": true, "starting->error": true,
		"running->degraded": true, "running->stopping": true, "running->error": true,
		"degraded->running": true, "degraded->stopping": true, "degraded->error": true,
		"stopping->stopped": true, "stopping->error": true,
		"error->starting": true, "error->stopping": true,
	}
	n := 0
	for _, from := range lifecycle.States {
		for _, to := range lifecycle.States {
			key := fmt.Sprintf("%s->%s", from, to)
			err := lifecycle.CheckTransition(from, to)
			if allowed[key] {
				n++
				if err != nil {
					t.Errorf("%s: want allowed, got %v", key, err)
				}
				continue
			}
			if !errors.Is(err, lifecycle.ErrInvalidTransition) {
				t.Errorf("%s: want ErrInvalidTransition, got %v", key, err)
				continue
			}
			var te *lifecycle.TransitionError
			if !errors.As(err, &te) || te.From != from || te.To != to {
				t.Errorf("%s: want a TransitionError with both states, got %#v", key, err)
			}
			if msg := err.Error(); !strings.Contains(msg, string(from)) || !strings.Contains(msg, string(to)) {
				t.Errorf("%s: message %q does not name both states", key, msg)
			}
		}
	}
	if n != len(allowed) {
		t.Fatalf("checked %d allowed transitions, the table has %d", n, len(allowed))
	}
}

func TestStoreRejectsInvalidTransition(t *testing.T) {
	f := newFixture(t)
	id := lifecycle.ComponentID{Kind: "query", ID: "q.1"}
	_, err := f.store.Change(context.Background(), id, func(lifecycle.Record) (lifecycle.Status, error) {
		return lifecycle.Status{State: lifecycle.Running}, nil
	})
	if !errors.Is(err, lifecycle.ErrInvalidTransition) || !strings.Contains(err.Error(), "from stopped to running") {
		t.Fatalf("want an invalid transition naming both states, got %v", err)
	}
	if r := f.state(t, id); r.Revision != 0 {
		t.Fatalf("an invalid transition was written: %+v", r)
	}
}

// M3: of many concurrent starts exactly one wins, decided by the KV
// compare-and-swap (each Start reads and writes the KV itself).
func TestConcurrentStartsExactlyOneWins(t *testing.T) {
	f := newFixture(t)
	var steps atomic.Int32
	c := f.component(t, "query", "orders")
	c.AddStep("count", func(context.Context) (lifecycle.Undo, error) {
		steps.Add(1)
		return nil, nil
	})
	const n = 50
	var wg sync.WaitGroup
	var wins, lost atomic.Int32
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			err := c.Start(context.Background())
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, lifecycle.ErrAlreadyStarting), errors.Is(err, lifecycle.ErrInvalidTransition):
				lost.Add(1)
			default:
				t.Errorf("start: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || lost.Load() != n-1 || steps.Load() != 1 {
		t.Fatalf("wins %d, lost %d, steps run %d; want 1, %d, 1", wins.Load(), lost.Load(), steps.Load(), n-1)
	}
	hist, err := f.store.History(context.Background(), c.ID())
	if err != nil {
		t.Fatal(err)
	}
	claims := 0
	var trail []string
	for _, e := range hist {
		trail = append(trail, fmt.Sprintf("%s->%s", e.From, e.To))
		if e.From == lifecycle.Stopped && e.To == lifecycle.Starting {
			claims++
		}
	}
	if claims != 1 || fmt.Sprint(trail) != "[stopped->starting starting->running]" {
		t.Fatalf("history %v: want exactly one claim then running", trail)
	}
	if c.State() != lifecycle.Running || c.Ready() != nil {
		t.Fatalf("state %s, ready %v", c.State(), c.Ready())
	}
}

func TestStartStopEventsSurviveServerRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c := f.component(t, "reaction", "hook", func(cfg *lifecycle.Config) { cfg.Registerer = reg })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	gauge := func(s lifecycle.State) float64 {
		return metricValue(t, reg, "tributary_component_state", prometheus.Labels{"kind": "reaction", "id": "hook", "state": string(s)})
	}
	if gauge(lifecycle.Running) != 1 || gauge(lifecycle.Stopped) != 0 {
		t.Fatal("state gauge does not show running")
	}
	// got is the stored history of transitions; recorded waits until it
	// holds k of them.
	var got []string
	recorded := func(k int) {
		t.Helper()
		testwait.UntilErr(ctx, t, 10*time.Second, fmt.Sprintf("%d transitions recorded", k), func() (bool, error) {
			hist, err := f.store.History(ctx, c.ID())
			if err != nil {
				return false, err
			}
			got = got[:0]
			for _, e := range hist {
				got = append(got, fmt.Sprintf("%s->%s", e.From, e.To))
				if e.Component != c.ID() || e.Revision == 0 || e.Instance != c.Instance() {
					t.Fatalf("event %+v", e)
				}
			}
			return len(got) >= k, fmt.Errorf("transitions so far %v", got)
		})
	}
	recorded(2)
	// Degraded while the bus itself is down: visible locally at once, in
	// the KV once the bus is back.
	f.srv.Shutdown()
	c.SetDegraded("postgres: reconnecting")
	if c.Ready() == nil || gauge(lifecycle.Degraded) != 1 {
		t.Fatal("SetDegraded not visible locally")
	}
	f.srv.Restart()
	testwait.Until(t, 10*time.Second, "reconnect", f.conn.Connected)
	recorded(3)
	testwait.Until(t, 5*time.Second, "degraded in KV", func() bool {
		r := f.state(t, c.ID())
		return r.State == lifecycle.Degraded && r.Message == "postgres: reconnecting"
	})
	c.SetRunning()
	recorded(4)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	recorded(6)
	want := "[stopped->starting starting->running running->degraded degraded->running running->stopping stopping->stopped]"
	if fmt.Sprint(got) != want {
		t.Fatalf("transitions %v\nwant %s", got, want)
	}
	if gauge(lifecycle.Stopped) != 1 || gauge(lifecycle.Running) != 0 {
		t.Fatal("state gauge does not show stopped")
	}
	if _, err := f.leases.Get(ctx, c.ID().Key()); err == nil {
		t.Fatal("lease not released by Stop")
	}
}

// C1: a panicking worker is detected, reported in the KV state and the
// metrics, and restarted.
func TestPanickingWorkerIsReportedAndRestarted(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	c := f.component(t, "source", "pg", func(cfg *lifecycle.Config) {
		cfg.Registerer = reg
		cfg.Supervisor.HealthyAfter = time.Second
	})
	var runs atomic.Int32
	c.AddStep("worker", func(context.Context) (lifecycle.Undo, error) {
		return nil, c.Go("replicate", func(ctx context.Context) error {
			if runs.Add(1) == 1 {
				panic("boom: nil slot")
			}
			<-ctx.Done()
			return nil
		})
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "degraded state naming the panic", func() bool {
		r := f.state(t, c.ID())
		return r.State == lifecycle.Degraded && strings.Contains(r.Message, "boom: nil slot") && strings.Contains(r.Message, "replicate")
	})
	testwait.Until(t, 5*time.Second, "restart", func() bool { return runs.Load() == 2 })
	labels := prometheus.Labels{"component": "source/pg", "worker": "replicate"}
	restarts := metricValue(t, reg, "tributary_supervisor_restarts_total", labels)
	panics := metricValue(t, reg, "tributary_supervisor_panics_total", labels)
	if restarts != 1 || panics != 1 {
		t.Fatalf("restarts %v panics %v, want 1 and 1", restarts, panics)
	}
	// After HealthyAfter without failing the component is running again.
	testwait.Until(t, 5*time.Second, "running again", func() bool { return f.state(t, c.ID()).State == lifecycle.Running })
}

// metricValue reads a counter or gauge with the given labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels prometheus.Labels) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func TestRunOfFailuresIsFatal(t *testing.T) {
	f := newFixture(t)
	c := f.component(t, "query", "broken", func(cfg *lifecycle.Config) { cfg.Supervisor.MaxFailures = 3 })
	var other atomic.Bool
	c.AddStep("workers", func(context.Context) (lifecycle.Undo, error) {
		if err := c.Go("healthy", func(ctx context.Context) error {
			other.Store(true)
			<-ctx.Done()
			other.Store(false)
			return ctx.Err()
		}); err != nil {
			return nil, err
		}
		return nil, c.Go("flaky", func(context.Context) error { return errors.New("cannot reach the database") })
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.Fatal():
		if !errors.Is(err, lifecycle.ErrGaveUp) || !strings.Contains(err.Error(), "cannot reach the database") || !strings.Contains(err.Error(), "3 times") {
			t.Fatalf("fatal error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fatal error")
	}
	testwait.Until(t, 5*time.Second, "other workers stopped", func() bool { return !other.Load() })
	r := f.state(t, c.ID())
	if r.State != lifecycle.Error || !strings.Contains(r.Message, "flaky") {
		t.Fatalf("state %+v, want error naming the worker", r)
	}
	if err := c.Go("late", func(context.Context) error { return nil }); !errors.Is(err, lifecycle.ErrShutdown) {
		t.Fatalf("Go after the give-up: %v", err)
	}
}

// H2: a start that fails half way rolls back what it started: no
// goroutine and no listener stays behind, and the state says why.
func TestFailedStartLeaksNothing(t *testing.T) {
	f := newFixture(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	before := goleak.IgnoreCurrent()

	c := f.component(t, "reaction", "webhook")
	var firstAddr string
	c.AddStep("listener", func(ctx context.Context) (lifecycle.Undo, error) {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		firstAddr = ln.Addr().String()
		return func(context.Context) error { return ln.Close() }, nil
	})
	var workers atomic.Int32
	c.AddStep("workers", func(context.Context) (lifecycle.Undo, error) {
		for i := range 2 {
			if err := c.Go(fmt.Sprintf("deliver-%d", i), func(ctx context.Context) error {
				workers.Add(1)
				defer workers.Add(-1)
				<-ctx.Done()
				return nil
			}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	c.AddStep("metrics listener", func(ctx context.Context) (lifecycle.Undo, error) {
		s, err := obs.Serve(ctx, taken.Addr().String(), prometheus.NewRegistry(), nil)
		if err != nil {
			return nil, err
		}
		return s.Shutdown, nil
	})
	err = c.Start(context.Background())
	var se *lifecycle.StepError
	if !errors.As(err, &se) || se.Step != "metrics listener" || !strings.Contains(err.Error(), `start step "metrics listener"`) ||
		!strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("want the metrics step's error, got %v", err)
	}
	if workers.Load() != 0 {
		t.Fatalf("%d workers still running", workers.Load())
	}
	goleak.VerifyNone(t, before)
	ln, err := net.Listen("tcp", firstAddr)
	if err != nil {
		t.Fatalf("first listener leaked: %v", err)
	}
	ln.Close()
	r := f.state(t, c.ID())
	if r.State != lifecycle.Error || !strings.Contains(r.Message, "metrics listener") {
		t.Fatalf("state %+v", r)
	}
	if _, err := f.leases.Get(context.Background(), c.ID().Key()); err == nil {
		t.Fatal("lease kept after a failed start")
	}
	if c.LeaseToken() != 0 || c.State() != lifecycle.Error {
		t.Fatalf("local view: token %d state %s", c.LeaseToken(), c.State())
	}
	// Error -> Starting: a fixed start succeeds.
	c2 := f.component(t, "reaction", "webhook")
	if err := c2.Start(context.Background()); err != nil {
		t.Fatalf("start after a failed start: %v", err)
	}
}

// A standby instance takes over at once when the active one stops
// gracefully, and finds the component stopped, not abandoned.
func TestStandbyTakesOverOnGracefulStop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.component(t, "query", "handover")
	standingBy := &signalWriter{match: "standing by", seen: make(chan struct{})}
	b := f.component(t, "query", "handover", func(cfg *lifecycle.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(standingBy, nil))
	})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the standby if the test fails early
	go func() { started <- b.Start(bctx) }()
	select {
	case <-standingBy.seen:
	case err := <-started:
		t.Fatalf("b started while a runs: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("b never stood by")
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(leaseTTL):
		t.Fatal("b did not take over within a TTL of a's stop")
	}
	if b.LeaseToken() <= a.LeaseToken() || b.State() != lifecycle.Running {
		t.Fatalf("b: token %d state %s", b.LeaseToken(), b.State())
	}
	hist, err := f.store.History(ctx, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, e := range hist {
		who := "a"
		if e.Instance == b.Instance() {
			who = "b"
		}
		trail = append(trail, fmt.Sprintf("%s->%s(%s)", e.From, e.To, who))
	}
	want := "[stopped->starting(a) starting->running(a) running->stopping(a) stopping->stopped(a) stopped->starting(b) starting->running(b)]"
	if fmt.Sprint(trail) != want {
		t.Fatalf("history %v\nwant %s", trail, want)
	}
}

// signalWriter closes seen the first time a log line contains match.
type signalWriter struct {
	match string
	seen  chan struct{}
	once  sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.match) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// NotReady holds readiness back without touching the state: a component
// that runs but cannot serve yet (a source taking its initial snapshot) is
// Running in the KV and in the gauge, yet Ready fails with every reason
// until each cause is cleared; one cause cannot clear another.
func TestNotReadyHoldsReadinessWithoutChangingState(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.component(t, "source", "held")
	c.NotReady("postgres", "taking the initial snapshot")
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	if c.State() != lifecycle.Running {
		t.Fatalf("state %s, want running", c.State())
	}
	c.NotReady("other", "warming a cache")
	err := c.Ready()
	if err == nil || !strings.Contains(err.Error(), "warming a cache; taking the initial snapshot") {
		t.Fatalf("Ready: want both reasons, got %v", err)
	}
	c.NotReady("postgres", "")
	if err := c.Ready(); err == nil || strings.Contains(err.Error(), "snapshot") || !strings.Contains(err.Error(), "warming a cache") {
		t.Fatalf("Ready after clearing one cause: want only the other reason, got %v", err)
	}
	// Degraded wins: its reason is what an operator needs first.
	c.Degrade("nats", "NATS connection lost")
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "degraded: NATS connection lost") {
		t.Fatalf("Ready while degraded: got %v", err)
	}
	c.Degrade("nats", "")
	c.NotReady("other", "")
	if err := c.Ready(); err != nil {
		t.Fatalf("Ready with every cause cleared: %v", err)
	}
	testwait.Until(t, 5*time.Second, "running in the KV", func() bool {
		return f.state(t, c.ID()).State == lifecycle.Running
	})
}

// fencedErr is what a worker's write returns once a newer lease holder
// claimed its fence.
var fencedErr = fmt.Errorf("publishing batch 7: %w", bus.ErrFenced)

// A worker fenced out by a newer holder is not restarted: the component
// steps down in-process (lease ended, workers stopped, steps undone),
// stands by while the lease key is held (here by its own stale value, as it
// is by a newer holder's), and takes the lease back with a newer token
// once the key expires, running its steps again. Nothing is reported on
// Fatal, and Stop then stops it as usual.
func TestFencedWorkerStepsDownAndStandsBy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	a := f.component(t, "source", "fenced", func(cfg *lifecycle.Config) { cfg.Registerer = reg })
	var steps, undos, runs atomic.Int32
	fence := make(chan struct{})
	a.AddStep("replication", func(context.Context) (lifecycle.Undo, error) {
		steps.Add(1)
		err := a.Go("replicate", func(ctx context.Context) error {
			if runs.Add(1) > 1 {
				<-ctx.Done()
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-fence:
				return fencedErr
			}
		})
		return func(context.Context) error { undos.Add(1); return nil }, err
	})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	token := a.LeaseToken()
	close(fence)
	testwait.Until(t, 10*time.Second, "a stepped down", func() bool {
		return a.LeaseToken() == 0 && undos.Load() == 1
	})
	if runs.Load() != 1 || steps.Load() != 1 || a.State() == lifecycle.Running {
		t.Fatalf("after the step-down: worker ran %d times, steps %d, state %s (want 1, 1, not running)", runs.Load(), steps.Load(), a.State())
	}
	if n := metricValue(t, reg, "tributary_component_step_downs_total", prometheus.Labels{"kind": "source", "id": "fenced"}); n != 1 {
		t.Fatalf("step-downs counted: %v, want 1", n)
	}
	testwait.Until(t, 3*leaseTTL, "a running again", func() bool { return a.State() == lifecycle.Running })
	if steps.Load() != 2 || runs.Load() != 2 || a.LeaseToken() <= token {
		t.Fatalf("a again: steps %d, runs %d, token %d (was %d)", steps.Load(), runs.Load(), a.LeaseToken(), token)
	}
	select {
	case err := <-a.Fatal():
		t.Fatalf("a reported %v on Fatal", err)
	default:
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if undos.Load() != 2 || a.State() != lifecycle.Stopped {
		t.Fatalf("after Stop: undone %d times, state %s", undos.Load(), a.State())
	}
}

// Stop ends the standby of a component that stepped down: Stop returns
// promptly and nothing of it runs afterwards (goleak checks the rest).
func TestStopEndsStandbyAfterStepDown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.component(t, "source", "stepdown-stop")
	fence := make(chan struct{})
	var steps atomic.Int32
	a.AddStep("replication", func(context.Context) (lifecycle.Undo, error) {
		steps.Add(1)
		return nil, a.Go("replicate", func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return nil
			case <-fence:
				return fencedErr
			}
		})
	})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	close(fence)
	testwait.Until(t, 10*time.Second, "a standing by", func() bool { return a.LeaseToken() == 0 && a.State() != lifecycle.Running })
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Stop of a standing-by component took %s", took)
	}
	if steps.Load() != 1 || a.LeaseToken() != 0 {
		t.Fatalf("after Stop: steps %d, token %d", steps.Load(), a.LeaseToken())
	}
}

// A lease lost to another holder (the key overwritten, as by an instance
// that took over after this one was paused) steps the component down in
// the process, not fatally: it stands by while the other's key lives and
// takes the component back once that key expires.
func TestLostLeaseStepsDownAndStandsBy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.component(t, "query", "lost")
	var steps atomic.Int32
	a.AddStep("work", func(context.Context) (lifecycle.Undo, error) {
		steps.Add(1)
		return nil, a.Go("work", func(ctx context.Context) error { <-ctx.Done(); return nil })
	})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	token := a.LeaseToken()
	var err error
	for range 5 { // a renewal may land in between: retry at the new revision
		var e bus.Entry
		if e, err = f.leases.Get(ctx, a.ID().Key()); err != nil {
			t.Fatal(err)
		}
		if _, err = f.leases.Update(ctx, a.ID().Key(), []byte(`{"holder":"intruder"}`), e.Revision); !errors.Is(err, bus.ErrRevisionMismatch) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, leaseTTL, "a stepping down", func() bool { return a.LeaseToken() == 0 })
	if st := a.State(); st == lifecycle.Running {
		t.Fatalf("a is %s after losing its lease", st)
	}
	testwait.Until(t, 3*leaseTTL, "a taking the component back", func() bool { return a.State() == lifecycle.Running })
	if steps.Load() != 2 || a.LeaseToken() <= token {
		t.Fatalf("steps %d, token %d (was %d)", steps.Load(), a.LeaseToken(), token)
	}
	select {
	case err := <-a.Fatal():
		t.Fatalf("a reported %v on Fatal", err)
	default:
	}
}
