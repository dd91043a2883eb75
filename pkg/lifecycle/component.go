package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/pkg/bus"
)

// Component errors.
var (
	// ErrAlreadyStarting: Start lost the race to another Start of the same
	// instance, which is starting the component now.
	ErrAlreadyStarting = errors.New("component is already starting")
	// ErrNotStarted: Go was called while this instance does not run the
	// component.
	ErrNotStarted = errors.New("component is not started by this instance")
	// errNotOwner: another instance owns the component; leave its state.
	errNotOwner = errors.New("component is owned by another instance")
)

// writeTimeout bounds state writes made outside a caller's context
// (reports from workers, failures, rollbacks).
const writeTimeout = 5 * time.Second

// Config configures a Component.
type Config struct {
	Kind, ID string
	// Instance names this process instance in states and leases. It must
	// be unique per process incarnation; default hostname-pid-random.
	Instance string
	// Store is the lifecycle bucket's store; Leases the lease bucket, whose
	// TTL is LeaseTTL.
	Store    *Store
	Leases   *bus.KV
	LeaseTTL time.Duration
	// Supervisor tunes the component's supervisor (Component, Logger,
	// Registerer and OnEvent are set by the Component).
	Supervisor SupervisorConfig
	Logger     *slog.Logger
	// Registerer receives tributary_component_state and the supervisor's
	// metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

// Component ties a component's state, lease, supervisor and start steps
// together. Add steps with AddStep before Start; steps start goroutines
// with Go. It is safe for concurrent use.
type Component struct {
	cfg   Config
	id    ComponentID
	log   *slog.Logger
	store *Store
	gauge *prometheus.GaugeVec
	// stepDowns counts the runs that lost their lease and stepped down.
	stepDowns prometheus.Counter

	stepsMu sync.Mutex
	steps   []Step
	stopMu  sync.Mutex

	mu      sync.Mutex
	run     *componentRun
	local   State
	reasons map[string]string // why the component is degraded, by source
	pending map[string]string // why the component is not ready yet, by cause
	kick    chan struct{}
	fatal   chan error
	// A run that lost its lease is stepped down and the component stands
	// by again, in a goroutine of its own (rejoin): standby cancels its
	// wait, rejoins waits for it. stopping is true while Stop runs: no
	// rejoin starts then.
	standby  context.CancelFunc
	stopping bool
	rejoins  sync.WaitGroup
}

type componentRun struct {
	sup   *Supervisor
	lease *Lease
	undo  Undo
	// running: the start completed (guarded by Component.mu).
	running bool
}

// NewComponent validates cfg and returns a stopped component.
func NewComponent(cfg Config) (*Component, error) {
	id := ComponentID{Kind: cfg.Kind, ID: cfg.ID}
	var probs []string
	if err := id.validate(); err != nil {
		probs = append(probs, err.Error())
	}
	if cfg.Store == nil {
		probs = append(probs, "store: required")
	}
	if cfg.Leases == nil {
		probs = append(probs, "leases: required")
	}
	if cfg.LeaseTTL <= 0 {
		probs = append(probs, "leaseTTL: must be positive (the lease bucket's TTL)")
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("component config: %s", strings.Join(probs, "; "))
	}
	if cfg.Instance == "" {
		cfg.Instance = NewInstanceID()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	gauge, err := obs.Register(cfg.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_component_state",
		Help: "1 for the component's current state in this instance, 0 for the others.",
	}, []string{"kind", "id", "state"}))
	if err != nil {
		return nil, err
	}
	stepDowns, err := obs.Register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_component_step_downs_total",
		Help: "Runs of the component in this instance that lost their lease (not renewed, taken over, or a write fenced out) and stepped down to stand by.",
	}, []string{"kind", "id"}))
	if err != nil {
		return nil, err
	}
	c := &Component{
		cfg: cfg, id: id, store: cfg.Store, gauge: gauge,
		stepDowns: stepDowns.WithLabelValues(id.Kind, id.ID),
		log:       cfg.Logger.With("component", id.Kind, "id", id.ID, "instance", cfg.Instance),
		reasons:   map[string]string{},
		pending:   map[string]string{},
		kick:      make(chan struct{}, 1),
		fatal:     make(chan error, 1),
	}
	c.setLocal(Stopped)
	return c, nil
}

// NewInstanceID returns hostname-pid-random, unique per process
// incarnation.
func NewInstanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", bus.KeyToken(host), os.Getpid(), hex.EncodeToString(b))
}

// ID is the component's id.
func (c *Component) ID() ComponentID { return c.id }

// Instance is this instance's name.
func (c *Component) Instance() string { return c.cfg.Instance }

// AddStep appends a start step (see Starter). Steps run in order on each
// Start; a failing step rolls back the completed ones. The step's ctx
// bounds the step only: what it starts lives until its Undo (goroutines are
// started with Go and live until Stop or a failure).
func (c *Component) AddStep(name string, run func(ctx context.Context) (Undo, error)) {
	c.stepsMu.Lock()
	defer c.stepsMu.Unlock()
	c.steps = append(c.steps, Step{Name: name, Run: run})
}

// Go starts a supervised worker in the current run (see Supervisor.Go);
// start steps call it. Workers run under the lease: losing it cancels
// their context. A worker that returns an error wrapping bus.ErrFenced (a
// write refused because a newer lease holder claimed the worker's fence)
// is not restarted: the lease ends as lost (Lease.Lose) and the component
// steps down like after any lost lease (see Start). It returns
// ErrNotStarted when this instance does not run the component,
// ErrShutdown while it stops, ErrWorkerExists for a name in use
// ("lifecycle-state" and "lifecycle-lease" are the Component's own).
func (c *Component) Go(name string, fn func(ctx context.Context) error) error {
	c.mu.Lock()
	r := c.run
	c.mu.Unlock()
	if r == nil {
		return fmt.Errorf("starting worker %q of %s: %w", name, c.id, ErrNotStarted)
	}
	return r.sup.Go(name, func(ctx context.Context) error {
		err := fn(ctx)
		if errors.Is(err, bus.ErrFenced) {
			c.log.Error("worker fenced out by a newer lease holder; stepping down", "worker", name, "err", err)
			r.lease.Lose(fmt.Errorf("worker %s: %w", name, err))
			return nil
		}
		return err
	})
}

// Fatal yields an error when the component failed for good while running:
// its supervisor gave up (ErrGaveUp), its workers did not stop when it
// stepped down after losing its lease, or starting again after that
// failed. Its work has stopped and its state is Error; the process should
// call Stop and exit non-zero. A lost lease alone is not fatal: the
// component steps down and stands by (see Start).
func (c *Component) Fatal() <-chan error { return c.fatal }

// State is this instance's view of the component's state.
func (c *Component) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

// LeaseToken is the fencing token of the lease held now (0 if none).
func (c *Component) LeaseToken() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.run == nil {
		return 0
	}
	return c.run.lease.Token()
}

// Ready returns nil while the component runs normally in this instance and
// nothing holds it back (NotReady), and otherwise says why not (for /readyz).
func (c *Component) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.local {
	case Running:
		if len(c.pending) > 0 {
			return fmt.Errorf("%s is not ready yet: %s", c.id, joinReasons(c.pending))
		}
		return nil
	case Degraded:
		return fmt.Errorf("%s is degraded: %s", c.id, joinReasons(c.reasons))
	}
	return fmt.Errorf("%s is %s", c.id, c.local)
}

// NotReady reports, for one cause, that the component runs but cannot do
// its work yet: a source still connecting to its database or taking its
// initial snapshot, say. Ready (and /readyz) fails with the reason while any
// cause has one; the component's state stays Running, since nothing is
// wrong. An empty reason clears that cause only.
func (c *Component) NotReady(cause, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason == "" {
		delete(c.pending, cause)
	} else {
		c.pending[cause] = reason
	}
}

func (c *Component) setLocal(s State) {
	c.mu.Lock()
	c.local = s
	c.mu.Unlock()
	for _, st := range States {
		v := 0.0
		if st == s {
			v = 1
		}
		c.gauge.WithLabelValues(c.id.Kind, c.id.ID, string(st)).Set(v)
	}
}

func (c *Component) status(s State, msg string) Status {
	return Status{State: s, Message: msg, Instance: c.cfg.Instance, UpdatedBy: c.cfg.Instance}
}

// activeElsewhere: the component is active in another instance.
type activeElsewhere struct{ cur Record }

func (e *activeElsewhere) Error() string {
	return fmt.Sprintf("component is %s in instance %s", e.cur.State, e.cur.Instance)
}

// Start claims the component and starts it, all or nothing:
//
//  1. compare-and-swap Stopped|Error -> Starting. Of concurrent Starts of
//     this instance exactly one wins; the others return ErrAlreadyStarting
//     (or a *TransitionError when it is already running). If another
//     instance owns the component, Start stands by: it waits for that
//     instance's lease, then records its end (-> Error) and claims it.
//  2. acquire the lease (waiting while another instance holds it);
//  3. run the start steps; workers run under the lease's context;
//  4. Starting -> Running.
//
// If a step fails, the completed steps are undone, the workers stopped,
// the lease released and the state set to Error with the reason; the
// error is a *StepError naming the step. ctx bounds the whole start,
// including the standby wait.
//
// Once running, a lost lease (not renewed in time, taken by another
// instance, or ended by a fenced worker: see Go) steps the component down
// in this instance: the workers are stopped (their context ended with the
// lease), the start steps undone, the state recorded as Error with the
// reason while this instance still owns it, and the component stands by
// again as Start does, in a goroutine of its own, until it takes the lease
// back (the steps run again) or Stop; meanwhile its State is Stopped, then
// Starting while it waits for the lease, and LeaseToken is 0. A lease lost
// before the start completed is fatal instead (Fatal).
func (c *Component) Start(ctx context.Context) error {
	var lease *Lease
	_, err := c.store.Change(ctx, c.id, func(cur Record) (Status, error) {
		switch {
		case cur.State == Stopped || cur.State == Error:
			return c.status(Starting, "starting"), nil
		case cur.Instance == c.cfg.Instance && cur.State == Starting:
			return Status{}, fmt.Errorf("starting %s: %w", c.id, ErrAlreadyStarting)
		case cur.Instance == c.cfg.Instance:
			return Status{}, fmt.Errorf("starting %s: %w", c.id, &TransitionError{From: cur.State, To: Starting})
		default:
			return Status{}, &activeElsewhere{cur: cur}
		}
	})
	var ae *activeElsewhere
	if errors.As(err, &ae) {
		c.log.Info("standing by: the component is active in another instance", "state", ae.cur.State, "owner", ae.cur.Instance)
		if lease, err = c.acquireLease(ctx); err != nil {
			return err
		}
		if err = c.takeOver(ctx); err != nil {
			c.releaseQuietly(lease)
			return err
		}
	} else if err != nil {
		return err
	}
	c.setLocal(Starting)
	c.log.Info("starting")

	if lease == nil {
		if lease, err = c.acquireLease(ctx); err != nil {
			c.failStart(nil, err)
			return err
		}
	}
	scfg := c.cfg.Supervisor
	scfg.Component = c.id.String()
	scfg.Logger = c.log
	scfg.Registerer = c.cfg.Registerer
	scfg.OnEvent = c.onSupervisorEvent
	sup, err := NewSupervisor(lease.Context(), scfg)
	if err != nil {
		c.releaseQuietly(lease)
		c.failStart(nil, err)
		return err
	}
	r := &componentRun{sup: sup, lease: lease}
	c.mu.Lock()
	c.run = r
	for k := range c.reasons {
		if strings.HasPrefix(k, workerReason) {
			delete(c.reasons, k) // from an earlier run's workers
		}
	}
	c.mu.Unlock()
	_ = sup.Go("lifecycle-state", c.reportLoop)
	_ = sup.Go("lifecycle-lease", func(ctx context.Context) error {
		<-ctx.Done()
		if err := lease.Err(); errors.Is(err, ErrLeaseLost) {
			c.stepDown(r, err)
		}
		return nil
	})

	c.stepsMu.Lock()
	starter := NewStarter(c.log, c.steps...)
	c.stepsMu.Unlock()
	undo, err := starter.Start(ctx)
	if err != nil {
		c.failStart(r, err)
		return fmt.Errorf("starting %s: %w", c.id, err)
	}
	r.undo = undo
	if _, err := c.store.Change(ctx, c.id, c.owned(Starting, Running, "")); err != nil {
		c.failStart(r, err)
		return fmt.Errorf("starting %s: %w", c.id, err)
	}
	c.mu.Lock()
	r.running = true
	c.mu.Unlock()
	c.setLocal(Running)
	c.poke() // report a degradation that came while starting
	c.log.Info("running", "fencing_token", lease.Token())
	return nil
}

// takeOver, with the lease held, records the end of the previous owner
// (-> Error) and claims the component (-> Starting).
func (c *Component) takeOver(ctx context.Context) error {
	for {
		claimed := false
		_, err := c.store.Change(ctx, c.id, func(cur Record) (Status, error) {
			switch {
			case cur.State == Stopped || cur.State == Error:
				claimed = true
				return c.status(Starting, "starting"), nil
			case cur.Instance == c.cfg.Instance:
				return Status{}, fmt.Errorf("starting %s: %w", c.id, ErrAlreadyStarting)
			default:
				claimed = false
				st := c.status(Error, fmt.Sprintf("instance %s lost its lease; %s takes over", cur.Instance, c.cfg.Instance))
				st.Instance = cur.Instance
				return st, nil
			}
		})
		if err != nil {
			return err
		}
		if claimed {
			return nil
		}
	}
}

func (c *Component) acquireLease(ctx context.Context) (*Lease, error) {
	l, err := AcquireLease(ctx, LeaseConfig{
		KV: c.cfg.Leases, Key: c.id.Key(), TTL: c.cfg.LeaseTTL,
		Holder: c.cfg.Instance, Logger: c.log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: waiting for its lease: %w", c.id, err)
	}
	return l, nil
}

func (c *Component) releaseQuietly(l *Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		c.log.Warn("releasing the lease failed; it expires by itself", "err", err)
	}
}

// owned decides a transition to `to` of a component this instance owns;
// from, when not "", is the only state it applies to.
func (c *Component) owned(from, to State, msg string) func(Record) (Status, error) {
	return func(cur Record) (Status, error) {
		if cur.Instance != "" && cur.Instance != c.cfg.Instance {
			return Status{}, fmt.Errorf("component %s (%s in %s): %w", c.id, cur.State, cur.Instance, errNotOwner)
		}
		if from != "" && cur.State != from {
			return Status{}, fmt.Errorf("component %s: %w", c.id, &TransitionError{From: cur.State, To: to})
		}
		if cur.State == to {
			return Status{}, errNoChange // e.g. Error already recorded, with its first reason
		}
		return c.status(to, msg), nil
	}
}

// failStart rolls back a failed start: undo, stop workers, release the
// lease, -> Error.
func (c *Component) failStart(r *componentRun, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), RollbackTimeout)
	defer cancel()
	if r != nil {
		if r.undo != nil {
			if err := r.undo(ctx); err != nil {
				c.log.Error("undoing the start failed", "err", err)
			}
		}
		if err := r.sup.Shutdown(ctx); err != nil {
			c.log.Error("stopping the workers of a failed start", "err", err)
		}
		c.mu.Lock()
		c.run = nil
		c.mu.Unlock()
		c.releaseQuietly(r.lease)
	}
	c.writeError(cause)
	c.log.Error("start failed", "err", cause)
}

// writeError records Error with the cause, if this instance still owns the
// component.
func (c *Component) writeError(cause error) {
	c.setLocal(Error)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	_, err := c.store.Change(ctx, c.id, c.owned("", Error, cause.Error()))
	if err != nil && !errors.Is(err, errNoChange) && !errors.Is(err, errNotOwner) {
		c.log.Error("recording the error state failed", "err", err, "cause", cause)
	}
}

// failRunning handles a fatal failure while running.
func (c *Component) failRunning(cause error) {
	c.writeError(cause)
	select {
	case c.fatal <- cause:
	default:
	}
}

// stepDown starts the step-down of run r after its lease was lost (cause),
// unless Stop runs or r is not the current run any more. A lease lost
// while the run was still starting fails the component instead (Fatal):
// the start is under way in the caller of Start.
func (c *Component) stepDown(r *componentRun, cause error) {
	c.mu.Lock()
	if c.stopping || c.run != r {
		c.mu.Unlock()
		return
	}
	if !r.running {
		c.mu.Unlock()
		c.failRunning(cause)
		return
	}
	defer c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.standby = cancel
	c.rejoins.Add(1)
	go func() {
		defer c.rejoins.Done()
		defer cancel()
		c.rejoin(ctx, r, cause)
	}()
}

// rejoin stops run r, whose lease was lost, and stands by for the lease
// again until ctx ends (Stop).
func (c *Component) rejoin(ctx context.Context, r *componentRun, cause error) {
	c.stopMu.Lock()
	c.mu.Lock()
	current := c.run == r
	c.mu.Unlock()
	if !current {
		c.stopMu.Unlock()
		return
	}
	c.log.Warn("stepping down: the lease was lost", "cause", cause)
	c.stepDowns.Inc()
	c.writeError(cause)
	sctx, scancel := context.WithTimeout(context.Background(), RollbackTimeout)
	if err := r.sup.Shutdown(sctx); err != nil {
		scancel()
		c.stopMu.Unlock()
		c.failRunning(fmt.Errorf("stepping down after losing the lease (%v): %w", cause, err))
		return
	}
	if r.undo != nil {
		if err := r.undo(sctx); err != nil {
			c.log.Error("undoing the start steps while stepping down", "err", err)
		}
	}
	scancel()
	c.releaseQuietly(r.lease)
	c.mu.Lock()
	c.run = nil
	c.mu.Unlock()
	c.setLocal(Stopped)
	c.stopMu.Unlock()
	c.log.Info("stepped down; standing by to take the lease back")
	if err := c.Start(ctx); err != nil && ctx.Err() == nil {
		c.failRunning(fmt.Errorf("starting again after losing the lease: %w", err))
	}
}

// Stop stops the component in this instance: -> Stopping, shut the
// supervisor down (workers drain within ctx), undo the start steps,
// -> Stopped, release the lease (in this order, so that a standby taking
// the lease finds the component stopped rather than abandoned). A
// component that stands by after a step-down stops standing by. Stopping a
// component this instance does not run does nothing else. If the workers
// do not stop within ctx the lease is kept (they still run), the state
// becomes Error and the error names them.
func (c *Component) Stop(ctx context.Context) error {
	// End a standby after a step-down first (its Start returns), and keep
	// a lease lost meanwhile from starting another.
	c.mu.Lock()
	c.stopping = true
	if c.standby != nil {
		c.standby()
	}
	c.mu.Unlock()
	c.rejoins.Wait()
	defer func() {
		c.mu.Lock()
		c.stopping = false
		c.standby = nil
		c.mu.Unlock()
	}()
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	c.mu.Lock()
	r := c.run
	c.mu.Unlock()
	if r == nil {
		return nil
	}
	c.log.Info("stopping")
	if _, err := c.store.Change(ctx, c.id, c.owned("", Stopping, "")); err != nil &&
		!errors.Is(err, errNoChange) && !errors.Is(err, errNotOwner) {
		c.log.Warn("recording the stopping state failed", "err", err)
	}
	c.setLocal(Stopping)
	if err := r.sup.Shutdown(ctx); err != nil {
		c.writeError(err)
		return fmt.Errorf("stopping %s: %w", c.id, err)
	}
	var errs []error
	if r.undo != nil {
		if err := r.undo(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Stopped before the lease goes: a standby that gets the lease then
	// finds the component stopped, not abandoned.
	if _, err := c.store.Change(ctx, c.id, c.owned("", Stopped, "")); err != nil &&
		!errors.Is(err, errNoChange) && !errors.Is(err, errNotOwner) {
		errs = append(errs, err)
	}
	if err := r.lease.Release(ctx); err != nil {
		errs = append(errs, err)
	}
	c.mu.Lock()
	c.run = nil
	c.mu.Unlock()
	c.setLocal(Stopped)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping %s: %w", c.id, err)
	}
	c.log.Info("stopped")
	return nil
}

// workerReason prefixes the degradation reasons of failing workers.
const workerReason = "worker "

// SetDegraded reports that the component works but is impaired (e.g. it
// reconnects). It does not block: the state is written by a worker, with
// retries, as soon as the bus allows.
func (c *Component) SetDegraded(reason string) { c.setReason("status", reason) }

// SetRunning clears what SetDegraded reported.
func (c *Component) SetRunning() { c.setReason("status", "") }

// Degrade reports an impairment from one cause (e.g. "nats", "postgres"):
// the component is Degraded while any cause has a reason. An empty reason
// clears that cause only, so independent causes cannot clear each other.
func (c *Component) Degrade(cause, reason string) { c.setReason("cause "+cause, reason) }

func (c *Component) setReason(source, reason string) {
	c.mu.Lock()
	if reason == "" {
		delete(c.reasons, source)
	} else {
		c.reasons[source] = reason
	}
	local := c.local
	degraded := len(c.reasons) > 0
	c.mu.Unlock()
	if local == Running && degraded {
		c.setLocal(Degraded)
	} else if local == Degraded && !degraded {
		c.setLocal(Running)
	}
	c.poke()
}

func (c *Component) reasonLocked() string { return joinReasons(c.reasons) }

// joinReasons joins the reasons of m in the order of their keys.
func joinReasons(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, m[k])
	}
	return strings.Join(parts, "; ")
}

func (c *Component) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Component) onSupervisorEvent(ev SupervisorEvent) {
	switch {
	case ev.Fatal:
		c.failRunning(ev.Err)
	case ev.Recovered:
		c.setReason(workerReason+ev.Worker, "")
	default:
		c.setReason(workerReason+ev.Worker, fmt.Sprintf("worker %s failed (%d in a row), restarting in %s: %v",
			ev.Worker, ev.Failures, ev.RestartIn.Round(time.Millisecond), ev.Err))
	}
}

// reportLoop writes Running/Degraded as SetDegraded, SetRunning and worker
// failures ask, retrying with backoff while the bus fails.
func (c *Component) reportLoop(ctx context.Context) error {
	bo := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
		for {
			err := c.writeRuntime(ctx)
			if err == nil || errors.Is(err, errNoChange) || errors.Is(err, errNotOwner) || errors.Is(err, ErrInvalidTransition) {
				bo.Reset()
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			d := bo.NextBackOff()
			c.log.Warn("recording the component state failed; retrying", "err", err, "retry_in", d)
			if retry.Sleep(ctx, d) != nil {
				return nil
			}
		}
	}
}

func (c *Component) writeRuntime(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err := c.store.Change(ctx, c.id, func(cur Record) (Status, error) {
		if cur.State != Running && cur.State != Degraded {
			return Status{}, errNoChange // starting, stopping or failed: not ours to change here
		}
		c.mu.Lock()
		want, msg := Running, ""
		if len(c.reasons) > 0 {
			want, msg = Degraded, c.reasonLocked()
		}
		c.mu.Unlock()
		if cur.State == want {
			return Status{}, errNoChange
		}
		return c.owned("", want, msg)(cur)
	})
	return err
}
