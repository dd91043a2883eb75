package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/internal/retry"
)

// Supervisor errors.
var (
	// ErrShutdown: Go was called after Shutdown (or after the supervisor
	// gave up).
	ErrShutdown = errors.New("supervisor is shut down")
	// ErrGaveUp is wrapped by the fatal error of a supervisor whose worker
	// failed MaxFailures times in a row.
	ErrGaveUp = errors.New("supervisor gave up")
	// ErrPanic is wrapped by the error of a worker that panicked.
	ErrPanic = errors.New("worker panicked")
	// ErrWorkerExists: Go was called with the name of a running worker.
	ErrWorkerExists = errors.New("a worker with this name is running")
)

// PanicError is a recovered worker panic with its stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("%v: %v", ErrPanic, e.Value) }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// SupervisorConfig configures a Supervisor. The zero value works.
type SupervisorConfig struct {
	// Component is the metrics' component label, e.g. "query/orders".
	Component string
	Logger    *slog.Logger
	// Registerer receives tributary_supervisor_restarts_total and
	// tributary_supervisor_panics_total. Default: a private registry.
	Registerer prometheus.Registerer
	// InitialBackoff and MaxBackoff bound the restart delay, grown 1.5x per
	// consecutive failure with jitter. Defaults 100ms and 30s.
	InitialBackoff, MaxBackoff time.Duration
	// MaxFailures consecutive failures of one worker make the supervisor
	// give up. Default 5.
	MaxFailures int
	// HealthyAfter: a worker that runs this long without failing has
	// recovered; its failure count and backoff reset. Default 1 minute.
	HealthyAfter time.Duration
	// OnEvent, when set, is told of every failure, recovery and the
	// give-up, from the failing worker's supervising goroutine. It may
	// block briefly (e.g. to write the state); the restart waits for it.
	OnEvent func(SupervisorEvent)
}

// SupervisorEvent reports a worker's failure, recovery or the give-up.
type SupervisorEvent struct {
	Worker string
	// Err is the failure (a *PanicError for a panic); nil for a recovery.
	Err error
	// Failures is the worker's run of consecutive failures.
	Failures int
	// RestartIn is the delay before the restart (failures only).
	RestartIn time.Duration
	// Recovered: the worker ran HealthyAfter since its last failure.
	Recovered bool
	// Fatal: the supervisor gave up; Err is the fatal error.
	Fatal bool
	// Failing is how many workers are in a run of failures now.
	Failing int
}

type supervisorMetrics struct {
	restarts *prometheus.CounterVec
	panics   *prometheus.CounterVec
}

// Supervisor starts, restarts and waits for a component's workers: every
// long-running goroutine of a component is started with Go; Shutdown
// cancels them and waits. (Goroutines inside the handles a worker uses, such
// as a bus.Consumer, belong to the handle, whose Drain or Close waits for
// them.) It is safe for concurrent use.
type Supervisor struct {
	cfg     SupervisorConfig
	log     *slog.Logger
	metrics supervisorMetrics
	ctx     context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex
	closed   bool
	running  map[string]bool
	failing  map[string]bool
	done     chan struct{} // closed when closed and no worker runs
	doneOnce sync.Once
	fatal    chan error
	fatalErr error
}

// NewSupervisor returns a supervisor whose workers run under a context
// derived from parent: when parent ends, the workers' contexts end too (a
// worker stopping then is not a failure).
func NewSupervisor(parent context.Context, cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 5
	}
	if cfg.HealthyAfter == 0 {
		cfg.HealthyAfter = time.Minute
	}
	if cfg.MaxBackoff < cfg.InitialBackoff || cfg.MaxFailures < 1 {
		return nil, fmt.Errorf("supervisor config: need MaxBackoff >= InitialBackoff and MaxFailures >= 1")
	}
	restarts, err := obs.Register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_supervisor_restarts_total",
		Help: "Workers restarted after a failure (error or panic).",
	}, []string{"component", "worker"}))
	if err != nil {
		return nil, err
	}
	panics, err := obs.Register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_supervisor_panics_total",
		Help: "Worker panics recovered by the supervisor.",
	}, []string{"component", "worker"}))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	return &Supervisor{
		cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		metrics: supervisorMetrics{restarts: restarts, panics: panics},
		running: map[string]bool{}, failing: map[string]bool{},
		done: make(chan struct{}), fatal: make(chan error, 1),
	}, nil
}

// Go starts fn as the worker name. fn must return when its context ends.
// A returned error or a panic is logged, counted and reported (OnEvent),
// and fn is called again after a backoff; after MaxFailures failures in a
// row the supervisor gives up (see Fatal). A nil return ends the worker
// for good, logged at Info ("worker NAME finished: returned nil"). Go
// returns ErrShutdown after Shutdown or the give-up, and ErrWorkerExists if
// a worker of that name runs.
func (s *Supervisor) Go(name string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("starting worker %q: %w", name, ErrShutdown)
	}
	if s.running[name] {
		return fmt.Errorf("starting worker %q: %w", name, ErrWorkerExists)
	}
	s.running[name] = true
	go s.supervise(name, fn)
	return nil
}

// Fatal yields the supervisor's fatal error once, when it gave up.
func (s *Supervisor) Fatal() <-chan error { return s.fatal }

// Wait blocks until the supervisor is shut down (or gave up) and every
// worker returned, and returns the fatal error, if any.
func (s *Supervisor) Wait() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatalErr
}

// Running lists the workers running now, sorted.
func (s *Supervisor) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.running))
	for n := range s.running {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Shutdown refuses new workers, cancels the workers' context and waits for
// them within ctx. If ctx ends first it returns an error naming the
// workers still running. It is idempotent: later calls wait again.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	s.checkDoneLocked()
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("supervisor %s: workers still running after the shutdown deadline: %s: %w",
			s.cfg.Component, strings.Join(s.Running(), ", "), ctx.Err())
	}
}

func (s *Supervisor) checkDoneLocked() {
	if s.closed && len(s.running) == 0 {
		s.doneOnce.Do(func() { close(s.done) })
	}
}

func (s *Supervisor) exited(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, name)
	delete(s.failing, name)
	s.checkDoneLocked()
}

func (s *Supervisor) setFailing(name string, v bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v {
		s.failing[name] = true
	} else {
		delete(s.failing, name)
	}
	return len(s.failing)
}

func (s *Supervisor) emit(ev SupervisorEvent) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(ev)
	}
}

// supervise runs one worker until it returns nil, the context ends, or the
// supervisor gives up.
func (s *Supervisor) supervise(name string, fn func(ctx context.Context) error) {
	defer s.exited(name)
	log := s.log.With("worker", name)
	bo := retry.NewBackOff(s.cfg.InitialBackoff, s.cfg.MaxBackoff)
	failures := 0
	for {
		err := s.runOnce(name, fn, &failures, bo)
		if s.ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Debug("worker ended during shutdown", "err", err)
			}
			return
		}
		if err == nil {
			// Not a failure, but the worker is gone for good: say so where
			// an operator sees it, so that a worker that stopped doing its
			// job is no mystery.
			log.Info(fmt.Sprintf("worker %s finished: returned nil", name))
			return
		}
		failures++
		labels := prometheus.Labels{"component": s.cfg.Component, "worker": name}
		var pe *PanicError
		if errors.As(err, &pe) {
			s.metrics.panics.With(labels).Inc()
			log.Error("worker panicked", "panic", fmt.Sprint(pe.Value), "failures", failures, "stack", string(pe.Stack))
		}
		failing := s.setFailing(name, true)
		if failures >= s.cfg.MaxFailures {
			s.giveUp(name, err, failures, failing)
			return
		}
		d := bo.NextBackOff()
		log.Error("worker failed; restarting", "err", err, "failures", failures, "restart_in", d)
		s.emit(SupervisorEvent{Worker: name, Err: err, Failures: failures, RestartIn: d, Failing: failing})
		if retry.Sleep(s.ctx, d) != nil {
			return
		}
		s.metrics.restarts.With(labels).Inc()
	}
}

// runOnce calls fn in a goroutine it waits for, so that it can declare the
// worker recovered after HealthyAfter while fn still runs.
func (s *Supervisor) runOnce(name string, fn func(ctx context.Context) error, failures *int, bo *backoff.ExponentialBackOff) error {
	res := make(chan error, 1)
	go func() { res <- call(s.ctx, fn) }()
	var healthy <-chan time.Time
	if *failures > 0 {
		t := time.NewTimer(s.cfg.HealthyAfter)
		defer t.Stop()
		healthy = t.C
	}
	for {
		select {
		case err := <-res:
			return err
		case <-healthy:
			healthy = nil
			*failures = 0
			bo.Reset()
			failing := s.setFailing(name, false)
			s.log.Info("worker recovered", "worker", name)
			s.emit(SupervisorEvent{Worker: name, Recovered: true, Failing: failing})
		}
	}
}

// call runs fn, turning a panic into a *PanicError.
func call(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

func (s *Supervisor) giveUp(name string, err error, failures, failing int) {
	fatal := fmt.Errorf("%w: worker %q of %s failed %d times in a row: %w", ErrGaveUp, name, s.cfg.Component, failures, err)
	s.mu.Lock()
	first := s.fatalErr == nil
	if first {
		s.fatalErr = fatal
		s.closed = true
		s.cancel()
	}
	s.mu.Unlock()
	if !first {
		return
	}
	s.log.Error("giving up: stopping every worker", "err", fatal)
	s.emit(SupervisorEvent{Worker: name, Err: fatal, Failures: failures, Fatal: true, Failing: failing})
	s.fatal <- fatal
}
