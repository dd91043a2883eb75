package reaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// DefaultPostgresTimeout bounds one result's transaction when
// PostgresOptions.Timeout is zero.
const DefaultPostgresTimeout = 30 * time.Second

// PostgresOptions tune a postgres reaction.
type PostgresOptions struct {
	// Timeout bounds one result's transaction. Default: the config's
	// timeout, else DefaultPostgresTimeout.
	Timeout time.Duration
	// Logger and Registerer default to discarding and a private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Postgres is the SQL reaction: for every row change of a result it runs
// the statement of its kind with the row's columns bound as named
// parameters (@name; an updated row also binds @before_name to its old
// values), and in the same transaction records the result's seq in an
// offset row (reaction, query). A result whose seq the offset row already
// covers is skipped, so a redelivered result is applied exactly once.
//
// Errors: a statement Postgres refuses for good (syntax, undefined table
// or column, constraint or data errors: SQLSTATE classes 22, 23, 42, ...)
// wraps ErrTargetRejected and is permanent; a row that lacks a parameter's
// column, or a value that cannot be encoded, wraps ErrBadResult
// (permanent); a lost or refused connection, a timeout, a serialization
// failure, a deadlock or a server shutting down wraps ErrTargetUnavailable
// and is retried. Nothing is half-applied: the transaction commits whole
// or not at all.
type Postgres struct {
	id      string
	pool    *pgxpool.Pool
	stmts   map[Op]*pgStatement
	table   string // sanitized offset table identifier
	timeout time.Duration
	log     *slog.Logger
	m       *pgMetrics

	ensureMu sync.Mutex
	ensured  bool
}

var _ BatchReaction = (*Postgres)(nil)

type pgStatement struct {
	sql   string
	names []string // the @names the statement uses, as pgx finds them
}

type pgMetrics struct {
	applied *prometheus.CounterVec
	skipped *prometheus.CounterVec
}

// NewPostgres builds the SQL reaction id from its (validated, defaulted)
// config. It does not connect: the pool connects on first use, so a
// database that is down delays results instead of failing the start.
func NewPostgres(id string, spec *config.PostgresReaction, opts PostgresOptions) (*Postgres, error) {
	if opts.Timeout == 0 {
		opts.Timeout = spec.Timeout.D()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultPostgresTimeout
	}
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	pcfg, err := pgxpool.ParseConfig(spec.Connection)
	if err != nil {
		// The parse error may quote the connection string: say only where.
		return nil, fmt.Errorf("postgres reaction %s: connection %s: not a valid connection string", id, logging.RedactURL(spec.Connection))
	}
	pcfg.MaxConns = 2
	table := spec.OffsetTable
	if table == "" {
		table = config.DefaultOffsetTable
	}
	p := &Postgres{
		id:      id,
		stmts:   make(map[Op]*pgStatement),
		table:   pgx.Identifier(strings.Split(table, ".")).Sanitize(),
		timeout: opts.Timeout,
		log:     opts.Logger,
	}
	for op, sql := range map[Op]string{OpCreate: spec.Added, OpUpdate: spec.Updated, OpDelete: spec.Deleted} {
		if strings.TrimSpace(sql) == "" {
			continue
		}
		st, err := parseStatement(sql)
		if err != nil {
			return nil, fmt.Errorf("postgres reaction %s: %s: %w", id, opName(op), err)
		}
		p.stmts[op] = st
	}
	if len(p.stmts) == 0 {
		return nil, fmt.Errorf("postgres reaction %s: no statement (set added, updated or deleted)", id)
	}
	applied, err := obs.Register(opts.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_reaction_postgres_results_applied_total",
		Help: "Result messages applied in a committed transaction, by reaction.",
	}, []string{"reaction"}))
	if err != nil {
		return nil, fmt.Errorf("postgres reaction %s: %w", id, err)
	}
	skipped, err := obs.Register(opts.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_reaction_postgres_results_skipped_total",
		Help: "Redelivered result messages the offset row already covered, by reaction.",
	}, []string{"reaction"}))
	if err != nil {
		return nil, fmt.Errorf("postgres reaction %s: %w", id, err)
	}
	p.m = &pgMetrics{applied: applied, skipped: skipped}
	if p.pool, err = pgxpool.NewWithConfig(context.Background(), pcfg); err != nil {
		return nil, fmt.Errorf("postgres reaction %s: creating the pool for %s: %w", id, logging.RedactURL(spec.Connection), err)
	}
	return p, nil
}

// Close closes the connection pool.
func (p *Postgres) Close() { p.pool.Close() }

var namedArgCandidate = regexp.MustCompile(`@([A-Za-z_][A-Za-z0-9_]*)`)

// parseStatement finds the named parameters of sql with pgx's own lexer:
// every @name-looking word (a superset: some may sit in literals or
// comments) is offered with its name as value, and pgx's rewrite returns
// the values of the names it actually binds, in order.
func parseStatement(sql string) (*pgStatement, error) {
	offer := pgx.NamedArgs{}
	for _, m := range namedArgCandidate.FindAllStringSubmatch(sql, -1) {
		offer[m[1]] = m[1]
	}
	_, args, err := offer.RewriteQuery(context.Background(), nil, sql, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the statement's @parameters: %w", err)
	}
	st := &pgStatement{sql: sql}
	for _, a := range args {
		st.names = append(st.names, a.(string))
	}
	return st, nil
}

// React implements Reaction: ReactBatch of one result.
func (p *Postgres) React(ctx context.Context, r *change.Result) error {
	return p.ReactBatch(ctx, []*change.Result{r})
}

// pgExec is one statement to run for a row change.
type pgExec struct {
	sql  string
	args pgx.NamedArgs
	key  string
}

// ReactBatch implements BatchReaction: it applies rs (in order; any mix of
// queries) in one transaction, pipelined in one round trip, with one
// offset row update per query. Results the offset rows already cover are
// skipped. It returns nil when all were applied (or skipped), and
// otherwise applied none of them.
func (p *Postgres) ReactBatch(ctx context.Context, rs []*change.Result) error {
	if len(rs) == 0 {
		return nil
	}
	what := "result " + IdempotencyKey(rs[0])
	if len(rs) > 1 {
		what = fmt.Sprintf("batch of %d results (%s .. %s)", len(rs), IdempotencyKey(rs[0]), IdempotencyKey(rs[len(rs)-1]))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("postgres reaction %s, %s: %w", p.id, what, err)
	}
	// Bind before touching the database: a row that cannot be bound never
	// will be.
	execs := make([][]pgExec, len(rs))
	for i, r := range rs {
		for _, rc := range RowChanges(r) {
			st := p.stmts[rc.Op]
			if st == nil {
				continue
			}
			args, err := bindRow(st, &rc)
			if err != nil {
				return bus.Permanent(fmt.Errorf("postgres reaction %s: %w", p.id, err))
			}
			execs[i] = append(execs[i], pgExec{st.sql, args, rc.Key()})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.ensureOffsetTable(ctx); err != nil {
		// Never permanent: the table is the reaction's, not the result's
		// (a missing schema or privilege would otherwise dead-letter every
		// result); retried until an operator fixes it.
		p.log.Error("creating the offset table failed; retrying", "table", p.table, "err", err)
		return fmt.Errorf("postgres reaction %s: creating the offset table %s: %w: %v", p.id, p.table, ErrTargetUnavailable, err)
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres reaction %s, %s: %w: %v", p.id, what, ErrTargetUnavailable, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// The offset rows of the batch's queries, locked until the commit.
	var queries []string
	for _, r := range rs {
		if !slices.Contains(queries, r.Query) {
			queries = append(queries, r.Query)
		}
	}
	stored := make(map[string]uint64, len(queries))
	rows, err := tx.Query(ctx, `SELECT query, seq FROM `+p.table+` WHERE reaction = $1 AND query = ANY($2) FOR UPDATE`, p.id, queries)
	if err != nil {
		return p.classify(ctx, what+": reading the offset rows", tx, err)
	}
	for rows.Next() {
		var q string
		var seq int64
		if err := rows.Scan(&q, &seq); err != nil {
			rows.Close()
			return p.classify(ctx, what+": reading the offset rows", tx, err)
		}
		stored[q] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		return p.classify(ctx, what+": reading the offset rows", tx, err)
	}

	var batch pgx.Batch
	var keys []string // of the queued statements, for errors
	through := make(map[string]uint64, len(queries))
	applied, skipped := 0, 0
	for i, r := range rs {
		last := max(stored[r.Query], through[r.Query])
		if r.Seq <= last {
			skipped++
			p.log.Debug("result already applied; skipping", "query", r.Query, "seq", r.Seq, "applied_through", last)
			continue
		}
		if last > 0 && r.Seq != last+1 {
			p.log.Warn("gap in the results: applying the result after a missing one", "query", r.Query, "seq", r.Seq, "applied_through", last)
		}
		for _, e := range execs[i] {
			batch.Queue(e.sql, e.args)
			keys = append(keys, "row change "+e.key)
		}
		through[r.Query] = r.Seq
		applied++
	}
	if applied == 0 {
		p.m.skipped.WithLabelValues(p.id).Add(float64(skipped))
		return nil
	}
	offsets := 0
	for _, q := range queries {
		if seq, ok := through[q]; ok {
			batch.Queue(`INSERT INTO `+p.table+` (reaction, query, seq) VALUES ($1, $2, $3)
				ON CONFLICT (reaction, query) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()
				WHERE `+p.table+`.seq < EXCLUDED.seq`, p.id, q, int64(seq))
			keys = append(keys, fmt.Sprintf("offset row of %s (seq %d)", q, seq))
			offsets++
		}
	}
	br := tx.SendBatch(ctx, &batch)
	for i, key := range keys {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return p.classify(ctx, key, tx, err)
		}
		if i >= len(keys)-offsets && tag.RowsAffected() != 1 {
			// Another instance recorded this seq or a later one first
			// (its offset row was inserted after we read): roll back and
			// let the retry read the offset again.
			_ = br.Close()
			return fmt.Errorf("postgres reaction %s, %s: %s: %w: another writer applied it meanwhile", p.id, what, key, ErrTargetUnavailable)
		}
	}
	if err := br.Close(); err != nil {
		return p.classify(ctx, what, tx, err)
	}
	if err := tx.Commit(ctx); err != nil {
		// The outcome is unknown when the connection broke during the
		// commit; retrying is safe: the offset rows tell.
		return p.classify(ctx, what+": commit", nil, err)
	}
	p.m.applied.WithLabelValues(p.id).Add(float64(applied))
	p.m.skipped.WithLabelValues(p.id).Add(float64(skipped))
	return nil
}

// ensureOffsetTable creates the offset table when it is missing (once per
// process, retried until it succeeds).
func (p *Postgres) ensureOffsetTable(ctx context.Context) error {
	p.ensureMu.Lock()
	defer p.ensureMu.Unlock()
	if p.ensured {
		return nil
	}
	_, err := p.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+p.table+` (
		reaction   text        NOT NULL,
		query      text        NOT NULL,
		seq        bigint      NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (reaction, query))`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		err = nil // created concurrently by another reaction
	}
	if err == nil {
		p.ensured = true
	}
	return err
}

// bindRow binds the statement's @names from the row change: an added row's
// columns, a deleted row's columns, an updated row's new columns and its
// old ones as before_<name>.
func bindRow(st *pgStatement, rc *RowChange) (pgx.NamedArgs, error) {
	row := rc.After
	if rc.Op == OpDelete {
		row = rc.Before
	}
	args := make(pgx.NamedArgs, len(st.names))
	for _, name := range st.names {
		v, ok := row[name]
		if !ok && rc.Op == OpUpdate {
			if col, isBefore := strings.CutPrefix(name, "before_"); isBefore {
				v, ok = rc.Before[col]
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: row change %s: the statement for %s rows uses @%s, the row has no such column (it has %s)",
				ErrBadResult, rc.Key(), opName(rc.Op), name, strings.Join(columns(row), ", "))
		}
		bound, err := sqlValue(v)
		if err != nil {
			return nil, fmt.Errorf("%w: row change %s: column %s: %v", ErrBadResult, rc.Key(), name, err)
		}
		args[name] = bound
	}
	return args, nil
}

func columns(row change.Row) []string {
	out := make([]string, 0, len(row))
	for k := range row {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sqlValue turns a decoded JSON value into one pgx encodes for the
// parameter's type: numbers as int64 or float64, lists and objects as
// their JSON text (for json/jsonb parameters).
func sqlValue(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		return x.Float64()
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
	return v, nil
}

// classify wraps a failed step's error: permanent (ErrTargetRejected,
// ErrBadResult) or retryable (ErrTargetUnavailable).
func (p *Postgres) classify(ctx context.Context, what string, tx pgx.Tx, err error) error {
	msg := fmt.Sprintf("postgres reaction %s, %s", p.id, what)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if retryableSQLState(pgErr.Code) {
			return fmt.Errorf("%s: %w: %v", msg, ErrTargetUnavailable, err)
		}
		return bus.Permanent(fmt.Errorf("%s: %w: %v", msg, ErrTargetRejected, err))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w: %w", msg, ErrTargetUnavailable, ctx.Err())
	}
	var netErr net.Error
	if tx == nil || tx.Conn().IsClosed() || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w: %v", msg, ErrTargetUnavailable, err)
	}
	// The connection is alive and the server said nothing: pgx refused
	// the value on this side (it cannot encode it for the parameter's
	// type). Sending it again cannot help.
	return bus.Permanent(fmt.Errorf("%s: %w: %v", msg, ErrBadResult, err))
}

// retryableSQLState reports whether a server error is worth retrying:
// connection problems (08), transaction rollbacks such as serialization
// failures and deadlocks (40), lack of resources (53), operator
// intervention such as a shutdown or a cancelled query (57), system errors
// (58), lock timeouts (55P03) and internal errors (XX).
func retryableSQLState(code string) bool {
	if len(code) != 5 {
		return true
	}
	switch code[:2] {
	case "08", "40", "53", "57", "58", "XX":
		return true
	}
	return code == "55P03" || code == "55006"
}

// AppliedSeq implements SeqKeeper: the seq of the offset row (reaction,
// query); ok is false when there is none. Errors wrap ErrTargetUnavailable.
func (p *Postgres) AppliedSeq(ctx context.Context, query string) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.ensureOffsetTable(ctx); err != nil {
		return 0, false, fmt.Errorf("postgres reaction %s: creating the offset table %s: %w: %v", p.id, p.table, ErrTargetUnavailable, err)
	}
	var seq int64
	err := p.pool.QueryRow(ctx, `SELECT seq FROM `+p.table+` WHERE reaction = $1 AND query = $2`, p.id, query).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres reaction %s: reading the offset row of %s: %w: %v", p.id, query, ErrTargetUnavailable, err)
	}
	return uint64(seq), true, nil
}
