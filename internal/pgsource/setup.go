package pgsource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// connectQuery opens an ordinary connection with the source's session
// settings.
func (s *Source) connectQuery(ctx context.Context, purpose string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(s.cfg.ConnString)
	if err != nil {
		return nil, fatal(fmt.Errorf("%w: connString: %s", ErrConfig, redactParseError(err)))
	}
	cc.ConnectTimeout = s.cfg.Timeouts.Connect
	for k, v := range sessionParams {
		cc.RuntimeParams[k] = v
	}
	cc.RuntimeParams["application_name"] = s.appName(purpose)
	delete(cc.RuntimeParams, "replication") // an ordinary connection, whatever the string says
	// A statement whose context ends is cancelled on the server too, so that
	// a timed-out query does not keep its locks.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: time.Second}
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Connect)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to Postgres (%s) for %s: %w", describeConn(&cc.Config), purpose, err)
	}
	return conn, nil
}

// connectReplication opens a logical replication connection.
func (s *Source) connectReplication(ctx context.Context, purpose string) (*pgconn.PgConn, error) {
	cs := s.cfg.ReplicationConnString
	if cs == "" {
		cs = s.cfg.ConnString
	}
	cc, err := pgconn.ParseConfig(cs)
	if err != nil {
		return nil, fatal(fmt.Errorf("%w: replicationConnString: %s", ErrConfig, redactParseError(err)))
	}
	cc.ConnectTimeout = s.cfg.Timeouts.Connect
	for k, v := range sessionParams {
		cc.RuntimeParams[k] = v
	}
	cc.RuntimeParams["replication"] = "database"
	cc.RuntimeParams["application_name"] = s.appName(purpose)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Connect)
	defer cancel()
	conn, err := pgconn.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("opening a replication connection to Postgres (%s) for %s: %w", describeConn(cc), purpose, err)
	}
	return conn, nil
}

func (s *Source) appName(purpose string) string {
	n := "tributary-" + s.cfg.ID + "-" + purpose
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// describeConn names the server without secrets.
func describeConn(c *pgconn.Config) string {
	return fmt.Sprintf("host %s port %d database %s user %s", c.Host, c.Port, c.Database, c.User)
}

// checkWALLevel refuses a server that cannot decode logically.
func checkWALLevel(ctx context.Context, conn *pgx.Conn) error {
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("reading wal_level: %w", err)
	}
	if level != "logical" {
		return fatal(fmt.Errorf("%w: wal_level is %q: set wal_level = logical in postgresql.conf and restart Postgres", ErrSetup, level))
	}
	return nil
}

// ensurePublication checks that the publication exists, publishes every
// operation and holds every watched table; with Create it fixes what is
// missing, otherwise the error names the SQL to run.
func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn, tables []*table) error {
	pub := s.cfg.PublicationName
	var ins, upd, del, trunc, all bool
	err := conn.QueryRow(ctx, `SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables
		FROM pg_publication WHERE pubname = $1`, pub).Scan(&ins, &upd, &del, &trunc, &all)
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Name.ident()
	}
	if errors.Is(err, pgx.ErrNoRows) {
		sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(names, ", "))
		if !s.cfg.Create {
			return fatal(fmt.Errorf("%w: publication %q does not exist and create is false: run %s", ErrSetup, pub, sql))
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("creating publication %q (%s): %w", pub, sql, classifySetupErr(err))
		}
		s.log.Info("created publication", "publication", pub, "tables", len(tables))
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading publication %q: %w", pub, err)
	}
	if !ins || !upd || !del || !trunc {
		sql := fmt.Sprintf("ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", pgx.Identifier{pub}.Sanitize())
		if !s.cfg.Create {
			return fatal(fmt.Errorf("%w: publication %q does not publish every operation: run %s", ErrSetup, pub, sql))
		}
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("altering publication %q (%s): %w", pub, sql, classifySetupErr(err))
		}
	}
	if all {
		return nil
	}
	have := map[tableName]bool{}
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("reading the tables of publication %q: %w", pub, err)
	}
	var sch, tn string
	if _, err := pgx.ForEachRow(rows, []any{&sch, &tn}, func() error {
		have[tableName{Schema: sch, Name: tn}] = true
		return nil
	}); err != nil {
		return fmt.Errorf("reading the tables of publication %q: %w", pub, err)
	}
	var missing []string
	for _, t := range tables {
		if !have[t.Name] {
			missing = append(missing, t.Name.ident())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sql := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(missing, ", "))
	if !s.cfg.Create {
		return fatal(fmt.Errorf("%w: publication %q lacks tables and create is false: run %s", ErrSetup, pub, sql))
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("adding tables to publication %q (%s): %w", pub, sql, classifySetupErr(err))
	}
	s.log.Info("added tables to publication", "publication", pub, "tables", len(missing))
	return nil
}

// classifySetupErr makes permission problems fatal and explains lock
// timeouts.
func classifySetupErr(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42501": // insufficient_privilege
			return fatal(fmt.Errorf("%w: %w", ErrSetup, err))
		case "55P03": // lock_not_available (lock_timeout)
			return fmt.Errorf("blocked by a lock held by another session (lock_timeout): %w", err)
		case "57014": // query_canceled (statement_timeout)
			return fmt.Errorf("over the query timeout: %w", err)
		}
	}
	return err
}

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	Plugin         string
	Database       string
	Temporary      bool
	Active         bool
	ActivePID      *int32
	ConfirmedFlush pglogrepl.LSN
	WALStatus      string
}

// readSlot returns the slot, or nil when it does not exist.
func readSlot(ctx context.Context, conn *pgx.Conn, name string) (*slotInfo, error) {
	var si slotInfo
	var plugin, db, confirmed, walStatus *string
	err := conn.QueryRow(ctx, `SELECT plugin, database, temporary, active, active_pid,
			confirmed_flush_lsn::text, wal_status
		FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&plugin, &db, &si.Temporary, &si.Active, &si.ActivePID, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading replication slot %q: %w", name, err)
	}
	if plugin != nil {
		si.Plugin = *plugin
	}
	if db != nil {
		si.Database = *db
	}
	if walStatus != nil {
		si.WALStatus = *walStatus
	}
	if confirmed != nil {
		si.ConfirmedFlush, err = pglogrepl.ParseLSN(*confirmed)
		if err != nil {
			return nil, fmt.Errorf("reading replication slot %q: confirmed_flush_lsn %q: %w", name, *confirmed, err)
		}
	}
	return &si, nil
}

// checkSlot refuses a slot that cannot serve this source.
func (s *Source) checkSlot(ctx context.Context, conn *pgx.Conn, si *slotInfo) error {
	name := s.cfg.SlotName
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("reading the current database: %w", err)
	}
	if si.Plugin != "pgoutput" || si.Database != db {
		return fatal(fmt.Errorf("%w: replication slot %q belongs to plugin %q in database %q, not pgoutput in %q: choose another slotName or drop it (SELECT pg_drop_replication_slot('%s'))",
			ErrSetup, name, si.Plugin, si.Database, db, name))
	}
	if si.WALStatus == "lost" {
		return fatal(fmt.Errorf("%w: replication slot %q lost WAL it needed (wal_status lost): changes since %s are gone; "+
			"resync: SELECT pg_drop_replication_slot('%s'), then start with snapshot initial",
			ErrSlotInvalidated, name, si.ConfirmedFlush, name))
	}
	return nil
}

// createSlot creates the permanent slot without a snapshot, on a
// replication connection, and returns its consistent point.
func (s *Source) createSlot(ctx context.Context) (pglogrepl.LSN, error) {
	conn, err := s.connectReplication(ctx, "setup")
	if err != nil {
		return 0, err
	}
	defer closePgConn(conn)
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	defer cancel()
	res, err := pglogrepl.CreateReplicationSlot(qctx, conn, s.cfg.SlotName, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "NOEXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return 0, fmt.Errorf("creating replication slot %q: %w", s.cfg.SlotName, classifySetupErr(err))
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("creating replication slot %q: consistent point %q: %w", s.cfg.SlotName, res.ConsistentPoint, err)
	}
	s.log.Info("created replication slot", "slot", s.cfg.SlotName, "consistent_point", lsn.String())
	return lsn, nil
}

// closePgConn closes a connection within a bounded time.
func closePgConn(c *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}
