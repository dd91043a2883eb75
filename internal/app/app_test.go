package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func globals(cfg string) app.Globals {
	return app.Globals{Config: cfg, Metrics: "127.0.0.1:0", LogFormat: "text", LogLevel: "info", StopTimeout: 10 * time.Second}
}

func noComponents(context.Context, *app.Runtime) ([]*lifecycle.Component, error) { return nil, nil }

func TestCheckReportsEveryProblemAndExits2(t *testing.T) {
	cfg := writeConfig(t, "nats:\n  replicas: 2\n  bogus: 1\n")
	var out, errOut syncBuffer
	g := globals(cfg)
	g.Check = true
	code := app.Binary{Kind: "test", Build: noComponents, Stdout: &out, Stderr: &errOut}.Run(context.Background(), g)
	if code != app.ExitConfig {
		t.Fatalf("exit %d, want %d", code, app.ExitConfig)
	}
	for _, want := range []string{"nats.replicas", "nats.bogus"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not name %s:\n%s", want, errOut.String())
		}
	}
}

func TestCheckValidConfigExits0(t *testing.T) {
	cfg := writeConfig(t, "nats:\n  storeDir: "+t.TempDir()+"\n")
	var out, errOut syncBuffer
	g := globals(cfg)
	g.Check = true
	if code := (app.Binary{Kind: "test", Build: noComponents, Stdout: &out, Stderr: &errOut}).Run(context.Background(), g); code != app.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "is valid") {
		t.Fatalf("stdout: %q", out.String())
	}
}

// H2 at the binary level: the metrics port is taken, so the first start
// step fails; nothing is left running (goleak in TestMain) and the error
// names the step.
func TestStartFailsWhenMetricsPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := natstest.Start(t)
	cfg := writeConfig(t, "nats:\n  url: "+srv.URL()+"\n")
	g := globals(cfg)
	g.Metrics = ln.Addr().String()
	var errOut syncBuffer
	code := app.Binary{Kind: "test", Build: noComponents, Stderr: &errOut}.Run(context.Background(), g)
	if code != app.ExitFailed {
		t.Fatalf("exit %d, want %d", code, app.ExitFailed)
	}
	if !strings.Contains(errOut.String(), `start step \"metrics listener\"`) {
		t.Fatalf("error does not name the step:\n%s", errOut.String())
	}
}

// A failure in a later step (the components) undoes the earlier ones: the
// embedded server is shut down (its store can be opened again) and the
// metrics port is free again.
func TestStartFailureInBuildRollsBackEverything(t *testing.T) {
	store := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := writeConfig(t, "nats:\n  storeDir: "+store+"\n")
	g := globals(cfg)
	g.Metrics = addr
	var errOut syncBuffer
	failing := func(context.Context, *app.Runtime) ([]*lifecycle.Component, error) {
		return nil, fmt.Errorf("no such reaction kind")
	}
	if code := (app.Binary{Kind: "test", Build: failing, Stderr: &errOut}).Run(context.Background(), g); code != app.ExitFailed {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), `start step \"components\": no such reaction kind`) {
		t.Fatalf("stderr:\n%s", errOut.String())
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("metrics port still held after the failed start: %v", err)
	}
	ln2.Close()
}

// A whole run: a log reaction consumes a result published on the bus and
// writes it; cancelling the context (SIGTERM) drains and exits 0.
func TestRunDeliversResultsAndStopsCleanly(t *testing.T) {
	srv := natstest.Start(t)
	cfg := writeConfig(t, `nats:
  url: `+srv.URL()+`
queries:
  - id: q1
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) RETURN o.id AS id
reactions:
  - kind: log
    id: console
    queries: [q1]
`)
	var out, errOut syncBuffer
	build := func(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
		comp, err := rt.NewComponent("reaction", "console")
		if err != nil {
			return nil, err
		}
		l, _ := reaction.NewLog("console", "json", &out)
		comp.AddStep("results consumer", reaction.ConsumeStep(rt.Bus, comp, reaction.ConsumerOptions(rt.Topology, "console", []string{"q1"}, config.RetryConfig{}), l))
		return []*lifecycle.Component{comp}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	codeCh := make(chan int, 1)
	go func() {
		codeCh <- app.Binary{Kind: "test", Build: build, Stdout: &out, Stderr: &errOut}.Run(ctx, globals(cfg))
	}()

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	msg := `{"query":"q1","seq":1,"ts_ms":5,"added":[{"id":7}],"updated":[],"deleted":[]}`
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		}
	})
	// The stream exists once the binary applied its topology.
	testwait.UntilErr(context.Background(), t, 20*time.Second, "the results stream", func() (bool, error) {
		_, err := js.Publish("tributary.results.q1", []byte(msg), nats.MsgId("q1:1"))
		return err == nil, err
	})
	testwait.Until(t, 20*time.Second, "the result in the output", func() bool { return strings.Contains(out.String(), `"seq":1`) })
	if !strings.Contains(out.String(), `"reaction":"console"`) || !strings.Contains(out.String(), `"added":[{"id":7}]`) {
		t.Fatalf("output: %s", out.String())
	}
	cancel()
	select {
	case code := <-codeCh:
		if code != app.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30s")
	}
}

// C1 at the process boundary: a worker that keeps failing is restarted with
// backoff until the supervisor gives up; then the binary stops everything
// and exits non-zero.
func TestComponentThatGivesUpEndsTheProcessNonZero(t *testing.T) {
	srv := natstest.Start(t)
	cfg := writeConfig(t, "nats:\n  url: "+srv.URL()+"\n")
	var errOut syncBuffer
	var attempts atomic.Int32
	build := func(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
		comp, err := rt.NewComponent("test", "failing")
		if err != nil {
			return nil, err
		}
		comp.AddStep("worker", func(ctx context.Context) (lifecycle.Undo, error) {
			return nil, comp.Go("always-fails", func(ctx context.Context) error {
				attempts.Add(1)
				return fmt.Errorf("cannot reach the database")
			})
		})
		return []*lifecycle.Component{comp}, nil
	}
	done := make(chan int, 1)
	go func() {
		done <- app.Binary{Kind: "test", Build: build, Stderr: &errOut}.Run(context.Background(), globals(cfg))
	}()
	select {
	case code := <-done:
		if code != app.ExitFailed {
			t.Fatalf("exit %d, want %d\n%s", code, app.ExitFailed, errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the process did not end; stderr:\n%s", errOut.String())
	}
	if n := attempts.Load(); n < 2 {
		t.Fatalf("the worker ran %d times: it was not restarted before giving up", n)
	}
	if !strings.Contains(errOut.String(), "a component gave up") || !strings.Contains(errOut.String(), "cannot reach the database") {
		t.Fatalf("stderr does not say why:\n%s", errOut.String())
	}
}

// One config serves every binary: a file whose embedded server listens for
// the others is valid for a process that connects to it with --nats.
func TestNATSFlagIgnoresEmbeddedListen(t *testing.T) {
	cfg := writeConfig(t, "nats:\n  storeDir: "+t.TempDir()+"\n  listen: 127.0.0.1:4222\n")
	var out, errOut syncBuffer
	g := globals(cfg)
	g.Check = true
	g.NATS = "nats://127.0.0.1:4222"
	if code := (app.Binary{Kind: "test", Build: noComponents, Stdout: &out, Stderr: &errOut}).Run(context.Background(), g); code != app.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

// blockingComponent builds one component whose worker runs until stopped.
func blockingComponent(id string, running *atomic.Int32) app.Build {
	return func(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
		comp, err := rt.NewComponent("test", id)
		if err != nil {
			return nil, err
		}
		comp.AddStep("worker", func(ctx context.Context) (lifecycle.Undo, error) {
			return nil, comp.Go("work", func(ctx context.Context) error {
				running.Add(1)
				defer running.Add(-1)
				<-ctx.Done()
				return nil
			})
		})
		return []*lifecycle.Component{comp}, nil
	}
}

// Issue 8: a second process whose component another process runs stands
// by in the background (its start does not block), and SIGTERM while it
// waits for the lease drains it with exit 0, without an error. Then the
// owner's component moves to a third process when the owner stops.
func TestStandbyStopsCleanlyAndTakesOver(t *testing.T) {
	srv := natstest.Start(t)
	cfg := writeConfig(t, "nats:\n  url: "+srv.URL()+"\n  leaseTTL: 2s\n")
	var running atomic.Int32
	type proc struct {
		cancel context.CancelFunc
		code   chan int
		errOut *syncBuffer
	}
	start := func() *proc {
		ctx, cancel := context.WithCancel(context.Background())
		p := &proc{cancel: cancel, code: make(chan int, 1), errOut: &syncBuffer{}}
		go func() {
			p.code <- app.Binary{Kind: "test", Build: blockingComponent("one", &running), Isolated: true, Stderr: p.errOut}.Run(ctx, globals(cfg))
		}()
		return p
	}
	exit := func(p *proc) int {
		p.cancel()
		select {
		case code := <-p.code:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("did not stop within 30s; stderr:\n%s", p.errOut.String())
			return -1
		}
	}
	owner := start()
	testwait.Until(t, 20*time.Second, "the owner runs the component", func() bool { return running.Load() == 1 })

	standby := start()
	testwait.Until(t, 20*time.Second, "the second process stands by", func() bool {
		return strings.Contains(standby.errOut.String(), "standing by")
	})
	if code := exit(standby); code != app.ExitOK {
		t.Fatalf("standby exit %d, want 0; stderr:\n%s", code, standby.errOut.String())
	}
	if s := standby.errOut.String(); strings.Contains(s, "level=ERROR") {
		t.Fatalf("the standby's drain logged an error:\n%s", s)
	}

	next := start()
	testwait.Until(t, 20*time.Second, "the third process stands by", func() bool {
		return strings.Contains(next.errOut.String(), "standing by")
	})
	if code := exit(owner); code != app.ExitOK {
		t.Fatalf("owner exit %d; stderr:\n%s", code, owner.errOut.String())
	}
	testwait.Until(t, 20*time.Second, "the standby takes the component over", func() bool {
		return running.Load() == 1 && strings.Contains(next.errOut.String(), "msg=running")
	})
	if code := exit(next); code != app.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, next.errOut.String())
	}
}

// An Isolated binary keeps running when one component fails for good: the
// failed one is stopped and started again after a backoff, the other keeps
// running, and SIGTERM still drains with exit 0.
func TestIsolatedComponentIsRestartedAfterItGivesUp(t *testing.T) {
	srv := natstest.Start(t)
	cfg := writeConfig(t, "nats:\n  url: "+srv.URL()+"\n")
	var attempts, healthy atomic.Int32
	build := func(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
		failing, err := rt.NewComponent("test", "failing")
		if err != nil {
			return nil, err
		}
		failing.AddStep("worker", func(ctx context.Context) (lifecycle.Undo, error) {
			return nil, failing.Go("always-fails", func(ctx context.Context) error {
				attempts.Add(1)
				return fmt.Errorf("cannot reach the database")
			})
		})
		comps, err := blockingComponent("healthy", &healthy)(ctx, rt)
		if err != nil {
			return nil, err
		}
		return append(comps, failing), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- app.Binary{Kind: "test", Build: build, Isolated: true, Stderr: &errOut}.Run(ctx, globals(cfg))
	}()
	// The supervisor gives up after 5 failures in a row; more attempts
	// mean the component was started again.
	testwait.Until(t, 60*time.Second, "the failed component restarted", func() bool { return attempts.Load() > 6 })
	if healthy.Load() != 1 {
		t.Fatalf("the healthy component does not run (%d)", healthy.Load())
	}
	select {
	case code := <-done:
		t.Fatalf("the process ended (exit %d) although the binary is isolated:\n%s", code, errOut.String())
	default:
	}
	if !strings.Contains(errOut.String(), "component failed; stopping it and starting it again") {
		t.Fatalf("stderr does not say it restarts the component:\n%s", errOut.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != app.ExitOK {
			t.Fatalf("exit %d:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30s")
	}
}
