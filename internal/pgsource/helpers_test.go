package pgsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/pgtest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
	"go.uber.org/goleak"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithServer(m, &pg, pgtest.Options{}), natstest.LeakIgnores()...)
}

// env is one test's world: a fresh database, a NATS server with the
// topology, a bus connection and publisher, and an admin connection.
type env struct {
	t    testing.TB
	ctx  context.Context
	dsn  string
	db   *pgx.Conn
	ns   *natstest.Server
	bus  *bus.Conn
	pub  *bus.Publisher
	topo streams.Topology
	js   jetstream.JetStream
}

func newEnv(t testing.TB, natsOpts ...natstest.Options) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{t: t, ctx: ctx}
	e.dsn = pg.CreateDatabase(ctx, t, "")
	var err error
	e.db, err = pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeConn(e.db) })
	e.ns = natstest.Start(t, natsOpts...)
	e.bus, err = bus.Connect(ctx, bus.ConnectOptions{URL: e.ns.URL(), ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.topo, err = streams.Default("trib", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bus.EnsureTopology(ctx, e.topo); err != nil {
		t.Fatal(err)
	}
	e.pub, err = e.bus.NewPublisher(bus.PublisherOptions{Name: "pgsource-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.pub.Close(cctx)
		_ = e.bus.Close(cctx)
	})
	nc, err := nats.Connect(e.ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// config is a fast test configuration for the tables.
func (e *env) config(id string, tables ...string) Config {
	return Config{
		ID:                id,
		ConnString:        e.dsn,
		Tables:            tables,
		PublicationName:   "pub_" + id,
		SlotName:          "slot_" + id,
		Create:            true,
		HeartbeatInterval: time.Hour,
		StatusInterval:    100 * time.Millisecond,
		BatchMaxDelay:     2 * time.Millisecond,
		Timeouts:          Timeouts{Connect: 5 * time.Second, Query: 10 * time.Second, Stop: 10 * time.Second},
		Backoff:           Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
	}
}

// running is a Source running in the background.
type running struct {
	src    *Source
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	states []Status
}

func (r *running) statuses() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Status(nil), r.states...)
}

func testLogger() *slog.Logger {
	if os.Getenv("PGSOURCE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a Source for cfg until stop (or the test's end).
func (e *env) start(cfg Config) *running {
	e.t.Helper()
	r := &running{done: make(chan error, 1)}
	src, err := New(cfg, BusPublisher(e.pub), e.bus, e.topo, Options{
		Logger: testLogger(),
		OnStatus: func(s Status) {
			r.mu.Lock()
			r.states = append(r.states, s)
			r.mu.Unlock()
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	r.src = src
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- src.Run(ctx) }()
	e.t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels Run and returns its result (once; later calls return nil).
func (r *running) stop() error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return nil
		}
		close(r.done)
		return err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not return within 30s of cancel")
	}
}

// stored is one message of the changes stream.
type stored struct {
	seq     uint64
	subject string
	id      string
	header  string
	env     *change.Envelope
}

// messages returns every message of the changes stream, in stream order.
func (e *env) messages() []stored {
	e.t.Helper()
	s, err := e.js.Stream(e.ctx, e.topo.Changes.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(e.ctx, seq)
		if err != nil {
			e.t.Fatalf("reading message %d: %v", seq, err)
		}
		if strings.Count(m.Subject, ".") < 3 {
			continue // a fence claim (streams.Topology.SourceFence), not a change
		}
		env, err := change.Decode(m.Data)
		if err != nil {
			e.t.Fatalf("message %d (%s) is not a valid envelope: %v\n%s", seq, m.Subject, err, m.Data)
		}
		out = append(out, stored{seq: seq, subject: m.Subject, id: m.Header.Get(jetstream.MsgIDHeader), header: m.Header.Get(PositionHeader), env: env})
	}
	return out
}

// streamCount is the number of messages in the changes stream.
func (e *env) streamCount() uint64 {
	s, err := e.js.Stream(e.ctx, e.topo.Changes.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// checkStreamInvariants checks what every run must give: valid envelopes,
// strictly increasing positions in stream order, ids and headers that
// match the positions.
func checkStreamInvariants(t testing.TB, msgs []stored) {
	t.Helper()
	prev := ""
	for _, m := range msgs {
		p := m.env.Position
		if _, _, err := change.ParsePGPosition(p); err != nil {
			t.Fatalf("message %d: %v", m.seq, err)
		}
		if change.ComparePositions(prev, p) >= 0 {
			t.Fatalf("message %d: position %s does not follow %s (duplicate or out of order)", m.seq, p, prev)
		}
		prev = p
		if m.header != p || !strings.HasSuffix(m.id, ":"+p) {
			t.Fatalf("message %d: header %q / id %q do not match position %s", m.seq, m.header, m.id, p)
		}
	}
}

// replay applies the stream by position, as a consumer would, and returns
// label -> element id -> properties.
func replay(msgs []stored) map[string]map[string]map[string]any {
	state := map[string]map[string]map[string]any{}
	version := map[string]string{}
	for _, m := range msgs {
		e := m.env
		switch e.Op {
		case change.OpTruncate:
			for _, l := range e.Element.Labels {
				state[l] = map[string]map[string]any{}
			}
			continue
		}
		label := e.Element.Labels[0]
		if change.ComparePositions(e.Position, version[e.Element.ID]) <= 0 {
			continue
		}
		version[e.Element.ID] = e.Position
		if state[label] == nil {
			state[label] = map[string]map[string]any{}
		}
		switch e.Op {
		case change.OpInsert:
			state[label][e.Element.ID] = e.Element.Properties
		case change.OpUpdate:
			cur := state[label][e.Element.ID]
			if cur == nil {
				cur = map[string]any{}
			}
			next := map[string]any{}
			for k, v := range cur {
				next[k] = v
			}
			for k, v := range e.Element.Properties {
				next[k] = v
			}
			state[label][e.Element.ID] = next
		case change.OpDelete:
			delete(state[label], e.Element.ID)
		}
	}
	return state
}

// tableState reads a table as id -> column -> text (NULL as "<null>").
func (e *env) tableState(label, sql string) map[string]map[string]string {
	e.t.Helper()
	rows, err := e.db.Query(e.ctx, sql)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	fields := rows.FieldDescriptions()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			e.t.Fatal(err)
		}
		row := map[string]string{}
		for i, f := range fields {
			row[f.Name] = textOf(vals[i])
		}
		out[label+":"+row["id"]] = row
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func textOf(v any) string {
	if v == nil {
		return "<null>"
	}
	return fmt.Sprint(v)
}

// compareState checks a replayed label against the table (by the text of
// each column).
func compareState(t testing.TB, label string, got map[string]map[string]any, want map[string]map[string]string) {
	t.Helper()
	if d := diffState(got, want); d != "" {
		t.Fatalf("label %s: replayed stream differs from the table:\n%s", label, d)
	}
}

// diffState describes how a replayed label differs from the table ("" when
// equal).
func diffState(got map[string]map[string]any, want map[string]map[string]string) string {
	var problems []string
	for id, row := range want {
		g, ok := got[id]
		if !ok {
			problems = append(problems, "missing "+id)
			continue
		}
		for col, w := range row {
			if gv := textOf(g[col]); gv != w {
				problems = append(problems, fmt.Sprintf("%s.%s = %s, want %s", id, col, gv, w))
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			problems = append(problems, "extra "+id)
		}
	}
	sort.Strings(problems)
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... %d more", len(problems)-10))
	}
	return strings.Join(problems, "\n")
}

// walLSN is the server's current WAL insert position.
func (e *env) walLSN() uint64 {
	e.t.Helper()
	var s string
	if err := e.db.QueryRow(e.ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return uint64(lsn)
}

// slotState returns the slot's confirmed_flush_lsn and whether it is active.
func (e *env) slotState(slot string) (uint64, bool, bool) {
	e.t.Helper()
	conn, err := pgx.Connect(e.ctx, e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer closeConn(conn)
	si, err := readSlot(e.ctx, conn, slot)
	if err != nil {
		e.t.Fatal(err)
	}
	if si == nil {
		return 0, false, false
	}
	return uint64(si.ConfirmedFlush), si.Active, true
}
