package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

// Globals are the flags every binary takes (kong struct tags).
type Globals struct {
	Config      string        `help:"Config file (YAML)." type:"path" short:"c" required:""`
	NATS        string        `name:"nats" help:"NATS server URL(s), comma-separated, or 'embedded' for an in-process server. Overrides nats.url." placeholder:"URL"`
	Metrics     string        `help:"Address to serve /metrics, /healthz and /readyz on." default:"${metricsAddr}" placeholder:"ADDR"`
	LogFormat   string        `help:"Log format: text or json." enum:"text,json" default:"text"`
	LogLevel    string        `help:"Log level: debug, info, warn or error." enum:"debug,info,warn,error" default:"info"`
	Check       bool          `help:"Validate the config file and exit."`
	StopTimeout time.Duration `help:"How long a stop may take to drain in-flight work." default:"30s"`
}

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // start failed, or a component gave up
	ExitConfig = 2 // the config is invalid
)

// Runtime is what a binary's Build function gets to create its components.
type Runtime struct {
	Config   *config.Config
	Bus      *bus.Conn
	Topology streams.Topology
	Log      *slog.Logger
	Registry *prometheus.Registry
	Store    *lifecycle.Store
	Leases   *bus.KV
	LeaseTTL time.Duration
	// Instance names this process in states and leases.
	Instance string
	// StopTimeout is how long the whole process may take to stop
	// (--stop-timeout); a component's own drain should take less.
	StopTimeout time.Duration
}

// NewComponent creates a lifecycle component of this process.
func (rt *Runtime) NewComponent(kind, id string) (*lifecycle.Component, error) {
	return lifecycle.NewComponent(lifecycle.Config{
		Kind: kind, ID: id,
		Instance:   rt.Instance,
		Store:      rt.Store,
		Leases:     rt.Leases,
		LeaseTTL:   rt.LeaseTTL,
		Logger:     rt.Log,
		Registerer: rt.Registry,
	})
}

// Build creates a binary's components from the runtime. It must not start
// them: Run starts them all or none.
type Build func(ctx context.Context, rt *Runtime) ([]*lifecycle.Component, error)

// Binary describes one executable.
type Binary struct {
	// Kind is the binary's name ("source-pg"), used for the client name.
	Kind  string
	Build Build
	// Isolated components do not depend on each other (query-engine's
	// queries): one whose start fails is left in Error, with the reason in
	// its state, while the others run; one that fails while running
	// (lease lost, supervisor gave up) is stopped and started again after
	// a backoff, standing by if another instance took it meanwhile.
	// Without Isolated, any failed start fails the process and any fatal
	// failure ends it non-zero.
	Isolated bool
	// Validate, when set, checks what the config means to this binary
	// beyond the file's own validation; check is true for --check, which
	// may be stricter than a start (query-engine refuses a query that does
	// not compile there, while a start runs the others). An error exits
	// ExitConfig.
	Validate func(cfg *config.Config, check bool) error
	// Stdout and Stderr default to the process's.
	Stdout, Stderr io.Writer
}

// Run is a binary's whole life: it loads the config, starts everything or
// nothing, runs until ctx ends (SIGTERM) or a component gives up, then
// stops in order and returns the exit code.
func (b Binary) Run(ctx context.Context, g Globals) int {
	if b.Stdout == nil {
		b.Stdout = os.Stdout
	}
	if b.Stderr == nil {
		b.Stderr = os.Stderr
	}
	log, err := logging.New(b.Stderr, g.LogFormat, g.LogLevel)
	if err != nil {
		fmt.Fprintf(b.Stderr, "%s: %v\n", b.Kind, err)
		return ExitConfig
	}
	log = log.With("binary", b.Kind)

	cfg, err := config.Load(g.Config)
	if err == nil && g.NATS != "" {
		cfg.NATS.URL = g.NATS
		if !cfg.NATS.Embedded() {
			// One file serves every binary: the process that runs the
			// embedded server uses nats.listen, the others point --nats
			// at it and ignore the embedded-only settings.
			cfg.NATS.Listen = ""
		}
		err = cfg.Validate()
	}
	if err == nil && b.Validate != nil {
		err = b.Validate(cfg, g.Check)
	}
	if err != nil {
		fmt.Fprintf(b.Stderr, "%s: invalid config:\n%v\n", b.Kind, err)
		return ExitConfig
	}
	if g.Check {
		fmt.Fprintf(b.Stdout, "%s: config %s is valid\n", b.Kind, g.Config)
		return ExitOK
	}

	p := &process{bin: b, g: g, cfg: cfg, log: log}
	if err := p.start(ctx); err != nil {
		if ctx.Err() != nil {
			// SIGTERM during the start (e.g. while waiting for a lease):
			// a drain like any other, not a failure.
			log.Info("stop requested while starting; everything started was stopped")
			return ExitOK
		}
		log.Error("start failed; everything started was stopped", "err", err)
		return ExitFailed
	}
	code := ExitOK
	select {
	case <-ctx.Done():
		log.Info("stop requested; draining", "timeout", g.StopTimeout)
	case err := <-p.fatal:
		log.Error("a component gave up; stopping", "err", err)
		code = ExitFailed
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.StopTimeout)
	defer cancel()
	if err := p.undo(stopCtx); err != nil {
		log.Error("stop did not finish cleanly", "err", err)
		code = ExitFailed
	} else {
		log.Info("stopped")
	}
	return code
}

type process struct {
	bin   Binary
	g     Globals
	cfg   *config.Config
	log   *slog.Logger
	undo  lifecycle.Undo
	fatal chan error

	mu      sync.Mutex
	comps   []*lifecycle.Component
	active  map[*lifecycle.Component]bool // started by this process and not stopped since
	conn    *bus.Conn
	started bool // every start step succeeded
}

func (p *process) components() []*lifecycle.Component {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*lifecycle.Component(nil), p.comps...)
}

// activeComponents are the components this process runs now: not the ones
// standing by for another instance's lease, nor isolated ones that failed.
func (p *process) activeComponents() []*lifecycle.Component {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*lifecycle.Component
	for _, c := range p.comps {
		if p.active[c] {
			out = append(out, c)
		}
	}
	return out
}

func (p *process) setActive(c *lifecycle.Component, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active == nil {
		p.active = map[*lifecycle.Component]bool{}
	}
	if on {
		p.active[c] = true
	} else {
		delete(p.active, c)
	}
}

// ready is /readyz: the bus is connected and every component this process
// runs is ready. Components standing by for another instance's lease do
// not count: a process whose components all run elsewhere is ready.
func (p *process) ready() error {
	p.mu.Lock()
	conn, started := p.conn, p.started
	p.mu.Unlock()
	if !started {
		return errors.New("starting")
	}
	if !conn.Connected() {
		return errors.New("not connected to NATS")
	}
	var errs []error
	for _, c := range p.activeComponents() {
		if err := c.Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *process) onBusStatus(s bus.Status) {
	for _, c := range p.components() {
		switch s.State {
		case bus.StatusDisconnected:
			reason := "NATS connection lost; reconnecting"
			if s.Err != nil {
				reason += ": " + s.Err.Error()
			}
			c.Degrade("nats", reason)
		case bus.StatusReconnected, bus.StatusConnected:
			c.Degrade("nats", "")
		}
	}
}

func (p *process) start(ctx context.Context) error {
	cfg, log := p.cfg, p.log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.fatal = make(chan error, 1)

	topo, err := streams.Default(cfg.NATS.SubjectPrefix, cfg.NATS.StreamsOptions())
	if err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	rt := &Runtime{Config: cfg, Topology: topo, Log: log, Registry: reg, Instance: lifecycle.NewInstanceID(), LeaseTTL: topo.Leases.TTL, StopTimeout: p.g.StopTimeout}

	st := lifecycle.NewStarter(log)
	st.Add("metrics listener", func(ctx context.Context) (lifecycle.Undo, error) {
		srv, err := obs.Serve(ctx, p.g.Metrics, reg, p.ready)
		if err != nil {
			return nil, err
		}
		log.Info("serving /metrics, /healthz, /readyz", "addr", srv.Addr())
		return srv.Shutdown, nil
	})
	st.Add("bus connection", func(ctx context.Context) (lifecycle.Undo, error) {
		conn, err := bus.Connect(ctx, connectOptions(cfg, p.bin.Kind, log, reg, p.onBusStatus))
		if err != nil {
			return nil, err
		}
		if u := conn.ClientURL(); u != "" {
			log.Info("embedded NATS server accepts other processes", "url", u)
		}
		p.mu.Lock()
		p.conn = conn
		p.mu.Unlock()
		rt.Bus = conn
		return conn.Close, nil
	})
	st.Add("bus topology", func(ctx context.Context) (lifecycle.Undo, error) {
		return nil, rt.Bus.EnsureTopology(ctx, topo)
	})
	st.Add("lifecycle buckets", func(ctx context.Context) (lifecycle.Undo, error) {
		kv, err := rt.Bus.KV(ctx, topo.Lifecycle.Name)
		if err != nil {
			return nil, err
		}
		leases, err := rt.Bus.KV(ctx, topo.Leases.Name)
		if err != nil {
			return nil, err
		}
		rt.Store = lifecycle.NewStore(kv, log)
		rt.Leases = leases
		return nil, nil
	})
	st.Add("components", func(ctx context.Context) (lifecycle.Undo, error) {
		comps, err := p.bin.Build(ctx, rt)
		if err != nil {
			return nil, err
		}
		return p.startComponents(ctx, rt, comps)
	})
	undo, err := st.Start(ctx)
	if err != nil {
		return err
	}
	p.undo = undo
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	return nil
}

// startComponents starts comps and returns how to stop them. A component
// that another instance runs now (its state is active there) stands by in
// the background, so that it cannot hold up the others nor the process's
// readiness; the others are started at once and waited for. Each component
// is kept by one goroutine (see keep) until the returned Undo, which
// cancels the standbys quietly and stops every component in reverse order.
func (p *process) startComponents(ctx context.Context, rt *Runtime, comps []*lifecycle.Component) (lifecycle.Undo, error) {
	p.mu.Lock()
	p.comps = comps
	p.mu.Unlock()
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	var keepers sync.WaitGroup
	stopAll := func(ctx context.Context) error {
		cancelRun()
		waited := make(chan struct{})
		go func() { // owned by stopAll: it waits for waited below, or the process exits
			keepers.Wait()
			close(waited)
		}()
		var errs []error
		select {
		case <-waited:
		case <-ctx.Done():
			// A start that ignores its cancelled context must not hang the
			// process's exit: report it and stop what can be stopped.
			errs = append(errs, fmt.Errorf("a component's start did not end when the process stopped: %w", ctx.Err()))
		}
		for i := len(comps) - 1; i >= 0; i-- {
			if err := comps[i].Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s: %w", comps[i].ID(), err))
			}
			p.setActive(comps[i], false)
		}
		return errors.Join(errs...)
	}
	type pending struct {
		c     *lifecycle.Component
		first chan error
	}
	var wait []pending
	for _, c := range comps {
		first := make(chan error, 1)
		standby := p.ownedElsewhere(ctx, rt, c, true)
		keepers.Go(func() { p.keep(runCtx, c, first) })
		if !standby {
			wait = append(wait, pending{c, first})
		}
	}
	// A start found free may still lose the race to another process
	// starting at the same time and stand by: stop waiting for it then.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for _, w := range wait {
		var err error
	waiting:
		for {
			select {
			case err = <-w.first:
				break waiting
			case <-ctx.Done():
				err = ctx.Err()
				break waiting
			case <-tick.C:
				if p.ownedElsewhere(ctx, rt, w.c, false) {
					break waiting
				}
			}
		}
		if err == nil || (p.bin.Isolated && ctx.Err() == nil) {
			continue // an isolated failure is logged, its state says Error
		}
		_ = stopAll(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("starting %s: %w", w.c.ID(), err)
	}
	return stopAll, nil
}

// ownedElsewhere reports whether another instance runs c now, so that its
// Start would stand by. A read error counts as no: Start then decides.
func (p *process) ownedElsewhere(ctx context.Context, rt *Runtime, c *lifecycle.Component, logIt bool) bool {
	rec, err := rt.Store.Get(ctx, c.ID())
	if err != nil {
		return false
	}
	if rec.State.Active() && rec.Instance != "" && rec.Instance != c.Instance() {
		if !logIt {
			return true
		}
		p.log.Info("standing by in the background: another instance runs the component",
			"kind", c.ID().Kind, "id", c.ID().ID, "owner", rec.Instance, "state", rec.State)
		return true
	}
	return false
}

// keep runs c until ctx ends: it starts it (standing by while another
// instance holds its lease), reports the first start's result on first
// (buffered; nobody need read it), and watches for a fatal failure. A
// failed start or a fatal failure ends the process (p.fatal) unless the
// binary is Isolated; then a failed start leaves the component in Error,
// and a failure while running stops it and starts it again after a
// backoff. When ctx ends (the process stops), keep returns quietly,
// whatever the start was doing: the caller stops c.
func (p *process) keep(ctx context.Context, c *lifecycle.Component, first chan<- error) {
	log := p.log.With("kind", c.ID().Kind, "id", c.ID().ID)
	bo := retry.NewBackOff(time.Second, 30*time.Second)
	report := func(err error) {
		select {
		case first <- err:
		default: // reported before
		}
	}
	for {
		err := c.Start(ctx)
		if ctx.Err() != nil {
			report(ctx.Err())
			return // stopping while starting or standing by: not a failure
		}
		if err == nil {
			p.setActive(c, true) // before the report: readiness then counts it
		}
		report(err)
		if err != nil {
			if p.bin.Isolated {
				log.Error("component failed to start; the others keep running", "err", err)
			} else {
				p.sendFatal(fmt.Errorf("%s: %w", c.ID(), err))
			}
			return
		}
		var ferr error
		select {
		case <-ctx.Done():
			return
		case ferr = <-c.Fatal():
		}
		p.setActive(c, false)
		if !p.bin.Isolated {
			p.sendFatal(fmt.Errorf("%s: %w", c.ID(), ferr))
			return
		}
		wait := bo.NextBackOff()
		log.Error("component failed; stopping it and starting it again", "err", ferr, "restart_in", wait)
		sctx, cancel := context.WithTimeout(ctx, p.g.StopTimeout)
		if err := c.Stop(sctx); err != nil {
			log.Error("stopping the failed component", "err", err)
		}
		cancel()
		if retry.Sleep(ctx, wait) != nil {
			return
		}
	}
}

func (p *process) sendFatal(err error) {
	select {
	case p.fatal <- err:
	default:
	}
}

func connectOptions(cfg *config.Config, kind string, log *slog.Logger, reg prometheus.Registerer, onStatus func(bus.Status)) bus.ConnectOptions {
	n := cfg.NATS
	name := n.Name
	if name == "" {
		name = "tributary-" + kind
	}
	o := bus.ConnectOptions{
		URL:              n.URL,
		StoreDir:         n.StoreDir,
		Listen:           n.Listen,
		Sync:             bus.SyncMode(n.Sync),
		SyncInterval:     n.SyncInterval.D(),
		Name:             name,
		CredentialsFile:  n.Credentials,
		NKeySeedFile:     n.NKey,
		User:             n.User,
		Password:         n.Password,
		Token:            n.Token,
		ConnectTimeout:   n.ConnectTimeout.D(),
		ReconnectWait:    n.ReconnectWait.D(),
		MaxReconnectWait: n.MaxReconnectWait.D(),
		MaxBatch:         n.EffectiveMaxBatch(),
		Logger:           log,
		Registerer:       reg,
		OnStatus:         onStatus,
	}
	if n.TLS != nil {
		o.TLS = bus.TLSOptions{CAFile: n.TLS.CA, CertFile: n.TLS.Cert, KeyFile: n.TLS.Key}
	}
	return o
}

// Main is a service binary's whole main: it parses the common flags,
// turns SIGTERM and SIGINT into a drain, runs b and exits with its code.
func Main(b Binary, description, metricsAddr string) {
	ApplyGCDefault()
	var g Globals
	kong.Parse(&g, kong.Name(b.Kind), kong.Description(description),
		kong.Vars{"metricsAddr": metricsAddr})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := b.Run(ctx, g)
	stop()
	os.Exit(code)
}
