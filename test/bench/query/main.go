package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/tributary/tributary/test/bench/benchutil"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/pkg/bus"
)

// options are the command-line settings.
type options struct {
	n          int
	quick      bool
	rate       int
	latencyFor time.Duration
	cpuProfile string
	sync       bus.SyncMode
	phases     map[string]bool
	verbose    bool
}

// The phases of a run.
const (
	phaseHistory = "history" // limits, replay-path throughput, restart
	phaseLive    = "live"    // live-path throughput
	phaseLatency = "latency"
)

var allPhases = []string{phaseHistory, phaseLive, phaseLatency}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.IntVar(&o.n, "n", 1_000_000, "changes in the stream for the throughput and restart runs")
	flag.BoolVar(&o.quick, "quick", false, "fast check: n=50,000, 5 s of latency")
	flag.IntVar(&o.rate, "rate", 5000, "changes per second published in the latency run")
	flag.DurationVar(&o.latencyFor, "latency-duration", 20*time.Second, "how long the latency run publishes")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (queries, publishers and the embedded nats-server) for the whole run")
	sync := flag.String("sync", string(bus.SyncAlways), "the embedded server's fsync policy: always (the default, what the issue asks) or interval (nats-server's 2 minutes; to see what fsync costs)")
	flag.BoolVar(&o.verbose, "v", false, "log the queries' and the bus's messages to stderr")
	phases := flag.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated: "+strings.Join(allPhases, ", "))
	flag.Parse()
	o.sync = bus.SyncMode(*sync)
	o.phases = map[string]bool{}
	for _, ph := range strings.Split(*phases, ",") {
		if ph = strings.TrimSpace(ph); ph != "" {
			o.phases[ph] = true
		}
	}
	if o.quick {
		o.n = 50_000
		o.latencyFor = 5 * time.Second
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-query:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logOut := io.Discard
	if o.verbose {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res, err := benchmark(ctx, o, log)
	if res != nil {
		fmt.Print(report(res))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-query:", err)
		return 1
	}
	return 0
}

func (o *options) validate() error {
	var probs []string
	if len(o.phases) == 0 {
		probs = append(probs, "-phases: none given")
	}
	for ph := range o.phases {
		if !slices.Contains(allPhases, ph) {
			probs = append(probs, fmt.Sprintf("-phases: unknown phase %q (known: %s)", ph, strings.Join(allPhases, ", ")))
		}
	}
	if o.n < 1000 {
		probs = append(probs, fmt.Sprintf("-n %d: at least 1000", o.n))
	}
	if o.rate < 1 {
		probs = append(probs, fmt.Sprintf("-rate %d: at least 1", o.rate))
	}
	if o.latencyFor < time.Second {
		probs = append(probs, fmt.Sprintf("-latency-duration %s: at least 1s", o.latencyFor))
	}
	if o.sync != bus.SyncAlways && o.sync != bus.SyncInterval {
		probs = append(probs, fmt.Sprintf("-sync %q: always or interval", o.sync))
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}

// results is everything one run measured.
type results struct {
	started    time.Time
	loadBefore string
	loadAfter  string
	gcPercent  int
	sync       bus.SyncMode
	n          int
	perQuery   map[string]*queryResults // by benchQuery.name
	elapsed    time.Duration
}

// queryResults are one query's figures.
type queryResults struct {
	read     int     // changes of the N it reads
	results  int     // non-empty diffs over the N changes
	acks     measure // limit (a): ordered batch consumer that only acks
	apply    measure // limit (b): engine Apply
	history  *historyRun
	live     *liveRun
	latency  *latencyResult
	replayed bool // the history run's work was the bootstrap's replay
}

// measure is one timed run over count changes of the stream.
type measure struct {
	count   int
	elapsed time.Duration
	rate    float64 // count / elapsed
}

func newMeasure(count int, d time.Duration) measure {
	return measure{count: count, elapsed: d, rate: float64(count) / d.Seconds()}
}

func benchmark(ctx context.Context, o options, log *slog.Logger) (*results, error) {
	res := &results{
		started:    time.Now().UTC(),
		loadBefore: loadAvg(),
		// The binaries' garbage collector setting (or GOGC's), since the
		// queries and the embedded server run in this process.
		gcPercent: app.ApplyGCDefault(),
		sync:      o.sync,
		n:         o.n,
		perQuery:  map[string]*queryResults{},
	}
	for _, q := range queries {
		res.perQuery[q.name] = &queryResults{}
	}
	defer func() {
		res.loadAfter = loadAvg()
		res.elapsed = time.Since(res.started)
	}()
	progress("machine: %d CPUs, load average %s; N = %d", runtime.NumCPU(), res.loadBefore, o.n)
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.phases[phaseHistory] || o.phases[phaseLive] {
		if err := throughput(ctx, o, log, res); err != nil {
			return res, err
		}
	}
	if o.phases[phaseLatency] {
		for _, q := range queries {
			if err := latency(ctx, o, log, q, res.perQuery[q.name]); err != nil {
				return res, fmt.Errorf("latency of %s: %w", q.name, err)
			}
		}
	}
	return res, nil
}

// throughput runs the history phase (both limits, the replay path, the
// restart) on one server holding N changes, then the live path of each
// query on a server of its own.
func throughput(ctx context.Context, o options, log *slog.Logger, res *results) error {
	e, err := newEnv(ctx, o.sync, log)
	if err != nil {
		return err
	}
	defer e.close()
	msgs, err := workload(e, 1, o.n)
	if err != nil {
		return err
	}
	expect := map[string]expectation{}
	for _, q := range queries {
		qr := res.perQuery[q.name]
		filters, err := filtersOf(e, q)
		if err != nil {
			return err
		}
		progress("%s: engine Apply of the changes it reads", q.name)
		m, ex, err := engineLimit(q.spec, filters, msgs, 1)
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		qr.apply, qr.read, qr.results, expect[q.name] = m, ex.read, ex.results, ex
		progress("  %s changes/s (%d read, %d non-empty diffs)", num(m.rate), ex.read, ex.results)
	}
	if o.phases[phaseHistory] {
		progress("publishing %d changes (atomic batches, fsync always)", o.n)
		t0 := time.Now()
		last, err := e.publish(ctx, msgs)
		if err != nil {
			return err
		}
		if last != uint64(o.n) {
			return fmt.Errorf("the changes end at stream sequence %d, want %d", last, o.n)
		}
		progress("  %.1f s (%s changes/s)", time.Since(t0).Seconds(), num(float64(o.n)/time.Since(t0).Seconds()))
		for _, q := range queries {
			qr, ex := res.perQuery[q.name], expect[q.name]
			filters, err := filtersOf(e, q)
			if err != nil {
				return err
			}
			progress("%s: ordered batch consumer that only acks", q.name)
			if qr.acks, err = ackLimit(ctx, e, "bench_acks_"+q.spec.ID, filters, o.n, ex.lastRead); err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			progress("  %s changes/s", num(qr.acks.rate))
			progress("%s: the query over %d stored changes", q.name, o.n)
			h, err := historyQuery(ctx, e, q, o.n, ex)
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			qr.history, qr.replayed = &h, h.seq == 1
			progress("  %s changes/s (%d result messages); restart live after %.2f s", num(h.query.rate), h.seq, h.restart.elapsed.Seconds())
		}
	}
	e.close()
	if !o.phases[phaseLive] {
		return nil
	}
	for _, q := range queries {
		qr := res.perQuery[q.name]
		progress("%s: live, %d changes published while it runs", q.name, o.n)
		le, err := newEnv(ctx, o.sync, log)
		if err != nil {
			return err
		}
		lr, err := liveQuery(ctx, le, q, msgs, expect[q.name])
		le.close()
		if err != nil {
			return fmt.Errorf("%s live: %w", q.name, err)
		}
		qr.live = &lr
		progress("  %s changes/s (publishing alone took %.1f s)", num(lr.query.rate), lr.publish.elapsed.Seconds())
	}
	return nil
}

// filtersOf are the change subjects q reads.
func filtersOf(e *env, q benchQuery) ([]string, error) {
	eng, err := engine.New(q.spec)
	if err != nil {
		return nil, err
	}
	return queryservice.Filters(e.topo, []string{source}, eng.Inputs()), nil
}

func latency(ctx context.Context, o options, log *slog.Logger, q benchQuery, qr *queryResults) error {
	e, err := newEnv(ctx, o.sync, log)
	if err != nil {
		return err
	}
	defer e.close()
	msgs, err := workload(e, 2, int(float64(o.rate)*o.latencyFor.Seconds()))
	if err != nil {
		return err
	}
	progress("%s: latency, %d changes/s for %s", q.name, o.rate, o.latencyFor)
	lr, err := latencyQuery(ctx, e, q, msgs, o.rate)
	if err != nil {
		return err
	}
	qr.latency = &lr
	progress("  publish→result stored p50 %s p99 %s (%d samples)", ms(lr.published.p50), ms(lr.published.p99), lr.samples)
	return nil
}

func loadAvg() string { return benchutil.LoadAvg() }

func progress(format string, args ...any) { benchutil.Progress(format, args...) }
