package reaction

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// SSE event names.
const (
	// EventSnapshot carries a query's whole current result set; it is
	// the first event of every stream (so a client that connects late or
	// reconnects, with or without Last-Event-ID, starts from the truth).
	EventSnapshot = "snapshot"
	// EventDiff carries one result message applied to the set.
	EventDiff = "diff"
)

// sseClientBuffer is how many events a client may lag behind before it is
// disconnected (it reconnects and starts again from a snapshot).
const sseClientBuffer = 1024

// sseRetryMillis is the reconnection delay the streams ask browsers for.
const sseRetryMillis = 500

// DefaultSSEWriteTimeout bounds one write to a client.
const DefaultSSEWriteTimeout = 10 * time.Second

// SSEOptions tune an sse reaction.
type SSEOptions struct {
	// WriteTimeout bounds each write to a client; a client that does not
	// read for that long is disconnected. Default DefaultSSEWriteTimeout.
	WriteTimeout time.Duration
	// Logger and Registerer default to discarding and a private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// SSE keeps each query's current result set in memory and serves it as
// server-sent events: GET <path>/<query> streams one query, GET <path>
// all of them, and GET / is a page showing each query's live table. Every
// stream starts with a snapshot event (the whole set, id: the query's seq)
// and goes on with a diff event per result message (id: its seq). Rows
// carry ids the server assigns, so a client updates a row in place.
//
// React applies a result to the set and hands the event to every
// connected client without waiting for them: a client more than
// sseClientBuffer events behind is disconnected and starts again from a
// snapshot when it reconnects. A redelivered result (seq not above the
// set's) is skipped. The set lives in memory: Bootstrap rebuilds it from
// the results history before the consumer starts.
//
// Errors: a row JSON cannot encode (ErrBadResult) is permanent. React
// never waits on a client, so it has no retryable errors besides a
// cancelled context.
type SSE struct {
	id      string
	listen  string
	path    string
	queries []string
	log     *slog.Logger
	clients prometheus.Gauge
	writeTO time.Duration

	mu      sync.Mutex
	sets    map[string]*resultSet
	subs    map[*sseClient]struct{}
	nextRow int64

	srv     *http.Server
	ln      net.Listener
	closing chan struct{}
	served  chan struct{}
}

// resultSet is one query's current rows.
type resultSet struct {
	seq  uint64
	rows map[int64]json.RawMessage // row id -> row JSON
	ids  map[string][]int64        // row JSON -> ids of equal rows (a multiset)
}

type sseClient struct {
	query  string // "" for every query
	events chan []byte
	gone   chan struct{} // closed when the server drops the client
	once   sync.Once
}

func (c *sseClient) drop() { c.once.Do(func() { close(c.gone) }) }

// NewSSE builds the sse reaction id from its (validated, defaulted)
// config; Start serves it.
func NewSSE(id string, spec *config.SSEReaction, queries []string, opts SSEOptions) (*SSE, error) {
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultSSEWriteTimeout
	}
	path := strings.TrimSuffix(spec.Path, "/")
	if path == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("sse reaction %s: path %q must start with / and name something", id, spec.Path)
	}
	clients, err := obs.Register(opts.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_reaction_sse_clients",
		Help: "Connected server-sent-events clients, by reaction.",
	}, []string{"reaction"}))
	if err != nil {
		return nil, fmt.Errorf("sse reaction %s: %w", id, err)
	}
	s := &SSE{
		id: id, listen: spec.Listen, path: path, queries: slices.Clone(queries), log: opts.Logger,
		clients: clients.WithLabelValues(id),
		writeTO: opts.WriteTimeout,
		sets:    make(map[string]*resultSet),
		subs:    make(map[*sseClient]struct{}),
		closing: make(chan struct{}),
		served:  make(chan struct{}),
	}
	for _, q := range queries {
		s.sets[q] = newResultSet()
	}
	return s, nil
}

func newResultSet() *resultSet {
	return &resultSet{rows: make(map[int64]json.RawMessage), ids: make(map[string][]int64)}
}

// Start listens on the configured address and serves the streams and the
// page until Stop. Call it once.
func (s *SSE) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.listen)
	if err != nil {
		return fmt.Errorf("sse reaction %s: listening on %s: %w", s.id, s.listen, err)
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET "+s.path, s.serveStream)
	mux.HandleFunc("GET "+s.path+"/{query}", s.serveStream)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { // owned by Stop, which waits for served
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sse server stopped", "err", err)
		}
	}()
	s.log.Info("serving server-sent events", "addr", ln.Addr().String(), "path", s.path)
	return nil
}

// Addr is the address Start listens on.
func (s *SSE) Addr() string { return s.ln.Addr().String() }

// Stop ends every stream and stops the server within ctx. Safe to call
// more than once, and without Start.
func (s *SSE) Stop(ctx context.Context) error {
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.served
	return err
}

// React implements Reaction.
func (s *SSE) React(ctx context.Context, r *change.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sse reaction %s, result %s: %w", s.id, IdempotencyKey(r), err)
	}
	// Encode outside the lock; an unencodable row is permanent.
	enc := func(row change.Row) (json.RawMessage, error) {
		b, err := json.Marshal(row)
		if err != nil {
			return nil, bus.Permanent(fmt.Errorf("sse reaction %s: %w: result %s: %v", s.id, ErrBadResult, IdempotencyKey(r), err))
		}
		return b, nil
	}
	type upd struct{ before, after json.RawMessage }
	var added, deleted []json.RawMessage
	var updated []upd
	for _, row := range r.Added {
		b, err := enc(row)
		if err != nil {
			return err
		}
		added = append(added, b)
	}
	for _, u := range r.Updated {
		b, err := enc(u.Before)
		if err != nil {
			return err
		}
		a, err := enc(u.After)
		if err != nil {
			return err
		}
		updated = append(updated, upd{b, a})
	}
	for _, row := range r.Deleted {
		b, err := enc(row)
		if err != nil {
			return err
		}
		deleted = append(deleted, b)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.sets[r.Query]
	if set == nil {
		set = newResultSet()
		s.sets[r.Query] = set
	}
	if r.Seq <= set.seq {
		return nil // redelivered: already applied
	}
	if r.Seq != set.seq+1 {
		s.log.Warn("gap in the results: the live table may be wrong until the query's results are complete again",
			"query", r.Query, "seq", r.Seq, "applied_through", set.seq)
	}
	d := sseDiff{Query: r.Query, Seq: r.Seq, Added: [][2]any{}, Updated: [][2]any{}, Deleted: []int64{}}
	for _, b := range deleted {
		if id, ok := set.remove(b); ok {
			d.Deleted = append(d.Deleted, id)
		} else {
			s.log.Warn("deleted row not in the result set", "query", r.Query, "seq", r.Seq)
		}
	}
	for _, u := range updated {
		id, ok := set.remove(u.before)
		if !ok {
			s.log.Warn("updated row not in the result set; adding it", "query", r.Query, "seq", r.Seq)
			s.nextRow++
			id = s.nextRow
		}
		set.add(id, u.after)
		d.Updated = append(d.Updated, [2]any{id, u.after})
	}
	for _, b := range added {
		s.nextRow++
		set.add(s.nextRow, b)
		d.Added = append(d.Added, [2]any{s.nextRow, b})
	}
	set.seq = r.Seq
	s.broadcast(r.Query, sseEvent(EventDiff, r.Query, r.Seq, d))
	return nil
}

func (rs *resultSet) add(id int64, row json.RawMessage) {
	rs.rows[id] = row
	rs.ids[string(row)] = append(rs.ids[string(row)], id)
}

// remove takes out one row equal to row, returning its id.
func (rs *resultSet) remove(row json.RawMessage) (int64, bool) {
	ids := rs.ids[string(row)]
	if len(ids) == 0 {
		return 0, false
	}
	id := ids[0]
	if len(ids) == 1 {
		delete(rs.ids, string(row))
	} else {
		rs.ids[string(row)] = ids[1:]
	}
	delete(rs.rows, id)
	return id, true
}

type sseDiff struct {
	Query   string   `json:"query"`
	Seq     uint64   `json:"seq"`
	Added   [][2]any `json:"added"`   // [row id, row]
	Updated [][2]any `json:"updated"` // [row id, new row]
	Deleted []int64  `json:"deleted"` // row ids
}

type sseSnapshot struct {
	Query string   `json:"query"`
	Seq   uint64   `json:"seq"`
	Rows  [][2]any `json:"rows"` // [row id, row], in row id order
}

// sseEvent frames one event. Data is one line of JSON.
func sseEvent(name, query string, seq uint64, data any) []byte {
	b, err := json.Marshal(data)
	if err != nil { // rows were encoded already; cannot happen
		b = []byte(`{}`)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: %s\n\n", seq, name, b)
	return buf.Bytes()
}

func (s *SSE) snapshotLocked(query string) []byte {
	set := s.sets[query]
	snap := sseSnapshot{Query: query, Rows: [][2]any{}}
	if set != nil {
		snap.Seq = set.seq
		ids := make([]int64, 0, len(set.rows))
		for id := range set.rows {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			snap.Rows = append(snap.Rows, [2]any{id, set.rows[id]})
		}
	}
	return sseEvent(EventSnapshot, query, snap.Seq, snap)
}

// broadcast hands ev to every client of query; one too far behind is
// dropped. Called with s.mu held.
func (s *SSE) broadcast(query string, ev []byte) {
	for c := range s.subs {
		if c.query != "" && c.query != query {
			continue
		}
		select {
		case c.events <- ev:
		default:
			s.log.Warn("sse client too far behind; disconnecting it (it resumes from a snapshot)", "query", query)
			delete(s.subs, c)
			c.drop()
		}
	}
}

// serveStream streams one query (<path>/<query>) or all (<path>).
func (s *SSE) serveStream(w http.ResponseWriter, r *http.Request) {
	query := r.PathValue("query")
	if query != "" && !slices.Contains(s.queries, query) {
		http.Error(w, fmt.Sprintf("no query %q in this reaction (queries: %s)", query, strings.Join(s.queries, ", ")), http.StatusNotFound)
		return
	}
	c := &sseClient{query: query, events: make(chan []byte, sseClientBuffer), gone: make(chan struct{})}
	// The snapshots and the subscription are taken under one lock: no
	// diff falls between them.
	s.mu.Lock()
	var first bytes.Buffer
	fmt.Fprintf(&first, "retry: %d\n\n", sseRetryMillis)
	for _, q := range s.queries {
		if query == "" || q == query {
			first.Write(s.snapshotLocked(q))
		}
	}
	s.subs[c] = struct{}{}
	s.mu.Unlock()
	s.clients.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.subs, c)
		s.mu.Unlock()
		s.clients.Dec()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	// Every write has a deadline: a client that stopped reading is cut
	// instead of holding this goroutine for ever.
	rc := http.NewResponseController(w)
	write := func(b ...[]byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(s.writeTO)); err != nil {
			return false
		}
		for _, p := range b {
			if _, err := w.Write(p); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !write(first.Bytes()) {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case ev := <-c.events:
			// Send what queued up meanwhile in the same flush.
			evs := [][]byte{ev}
		more:
			for len(evs) < 64 {
				select {
				case ev := <-c.events:
					evs = append(evs, ev)
				default:
					break more
				}
			}
			if !write(evs...) {
				return
			}
		case <-keepAlive.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-c.gone:
			return
		case <-s.closing:
			return
		case <-r.Context().Done():
			return
		}
	}
}

//go:embed sse_page.html
var ssePageHTML string

var ssePage = template.Must(template.New("page").Parse(ssePageHTML))

func (s *SSE) servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := ssePage.Execute(w, map[string]any{"ID": s.id, "Path": s.path, "Queries": s.queries}); err != nil {
		s.log.Debug("writing the page failed", "err", err)
	}
}

// Seq is the last result seq applied for query (0: none).
func (s *SSE) Seq(query string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set := s.sets[query]; set != nil {
		return set.seq
	}
	return 0
}

// Bootstrap rebuilds the result sets from the results history before the
// consumer starts: it replays (bus.Conn.Replay) every result message of
// its queries stored in stream on subject(query), up to the last one
// stored now, and applies them. The consumer then skips what Bootstrap
// applied (seq not above the set's). A history that retention shortened
// leaves a gap, which React reports.
func (s *SSE) Bootstrap(ctx context.Context, conn *bus.Conn, stream string, subject func(query string) string) error {
	filters := make([]string, 0, len(s.queries))
	byFilter := make(map[string]string, len(s.queries))
	for _, q := range s.queries {
		f := subject(q)
		if _, dup := byFilter[f]; dup {
			continue
		}
		byFilter[f] = q
		filters = append(filters, f)
	}
	if len(filters) == 0 {
		return nil
	}
	counts := make(map[string]int, len(s.queries))
	_, err := conn.Replay(ctx, bus.ReplayOptions{Stream: stream, FilterSubjects: filters}, func(d *bus.Delivery) error {
		res, err := DecodeResult(d.Data)
		if err != nil {
			s.log.Warn("bootstrap: skipping a result that does not decode", "subject", d.Subject, "stream_seq", d.StreamSeq, "err", err)
			return nil
		}
		if err := s.React(ctx, res); err != nil {
			s.log.Warn("bootstrap: skipping a result that cannot be applied", "query", res.Query, "stream_seq", d.StreamSeq, "err", err)
		}
		counts[res.Query]++
		return nil
	})
	if err != nil {
		return fmt.Errorf("sse reaction %s: bootstrap from %s: %w", s.id, stream, err)
	}
	for _, q := range s.queries {
		if counts[q] > 0 {
			s.log.Info("result set rebuilt from the results history", "query", q, "results", counts[q], "seq", s.Seq(q))
		}
	}
	return nil
}

// AppliedSeq implements SeqKeeper: the seq of query's result set; ok is
// false when none was applied.
func (s *SSE) AppliedSeq(_ context.Context, query string) (uint64, bool, error) {
	seq := s.Seq(query)
	return seq, seq > 0, nil
}
