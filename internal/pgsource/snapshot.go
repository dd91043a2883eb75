package pgsource

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// The initial snapshot, and why it is exact:
//
//  1. A TEMPORARY slot "<slot>_snapshot" is created on a replication
//     connection with EXPORT_SNAPSHOT. Its consistent point CP splits history:
//     transactions that committed before CP are visible in the exported
//     snapshot, the others will be streamed by the slot (their commit LSN is
//     at or after CP).
//  2. One reader imports the snapshot (REPEATABLE READ, SET TRANSACTION
//     SNAPSHOT) and reads every table in key order, in chunks (keyset
//     pagination), while the replication connection stays open and idle.
//  3. Every snapshot change gets the position (CP-1, n), n counting from 0
//     over the whole snapshot. CP-1 is below every streamed commit LSN, so
//     snapshot rows are versioned older than any streamed change of the same
//     row, and above every position of an earlier slot of this source (WAL
//     records are 8-byte aligned, so no commit starts at CP-1).
//  4. The snapshot starts with one truncate per table: it replaces whatever an
//     interrupted earlier snapshot, or an older slot, left in the consumers'
//     state, so the final state is exactly the tables' state.
//  5. When JetStream acknowledged every snapshot change, the permanent slot is
//     made as a copy of the temporary one (pg_copy_logical_replication_slot):
//     same consistent point, same retained WAL. The permanent slot's
//     existence is the durable record that the snapshot is complete.
//
// A crash (or a failure, or a stop) before step 5 leaves no permanent slot —
// the temporary one vanishes with its connection — so the next run takes the
// snapshot again from a new consistent point. Rows published by the
// interrupted attempt are published again with new positions; consumers
// version elements by position, and the truncates of step 4 remove rows the
// first attempt published that were deleted since. Nothing is missed: the new
// slot streams everything after its own consistent point.

var snapshotNameRE = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// snapshot takes the initial snapshot and creates the slot. Errors wrap
// ErrSnapshot (retried) unless fatal.
func (s *Source) snapshot(ctx context.Context, conn *pgx.Conn, tables []*table, floor string) error {
	s.setStatus(StateSnapshotting, "", nil)
	started := time.Now()
	sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Snapshot)
	defer cancel()
	rows, err := s.runSnapshot(sctx, conn, tables, floor)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("snapshot interrupted: %w", ctx.Err())
		case isFatal(err):
			return err
		case errors.Is(sctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%w: over its overall deadline of %s (timeouts.snapshot): %w", ErrSnapshot, s.cfg.Timeouts.Snapshot, err)
		case errors.Is(err, ErrSnapshot):
			return err
		default:
			return fmt.Errorf("%w: %w", ErrSnapshot, err)
		}
	}
	s.log.Info("initial snapshot complete", "rows", rows, "tables", len(tables), "duration", time.Since(started).Round(time.Millisecond))
	return nil
}

func (s *Source) runSnapshot(ctx context.Context, conn *pgx.Conn, tables []*table, floor string) (int, error) {
	step := s.cfg.Timeouts.SnapshotStep
	tmp := s.cfg.SlotName + snapshotSlotSuffix

	repl, err := s.connectReplication(ctx, "snapshot")
	if err != nil {
		return 0, err
	}
	defer closePgConn(repl) // drops the temporary slot
	cctx, cancel := context.WithTimeout(ctx, step)
	res, err := createSlotCancellable(cctx, repl, tmp)
	cancel()
	if err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w: creating the snapshot slot %q waited longer than %s (timeouts.snapshotStep) for running transactions to end: "+
				"a long transaction, or a session holding a lock, blocks it: %w", ErrSnapshot, tmp, step, err)
		}
		return 0, fmt.Errorf("%w: creating the snapshot slot %q: %w", ErrSnapshot, tmp, classifySetupErr(err))
	}
	cp, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil || cp < 8 {
		return 0, fmt.Errorf("%w: consistent point %q of the snapshot slot: %v", ErrSnapshot, res.ConsistentPoint, err)
	}
	if !snapshotNameRE.MatchString(res.SnapshotName) {
		return 0, fmt.Errorf("%w: unexpected snapshot name %q", ErrSnapshot, res.SnapshotName)
	}
	snapLSN := uint64(cp) - 1
	if floor != "" {
		if lsn, _, _ := change.ParsePGPosition(floor); lsn >= snapLSN {
			return 0, fatal(fmt.Errorf("%w: the stream holds changes of source %s through position %s, at or after the new slot's consistent point %s: "+
				"the database was restored or replaced; purge the source's subjects (%s) and resync",
				ErrPositionConflict, s.cfg.ID, floor, cp, s.topo.ChangeFilter(s.srcToken)))
		}
	}
	ts := time.Now()
	s.log.Info("taking the initial snapshot", "consistent_point", cp.String(), "tables", len(tables))

	reader, err := s.connectQuery(ctx, "snapshot")
	if err != nil {
		return 0, err
	}
	defer closeConn(reader)
	bctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	tx, err := reader.BeginTx(bctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("%w: beginning the snapshot transaction: %w", ErrSnapshot, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = tx.Rollback(rctx) // a no-op after Commit
	}()
	ms := step.Milliseconds()
	if _, err := tx.Exec(bctx, fmt.Sprintf("SET TRANSACTION SNAPSHOT '%s'; SET LOCAL statement_timeout = %d; SET LOCAL lock_timeout = %d",
		res.SnapshotName, ms, ms)); err != nil {
		return 0, fmt.Errorf("%w: importing snapshot %s: %w", ErrSnapshot, res.SnapshotName, err)
	}

	queue := startPublishQueue(ctx, s.pub, s.met, s.cfg.BatchMaxMessages)
	defer queue.stop()
	w := &snapWriter{s: s, q: queue, lsn: snapLSN, ts: ts}

	for _, t := range tables {
		if err := w.add(ctx, t.Label, string(change.OpTruncate), truncateKeyToken, func(pos string) *change.Envelope {
			return s.truncateEnvelope(t, ts, pos)
		}); err != nil {
			return 0, err
		}
	}
	for _, t := range tables {
		if err := s.snapshotTable(ctx, tx.Conn().PgConn(), t, w); err != nil {
			return 0, err
		}
	}
	if err := w.flush(ctx); err != nil {
		return 0, err
	}
	if err := w.drain(ctx); err != nil {
		return 0, err
	}
	pctx, cancel2 := context.WithTimeout(ctx, step)
	defer cancel2()
	if err := tx.Commit(pctx); err != nil {
		return 0, fmt.Errorf("%w: ending the snapshot transaction: %w", ErrSnapshot, err)
	}
	if _, err := conn.Exec(pctx, "SELECT pg_copy_logical_replication_slot($1, $2, false)", tmp, s.cfg.SlotName); err != nil {
		return 0, fmt.Errorf("%w: creating replication slot %q from the snapshot slot: %w", ErrSnapshot, s.cfg.SlotName, classifySetupErr(err))
	}
	s.log.Info("created replication slot", "slot", s.cfg.SlotName, "consistent_point", cp.String())
	return w.rows, nil
}

// createSlotCancellable creates the temporary exporting slot; when ctx ends
// first, it asks the server to cancel the command (creating a slot waits
// for running transactions, which statement_timeout does not bound).
func createSlotCancellable(ctx context.Context, conn *pgconn.PgConn, name string) (pglogrepl.CreateReplicationSlotResult, error) {
	done := make(chan struct{})
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			_ = conn.CancelRequest(cctx)
			cancel()
			// If the server does not answer the cancel, cut the read.
			t := time.NewTimer(closeTimeout)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				_ = conn.Conn().SetDeadline(time.Now())
			}
		case <-done:
		}
	}()
	res, err := pglogrepl.CreateReplicationSlot(context.WithoutCancel(ctx), conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	close(done)
	<-cancelled
	if err == nil && ctx.Err() != nil {
		// Created just as the deadline passed: the caller treats it as
		// failed; the slot goes with the connection.
		err = ctx.Err()
	}
	return res, err
}

// snapshotTable reads one table in key order, SnapshotChunkRows at a time.
func (s *Source) snapshotTable(ctx context.Context, pc *pgconn.PgConn, t *table, w *snapWriter) error {
	cols := make([]relColumn, len(t.Columns))
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		typ, ok := s.types.lookup(c.TypeOID)
		if !ok {
			return fmt.Errorf("%w: type %d of column %s of table %s was not resolved", ErrSnapshot, c.TypeOID, c.Name, t.Name)
		}
		cols[i] = relColumn{name: c.Name, typ: typ}
		names[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	rel, err := newRelation(t, cols)
	if err != nil {
		return err
	}
	keys := make([]string, len(t.Keys))
	keyOIDs := make([]uint32, len(t.Keys))
	params := make([]string, len(t.Keys))
	for i, k := range t.Keys {
		keys[i] = pgx.Identifier{k}.Sanitize()
		keyOIDs[i] = t.Columns[rel.keyIdx[i]].TypeOID
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	keyList := strings.Join(keys, ", ")
	first := fmt.Sprintf("SELECT %s FROM %s ORDER BY %s LIMIT %d", strings.Join(names, ", "), t.Name.ident(), keyList, s.cfg.SnapshotChunkRows)
	next := fmt.Sprintf("SELECT %s FROM %s WHERE (%s) > (%s) ORDER BY %s LIMIT %d",
		strings.Join(names, ", "), t.Name.ident(), keyList, strings.Join(params, ", "), keyList, s.cfg.SnapshotChunkRows)

	conv := newConverter()
	var last [][]byte
	for {
		sql, args, oids := first, [][]byte(nil), []uint32(nil)
		if last != nil {
			sql, args, oids = next, last, keyOIDs
		}
		qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.SnapshotStep)
		res := pc.ExecParams(qctx, sql, args, oids, nil, nil).Read()
		cancel()
		if res.Err != nil {
			return fmt.Errorf("%w: reading table %s: %w", ErrSnapshot, t.Name, explainStepErr(res.Err, s.cfg.Timeouts.SnapshotStep))
		}
		for _, row := range res.Rows {
			props := make(map[string]any, len(row))
			for i, v := range row {
				if v == nil {
					props[cols[i].name] = nil
					continue
				}
				jv, err := conv.convert(cols[i].typ, v)
				if err != nil {
					return fmt.Errorf("%w: table %s column %s: %w", ErrSnapshot, t.Name, cols[i].name, err)
				}
				props[cols[i].name] = jv
			}
			key, err := keyOf(rel, row)
			if err != nil {
				return err
			}
			if err := w.add(ctx, t.Label, string(change.OpInsert), bus.Token(key), func(pos string) *change.Envelope {
				return s.rowEnvelope(change.OpInsert, rel, key, props, nil, nil, w.ts, pos)
			}); err != nil {
				return err
			}
			s.met.snapshotRows.WithLabelValues(t.Label).Inc()
		}
		if len(res.Rows) < s.cfg.SnapshotChunkRows {
			return nil
		}
		lastRow := res.Rows[len(res.Rows)-1]
		last = make([][]byte, len(rel.keyIdx))
		for i, idx := range rel.keyIdx {
			last[i] = append([]byte(nil), lastRow[idx]...)
		}
	}
}

// explainStepErr says what a timeout or a lock wait means.
func explainStepErr(err error, step time.Duration) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55P03":
			return fmt.Errorf("blocked by a lock for longer than %s (timeouts.snapshotStep): another session holds a conflicting lock (LOCK TABLE, ALTER TABLE, ...): %w", step, err)
		case "57014":
			return fmt.Errorf("one chunk took longer than %s (timeouts.snapshotStep): %w", step, err)
		}
	}
	if pgconn.Timeout(err) {
		return fmt.Errorf("one chunk took longer than %s (timeouts.snapshotStep): %w", step, err)
	}
	return err
}

// snapWriter batches snapshot changes and publishes them in order.
type snapWriter struct {
	s     *Source
	q     *publishQueue
	lsn   uint64
	ts    time.Time
	index uint64
	rows  int
	items []item
}

func (w *snapWriter) add(ctx context.Context, label, op, keyToken string, build func(pos string) *change.Envelope) error {
	if w.index > math.MaxUint32 {
		return fatal(fmt.Errorf("%w: more than %d rows: positions of one snapshot are limited to 32-bit indexes", ErrSnapshot, uint64(math.MaxUint32)+1))
	}
	pos := change.FormatPGPosition(w.lsn, uint32(w.index))
	w.index++
	msg, err := w.s.message(build(pos), keyToken)
	if err != nil {
		return err
	}
	if op == string(change.OpInsert) {
		w.rows++
	}
	w.items = append(w.items, item{msg: msg, table: label, op: op})
	if len(w.items) >= w.s.cfg.BatchMaxMessages {
		return w.flush(ctx)
	}
	return nil
}

func (w *snapWriter) flush(ctx context.Context) error {
	if len(w.items) == 0 {
		return nil
	}
	for w.q.unackedMsgs+len(w.items) > w.s.cfg.MaxInFlight {
		if err := w.waitOne(ctx); err != nil {
			return err
		}
	}
	w.q.push(makeBatch(w.items, 0))
	w.items = nil
	return nil
}

// waitOne waits for at least one acknowledgement and records every one
// that arrived.
func (w *snapWriter) waitOne(ctx context.Context) error {
	for {
		if acks := w.q.takeAcks(); len(acks) > 0 {
			for _, r := range acks {
				if _, err := w.q.acked(r); err != nil {
					return fmt.Errorf("%w: %w", ErrSnapshot, err)
				}
			}
			return nil
		}
		select {
		case <-w.q.ready:
			continue
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for JetStream to acknowledge %d snapshot changes: %w", ErrSnapshot, w.q.unackedMsgs, ctx.Err())
		}
	}
}

func (w *snapWriter) drain(ctx context.Context) error {
	for len(w.q.unacked) > 0 {
		if err := w.waitOne(ctx); err != nil {
			return err
		}
	}
	return nil
}
