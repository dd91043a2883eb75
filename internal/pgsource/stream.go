package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

type sessionResult struct {
	err error
	// streamedFor is how long the session streamed before it ended.
	streamedFor time.Duration
}

// lockedConn shares the session's ordinary connection between the stream
// loop (type lookups) and the heartbeat goroutine.
type lockedConn struct {
	mu sync.Mutex
	c  *pgx.Conn
}

// runSession connects, sets up (publication, slot, snapshot when the slot is
// new) and streams until ctx ends (graceful stop) or an error.
func (s *Source) runSession(ctx context.Context) sessionResult {
	conn, err := s.connectQuery(ctx, "query")
	if err != nil {
		return sessionResult{err: err}
	}
	defer closeConn(conn)
	ms := s.cfg.Timeouts.Query.Milliseconds()
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET statement_timeout = %d; SET lock_timeout = %d", ms, ms)); err != nil {
		return sessionResult{err: fmt.Errorf("setting the query timeouts: %w", err)}
	}

	tables, floor, slot, err := s.setup(ctx, conn)
	if err != nil {
		return sessionResult{err: err}
	}

	repl, err := s.connectReplication(ctx, "stream")
	if err != nil {
		return sessionResult{err: err}
	}
	defer closePgConn(repl)
	sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	err = pglogrepl.StartReplication(sctx, repl, s.cfg.SlotName, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			fmt.Sprintf("publication_names '%s'", s.cfg.PublicationName),
			"messages 'true'",
		},
	})
	cancel()
	if err != nil {
		return sessionResult{err: s.classifyStartErr(err)}
	}
	s.log.Info("streaming", "slot", s.cfg.SlotName, "from", slot.ConfirmedFlush.String(), "skip_through", floor)

	st := &stream{
		s:         s,
		repl:      repl,
		q:         &lockedConn{c: conn},
		conv:      newConverter(),
		tables:    map[tableName]*table{},
		rels:      map[uint32]*relation{},
		floor:     floor,
		confirmed: uint64(slot.ConfirmedFlush),
		max:       s.cfg.BatchMaxMessages,
	}
	for _, t := range tables {
		st.tables[t.Name] = t
	}
	s.setConfirmed(st.confirmed)
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pcancel()
	st.queue = startPublishQueue(pctx, s.pub, s.met, s.cfg.BatchMaxMessages)
	defer st.queue.stop()

	hctx, hcancel := context.WithCancel(ctx)
	hbErr := make(chan error, 1)
	var hbWG sync.WaitGroup
	hbWG.Add(1)
	go func() {
		defer hbWG.Done()
		s.heartbeats(hctx, st.q, tables, hbErr)
	}()
	defer func() {
		hcancel()
		hbWG.Wait()
	}()
	st.hbErr = hbErr

	s.setStatus(StateStreaming, "", nil)
	started := time.Now()
	err = st.run(ctx)
	return sessionResult{err: err, streamedFor: time.Since(started)}
}

// setup checks and prepares the server side, and returns the tables, the
// floor (the newest stored position) and the slot to stream from. Each
// catalog step has its own Timeouts.Query deadline; the snapshot has its
// own deadlines.
func (s *Source) setup(ctx context.Context, conn *pgx.Conn) ([]*table, string, *slotInfo, error) {
	tables, err := s.prepare(ctx, conn)
	if err != nil {
		return nil, "", nil, err
	}
	floor, err := s.readFloor(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	slot, err := s.querySlot(ctx, conn)
	if err != nil {
		return nil, "", nil, err
	}
	if slot == nil {
		if err := s.newSlot(ctx, conn, tables, floor); err != nil {
			return nil, "", nil, err
		}
		if slot, err = s.querySlot(ctx, conn); err != nil {
			return nil, "", nil, err
		}
		if slot == nil {
			return nil, "", nil, fmt.Errorf("replication slot %q vanished right after it was created", s.cfg.SlotName)
		}
	}
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	defer cancel()
	if err := s.checkSlot(qctx, conn, slot); err != nil {
		return nil, "", nil, err
	}
	if err := s.checkFloor(qctx, conn, floor); err != nil {
		return nil, "", nil, err
	}
	return tables, floor, slot, nil
}

// prepare reads the tables and their types and ensures the publication.
func (s *Source) prepare(ctx context.Context, conn *pgx.Conn) ([]*table, error) {
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	defer cancel()
	if err := checkWALLevel(qctx, conn); err != nil {
		return nil, err
	}
	tables, err := loadTables(qctx, conn, &s.cfg)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		for _, c := range t.Columns {
			if _, err := s.types.resolve(qctx, conn, c.TypeOID); err != nil {
				return nil, err
			}
		}
	}
	if err := s.ensurePublication(qctx, conn, tables); err != nil {
		return nil, err
	}
	return tables, nil
}

func (s *Source) querySlot(ctx context.Context, conn *pgx.Conn) (*slotInfo, error) {
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	defer cancel()
	return readSlot(qctx, conn, s.cfg.SlotName)
}

// newSlot creates the missing slot: through the initial snapshot, or
// directly with snapshot never.
func (s *Source) newSlot(ctx context.Context, conn *pgx.Conn, tables []*table, floor string) error {
	if !s.cfg.Create {
		return fatal(fmt.Errorf("%w: replication slot %q does not exist and create is false: run SELECT pg_create_logical_replication_slot('%s', 'pgoutput') (changes before it are not streamed; no snapshot is taken)",
			ErrSetup, s.cfg.SlotName, s.cfg.SlotName))
	}
	if s.cfg.Snapshot == SnapshotInitial {
		if floor != "" {
			s.log.Warn("replication slot is missing while the stream holds changes of this source (an interrupted snapshot, or a dropped slot): taking a new snapshot, which replaces them",
				"slot", s.cfg.SlotName, "stored_through", floor)
		}
		return s.snapshot(ctx, conn, tables, floor)
	}
	if floor != "" && s.cfg.DropSlotOnStop {
		s.log.Warn("changes committed while the source was stopped are not streamed (dropSlotOnStop with snapshot never)",
			"slot", s.cfg.SlotName, "stored_through", floor)
	} else if floor != "" {
		return fatal(fmt.Errorf("%w: replication slot %q does not exist but the stream holds changes of source %s through position %s: "+
			"the changes in between are lost; set snapshot: initial to resync, or purge the source's subjects (%s) to start afresh",
			ErrPositionConflict, s.cfg.SlotName, s.cfg.ID, floor, s.topo.ChangeFilter(s.srcToken)))
	}
	_, err := s.createSlot(ctx)
	return err
}

// checkFloor refuses stored positions ahead of the database's WAL: the
// database was restored or replaced under the source.
func (s *Source) checkFloor(ctx context.Context, conn *pgx.Conn, floor string) error {
	if floor == "" {
		return nil
	}
	lsn, _, _ := change.ParsePGPosition(floor)
	var cur string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return fmt.Errorf("reading the current WAL position: %w", err)
	}
	walEnd, err := pglogrepl.ParseLSN(cur)
	if err != nil {
		return fmt.Errorf("reading the current WAL position %q: %w", cur, err)
	}
	if lsn > uint64(walEnd) {
		return fatal(fmt.Errorf("%w: the stream holds changes of source %s through position %s, ahead of this database's WAL (%s): "+
			"the database was restored or replaced; purge the source's subjects (%s) and resync",
			ErrPositionConflict, s.cfg.ID, floor, walEnd, s.topo.ChangeFilter(s.srcToken)))
	}
	return nil
}

// classifyStartErr explains START_REPLICATION failures.
func (s *Source) classifyStartErr(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "55006": // object_in_use: slot active for another PID
			return fmt.Errorf("starting replication: %s (another instance, or a connection Postgres has not ended yet): %w", pgErr.Message, err)
		case strings.Contains(pgErr.Message, "can no longer get changes") || strings.Contains(pgErr.Message, "has already been removed"):
			return fatal(fmt.Errorf("%w: starting replication from slot %q: %w; resync: SELECT pg_drop_replication_slot('%s'), then start with snapshot initial",
				ErrSlotInvalidated, s.cfg.SlotName, err, s.cfg.SlotName))
		}
	}
	return fmt.Errorf("starting replication from slot %q: %w", s.cfg.SlotName, err)
}

// heartbeats writes a heartbeat message into the WAL every
// HeartbeatInterval. Server-side errors are logged and counted; a broken
// connection ends the session through errc.
func (s *Source) heartbeats(ctx context.Context, q *lockedConn, tables []*table, errc chan<- error) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		q.mu.Lock()
		hctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
		_, err := q.c.Exec(hctx, "SELECT pg_logical_emit_message(false, $1, $2)", heartbeatPrefix, s.cfg.SlotName)
		if err == nil {
			var probs []string
			if probs, err = checkCoverage(hctx, q.c, s.cfg.PublicationName, tables); err == nil {
				s.setUncaptured(probs)
			}
		}
		cancel()
		broken := q.c.IsClosed()
		q.mu.Unlock()
		if err == nil || ctx.Err() != nil {
			continue
		}
		s.met.heartbeatErrors.Inc()
		s.log.Warn("heartbeat failed", "err", err)
		if broken {
			errc <- fmt.Errorf("heartbeat: the query connection broke: %w", err)
			return
		}
	}
}

// item is one change waiting to be published.
type item struct {
	msg   bus.Message
	table string
	op    string
}

// stream is the state of one replication session. Only the session
// goroutine touches it.
type stream struct {
	s     *Source
	repl  *pgconn.PgConn
	q     *lockedConn
	conv  *converter
	queue *publishQueue
	hbErr <-chan error

	tables map[tableName]*table
	rels   map[uint32]*relation // watched relations; others are absent
	floor  string
	max    int

	inTx    bool
	txLSN   uint64
	txTime  time.Time
	txIndex uint32

	cur            []item // changes of the open transaction
	pending        []item // changes of completed transactions, not yet handed over
	pendingConfirm uint64
	pendingSince   time.Time

	confirmed  uint64
	serverEnd  uint64
	nextStatus time.Time
	lastBeat   time.Time
	lastRecv   time.Time
	stalled    bool
	stallCause string
}

// idleTimeout is how long a replication connection may stay silent while
// it is read — not even answering the status updates that ask for a reply —
// before it is taken for dead (a network cut without a reset) and
// reconnected.
func (st *stream) idleTimeout() time.Duration {
	return st.s.cfg.Timeouts.Idle
}

func (st *stream) inFlight() int {
	return len(st.cur) + len(st.pending) + st.queue.unackedMsgs
}

func (st *stream) run(ctx context.Context) error {
	st.nextStatus = time.Now()
	st.lastBeat = time.Now()
	st.lastRecv = time.Now()
	// Reads are bounded by the connection's read deadline rather than by a
	// context per read (which costs a timer and a watcher per replication
	// message): the deadline is set before each read, and moved to now to
	// interrupt it, when ctx ends or an acknowledgement arrives. pgconn
	// takes a read timeout as harmless (it closes the connection on any
	// other error), like its own context handling does.
	conn := st.repl.Conn()
	interrupt := func() { _ = conn.SetReadDeadline(time.Now()) }
	interrupted := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		interrupt()
		close(interrupted)
	})
	var unwatchOnce sync.Once
	unwatch := func() {
		unwatchOnce.Do(func() {
			if !stopWatch() {
				<-interrupted
			}
		})
	}
	defer unwatch()
	for {
		if err := st.drainAcks(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			// Nothing interrupts the connection any more: stop reads from
			// it with deadlines of its own.
			unwatch()
			return st.stop()
		}
		select {
		case err := <-st.hbErr:
			return err
		default:
		}
		now := time.Now()
		if len(st.pending) > 0 && !now.Before(st.pendingSince.Add(st.s.cfg.BatchMaxDelay)) {
			st.flushPending()
		}
		if !now.Before(st.nextStatus) {
			if err := st.sendStatus(); err != nil {
				return err
			}
		}
		if st.inFlight() >= st.s.cfg.MaxInFlight {
			// Hand the pending changes over only when the publisher would
			// otherwise run dry: while batches wait, let them grow (up to
			// BatchMaxMessages, see commit) as acknowledgements make room,
			// so that catch-up sends full batches.
			if len(st.pending) > 0 && !st.queue.busy() {
				st.flushPending()
				continue
			}
			// Backpressure: stop reading until JetStream catches up; the
			// status updates keep the connection alive meanwhile. Silence
			// is not held against the server while we do not read.
			st.lastRecv = time.Now()
			t := time.NewTimer(time.Until(st.nextStatus))
			select {
			case <-st.queue.ready: // taken at the top of the loop
			case <-t.C:
			case <-ctx.Done():
			case err := <-st.hbErr:
				t.Stop()
				return err
			}
			t.Stop()
			continue
		}
		deadline := st.nextStatus
		if len(st.pending) > 0 {
			if d := st.pendingSince.Add(st.s.cfg.BatchMaxDelay); d.Before(deadline) {
				deadline = d
			}
		}
		if silent := time.Since(st.lastRecv); silent > st.idleTimeout() {
			return fmt.Errorf("the replication connection has been silent for %s: taking it for dead", silent.Round(time.Second))
		}
		// An acknowledgement interrupts the read: it may confirm a position
		// or make room, and must not wait for the next replication message.
		// The deadline is set first, so that an interruption (by an
		// acknowledgement, or by ctx once it was seen not done) comes after.
		if err := conn.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("setting the replication read deadline: %w", err)
		}
		if ctx.Err() != nil {
			continue
		}
		if !st.queue.setWaker(interrupt) {
			continue
		}
		msg, err := st.repl.ReceiveMessage(context.Background())
		st.queue.clearWaker()
		if err != nil {
			// A timed out read leaves the connection usable (pgconn closes
			// it on any other error).
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving from the replication stream: %w", err)
		}
		st.lastRecv = time.Now()
		if err := st.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// drainAcks takes every acknowledgement that arrived.
func (st *stream) drainAcks() error {
	for _, r := range st.queue.takeAcks() {
		if err := st.handleAck(r); err != nil {
			return err
		}
	}
	return nil
}

func (st *stream) handleAck(r ackResult) error {
	confirm, err := st.queue.acked(r)
	if err != nil {
		return err
	}
	if confirm > 0 {
		st.advance(confirm)
	}
	return nil
}

// advance moves the confirmed position forward (never back).
func (st *stream) advance(lsn uint64) {
	if lsn > st.confirmed {
		st.confirmed = lsn
		st.s.setConfirmed(lsn)
	}
}

// sendStatus confirms the durable position, with write, flush and apply all
// set explicitly (pglogrepl would copy write into zero flush and apply).
func (st *stream) sendStatus() error {
	lsn := pglogrepl.LSN(st.confirmed)
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ClientTime:       time.Now(),
		// Ask for a keepalive when the server has been quiet, so that a dead
		// connection shows (see idleTimeout).
		ReplyRequested: time.Since(st.lastRecv) > st.s.cfg.StatusInterval,
	})
	if err != nil {
		return fmt.Errorf("sending a standby status update: %w", err)
	}
	st.nextStatus = time.Now().Add(st.s.cfg.StatusInterval)
	if st.serverEnd > st.confirmed {
		st.s.met.lagBytes.Set(float64(st.serverEnd - st.confirmed))
	} else {
		st.s.met.lagBytes.Set(0)
	}
	st.s.met.heartbeatAge.Set(time.Since(st.lastBeat).Seconds())
	st.checkStall()
	return nil
}

// checkStall reports Degraded while JetStream takes long to acknowledge.
func (st *stream) checkStall() {
	limit := 2 * st.s.cfg.StatusInterval
	if limit < time.Second {
		limit = time.Second
	}
	age := st.queue.oldestAge()
	cause := "" // why the publisher re-sends, e.g. "stream X is full (maxBytes N): ..."
	if p, ok := st.s.pub.(interface{ Stalled() error }); ok && age > limit {
		if err := p.Stalled(); err != nil {
			cause = err.Error() + "; "
		}
	}
	switch {
	case age > limit && (!st.stalled || cause != st.stallCause):
		st.stalled, st.stallCause = true, cause
		st.s.setStatus(StateDegraded, fmt.Sprintf("%swaiting %s for JetStream to acknowledge %d changes; reading paused at %d in flight",
			cause, age.Round(time.Millisecond), st.queue.unackedMsgs, st.s.cfg.MaxInFlight), nil)
	case age <= limit && st.stalled:
		st.stalled = false
		st.s.setStatus(StateStreaming, "", nil)
	}
}

func (st *stream) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return nil
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return fmt.Errorf("%w: keepalive: %v", ErrDecode, err)
			}
			st.seen(uint64(pkm.ServerWALEnd))
			if pkm.ReplyRequested {
				return st.sendStatus()
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return fmt.Errorf("%w: XLogData: %v", ErrDecode, err)
			}
			st.seen(uint64(xld.ServerWALEnd))
			return st.logical(ctx, xld)
		}
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return errors.New("the server ended the replication stream")
	}
	return nil
}

func (st *stream) seen(walEnd uint64) {
	if walEnd > st.serverEnd {
		st.serverEnd = walEnd
	}
}

func (st *stream) logical(ctx context.Context, xld pglogrepl.XLogData) error {
	if len(xld.WALData) == 0 {
		return nil
	}
	lm, err := pglogrepl.Parse(xld.WALData)
	if err != nil {
		return fmt.Errorf("%w: pgoutput message %q at %s: %v", ErrDecode, xld.WALData[0], xld.WALStart, err)
	}
	switch m := lm.(type) {
	case *pglogrepl.RelationMessage:
		return st.relation(ctx, m)
	case *pglogrepl.BeginMessage:
		st.inTx = true
		st.txLSN = uint64(m.FinalLSN)
		st.txTime = m.CommitTime
		st.txIndex = 0
	case *pglogrepl.CommitMessage:
		st.commit(uint64(m.TransactionEndLSN))
	case *pglogrepl.InsertMessage:
		r := st.rels[m.RelationID]
		if r == nil {
			return nil
		}
		props, _, err := st.conv.props(r, m.Tuple)
		if err != nil {
			return err
		}
		key, err := rowKey(r, m.Tuple, nil)
		if err != nil {
			return err
		}
		return st.emitRow(change.OpInsert, r, key, props, nil, nil)
	case *pglogrepl.UpdateMessage:
		return st.update(m)
	case *pglogrepl.DeleteMessage:
		r := st.rels[m.RelationID]
		if r == nil {
			return nil
		}
		if m.OldTuple == nil {
			return fmt.Errorf("%w: delete on table %s without the old key (replica identity)", ErrDecode, r.tbl.Name)
		}
		before, err := st.conv.oldProps(r, m.OldTupleType, m.OldTuple)
		if err != nil {
			return err
		}
		key, err := rowKey(r, m.OldTuple, nil)
		if err != nil {
			return err
		}
		return st.emitRow(change.OpDelete, r, key, nil, before, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			r := st.rels[id]
			if r == nil {
				continue
			}
			if err := st.emit(r.tbl.Label, string(change.OpTruncate), truncateKeyToken, func(pos string) *change.Envelope {
				return st.s.truncateEnvelope(r.tbl, st.txTime, pos)
			}); err != nil {
				return err
			}
		}
	case *pglogrepl.LogicalDecodingMessage:
		if m.Prefix == heartbeatPrefix && string(m.Content) == st.s.cfg.SlotName {
			st.lastBeat = time.Now()
			st.s.met.heartbeatAge.Set(0)
		}
		// A message outside a transaction is decoded between transactions:
		// every transaction that committed before it was already received.
		if !m.Transactional && !st.inTx {
			st.markConfirm(uint64(m.LSN))
		}
	case *pglogrepl.TypeMessage, *pglogrepl.OriginMessage:
	}
	return nil
}

// relation records a Relation message: watched tables get their column
// conversions (types resolved through the catalog when new), others are
// ignored. A watched table is known by its name, or by its OID once it was
// renamed: the publication holds it by OID, so its changes keep coming under
// the new name, and they keep the configured label rather than being lost.
func (st *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	name := tableName{Schema: m.Namespace, Name: m.RelationName}
	tbl := st.tables[name]
	if tbl == nil {
		for _, t := range st.tables {
			if t.OID == m.RelationID {
				tbl = t
				st.s.log.Warn("a watched table was renamed: its changes keep the label of the configured name; "+
					"put the new name in tables before the next restart, which then finds no table by the old name",
					"table", t.Name.ident(), "renamed_to", name.ident(), "label", t.Label)
				break
			}
		}
	}
	if tbl == nil {
		delete(st.rels, m.RelationID)
		return nil
	}
	cols := make([]relColumn, len(m.Columns))
	for i, c := range m.Columns {
		t, ok := st.s.types.lookup(c.DataType)
		if !ok {
			st.q.mu.Lock()
			qctx, cancel := context.WithTimeout(ctx, st.s.cfg.Timeouts.Query)
			var err error
			t, err = st.s.types.resolve(qctx, st.q.c, c.DataType)
			cancel()
			st.q.mu.Unlock()
			if err != nil {
				return fmt.Errorf("resolving the type of column %s of table %s: %w", c.Name, tbl.Name, err)
			}
		}
		cols[i] = relColumn{name: c.Name, typ: t, ident: c.Flags&1 != 0}
	}
	r, err := newRelation(tbl, cols)
	if err != nil {
		return err
	}
	st.rels[m.RelationID] = r
	return nil
}

func (st *stream) update(m *pglogrepl.UpdateMessage) error {
	r := st.rels[m.RelationID]
	if r == nil {
		return nil
	}
	props, unchanged, err := st.conv.props(r, m.NewTuple)
	if err != nil {
		return err
	}
	key, err := rowKey(r, m.NewTuple, m.OldTuple)
	if err != nil {
		return err
	}
	var before map[string]any
	oldKey := key
	if m.OldTuple != nil {
		if before, err = st.conv.oldProps(r, m.OldTupleType, m.OldTuple); err != nil {
			return err
		}
		if oldKey, err = rowKey(r, m.OldTuple, nil); err != nil {
			return err
		}
	}
	if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld && len(unchanged) > 0 {
		// REPLICA IDENTITY FULL: the old row comes whole, its TOASTed
		// values written inline, so a value the new row left out as
		// unchanged is known: send it, and the row is complete (even
		// under a new key, where no previous value exists to keep).
		kept := unchanged[:0]
		for _, c := range unchanged {
			if v, ok := before[c]; ok {
				props[c] = v
			} else {
				kept = append(kept, c)
			}
		}
		unchanged = kept
		if len(unchanged) == 0 {
			unchanged = nil
		}
	}
	if oldKey == key {
		return st.emitRow(change.OpUpdate, r, key, props, before, unchanged)
	}
	// The key changed: the old element goes, the new one comes.
	if err := st.emitRow(change.OpDelete, r, oldKey, nil, before, nil); err != nil {
		return err
	}
	if len(unchanged) == 0 {
		return st.emitRow(change.OpInsert, r, key, props, nil, nil)
	}
	// Some values were not sent (unchanged TOAST) and the old row does not
	// carry them (REPLICA IDENTITY DEFAULT): an update merges what is
	// known; those values cannot be recovered from the stream.
	return st.emitRow(change.OpUpdate, r, key, props, nil, unchanged)
}

func (st *stream) emitRow(op change.Op, r *relation, key string, props, before map[string]any, unchanged []string) error {
	return st.emit(r.tbl.Label, string(op), bus.Token(key), func(pos string) *change.Envelope {
		return st.s.rowEnvelope(op, r, key, props, before, unchanged, st.txTime, pos)
	})
}

// emit gives the next change of the open transaction its position and
// queues it, unless the stream already holds it.
func (st *stream) emit(label, op, keyToken string, build func(pos string) *change.Envelope) error {
	if !st.inTx {
		return fmt.Errorf("%w: a row change outside a transaction", ErrDecode)
	}
	pos := change.FormatPGPosition(st.txLSN, st.txIndex)
	st.txIndex++
	if st.floor != "" && change.ComparePositions(pos, st.floor) <= 0 {
		st.s.met.skipped.Inc()
		return nil
	}
	msg, err := st.s.message(build(pos), keyToken)
	if err != nil {
		return err
	}
	st.cur = append(st.cur, item{msg: msg, table: label, op: op})
	if len(st.pending)+len(st.cur) >= st.max {
		if len(st.pending) > 0 {
			st.flushPending()
		}
		if len(st.cur) >= st.max {
			// A transaction larger than a batch: hand over this part now; its
			// commit is confirmed with its last part.
			st.queue.push(makeBatch(st.cur, 0))
			st.cur = nil
		}
	}
	return nil
}

func (st *stream) commit(end uint64) {
	st.inTx = false
	if len(st.cur) == 0 {
		st.markConfirm(end)
		return
	}
	if len(st.pending) == 0 {
		st.pendingSince = time.Now()
	}
	st.pending = append(st.pending, st.cur...)
	st.cur = nil
	st.pendingConfirm = end
	// Waiting BatchMaxDelay for company only pays while the publisher is
	// busy: when nothing is in flight, hand the transaction over at once
	// (under load the publisher is busy and batches grow by themselves).
	if len(st.pending) >= st.max || len(st.queue.unacked) == 0 {
		st.flushPending()
	}
}

// markConfirm makes lsn confirmable once everything received before it is
// acknowledged: at once when nothing is outstanding.
func (st *stream) markConfirm(lsn uint64) {
	if len(st.pending) > 0 {
		st.pendingConfirm = max(st.pendingConfirm, lsn)
		return
	}
	if n := len(st.queue.unacked); n > 0 {
		b := st.queue.unacked[n-1]
		b.confirm = max(b.confirm, lsn)
		return
	}
	st.advance(lsn)
}

func (st *stream) flushPending() {
	st.queue.push(makeBatch(st.pending, st.pendingConfirm))
	st.pending = nil
	st.pendingConfirm = 0
}

func makeBatch(items []item, confirm uint64) *batch {
	b := &batch{
		msgs:    make([]bus.Message, len(items)),
		tables:  make([]string, len(items)),
		ops:     make([]string, len(items)),
		confirm: confirm,
	}
	for i, it := range items {
		b.msgs[i], b.tables[i], b.ops[i] = it.msg, it.table, it.op
	}
	return b
}

// stop is the graceful end of the session: stop reading, hand over the
// completed transactions, wait for every acknowledgement within the stop
// timeout, confirm the durable position and end the replication.
func (st *stream) stop() error {
	s := st.s
	s.setStatus(StateStopping, "", nil)
	deadline := time.Now().Add(s.cfg.Timeouts.Stop)
	if len(st.pending) > 0 {
		st.flushPending()
	}
	var stopErr error
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
wait:
	for {
		if err := st.drainAcks(); err != nil {
			if errors.Is(err, bus.ErrFenced) {
				// Another instance owns the source: confirm nothing more
				// (runSession closes the connection without a final status
				// update).
				st.queue.stop()
				return err
			}
			stopErr = fmt.Errorf("%w: %w", ErrStopIncomplete, err)
			break
		}
		if len(st.queue.unacked) == 0 {
			break
		}
		select {
		case <-st.queue.ready:
		case <-t.C:
			stopErr = fmt.Errorf("%w: %d changes in %d batches unacknowledged after the stop timeout %s",
				ErrStopIncomplete, st.queue.unackedMsgs, len(st.queue.unacked), s.cfg.Timeouts.Stop)
			break wait
		}
	}
	st.queue.stop()
	if err := st.sendStatus(); err != nil {
		// The server keeps its previous position: the changes after it are
		// sent again next time and skipped as already stored.
		s.log.Warn("final status update failed", "err", err)
	}
	// End the COPY so that the server has processed the status update
	// before the connection closes. Bounded: the server may be gone.
	_ = st.repl.Conn().SetDeadline(time.Now().Add(min(time.Until(deadline)+time.Second, closeTimeout)))
	if _, err := pglogrepl.SendStandbyCopyDone(context.Background(), st.repl); err != nil {
		s.log.Debug("ending the replication stream", "err", err)
	}
	closePgConn(st.repl)
	s.log.Info("stopped", "confirmed", lsnString(st.confirmed))
	return stopErr
}
