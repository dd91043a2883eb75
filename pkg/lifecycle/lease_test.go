package lifecycle_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
)

func (f *fixture) leaseConfig(key, holder string) lifecycle.LeaseConfig {
	return lifecycle.LeaseConfig{KV: f.leases, Key: key, TTL: leaseTTL, Holder: holder}
}

func acquire(t *testing.T, cfg lifecycle.LeaseConfig) *lifecycle.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := lifecycle.AcquireLease(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release(context.Background()) })
	return l
}

// A failed renewal stops the work at once: deleting or overwriting the key
// from outside ends the holder's context.
func TestLeaseLossCancelsWork(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		breakKey func(key string, rev uint64) error
	}{
		{"deleted", func(key string, _ uint64) error { return f.leases.Delete(ctx, key, 0) }},
		{"overwritten", func(key string, rev uint64) error {
			_, err := f.leases.Update(ctx, key, []byte(`{"holder":"intruder"}`), rev)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "test.loss-" + tc.name
			l := acquire(t, f.leaseConfig(key, "a"))
			if l.Err() != nil || l.Token() == 0 {
				t.Fatalf("fresh lease: err %v token %d", l.Err(), l.Token())
			}
			var err error
			for range 5 { // a renewal may land in between: retry with the new revision
				if err = tc.breakKey(key, l.Revision()); !errors.Is(err, bus.ErrRevisionMismatch) {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			broke := time.Now()
			select {
			case <-l.Context().Done():
			case <-time.After(leaseTTL):
				t.Fatal("work context still alive one TTL after the key was taken away")
			}
			t.Logf("work cancelled %s after the key was %s", time.Since(broke).Round(time.Millisecond), tc.name)
			if !errors.Is(l.Err(), lifecycle.ErrLeaseLost) || !errors.Is(context.Cause(l.Context()), lifecycle.ErrLeaseLost) {
				t.Fatalf("cause %v, want ErrLeaseLost", l.Err())
			}
			if err := l.Release(ctx); err != nil {
				t.Fatalf("release after loss: %v", err)
			}
		})
	}
}

func TestLeaseRenewsAndStandbyTakesOverOnRelease(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := acquire(t, f.leaseConfig("test.standby", "a"))
	first := a.Revision()
	testwait.Until(t, 2*leaseTTL, "a renewal", func() bool { return a.Revision() > first })

	type result struct {
		l   *lifecycle.Lease
		err error
	}
	got := make(chan result, 1)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the standby if the test fails before it acquires
	go func() {
		l, err := lifecycle.AcquireLease(bctx, f.leaseConfig("test.standby", "b"))
		got <- result{l, err}
	}()
	// b stands by while a renews for longer than a TTL.
	select {
	case r := <-got:
		t.Fatalf("standby acquired a held lease: %v", r.err)
	case <-time.After(leaseTTL + leaseTTL/2): // the fault window: a holds the lease
	}
	if a.Err() != nil {
		t.Fatalf("holder lost its lease while renewing: %v", a.Err())
	}
	released := time.Now()
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.l.Release(ctx)
	took := time.Since(released)
	t.Logf("standby took over %s after the release", took.Round(time.Millisecond))
	if took > leaseTTL/2 {
		t.Fatalf("takeover after a release took %s", took)
	}
	if r.l.Token() <= a.Revision() {
		t.Fatalf("fencing token %d not above the old holder's %d", r.l.Token(), a.Revision())
	}
	if !errors.Is(a.Err(), lifecycle.ErrLeaseReleased) {
		t.Fatalf("released lease cause %v", a.Err())
	}
}

const helperEnv = "TRIBUTARY_LEASE_HELPER_NATS"

// TestLeaseHelperProcess is not a test: it is the body of the processes
// TestLeaseTakeoverAfterKill starts. It runs a component and prints
// "ACTIVE <fencing token>" once it is the active instance.
func TestLeaseHelperProcess(t *testing.T) {
	url := os.Getenv(helperEnv)
	if url == "" {
		return // run directly: nothing to do
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, topo, err := connectTopology(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	states, err := c.KV(ctx, topo.Lifecycle.Name)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := c.KV(ctx, topo.Leases.Name)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	comp, err := lifecycle.NewComponent(lifecycle.Config{
		Kind: "query", ID: "h1", Instance: os.Getenv("TRIBUTARY_INSTANCE"),
		Store: lifecycle.NewStore(states, log), Leases: leases, LeaseTTL: leaseTTL, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ACTIVE %d\n", comp.LeaseToken())
	select {
	case <-ctx.Done():
	case err := <-comp.Fatal():
		fmt.Printf("FATAL %v\n", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := comp.Stop(sctx); err != nil {
		t.Fatal(err)
	}
}

type helperProc struct {
	cmd     *exec.Cmd
	active  chan uint64 // the fencing token, when ACTIVE is printed
	standby chan struct{}
	wg      sync.WaitGroup
}

func startHelper(t *testing.T, url, instance string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeaseHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+url, "TRIBUTARY_INSTANCE="+instance)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &helperProc{cmd: cmd, active: make(chan uint64, 1), standby: make(chan struct{}, 1)}
	p.wg.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if tok, ok := strings.CutPrefix(sc.Text(), "ACTIVE "); ok {
				n, _ := strconv.ParseUint(tok, 10, 64)
				p.active <- n
			}
		}
	})
	p.wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "standing by") {
				select {
				case p.standby <- struct{}{}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		p.wg.Wait()
		_ = cmd.Wait()
	})
	return p
}

// H1: two processes with the same component id: one runs, the other
// stands by and takes over within the TTL after the first is killed with
// SIGKILL, with a greater fencing token.
func TestLeaseTakeoverAfterKill(t *testing.T) {
	f := newFixture(t)
	a := startHelper(t, f.srv.URL(), "proc-a")
	var tokA uint64
	select {
	case tokA = <-a.active:
	case <-time.After(20 * time.Second):
		t.Fatal("first process never became active")
	}
	b := startHelper(t, f.srv.URL(), "proc-b")
	select {
	case <-b.standby:
	case tok := <-b.active:
		t.Fatalf("second process became active (token %d) while the first runs", tok)
	case <-time.After(20 * time.Second):
		t.Fatal("second process never stood by")
	}
	// b stands by; a keeps its lease for longer than a TTL.
	select {
	case tok := <-b.active:
		t.Fatalf("second process became active (token %d) while the first runs", tok)
	case <-time.After(leaseTTL + leaseTTL/2): // the fault window: a renews
	}

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var tokB uint64
	select {
	case tokB = <-b.active:
	case <-time.After(leaseTTL + 3*time.Second):
		t.Fatalf("standby not active within TTL + 3s of the kill")
	}
	took := time.Since(killed)
	t.Logf("standby active %s after SIGKILL (TTL %s); tokens %d -> %d", took.Round(time.Millisecond), leaseTTL, tokA, tokB)
	if tokB <= tokA {
		t.Fatalf("fencing token %d not above %d", tokB, tokA)
	}
	r := f.state(t, lifecycle.ComponentID{Kind: "query", ID: "h1"})
	if r.State != lifecycle.Running || r.Instance != "proc-b" {
		t.Fatalf("state after takeover: %+v", r.Status)
	}
	hist, err := f.store.History(context.Background(), lifecycle.ComponentID{Kind: "query", ID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, e := range hist {
		trail = append(trail, fmt.Sprintf("%s->%s(%s by %s)", e.From, e.To, e.Instance, e.UpdatedBy))
	}
	want := "[stopped->starting(proc-a by proc-a) starting->running(proc-a by proc-a) running->error(proc-a by proc-b) error->starting(proc-b by proc-b) starting->running(proc-b by proc-b)]"
	if fmt.Sprint(trail) != want {
		t.Fatalf("history\n%v\nwant\n%s", trail, want)
	}
}

// Without a successful renewal for a whole TTL (the bus is unreachable),
// the holder stops its work by itself, no later than the server could let
// another instance take over.
func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	f := newFixture(t)
	l := acquire(t, f.leaseConfig("test.unreachable", "a"))
	f.srv.Shutdown()
	down := time.Now()
	select {
	case <-l.Context().Done():
	case <-time.After(leaseTTL + time.Second):
		t.Fatal("work still running a TTL after the bus went away")
	}
	took := time.Since(down)
	t.Logf("work cancelled %s after the server went down (TTL %s)", took.Round(time.Millisecond), leaseTTL)
	if took > leaseTTL+200*time.Millisecond || !errors.Is(l.Err(), lifecycle.ErrLeaseLost) || !strings.Contains(l.Err().Error(), "not renewed") {
		t.Fatalf("after %s: %v", took, l.Err())
	}
	f.srv.Restart()
	testwait.Until(t, 10*time.Second, "reconnect", f.conn.Connected)
	// The expired key no longer blocks a new holder.
	b := acquire(t, f.leaseConfig("test.unreachable", "b"))
	if b.Token() <= l.Token() {
		t.Fatalf("token %d not above %d", b.Token(), l.Token())
	}
}

// Lose (a fenced write) ends the lease as lost with its cause, stops the
// renewals, and leaves the key to whoever holds it: Release deletes
// nothing, and the key expires by itself.
func TestLeaseLose(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := acquire(t, f.leaseConfig("test.lose", "a"))
	cause := fmt.Errorf("batch refused: %w", bus.ErrFenced)
	l.Lose(cause)
	select {
	case <-l.Done():
	default:
		t.Fatal("the lease context is alive after Lose")
	}
	if err := l.Err(); !errors.Is(err, lifecycle.ErrLeaseLost) || !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("cause %v, want ErrLeaseLost and the fenced cause", err)
	}
	l.Lose(errors.New("second")) // no effect
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.Err(), bus.ErrFenced) {
		t.Fatalf("cause after Release %v, want the first cause kept", l.Err())
	}
	e, err := f.leases.Get(ctx, "test.lose")
	if err != nil {
		t.Fatalf("the key after Release of a lost lease: %v (want it kept until it expires)", err)
	}
	// Not renewed any more: it expires within a TTL of the last renewal.
	testwait.Until(t, 2*leaseTTL, "the key to expire", func() bool {
		_, err := f.leases.Get(ctx, "test.lose")
		return errors.Is(err, bus.ErrKeyNotFound)
	})
	t.Logf("key at revision %d expired", e.Revision)
}
