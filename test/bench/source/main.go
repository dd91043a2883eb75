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
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/pkg/bus"
)

// defaultEnvelopeSize is the nats bench message size when the throughput
// phase did not measure the envelopes: the mean payload measured for the
// bench table (id, a, b = md5 text) on 2026-11-27.
const defaultEnvelopeSize = 236

// options are the command-line settings.
type options struct {
	n               int
	quick           bool
	txRows          int
	benchMsgsAlways int
	benchMsgsLazy   int
	msgSize         int
	rate            int
	latencyFor      time.Duration
	writers         int
	pgFsync         bool
	natsBin         string
	cpuProfile      string
	latencyCSV      string
	phases          map[string]bool
	verbose         bool
}

// syncMode is one durability mode of the bus.
type syncMode struct {
	name string
	mode bus.SyncMode
}

var syncModes = []syncMode{
	{name: "fsync always", mode: bus.SyncAlways},
	{name: "lazy fsync", mode: bus.SyncInterval},
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.IntVar(&o.n, "n", 1_000_000, "rows per workload (one-row transactions, and rows in large transactions)")
	flag.BoolVar(&o.quick, "quick", false, "fast check: n=50,000, 5 s of latency, small nats bench runs")
	flag.IntVar(&o.txRows, "tx-rows", 10_000, "rows per transaction of the large-transaction workload")
	flag.IntVar(&o.benchMsgsAlways, "bench-msgs-always", 200_000, "messages of nats bench with fsync always (one fsync per message: its rate does not depend on the count; 0 = n)")
	flag.IntVar(&o.benchMsgsLazy, "bench-msgs-lazy", 0, "messages of nats bench with lazy fsync (0 = n)")
	flag.IntVar(&o.msgSize, "size", 0, "nats bench message size in bytes (0 = the mean envelope size source-pg stored in this run)")
	flag.IntVar(&o.rate, "rate", 5000, "commits per second of the latency writer")
	flag.DurationVar(&o.latencyFor, "latency-duration", 20*time.Second, "how long the latency writer runs")
	flag.IntVar(&o.writers, "writers", 8, "connections of the latency writer")
	flag.BoolVar(&o.pgFsync, "pg-fsync", true, "run Postgres with fsync on (and full_page_writes)")
	flag.StringVar(&o.natsBin, "nats", "", "path of the nats CLI (default: nats on PATH, then $(go env GOPATH)/bin/nats)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (source-pg and the embedded nats-server) during the source-pg throughput runs")
	flag.StringVar(&o.latencyCSV, "latency-csv", "", "write every latency sample to PREFIX.<fsync mode>.csv")
	flag.BoolVar(&o.verbose, "v", false, "log the source's and the bus's messages to stderr")
	phases := flag.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated: "+strings.Join(allPhases, ", "))
	flag.Parse()
	o.phases = map[string]bool{}
	for _, ph := range strings.Split(*phases, ",") {
		if ph = strings.TrimSpace(ph); ph != "" {
			o.phases[ph] = true
		}
	}
	if o.quick {
		o.n = 50_000
		o.latencyFor = 5 * time.Second
		o.benchMsgsAlways = 20_000
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-source:", err)
		return 2
	}
	if o.benchMsgsAlways == 0 {
		o.benchMsgsAlways = o.n
	}
	if o.benchMsgsLazy == 0 {
		o.benchMsgsLazy = o.n
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logOut := io.Discard
	if o.verbose {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := benchmark(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench-source:", err)
		return 1
	}
	return 0
}

// The phases of a run.
const (
	phaseThroughput = "throughput"
	phaseBench      = "bench"
	phaseLatency    = "latency"
)

var allPhases = []string{phaseThroughput, phaseBench, phaseLatency}

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
	if o.txRows < 1 || o.txRows > o.n {
		probs = append(probs, fmt.Sprintf("-tx-rows %d: between 1 and -n", o.txRows))
	}
	if o.txRows > 0 && o.n%o.txRows != 0 {
		probs = append(probs, fmt.Sprintf("-tx-rows %d: must divide -n %d", o.txRows, o.n))
	}
	if o.rate < 1 {
		probs = append(probs, fmt.Sprintf("-rate %d: at least 1", o.rate))
	}
	if o.writers < 1 {
		probs = append(probs, fmt.Sprintf("-writers %d: at least 1", o.writers))
	}
	if o.latencyFor < time.Second {
		probs = append(probs, fmt.Sprintf("-latency-duration %s: at least 1s", o.latencyFor))
	}
	if o.benchMsgsAlways < 0 || o.benchMsgsLazy < 0 || o.msgSize < 0 {
		probs = append(probs, "-bench-msgs-always, -bench-msgs-lazy and -size must not be negative")
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}

// results is everything one run measured.
type results struct {
	started     time.Time
	loadBefore  string
	gcPercent   int // GOGC in effect for source-pg and the embedded server
	loadAfter   string
	pgFsync     bool
	n           int
	txRows      int
	gen         map[string]measure            // workload -> generation
	recv        map[string]measure            // workload -> pg_recvlogical
	source      map[string]map[string]measure // workload -> sync mode -> source-pg
	benchAsync  map[string]measure            // sync mode -> nats bench async
	benchAtomic map[string]measure            // sync mode -> nats bench atomic (batch bus.DefaultMaxBatch)
	benchShaped map[string]measure            // sync mode -> the same with source-pg's message shape
	benchSize   int
	envSize     float64                  // mean stored envelope payload, bytes
	latency     map[string]latencyResult // sync mode -> latency
}

// measure is one timed run.
type measure struct {
	count   int
	elapsed time.Duration
	// rate is count/elapsed, or the rate the tool reported.
	rate float64
	// For source-pg: the atomic batches published, and the sum of their
	// send-to-acknowledgement times (the publisher sends one at a time).
	batches   int
	batchBusy time.Duration
}

func benchmark(ctx context.Context, o options, log *slog.Logger) error {
	natsBin, err := findNats(o.natsBin)
	if err != nil {
		return err
	}
	res := &results{
		started:    time.Now().UTC(),
		loadBefore: loadAvg(),
		// The binaries' garbage collector setting (or GOGC's), since
		// source-pg and the embedded server run in this process.
		gcPercent:   app.ApplyGCDefault(),
		pgFsync:     o.pgFsync,
		n:           o.n,
		txRows:      o.txRows,
		gen:         map[string]measure{},
		recv:        map[string]measure{},
		source:      map[string]map[string]measure{},
		benchAsync:  map[string]measure{},
		benchAtomic: map[string]measure{},
		benchShaped: map[string]measure{},
		latency:     map[string]latencyResult{},
	}
	progress("machine: %d CPUs, load average %s", runtime.NumCPU(), res.loadBefore)

	pg, err := startPostgres(ctx, o, log)
	if err != nil {
		return err
	}
	defer pg.close()

	// The profile covers the throughput phases. This process is busy only
	// while source-pg runs (with the embedded nats-server); it waits while
	// Postgres generates the workload and pg_recvlogical decodes it.
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile() // on an error; a second stop is a no-op
	}
	var envBytes, envMsgs float64
	for _, w := range workloads(o) {
		if !o.phases[phaseThroughput] {
			break
		}
		m, err := pg.throughputPhase(ctx, w, res)
		if err != nil {
			return fmt.Errorf("%s workload: %w", w.name, err)
		}
		envBytes += m.bytes
		envMsgs += m.msgs
	}
	pprof.StopCPUProfile()
	if envMsgs > 0 {
		res.envSize = envBytes / envMsgs
	}
	res.benchSize = o.msgSize
	if res.benchSize == 0 {
		res.benchSize = int(res.envSize + 0.5)
	}
	if res.benchSize == 0 {
		res.benchSize = defaultEnvelopeSize
	}
	for _, sm := range syncModes {
		if !o.phases[phaseBench] {
			break
		}
		msgs := o.benchMsgsLazy
		if sm.mode == bus.SyncAlways {
			msgs = o.benchMsgsAlways
		}
		progress("nats bench js pub async, %s: %d messages of %d B", sm.name, msgs, res.benchSize)
		m, err := natsBench(ctx, natsBin, sm, "async", 500, msgs, res.benchSize, log)
		if err != nil {
			return err
		}
		res.benchAsync[sm.name] = m
		progress("  %.0f msgs/s", m.rate)
		// The kind of path source-pg takes: atomic batches, one at a
		// time, of nats-server's default limit (1000). source-pg's
		// batches are larger (the embedded server's limit) and it stages
		// the next during a commit; nats bench does neither. (nats bench
		// with source-pg's message shape slows down at batches of 5000.)
		amsgs := max(o.n, 100_000)
		ab := bus.DefaultMaxBatch
		progress("nats bench js pub atomic --batch %d, %s: %d messages", ab, sm.name, amsgs)
		m, err = natsBench(ctx, natsBin, sm, "atomic", ab, amsgs, res.benchSize, log)
		if err != nil {
			return err
		}
		res.benchAtomic[sm.name] = m
		progress("  %.0f msgs/s", m.rate)
		progress("nats bench js pub atomic --batch %d %s, %s: %d messages", ab, strings.Join(sourceShape, " "), sm.name, amsgs)
		m, err = natsBench(ctx, natsBin, sm, "atomic", ab, amsgs, res.benchSize, log, sourceShape...)
		if err != nil {
			return err
		}
		res.benchShaped[sm.name] = m
		progress("  %.0f msgs/s", m.rate)
	}
	for _, sm := range syncModes {
		if !o.phases[phaseLatency] {
			break
		}
		progress("latency, %s: %d commits/s for %s with %d connections", sm.name, o.rate, o.latencyFor, o.writers)
		lr, err := pg.latency(ctx, sm, o)
		if err != nil {
			return fmt.Errorf("latency with %s: %w", sm.name, err)
		}
		res.latency[sm.name] = lr
		progress("  %d changes, p50 %s p99 %s max %s (commit to stored)", lr.count, ms(lr.stored.p50), ms(lr.stored.p99), ms(lr.stored.max))
	}
	res.loadAfter = loadAvg()
	fmt.Print(report(res))
	return nil
}

// findNats locates the nats CLI.
func findNats(flagPath string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := strings.TrimSpace(string(gopath)) + "/bin/nats"
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0 (scripts/bench-source.sh does it), or pass -nats PATH")
}

func loadAvg() string { return benchutil.LoadAvg() }

func progress(format string, args ...any) { benchutil.Progress(format, args...) }
