package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/lifecycle"
)

func newSupervisor(t *testing.T, cfg lifecycle.SupervisorConfig) *lifecycle.Supervisor {
	t.Helper()
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	cfg.Component = "test/sup"
	s, err := lifecycle.NewSupervisor(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestSupervisorShutdown(t *testing.T) {
	s := newSupervisor(t, lifecycle.SupervisorConfig{})
	var once atomic.Int32
	if err := s.Go("once", func(context.Context) error { once.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	stuckStarted := make(chan struct{})
	if err := s.Go("stuck", func(context.Context) error {
		close(stuckStarted)
		<-release // ignores its context: the injected fault
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Go("stuck", func(context.Context) error { return nil }); !errors.Is(err, lifecycle.ErrWorkerExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	<-stuckStarted
	testwait.Until(t, 5*time.Second, "the nil-returning worker ends", func() bool { return len(s.Running()) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") {
		t.Fatalf("shutdown with a stuck worker: %v", err)
	}
	if err := s.Go("late", func(context.Context) error { return nil }); !errors.Is(err, lifecycle.ErrShutdown) {
		t.Fatalf("Go after Shutdown: %v", err)
	}
	close(release)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("third Shutdown: %v", err)
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("Wait after a clean shutdown: %v", err)
	}
	if once.Load() != 1 {
		t.Fatalf("a worker returning nil ran %d times", once.Load())
	}
}

func TestSupervisorGivesUpAfterRunOfFailures(t *testing.T) {
	var mu sync.Mutex
	var events []string
	s := newSupervisor(t, lifecycle.SupervisorConfig{
		MaxFailures: 3,
		OnEvent: func(ev lifecycle.SupervisorEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%s:%d:fatal=%t", ev.Worker, ev.Failures, ev.Fatal))
		},
	})
	var otherStopped atomic.Bool
	_ = s.Go("other", func(ctx context.Context) error {
		<-ctx.Done()
		otherStopped.Store(true)
		return nil
	})
	_ = s.Go("bad", func(context.Context) error { panic("always") })
	err := s.Wait()
	if !errors.Is(err, lifecycle.ErrGaveUp) || !errors.Is(err, lifecycle.ErrPanic) {
		t.Fatalf("Wait: %v", err)
	}
	var pe *lifecycle.PanicError
	if !errors.As(err, &pe) || !strings.Contains(string(pe.Stack), "supervisor_test.go") {
		t.Fatalf("no panic stack in %v", err)
	}
	select {
	case ferr := <-s.Fatal():
		if ferr != err {
			t.Fatalf("Fatal %v != Wait %v", ferr, err)
		}
	default:
		t.Fatal("nothing on Fatal")
	}
	if !otherStopped.Load() {
		t.Fatal("the other worker was not stopped")
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(events); got != "[bad:1:fatal=false bad:2:fatal=false bad:3:fatal=true]" {
		t.Fatalf("events %s", got)
	}
}

func TestSupervisorRecoveryResetsTheFailureRun(t *testing.T) {
	var recovered atomic.Int32
	s := newSupervisor(t, lifecycle.SupervisorConfig{
		MaxFailures:  3,
		HealthyAfter: 50 * time.Millisecond,
		OnEvent: func(ev lifecycle.SupervisorEvent) {
			if ev.Recovered {
				recovered.Add(1)
			}
		},
	})
	var runs atomic.Int32
	_ = s.Go("wobbly", func(ctx context.Context) error {
		n := runs.Add(1)
		if n == 3 || n == 5 {
			// Healthy for longer than HealthyAfter, then fails again.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(300 * time.Millisecond): // the simulated healthy run
			}
		}
		if n >= 7 {
			<-ctx.Done()
			return nil
		}
		return fmt.Errorf("failure %d", n)
	})
	testwait.Until(t, 10*time.Second, "seven runs", func() bool { return runs.Load() >= 7 })
	select {
	case err := <-s.Fatal():
		t.Fatalf("gave up although the worker recovered in between: %v", err)
	default:
	}
	if recovered.Load() != 2 {
		t.Fatalf("recoveries %d, want 2", recovered.Load())
	}
}

func TestStarterUndoesCompletedStepsInReverse(t *testing.T) {
	var mu sync.Mutex
	var trail []string
	note := func(s string) {
		mu.Lock()
		trail = append(trail, s)
		mu.Unlock()
	}
	step := func(name string, fail error, undoErr error) lifecycle.Step {
		return lifecycle.Step{Name: name, Run: func(context.Context) (lifecycle.Undo, error) {
			if fail != nil {
				note("fail " + name)
				return nil, fail
			}
			note("do " + name)
			return func(context.Context) error { note("undo " + name); return undoErr }, nil
		}}
	}
	s := lifecycle.NewStarter(nil,
		step("a", nil, nil), step("b", nil, errors.New("close b: busy")), step("c", errors.New("listen: address already in use"), nil), step("d", nil, nil))
	_, err := s.Start(context.Background())
	var se *lifecycle.StepError
	if !errors.As(err, &se) || se.Step != "c" {
		t.Fatalf("want a StepError for c, got %v", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, `start step "c": listen: address already in use`) || !strings.Contains(msg, `undo step "b": close b: busy`) {
		t.Fatalf("error %q", msg)
	}
	if got := fmt.Sprint(trail); got != "[do a do b fail c undo b undo a]" {
		t.Fatalf("trail %s", got)
	}

	trail = nil
	ok := lifecycle.NewStarter(nil, step("a", nil, nil), step("b", nil, nil))
	undo, err := ok.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = undo(context.Background()) // a second call does nothing
	if got := fmt.Sprint(trail); got != "[do a do b undo b undo a]" {
		t.Fatalf("trail %s", got)
	}
}

// logBuffer is a bytes.Buffer safe for the supervisor's goroutines to
// write while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSupervisorLogsAWorkerThatReturnsNilAtInfo(t *testing.T) {
	var out logBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := newSupervisor(t, lifecycle.SupervisorConfig{Logger: log})
	if err := s.Go("indexer", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "the worker ends", func() bool { return len(s.Running()) == 0 })
	// The line is written before the worker leaves Running.
	got := out.String()
	if !strings.Contains(got, `level=INFO msg="worker indexer finished: returned nil" worker=indexer`) {
		t.Fatalf("no Info line saying the worker finished and why; log:\n%s", got)
	}
}
