package reaction_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

func newSSE(t testing.TB, queries []string) *reaction.SSE {
	t.Helper()
	spec := &config.SSEReaction{Listen: "127.0.0.1:0"}
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionSSE, ID: "live", Queries: queries, Spec: spec}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := reaction.NewSSE("live", spec, queries, reaction.SSEOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stopping the sse server: %v", err)
		}
	})
	return s
}

// sseEvent is one event as a client reads it.
type sseEvent struct {
	id, name string
	data     json.RawMessage
}

// sseReader is an event stream client; its goroutine is stopped and
// waited for at cleanup.
type sseReader struct {
	mu     sync.Mutex
	events []sseEvent
	done   chan struct{}
	err    error
}

func readSSE(t testing.TB, url string, header map[string]string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	r := &sseReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					r.mu.Lock()
					r.events = append(r.events, ev)
					r.mu.Unlock()
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = json.RawMessage(line[6:])
			}
		}
		r.mu.Lock()
		r.err = sc.Err()
		r.mu.Unlock()
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *sseReader) all() []sseEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sseEvent(nil), r.events...)
}

// count is the number of events named name so far.
func (r *sseReader) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if ev.name == name {
			n++
		}
	}
	return n
}

func (r *sseReader) diffs(t testing.TB) []reactiontest.Effect {
	var out []reactiontest.Effect
	for _, ev := range r.all() {
		if ev.name != reaction.EventDiff {
			continue
		}
		var d struct {
			Query string `json:"query"`
			Seq   uint64 `json:"seq"`
		}
		if err := json.Unmarshal(ev.data, &d); err != nil {
			t.Fatal(err)
		}
		if ev.id != strconv.FormatUint(d.Seq, 10) {
			t.Fatalf("diff event id %s for seq %d", ev.id, d.Seq)
		}
		out = append(out, reactiontest.Effect{Query: d.Query, Seq: d.Seq})
	}
	return out
}

func streamURL(s *reaction.SSE, query string) string {
	u := "http://" + s.Addr() + "/events"
	if query != "" {
		u += "/" + query
	}
	return u
}

func TestSSEConformance(t *testing.T) {
	reactiontest.Run(t, reactiontest.Kind{ExactlyOnce: true, New: func(t *testing.T) *reactiontest.Target {
		s := newSSE(t, reactiontest.Queries)
		var readers []*sseReader
		for _, q := range reactiontest.Queries {
			r := readSSE(t, streamURL(s, q), nil)
			testwait.Until(t, 5*time.Second, "the snapshot", func() bool { return len(r.all()) > 0 })
			readers = append(readers, r)
		}
		return &reactiontest.Target{
			Reaction: s,
			Effects: func(t testing.TB) []reactiontest.Effect {
				var out []reactiontest.Effect
				for _, r := range readers {
					out = append(out, r.diffs(t)...)
				}
				return out
			},
		}
	}})
}

type snapshotData struct {
	Query string               `json:"query"`
	Seq   uint64               `json:"seq"`
	Rows  [][2]json.RawMessage `json:"rows"`
}

// A client that connects late gets the current result set first, with the
// query's seq as id (whatever Last-Event-ID it sends), then the diffs.
func TestSSELateClientStartsFromSnapshot(t *testing.T) {
	s := newSSE(t, []string{"q1"})
	ctx := t.Context()
	for _, r := range []*change.Result{
		{Query: "q1", Seq: 1, Added: []change.Row{{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}}},
		{Query: "q1", Seq: 2, Updated: []change.RowUpdate{{Before: change.Row{"id": 2, "v": "b"}, After: change.Row{"id": 2, "v": "B"}}}},
		{Query: "q1", Seq: 3, Deleted: []change.Row{{"id": 1, "v": "a"}}},
	} {
		if err := s.React(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r := readSSE(t, streamURL(s, "q1"), map[string]string{"Last-Event-ID": "1"})
	testwait.Until(t, 5*time.Second, "the snapshot", func() bool { return len(r.all()) > 0 })
	ev := r.all()[0]
	var snap snapshotData
	if err := json.Unmarshal(ev.data, &snap); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, row := range snap.Rows {
		rows = append(rows, string(row[1]))
	}
	if ev.name != reaction.EventSnapshot || ev.id != "3" || snap.Seq != 3 ||
		strings.Join(rows, " ") != `{"id":2,"v":"B"} {"id":3,"v":"c"}` {
		t.Fatalf("first event %s id %s: %s", ev.name, ev.id, ev.data)
	}
	// The updated row kept its id (the page updates it in place).
	if string(snap.Rows[0][0]) != "2" {
		t.Fatalf("updated row's id %s, want 2 (its id when added)", snap.Rows[0][0])
	}
	if err := s.React(ctx, &change.Result{Query: "q1", Seq: 4, Added: []change.Row{{"id": 4, "v": "d"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.React(ctx, &change.Result{Query: "q1", Seq: 3}); err != nil { // redelivered: skipped
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "the diff", func() bool { return len(r.all()) == 2 })
	if got := r.diffs(t); len(got) != 1 || got[0].Seq != 4 {
		t.Fatalf("diffs %v", got)
	}
	// An unknown query is a 404 naming the known ones.
	resp, err := http.Get(streamURL(s, "nope"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown query: %s", resp.Status)
	}
	// A row JSON cannot encode is permanent.
	err = s.React(ctx, &change.Result{Query: "q1", Seq: 5, Added: []change.Row{{"v": math.NaN()}}})
	if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrBadResult) {
		t.Fatalf("NaN row: %v", err)
	}
}

// Bootstrap rebuilds the sets from the results stream; the consumer then
// skips what it applied and goes on.
func TestSSEBootstrapFromResultsHistory(t *testing.T) {
	e := newBusEnv(t)
	for seq := uint64(1); seq <= 5; seq++ {
		e.publishResult(reactiontest.Result("q1", seq))
	}
	e.publishResult(reactiontest.Result("q2", 1))
	s := newSSE(t, []string{"q1", "q2", "q3"})
	if err := s.Bootstrap(t.Context(), e.conn, e.topo.Results.Name, func(q string) string { return e.topo.ResultSubject(bus.Token(q)) }); err != nil {
		t.Fatal(err)
	}
	if s.Seq("q1") != 5 || s.Seq("q2") != 1 || s.Seq("q3") != 0 {
		t.Fatalf("after bootstrap: q1 %d, q2 %d, q3 %d", s.Seq("q1"), s.Seq("q2"), s.Seq("q3"))
	}
	r := readSSE(t, streamURL(s, "q1"), nil)
	e.publishResult(reactiontest.Result("q1", 6))
	e.consume("live", []string{"q1", "q2", "q3"}, s)
	testwait.Until(t, 10*time.Second, "seq 6", func() bool { return s.Seq("q1") == 6 })
	testwait.Until(t, 5*time.Second, "the diff of 6", func() bool { return len(r.diffs(t)) == 1 })
	var snap snapshotData
	if err := json.Unmarshal(r.all()[0].data, &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Seq != 5 || len(snap.Rows) != 5 {
		t.Fatalf("snapshot after bootstrap: seq %d, %d rows", snap.Seq, len(snap.Rows))
	}
	if d := r.diffs(t); d[0].Seq != 6 {
		t.Fatalf("diffs %v", d)
	}
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// A client that stops reading is cut; React never waits for it, and a
// client that reads gets every diff.
func TestSSESlowClientIsCutNotWaitedFor(t *testing.T) {
	reg := prometheus.NewRegistry()
	spec := &config.SSEReaction{Listen: "127.0.0.1:0", Path: "/events"}
	s, err := reaction.NewSSE("live", spec, []string{"q1"}, reaction.SSEOptions{WriteTimeout: 300 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	stalled, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write([]byte("GET /events/q1 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// It never reads.
	fast := readSSE(t, streamURL(s, "q1"), nil)
	testwait.Until(t, 5*time.Second, "two clients", func() bool { return gaugeValue(t, reg, "tributary_reaction_sse_clients") == 2 })

	big := strings.Repeat("x", 8<<10)
	const n = 2000
	var slowest time.Duration
	for seq := uint64(1); seq <= n; seq++ {
		start := time.Now()
		if err := s.React(t.Context(), &change.Result{Query: "q1", Seq: seq, Added: []change.Row{{"seq": seq, "pad": big}}}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		if seq%250 == 0 { // pace the reading client so that it never falls behind
			testwait.Until(t, 10*time.Second, "the reading client to catch up", func() bool { return fast.count(reaction.EventDiff) == int(seq) })
		}
	}
	if slowest > time.Second {
		t.Fatalf("a React took %s: it waited for a client", slowest)
	}
	testwait.Until(t, 10*time.Second, "the stalled client to be cut", func() bool { return gaugeValue(t, reg, "tributary_reaction_sse_clients") == 1 })
	if got := fast.diffs(t); len(got) != n || got[n-1].Seq != n {
		t.Fatalf("the reading client got %d diffs", len(got))
	}
}
