package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tributary/tributary/internal/pgtest"
)

const (
	dbName          = "bench"
	publicationName = "bench_pub"
	// endMessagePrefix marks the end of a generated workload in the WAL.
	endMessagePrefix = "tributary_bench_end"
)

// pgBench is the private Postgres cluster and what the phases share.
type pgBench struct {
	o      options
	log    *slog.Logger
	srv    *pgtest.Server
	dsn    string
	admin  *pgx.Conn
	recv   string // pg_recvlogical
	dir    string // scratch files
	nextID int64  // the next free bench.id
}

// startPostgres starts the private cluster with the bench database, table
// and publication.
func startPostgres(ctx context.Context, o options, log *slog.Logger) (_ *pgBench, err error) {
	progress("starting Postgres (fsync %v)", o.pgFsync)
	srv, err := pgtest.Start(ctx, pgtest.Options{
		Fsync: o.pgFsync,
		// Keep checkpoints (and the full-page images after them) out of
		// the measured WAL: a run writes a few GB at most.
		Settings: map[string]string{
			"max_wal_size":       "16GB",
			"checkpoint_timeout": "1h",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting Postgres: %w", err)
	}
	p := &pgBench{o: o, log: log, srv: srv, nextID: 1}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "bench-source-"); err != nil {
		return nil, fmt.Errorf("creating a scratch directory: %w", err)
	}
	if p.recv, err = srv.Bin("pg_recvlogical"); err != nil {
		return nil, err
	}
	pc, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connecting to Postgres: %w", err)
	}
	_, err = pc.Exec(ctx, "CREATE DATABASE "+dbName)
	closeConn(pc)
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", dbName, err)
	}
	p.dsn = srv.DSN(dbName)
	if p.admin, err = pgx.Connect(ctx, p.dsn); err != nil {
		return nil, fmt.Errorf("connecting to database %s: %w", dbName, err)
	}
	for _, sql := range []string{
		"CREATE TABLE bench (id bigint PRIMARY KEY, a int, b text)",
		"CREATE PUBLICATION " + publicationName + " FOR TABLE bench",
	} {
		if _, err := p.admin.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("%s: %w", sql, err)
		}
	}
	return p, nil
}

// close stops the cluster and removes the scratch files.
func (p *pgBench) close() {
	if p.admin != nil {
		closeConn(p.admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.srv.Stop(ctx); err != nil {
		progress("stopping Postgres: %v", err)
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// workload is one generated set of row changes.
type workload struct {
	name string // as in the tables
	key  string // in slot names
	rows int
	// sql returns the statement that inserts rows first..first+rows-1.
	sql func(first int64) string
}

func workloads(o options) []workload {
	return []workload{
		{
			name: "single-row", key: "single", rows: o.n,
			sql: func(first int64) string {
				return fmt.Sprintf(`DO $$ BEGIN
	FOR i IN %d..%d LOOP
		INSERT INTO bench VALUES (i, i, md5(i::text));
		COMMIT;
	END LOOP;
END $$`, first, first+int64(o.n)-1)
			},
		},
		{
			name: fmt.Sprintf("large tx (%d rows)", o.txRows), key: "large", rows: o.n,
			sql: func(first int64) string {
				return fmt.Sprintf(`DO $$ BEGIN
	FOR t IN 0..%d LOOP
		INSERT INTO bench SELECT g, g, md5(g::text)
			FROM generate_series(%d + t * %d, %d + t * %d + %d) g;
		COMMIT;
	END LOOP;
END $$`, o.n/o.txRows-1, first, o.txRows, first, o.txRows, o.txRows-1)
			},
		},
	}
}

// phaseStats is what a throughput phase learned about the envelopes.
type phaseStats struct {
	bytes, msgs float64 // sampled payload bytes and messages
}

// throughputPhase creates the slots, generates the workload, and times each
// reader catching up with it.
func (p *pgBench) throughputPhase(ctx context.Context, w workload, res *results) (phaseStats, error) {
	recvSlot := "recv_" + w.key
	srcSlots := map[string]string{}
	slots := []string{recvSlot}
	for _, sm := range syncModes {
		srcSlots[sm.name] = "src_" + w.key + "_" + string(sm.mode)
		slots = append(slots, srcSlots[sm.name])
	}
	defer func() {
		for _, s := range slots {
			if err := p.dropSlot(s); err != nil {
				progress("%v", err)
			}
		}
	}()
	for _, s := range slots {
		if _, err := p.admin.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s); err != nil {
			return phaseStats{}, fmt.Errorf("creating slot %s: %w", s, err)
		}
	}

	progress("%s: generating %d rows", w.name, w.rows)
	first := p.nextID
	p.nextID += int64(w.rows)
	gen, err := p.generate(ctx, w.sql(first))
	if err != nil {
		return phaseStats{}, err
	}
	gen.count = w.rows
	gen.rate = float64(w.rows) / gen.elapsed.Seconds()
	res.gen[w.name] = gen
	endLSN, err := p.markEnd(ctx)
	if err != nil {
		return phaseStats{}, err
	}
	progress("  %.1f s (%.0f rows/s); end of WAL %s", gen.elapsed.Seconds(), gen.rate, endLSN)

	progress("%s: pg_recvlogical", w.name)
	m, err := p.recvlogical(ctx, recvSlot, endLSN, w.rows)
	if err != nil {
		return phaseStats{}, err
	}
	res.recv[w.name] = m
	progress("  %.1f s (%.0f rows/s)", m.elapsed.Seconds(), m.rate)

	var st phaseStats
	res.source[w.name] = map[string]measure{}
	for _, sm := range syncModes {
		progress("%s: source-pg, %s", w.name, sm.name)
		m, s, err := p.sourceThroughput(ctx, srcSlots[sm.name], sm, w.rows)
		if err != nil {
			return phaseStats{}, fmt.Errorf("source-pg with %s: %w", sm.name, err)
		}
		res.source[w.name][sm.name] = m
		st.bytes += s.bytes
		st.msgs += s.msgs
		progress("  %.1f s (%.0f rows/s)", m.elapsed.Seconds(), m.rate)
	}
	return st, nil
}

// generate runs the workload statement on its own connection without
// waiting for WAL flushes at commit.
func (p *pgBench) generate(ctx context.Context, sql string) (measure, error) {
	c, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return measure{}, fmt.Errorf("connecting the workload generator: %w", err)
	}
	defer closeConn(c)
	if _, err := c.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return measure{}, fmt.Errorf("setting synchronous_commit: %w", err)
	}
	start := time.Now()
	if _, err := c.Exec(ctx, sql); err != nil {
		return measure{}, fmt.Errorf("generating the workload: %w", err)
	}
	return measure{elapsed: time.Since(start)}, nil
}

// markEnd commits a transactional logical message synchronously (which
// flushes the whole workload's WAL) and returns the flushed WAL position:
// every reader has consumed the workload once it reaches it.
func (p *pgBench) markEnd(ctx context.Context) (string, error) {
	if _, err := p.admin.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, 'end')", endMessagePrefix); err != nil {
		return "", fmt.Errorf("marking the end of the workload: %w", err)
	}
	var lsn string
	if err := p.admin.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("reading the WAL position: %w", err)
	}
	return lsn, nil
}

// recvlogical decodes the slot up to endLSN with pg_recvlogical into a file.
func (p *pgBench) recvlogical(ctx context.Context, slot, endLSN string, rows int) (measure, error) {
	out := filepath.Join(p.dir, slot+".out")
	cmd := exec.CommandContext(ctx, p.recv,
		"-d", p.dsn, "--slot", slot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+publicationName,
		"--endpos", endLSN, "-f", out)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return measure{}, fmt.Errorf("pg_recvlogical on slot %s: %w: %s", slot, err, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil {
		return measure{}, fmt.Errorf("pg_recvlogical wrote no output: %w", err)
	}
	// An insert of this table takes more than 50 bytes of pgoutput; less
	// output means it stopped early.
	if fi.Size() < int64(rows)*50 {
		return measure{}, fmt.Errorf("pg_recvlogical wrote only %d bytes for %d rows: it stopped before the end", fi.Size(), rows)
	}
	_ = os.Remove(out)
	return measure{count: rows, elapsed: elapsed, rate: float64(rows) / elapsed.Seconds()}, nil
}

// dropSlot drops a slot once no walsender holds it.
func (p *pgBench) dropSlot(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		var exists bool
		err := p.admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)`, name).Scan(&exists)
		if err != nil {
			return fmt.Errorf("dropping slot %s: %w", name, err)
		}
		if !exists {
			return nil
		}
		_, err = p.admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, name)
		if err != nil && ctx.Err() == nil {
			p.log.Debug("dropping slot", "slot", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dropping slot %s: still in use: %w", name, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
