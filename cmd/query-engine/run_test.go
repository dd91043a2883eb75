package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/queryservice/querytest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
	"github.com/tributary/tributary/streams"
)

// queriesYAML are the queries of the service tests, with their specs for
// the from-scratch reference.
var serviceQueries = []struct {
	yaml string
	spec engine.QuerySpec
}{
	{`  - id: curbside
    sources: [{sourceId: shop}]
    joins:
      - id: ASSIGNED_TO
        keys: [{label: orders, property: driver_id}, {label: drivers, property: id}]
    query: MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers) WHERE o.status = 'ready' AND d.zone = 'curbside' RETURN o.id AS orderId, d.name AS driver
`, engine.QuerySpec{ID: "curbside",
		Query: "MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers) WHERE o.status = 'ready' AND d.zone = 'curbside' RETURN o.id AS orderId, d.name AS driver",
		Joins: []engine.Join{{ID: "ASSIGNED_TO", Keys: []engine.JoinKey{{Label: "orders", Property: "driver_id"}, {Label: "drivers", Property: "id"}}}}}},
	{`  - id: by-status
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) RETURN o.status AS status, count(o) AS n, sum(o.total) AS revenue
`, engine.QuerySpec{ID: "by-status", Query: "MATCH (o:orders) RETURN o.status AS status, count(o) AS n, sum(o.total) AS revenue"}},
	{`  - id: ready
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) WHERE o.status = 'ready' RETURN o.id AS id, o.total AS total
`, engine.QuerySpec{ID: "ready", Query: "MATCH (o:orders) WHERE o.status = 'ready' RETURN o.id AS id, o.total AS total"}},
	{`  - id: totals
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) RETURN count(o) AS n, max(o.total) AS top
`, engine.QuerySpec{ID: "totals", Query: "MATCH (o:orders) RETURN count(o) AS n, max(o.total) AS top"}},
	{`  - id: drivers-by-zone
    sources: [{sourceId: shop}]
    query: MATCH (d:drivers) RETURN d.zone AS zone, count(d) AS drivers
`, engine.QuerySpec{ID: "drivers-by-zone", Query: "MATCH (d:drivers) RETURN d.zone AS zone, count(d) AS drivers"}},
	{`  - id: big
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) WHERE o.total >= 50 RETURN o.id AS id, o.status AS status
`, engine.QuerySpec{ID: "big", Query: "MATCH (o:orders) WHERE o.total >= 50 RETURN o.id AS id, o.status AS status"}},
}

// serviceEnv is a NATS server with the topology, a config file for it with
// n of the service queries, and a producer.
type serviceEnv struct {
	srv  *natstest.Server
	conn *bus.Conn
	topo streams.Topology
	pub  *bus.Publisher
	cfg  string
	w    *querytest.Workload

	mu   sync.Mutex
	sent []bus.Message
}

func newServiceEnv(t *testing.T, queries int) *serviceEnv {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	topo, err := streams.Default("tributary", streams.Options{LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.EnsureTopology(ctx, topo); err != nil {
		t.Fatal(err)
	}
	pub, err := conn.NewPublisher(bus.PublisherOptions{Name: "producer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	var b strings.Builder
	fmt.Fprintf(&b, "nats:\n  url: %s\n  leaseTTL: 1s\nsources:\n  - {kind: external, id: shop}\nqueries:\n", srv.URL())
	for _, q := range serviceQueries[:queries] {
		b.WriteString(q.yaml)
	}
	cfg := t.TempDir() + "/config.yaml"
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return &serviceEnv{srv: srv, conn: conn, topo: topo, pub: pub, cfg: cfg, w: querytest.NewWorkload(11, "shop")}
}

// publish sends n changes as one atomic batch.
func (e *serviceEnv) publish(t *testing.T, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	msgs := e.w.Changes(t, e.topo, n)
	querytest.Publish(t, e.pub, msgs)
	e.sent = append(e.sent, msgs...)
}

// produce publishes 5 changes every 10 ms until the returned stop is
// called (by the test, or its cleanup), which waits for the producer.
func (e *serviceEnv) produce(t *testing.T) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(10 * time.Millisecond): // pacing of the producer
			}
			e.mu.Lock()
			msgs := make([]bus.Message, 5)
			for i := range msgs {
				msgs[i] = querytest.Message(t, e.topo, e.w.Next())
			}
			_, err := e.pub.PublishBatch(context.Background(), msgs)
			if err == nil {
				e.sent = append(e.sent, msgs...)
			}
			e.mu.Unlock()
			if err != nil {
				t.Errorf("producer: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() { close(quit) })
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func (e *serviceEnv) messages(t *testing.T) int {
	n := 0
	for _, q := range serviceQueries {
		if strings.Contains(e.readConfig(t), "id: "+q.spec.ID+"\n") {
			n += len(querytest.Fold(t, e.conn, e.topo, q.spec.ID).Messages)
		}
	}
	return n
}

func (e *serviceEnv) readConfig(t *testing.T) string {
	b, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkAll waits until every query's results fold to the query evaluated
// from scratch on everything sent (Fold checks seq 1..n, ids and inputs).
func (e *serviceEnv) checkAll(t *testing.T, queries int) {
	e.mu.Lock()
	sent := append([]bus.Message(nil), e.sent...)
	e.mu.Unlock()
	for _, q := range serviceQueries[:queries] {
		got := querytest.WaitFolded(t, e.conn, e.topo, q.spec.ID, querytest.Reference(t, q.spec, sent), 120*time.Second)
		t.Logf("%s: %d result messages for %d changes", q.spec.ID, len(got.Messages), len(sent))
	}
}

// startProcess runs the real command (this test binary as main) with
// run --config.
func startProcess(t *testing.T, cfg string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", cfg, "--metrics", "127.0.0.1:0", "--stop-timeout", "20s")
	cmd.Env = append(os.Environ(), "QUERY_ENGINE_MAIN=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for: the test failed
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// lockedBuffer is a process's output, safe to read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Exactly once through kill -9: the real query-engine is killed at random
// points while changes flow, ten times; after each kill a new process takes
// the queries over. The results have seqs 1..n (no duplicate, no gap) and
// fold to the queries evaluated from scratch on the final data.
func TestKill9WhileChangesFlowIsExactlyOnce(t *testing.T) {
	const queries = 2
	e := newServiceEnv(t, queries)
	e.publish(t, 300)
	stopProducer := e.produce(t)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range 10 {
		cmd, out := startProcess(t, e.cfg)
		n := e.messages(t)
		testwait.Until(t, 60*time.Second, fmt.Sprintf("process %d publishes results", i+1), func() bool { return e.messages(t) > n+2 })
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // the fault: a kill at a random point
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("process %d output:\n%s", i+1, out.String())
		}
	}
	cmd, out := startProcess(t, e.cfg)
	stopProducer()
	e.checkAll(t, queries)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the last process did not drain and exit 0: %v\n%s", err, out.String())
	}
}

// Two processes of the real command with one config of six queries: each
// query runs in exactly one of them (the second stands by for the queries
// the first holds); kill -9 of the first moves its queries to the second
// within the lease TTL, and nothing is duplicated or lost.
func TestTwoProcessesShareTheQueries(t *testing.T) {
	const queries = 6
	e := newServiceEnv(t, queries)
	e.publish(t, 200)
	kv, err := e.conn.KV(context.Background(), e.topo.Lifecycle.Name)
	if err != nil {
		t.Fatal(err)
	}
	store := lifecycle.NewStore(kv, nil)
	owners := func() (map[string]string, error) {
		m := map[string]string{}
		for _, q := range serviceQueries[:queries] {
			rec, err := store.Get(context.Background(), lifecycle.ComponentID{Kind: "query", ID: q.spec.ID})
			if err != nil {
				return nil, err
			}
			if rec.State != lifecycle.Running {
				return nil, fmt.Errorf("query %s is %s", q.spec.ID, rec.State)
			}
			m[q.spec.ID] = rec.Instance
		}
		return m, nil
	}

	a, outA := startProcess(t, e.cfg)
	var before map[string]string
	testwait.UntilErr(context.Background(), t, 60*time.Second, "every query runs", func() (bool, error) {
		var err error
		before, err = owners()
		return err == nil, err
	})
	b, outB := startProcess(t, e.cfg)
	testwait.Until(t, 30*time.Second, "the second process stands by", func() bool {
		return strings.Contains(outB.String(), "standing by")
	})
	e.publish(t, 100)
	e.checkAll(t, queries)

	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	killed := time.Now()
	e.publish(t, 100)
	var after map[string]string
	testwait.UntilErr(context.Background(), t, 60*time.Second, "every query runs in the remaining process", func() (bool, error) {
		var err error
		if after, err = owners(); err != nil {
			return false, err
		}
		for id, o := range after {
			if o == before[id] {
				return false, fmt.Errorf("query %s still runs in %s", id, o)
			}
		}
		return true, nil
	})
	t.Logf("the standby took %d queries over %s after kill -9 (lease TTL 1s)", len(after), time.Since(killed).Round(time.Millisecond))
	e.checkAll(t, queries)
	if err := b.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(); err != nil {
		t.Fatalf("the second process did not drain and exit 0: %v\n%s\nfirst process:\n%s", err, outB.String(), outA.String())
	}
}

// A query whose text does not compile goes to Error with the message while
// the others run; check refuses the same file.
func TestQueryThatDoesNotCompileFailsAlone(t *testing.T) {
	e := newServiceEnv(t, 1)
	cfg := e.readConfig(t) + "  - id: broken\n    sources: [{sourceId: shop}]\n    query: MATCH (o:orders) RETURN frobnicate(o.id) AS x\n"
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runCLI(t, "run", "--check", "--config", e.cfg); code != 2 || !strings.Contains(out, "frobnicate") {
		t.Fatalf("run --check: exit %d, want 2 naming the function:\n%s", code, out)
	}
	e.publish(t, 100)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		g := app.Globals{Config: e.cfg, Metrics: "127.0.0.1:0", LogFormat: "text", LogLevel: "warn", StopTimeout: 20 * time.Second}
		code <- app.Binary{Kind: "query-engine", Build: build, Isolated: true, Validate: validate, Stderr: os.Stderr}.Run(ctx, g)
	}()
	kv, err := e.conn.KV(context.Background(), e.topo.Lifecycle.Name)
	if err != nil {
		t.Fatal(err)
	}
	store := lifecycle.NewStore(kv, nil)
	testwait.UntilErr(context.Background(), t, 60*time.Second, "the broken query in Error, the other running", func() (bool, error) {
		broken, err := store.Get(context.Background(), lifecycle.ComponentID{Kind: "query", ID: "broken"})
		if err != nil {
			return false, err
		}
		good, err := store.Get(context.Background(), lifecycle.ComponentID{Kind: "query", ID: "curbside"})
		if err != nil {
			return false, err
		}
		if broken.State != lifecycle.Error || !strings.Contains(broken.Message, "frobnicate") || good.State != lifecycle.Running {
			return false, fmt.Errorf("broken: %s %q; curbside: %s", broken.State, broken.Message, good.State)
		}
		return true, nil
	})
	e.publish(t, 50)
	e.checkAll(t, 1)
	cancel()
	if c := <-code; c != app.ExitOK {
		t.Fatalf("exit %d", c)
	}
}
