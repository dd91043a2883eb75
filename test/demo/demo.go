package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary/tributary/internal/pgtest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

type options struct {
	bin    string // directory of the three binaries
	config string // the example config
	keep   bool   // stay up until ctx ends
}

// schema creates the story's tables with their first rows: ben's van is
// at the curb already, so order 5 (ready, his) starts in the curbside
// result.
const schema = `
CREATE TABLE vehicles (id int PRIMARY KEY, plate text NOT NULL, zone text NOT NULL);
CREATE TABLE drivers  (id int PRIMARY KEY, name text NOT NULL, vehicle_id int);
CREATE TABLE orders   (id int PRIMARY KEY, status text NOT NULL, total int NOT NULL, driver_id int);
INSERT INTO vehicles VALUES (1, 'AB-123', 'parking'), (2, 'CD-456', 'curbside'), (3, 'EF-789', 'street');
INSERT INTO drivers  VALUES (1, 'ana', 1), (2, 'ben', 2), (3, 'cleo', 3);
INSERT INTO orders   VALUES (1, 'preparing', 1250, 1), (2, 'preparing', 800, 2), (3, 'ready', 2300, 3),
                            (4, 'preparing', 450, NULL), (5, 'ready', 1575, 2);
`

// story is what happens at the restaurant, one step at a time.
var story = []struct{ what, sql string }{
	{"order 2 is ready; ben is waiting at the curb", `UPDATE orders SET status = 'ready' WHERE id = 2`},
	{"ana's car pulls into the curbside zone", `UPDATE vehicles SET zone = 'curbside' WHERE id = 1`},
	{"order 1 is ready too", `UPDATE orders SET status = 'ready' WHERE id = 1`},
	{"a new order comes in for cleo", `INSERT INTO orders VALUES (6, 'preparing', 990, 3)`},
	{"ben picks up order 5", `UPDATE orders SET status = 'picked_up' WHERE id = 5`},
	{"order 2 is handed over and archived", `DELETE FROM orders WHERE id = 2`},
	{"cleo takes the van at the curb", `UPDATE drivers SET vehicle_id = 2 WHERE id = 3`},
	{"one transaction: order 6 is ready, order 4 is cancelled", `BEGIN; UPDATE orders SET status = 'ready' WHERE id = 6; DELETE FROM orders WHERE id = 4; COMMIT`},
}

// querySQL answers each query of examples/curbside.yaml on the tables.
var querySQL = map[string]string{
	"curbside": `SELECT o.id AS "orderId", d.name AS driver, v.plate AS plate
		FROM orders o JOIN drivers d ON o.driver_id = d.id JOIN vehicles v ON d.vehicle_id = v.id
		WHERE o.status = 'ready' AND v.zone = 'curbside'`,
	"by-status": `SELECT status, count(*) AS orders, sum(total) AS total FROM orders GROUP BY status`,
	"preparing": `SELECT id AS "orderId", total FROM orders WHERE status = 'preparing'`,
}

// queries in the order the demo reports them.
var queries = []string{"curbside", "by-status", "preparing"}

func run(ctx context.Context, o options) (err error) {
	paths := map[string]string{}
	for _, b := range []string{"source-pg", "query-engine", "reactor"} {
		p, err := filepath.Abs(filepath.Join(o.bin, b))
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s is missing: run scripts/build.sh first (%w)", p, err)
		}
		paths[b] = p
	}
	config, err := filepath.Abs(o.config)
	if err != nil {
		return err
	}
	if _, err := os.Stat(config); err != nil {
		return fmt.Errorf("the example config: %w", err)
	}
	// Stops use their own deadlines: they run after a Ctrl-C too.
	bg := context.WithoutCancel(ctx)

	work, err := os.MkdirTemp("", "tributary-demo-")
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, os.RemoveAll(work))
		if _, serr := os.Stat(work); !errors.Is(serr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("the demo's directory %s is still there (%v)", work, serr))
		}
	}()

	start := time.Now()
	say("starting a throwaway Postgres (wal_level=logical)")
	pg, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return fmt.Errorf("starting Postgres: %w", err)
	}
	dsn := pg.DSN("postgres")
	defer func() {
		cctx, cancel := context.WithTimeout(bg, 60*time.Second)
		defer cancel()
		err = errors.Join(err, pg.Stop(cctx), postgresGone(dsn))
	}()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to Postgres: %w", err)
	}
	defer db.Close(bg)
	if _, err := db.Exec(ctx, schema); err != nil {
		return fmt.Errorf("creating the tables: %w", err)
	}
	say("tables orders, drivers, vehicles created and filled")

	var addrs [5]string // NATS, sse, three metrics ports
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	natsAddr, sseAddr := addrs[0], addrs[1]
	natsURL := "nats://" + natsAddr
	env := []string{
		"DATABASE_URL=" + dsn,
		"TRIBUTARY_STORE=" + filepath.Join(work, "nats"),
		"NATS_LISTEN=" + natsAddr,
		"SSE_LISTEN=" + sseAddr,
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	// The reactor's stdout: the log reaction's lines, read as they come.
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	logs := newLogReader()
	readerDone := make(chan struct{})
	go func() { // owned by run: waited for below, once the reactor is gone
		defer close(readerDone)
		logs.read(outR, os.Stdout)
	}()
	defer func() {
		outW.Close() // no-op if closed already
		<-readerDone
		outR.Close()
	}()

	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			kerr := p.kill()
			if err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "--- %s: last log lines ---\n%s\n", p.name, p.log.tail(30))
			}
			err = errors.Join(err, kerr)
		}
	}()
	launch := func(name, metrics string, stdout *os.File, args ...string) error {
		p, err := startProc(name, paths[name], metrics, env, stdout, args...)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		if err := p.waitReady(ctx, client, 2*time.Minute); err != nil {
			return err
		}
		say("%s is ready (metrics on http://%s/metrics)", name, metrics)
		return nil
	}
	say("starting source-pg: it captures the tables and hosts NATS JetStream on %s", natsAddr)
	if err := launch("source-pg", addrs[2], nil, "--config", config); err != nil {
		return err
	}
	say("starting query-engine run --nats %s: three continuous queries", natsURL)
	if err := launch("query-engine", addrs[3], nil, "run", "--config", config, "--nats", natsURL); err != nil {
		return err
	}
	say("starting reactor --nats %s: the log reaction prints below, the sse reaction serves the page", natsURL)
	err = launch("reactor", addrs[4], outW, "--config", config, "--nats", natsURL)
	outW.Close() // the reactor holds its own copy
	if err != nil {
		return err
	}
	say("")
	say("live page: http://%s/   (event streams: http://%s/events)", sseAddr, sseAddr)
	say("")

	// The initial results (the snapshot's rows) first, so that the story's
	// diffs follow them on the terminal.
	if err := waitFor(ctx, time.Minute, "every query's initial result", func() error {
		got, perr := logs.snapshot()
		if perr != nil {
			return perr
		}
		for _, q := range queries {
			if len(got[q]) == 0 {
				return fmt.Errorf("no result of %s yet", q)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for i, step := range story {
		say("step %d: %s", i+1, step.what)
		say("  postgres> %s", step.sql)
		if _, err := db.Exec(ctx, step.sql); err != nil {
			return fmt.Errorf("step %d: %s: %w", i+1, step.sql, err)
		}
		// Pacing, so that each step's diffs show under it as they happen.
		select {
		case <-time.After(400 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	want := map[string][]string{}
	for _, q := range queries {
		if want[q], err = sqlRows(ctx, db, querySQL[q]); err != nil {
			return fmt.Errorf("%s in SQL: %w", q, err)
		}
	}
	var logged map[string][]*change.Result
	if err := waitFor(ctx, time.Minute, "the log's results to equal SQL on the final tables", func() error {
		var perr error
		if logged, perr = logs.snapshot(); perr != nil {
			return perr
		}
		for _, q := range queries {
			rows, err := fold(q, logged[q])
			if err != nil {
				return err
			}
			if !slices.Equal(rows, want[q]) {
				return fmt.Errorf("%s: the log folds to %v, SQL says %v", q, rows, want[q])
			}
		}
		return nil
	}); err != nil {
		return err
	}
	say("")
	say("check: every query's result diffs, folded from the log lines, equal the query in SQL on the final tables")
	if err := checkStream(ctx, natsURL, logged, want); err != nil {
		return err
	}
	if err := checkSSE(ctx, client, sseAddr, logged, want); err != nil {
		return err
	}

	if o.keep {
		say("")
		say("up and running: open http://%s/ and change the tables yourself:", sseAddr)
		say("  psql '%s'", dsn)
		say("press Ctrl-C to stop everything and clean up")
		<-ctx.Done()
		fmt.Println()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if err := p.stop(time.Minute); err != nil {
			return err
		}
		say("%s stopped (SIGTERM, exit 0)", p.name)
	}
	// Everything the reactor printed is read: nothing came twice.
	outW.Close()
	<-readerDone
	final, perr := logs.snapshot()
	if perr != nil {
		return perr
	}
	for _, q := range queries {
		if len(final[q]) != len(logged[q]) && !o.keep {
			return fmt.Errorf("%s: %d results logged at the check, %d by the stop", q, len(logged[q]), len(final[q]))
		}
		if _, err := fold(q, final[q]); err != nil {
			return err
		}
	}
	if o.keep {
		return nil // what changed by hand is not the story's to check
	}
	n := 0
	for _, q := range queries {
		n += len(final[q])
	}
	say("ok: %d story steps, %d result messages over %d queries, each once and in order, in %.1fs",
		len(story), n, len(queries), time.Since(start).Seconds())
	return nil
}

// checkStream reads every query's results from the results stream with a
// NATS client: seqs 1..n once and in order, ids <query>:<seq>, as many as
// the log printed, folding to the SQL rows.
func checkStream(ctx context.Context, url string, logged map[string][]*change.Result, want map[string][]string) error {
	conn, err := bus.Connect(ctx, bus.ConnectOptions{URL: url, Name: "tributary-demo"})
	if err != nil {
		return fmt.Errorf("connecting to source-pg's NATS server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	topo, err := streams.Default("tributary", streams.Options{})
	if err != nil {
		return err
	}
	for _, q := range queries {
		var got []*change.Result
		_, err := conn.Replay(ctx, bus.ReplayOptions{
			Stream: topo.Results.Name, FilterSubjects: []string{topo.ResultSubject(bus.Token(q))},
		}, func(d *bus.Delivery) error {
			var r change.Result
			if err := decode(d.Data, &r); err != nil {
				return fmt.Errorf("result at stream sequence %d: %w", d.StreamSeq, err)
			}
			if d.ID != fmt.Sprintf("%s:%d", q, r.Seq) {
				return fmt.Errorf("result %s/%d has message id %q", q, r.Seq, d.ID)
			}
			got = append(got, &r)
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading the results of %s: %w", q, err)
		}
		rows, err := fold(q, got)
		if err != nil {
			return fmt.Errorf("the results stream: %w", err)
		}
		if !slices.Equal(rows, want[q]) {
			return fmt.Errorf("%s: the results stream folds to %v, SQL says %v", q, rows, want[q])
		}
		if len(got) != len(logged[q]) {
			return fmt.Errorf("%s: %d results in the stream, %d in the log", q, len(got), len(logged[q]))
		}
	}
	say("check: the results stream (read with a NATS client) holds the same results, seqs 1..n once and in order")
	return nil
}

// checkSSE reads the first event of every query's event stream: the
// snapshot of the final result, at the last seq.
func checkSSE(ctx context.Context, client *http.Client, addr string, logged map[string][]*change.Result, want map[string][]string) error {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return fmt.Errorf("the live page: %w", err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		return fmt.Errorf("the live page answers %s with %q, want 200 and text/html", resp.Status, ct)
	}
	for _, q := range queries {
		n := uint64(len(logged[q]))
		// The sse reaction consumes on its own: it may still be behind the
		// log reaction.
		err := waitFor(ctx, time.Minute, "the live page's stream of "+q+" to reach seq "+fmt.Sprint(n), func() error {
			snap, err := sseSnapshot(ctx, client, "http://"+addr+"/events/"+q)
			if err != nil {
				return err
			}
			rows := make([]string, 0, len(snap.Rows))
			for _, r := range snap.Rows {
				var row change.Row
				if err := decode(r[1], &row); err != nil {
					return fmt.Errorf("the snapshot of %s: %w", q, err)
				}
				k, err := canonical(row)
				if err != nil {
					return err
				}
				rows = append(rows, k)
			}
			slices.Sort(rows)
			if snap.Seq != n || !slices.Equal(rows, want[q]) {
				return fmt.Errorf("the snapshot of %s is %v at seq %d, want %v at seq %d", q, rows, snap.Seq, want[q], n)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	say("check: the live page is served, and its event streams start with the final result of every query")
	return nil
}

type snapshotEvent struct {
	Query string               `json:"query"`
	Seq   uint64               `json:"seq"`
	Rows  [][2]json.RawMessage `json:"rows"`
}

func sseSnapshot(ctx context.Context, client *http.Client, url string) (*snapshotEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			if event != "snapshot" {
				return nil, fmt.Errorf("first event is %q, not a snapshot", event)
			}
			var s snapshotEvent
			if err := json.Unmarshal([]byte(v), &s); err != nil {
				return nil, fmt.Errorf("snapshot event: %w", err)
			}
			return &s, nil
		}
	}
	return nil, fmt.Errorf("the stream ended without a snapshot (%v)", sc.Err())
}

// sqlRows runs a query and returns its rows canonical and sorted.
func sqlRows(ctx context.Context, db *pgx.Conn, sql string) ([]string, error) {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(maps))
	for _, m := range maps {
		k, err := canonical(m)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// waitFor polls cond until it returns nil, ctx ends or within passes; the
// error names what was awaited and cond's last answer.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		last := cond()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting %s for %s: %w", within, what, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// postgresGone checks that the throwaway server no longer accepts
// connections once stopped.
func postgresGone(dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("postgres still accepts connections on %s after its stop", addr)
	}
	return nil
}
