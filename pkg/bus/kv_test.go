package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// kvFixture connects to a fresh server with the default topology (lease TTL
// 1s) applied.
func kvFixture(t *testing.T) (*natstest.Server, *bus.Conn, streams.Topology) {
	t.Helper()
	srv := natstest.Start(t)
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.ConnectOptions{URL: srv.URL(), ReconnectWait: 50 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	topo, err := streams.Default("kvt", streams.Options{LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(ctx, topo); err != nil {
		t.Fatal(err)
	}
	return srv, c, topo
}

func openKV(t *testing.T, c *bus.Conn, bucket string) *bus.KV {
	t.Helper()
	kv, err := c.KV(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestKVCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)

	if _, err := kv.Get(ctx, "a.b"); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("get of a new key: want ErrKeyNotFound, got %v", err)
	}
	r1, err := kv.Create(ctx, "a.b", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "a.b", []byte("again")); !errors.Is(err, bus.ErrKeyExists) {
		t.Fatalf("second create: want ErrKeyExists, got %v", err)
	}
	e, err := kv.Get(ctx, "a.b")
	if err != nil || string(e.Value) != "one" || e.Revision != r1 || e.Op != bus.OpPut || e.Key != "a.b" || e.Created.IsZero() {
		t.Fatalf("get: %+v, %v", e, err)
	}
	r2, err := kv.Update(ctx, "a.b", []byte("two"), r1)
	if err != nil || r2 <= r1 {
		t.Fatalf("update: rev %d, %v", r2, err)
	}
	if _, err := kv.Update(ctx, "a.b", []byte("stale"), r1); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Fatalf("update with a stale revision: want ErrRevisionMismatch, got %v", err)
	}
	if err := kv.Delete(ctx, "a.b", r1); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Fatalf("delete with a stale revision: want ErrRevisionMismatch, got %v", err)
	}
	if err := kv.Delete(ctx, "a.b", r2); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "a.b"); !errors.Is(err, bus.ErrKeyNotFound) {
		t.Fatalf("get after delete: want ErrKeyNotFound, got %v", err)
	}
	if _, err := kv.Update(ctx, "a.b", []byte("x"), r2); !errors.Is(err, bus.ErrRevisionMismatch) {
		t.Fatalf("update over a delete marker: want ErrRevisionMismatch, got %v", err)
	}
	r4, err := kv.Create(ctx, "a.b", []byte("three"))
	if err != nil {
		t.Fatalf("create over a delete marker: %v", err)
	}
	h, err := kv.History(ctx, "a.b")
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range h {
		ops = append(ops, fmt.Sprintf("%s:%s", e.Op, e.Value))
	}
	if got, want := fmt.Sprint(ops), "[put:one put:two delete: put:three]"; got != want || h[len(h)-1].Revision != r4 {
		t.Fatalf("history %s, want %s", got, want)
	}
}

func TestKVConcurrentUpdatesOneWins(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)
	rev, err := kv.Create(ctx, "k", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range 20 {
		wg.Go(func() {
			_, err := kv.Update(ctx, "k", []byte(fmt.Sprint(i)), rev)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, bus.ErrRevisionMismatch):
				conflicts++
			default:
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || conflicts != 19 {
		t.Fatalf("wins %d conflicts %d, want 1 and 19", wins, conflicts)
	}
}

func TestKVRejectsInvalidKeys(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)
	for _, k := range []string{"", "a..b", ".a", "a.", "a b", "a.*", "a.>", "50%"} {
		if _, err := kv.Create(ctx, k, nil); !errors.Is(err, bus.ErrInvalidKey) {
			t.Errorf("create %q: want ErrInvalidKey, got %v", k, err)
		}
	}
	if _, err := kv.Watch(ctx, "a.>.b", 0); !errors.Is(err, bus.ErrInvalidKey) {
		t.Errorf("watch a.>.b: want ErrInvalidKey, got %v", err)
	}
	if _, err := c.KV(ctx, "nope"); !errors.Is(err, bus.ErrBucketNotFound) {
		t.Errorf("missing bucket: want ErrBucketNotFound, got %v", err)
	}
}

func TestKeyTokenIsInjectiveAndValid(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)
	inputs := []string{"", "=", "a", "a.b", "a=2Eb", "a b", "ü", "a/b", "*", ">", "%00", "\x00", "=00"}
	seen := map[string]string{}
	for _, in := range inputs {
		tok := bus.KeyToken(in)
		if prev, dup := seen[tok]; dup {
			t.Fatalf("KeyToken(%q) = KeyToken(%q) = %q", in, prev, tok)
		}
		seen[tok] = in
		if _, err := kv.Create(ctx, "tok."+tok, []byte(in)); err != nil {
			t.Fatalf("KeyToken(%q) = %q is not a usable key: %v", in, tok, err)
		}
	}
}

// next reads one entry or fails after a deadline.
func next(t *testing.T, w *bus.Watcher) bus.Entry {
	t.Helper()
	select {
	case e, ok := <-w.Updates():
		if !ok {
			t.Fatalf("watcher stopped: %v", w.Wait())
		}
		return e
	case <-time.After(15 * time.Second):
		t.Fatal("no entry within 15s")
	}
	return bus.Entry{}
}

// createEventually retries a create until the server answers (across a
// restart). An ambiguous failure whose write was stored shows as ErrKeyExists.
func createEventually(t *testing.T, kv *bus.KV, key, value string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := kv.Create(ctx, key, []byte(value))
		cancel()
		if err == nil || errors.Is(err, bus.ErrKeyExists) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("create %s: %v", key, err)
		}
	}
}

func TestKVWatchSurvivesServerRestart(t *testing.T) {
	ctx := context.Background()
	srv, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)
	if _, err := kv.Create(ctx, "old.x", []byte("before watch")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "other", []byte("not matched")); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "old.>", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if e := next(t, w); e.Key != "old.x" || string(e.Value) != "before watch" {
		t.Fatalf("initial value: %+v", e)
	}
	// Switch the pattern's keys: "old.>" must only see old.* keys.
	for i := range 3 {
		createEventually(t, kv, fmt.Sprintf("old.a%d", i), fmt.Sprint(i))
	}
	var last uint64
	for i := range 3 {
		e := next(t, w)
		if e.Key != fmt.Sprintf("old.a%d", i) {
			t.Fatalf("before restart, entry %d: %+v", i, e)
		}
		last = e.Revision
	}

	srv.Restart()

	for i := range 5 {
		createEventually(t, kv, fmt.Sprintf("old.b%d", i), fmt.Sprint(i))
	}
	createEventually(t, kv, "old.end", "sentinel")
	for i := range 5 {
		e := next(t, w)
		if e.Key != fmt.Sprintf("old.b%d", i) || e.Revision <= last {
			t.Fatalf("after restart, entry %d: %+v (last revision %d)", i, e, last)
		}
		last = e.Revision
	}
	// Exactly once: the next entry is the sentinel, not a repeat.
	if e := next(t, w); e.Key != "old.end" {
		t.Fatalf("after the restart's entries, want the sentinel, got %+v", e)
	}
	w.Stop()
	if _, ok := <-w.Updates(); ok {
		t.Fatal("Updates not closed after Stop")
	}
	if err := w.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after Stop: %v", err)
	}
}

func TestKVWatchFromRevisionReplaysHistory(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Lifecycle.Name)
	r1, _ := kv.Create(ctx, "h", []byte("1"))
	r2, _ := kv.Update(ctx, "h", []byte("2"), r1)
	if err := kv.Delete(ctx, "h", r2); err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "h", r1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var got []string
	for range 3 {
		e := next(t, w)
		got = append(got, fmt.Sprintf("%s:%s", e.Op, e.Value))
	}
	if fmt.Sprint(got) != "[put:1 put:2 delete:]" {
		t.Fatalf("history from revision %d: %v", r1, got)
	}
}

// The lease bucket relies on the server: a key not rewritten within the
// bucket TTL expires with a marker a watcher sees, and Create succeeds
// again afterwards.
func TestKVLeaseBucketExpiryMarker(t *testing.T) {
	ctx := context.Background()
	_, c, topo := kvFixture(t)
	kv := openKV(t, c, topo.Leases.Name)
	rev, err := kv.Create(ctx, "comp.x", []byte("holder"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "comp.x", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	e := next(t, w)
	if e.Op == bus.OpPut {
		t.Fatalf("want an expiry marker, got %+v", e)
	}
	if took := time.Since(start); took > 3*topo.Leases.TTL+time.Second {
		t.Fatalf("expiry marker after %s for a TTL of %s", took, topo.Leases.TTL)
	}
	if _, err := kv.Create(ctx, "comp.x", []byte("next")); err != nil {
		t.Fatalf("create after expiry: %v", err)
	}
}
