package pgsource

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tributary/tributary/pkg/bus"
)

// SnapshotMode says whether a new slot starts with a snapshot of the tables.
type SnapshotMode string

// Snapshot modes.
const (
	// SnapshotInitial publishes every row of every table as an insert when the
	// slot is created, exactly consistent with the changes streamed after it.
	SnapshotInitial SnapshotMode = "initial"
	// SnapshotNever streams only the changes committed after the slot was
	// created.
	SnapshotNever SnapshotMode = "never"
)

// Timeouts bound every network step. Zero fields take the defaults.
type Timeouts struct {
	// Connect bounds each connection attempt to Postgres. Default 10s.
	Connect time.Duration
	// Query bounds each catalog or setup statement (and its lock waits).
	// Default 30s.
	Query time.Duration
	// Snapshot bounds the whole initial snapshot. Default 1h.
	Snapshot time.Duration
	// SnapshotStep bounds each snapshot statement (one chunk of one table,
	// including waiting for its lock) and each snapshot batch publish.
	// Default 60s.
	SnapshotStep time.Duration
	// Stop bounds the graceful stop: waiting for outstanding
	// acknowledgements, the final status update and closing. Default 30s.
	Stop time.Duration
	// Idle is how long the replication connection may stay silent, although
	// every status update after a quiet StatusInterval asks the server for
	// a keepalive, before it is taken for dead (a silent network cut) and
	// replaced. Default 12 × StatusInterval, at least 60s.
	Idle time.Duration
}

// Backoff is the reconnection policy: capped exponential with jitter.
type Backoff struct {
	// Initial is the first delay. Default 250ms.
	Initial time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
	// MaxElapsed gives up after this long of consecutive failures; 0 (the
	// default) retries forever.
	MaxElapsed time.Duration
}

// Config is the runtime configuration of one Postgres source.
type Config struct {
	// ID names the source: the `source` of every envelope, the subject token
	// and the message id prefix. Required.
	ID string
	// ConnString is a libpq connection string or URL for ordinary queries
	// (catalog, snapshot, heartbeats). Required. Never logged.
	ConnString string
	// ReplicationConnString is used for the replication connection; empty
	// means ConnString. replication=database is added either way.
	ReplicationConnString string
	// Tables are the watched tables, "table" (schema public) or
	// "schema.table". Required.
	Tables []string
	// PublicationName and SlotName name the publication and the logical
	// replication slot: lower-case letters, digits and '_'. Required.
	PublicationName string
	SlotName        string
	// Create allows creating a missing publication (or adding missing tables
	// to it) and a missing slot. Without it they must exist; the error names
	// the SQL to run.
	Create bool
	// Snapshot is initial (default) or never.
	Snapshot SnapshotMode
	// TableKeys gives the key columns of tables without a primary key (or
	// overrides it), by table name as in Tables. The columns must be NOT
	// NULL and, for deletes to carry them, part of the replica identity.
	TableKeys map[string][]string
	// SnapshotChunkRows is the number of rows read per snapshot query
	// (keyset pagination by key). Default 5000.
	SnapshotChunkRows int
	// HeartbeatInterval is how often a heartbeat message is written to the
	// WAL so that the slot's position advances while the watched tables are
	// quiet. Default 10s.
	HeartbeatInterval time.Duration
	// StatusInterval is how often a standby status update is sent. It must
	// stay well below the server's wal_sender_timeout (default 60s).
	// Default 5s.
	StatusInterval time.Duration
	// DropSlotOnStop drops the slot after a graceful stop (the source then
	// starts from a new slot, and a new snapshot, next time).
	DropSlotOnStop bool
	// MaxInFlight bounds the changes read from the replication stream and
	// not yet acknowledged by JetStream; reading pauses at the bound. At
	// least BatchMaxMessages. Default 4 × BatchMaxMessages, at least 10000.
	MaxInFlight int
	// BatchMaxMessages is the largest atomic batch: at least 1, at most
	// what the publisher accepts (Publisher.MaxBatch, the default).
	BatchMaxMessages int
	// BatchMaxDelay is how long completed transactions wait for more to
	// share their batch. Default 5ms.
	BatchMaxDelay time.Duration
	Timeouts      Timeouts
	Backoff       Backoff
}

var (
	slotNameRE = regexp.MustCompile(`^[a-z0-9_]+$`)
	pubNameRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	identRE    = regexp.MustCompile(`^[^\x00.]+$`)
)

// snapshotSlotSuffix names the temporary slot of the snapshot.
const snapshotSlotSuffix = "_snapshot"

// maxSlotName keeps room for snapshotSlotSuffix within Postgres' 63 bytes.
const maxSlotName = 63 - len(snapshotSlotSuffix)

// withDefaults returns c with the zero fields set to their defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Snapshot == "" {
		c.Snapshot = SnapshotInitial
	}
	if c.SnapshotChunkRows == 0 {
		c.SnapshotChunkRows = 5000
	}
	def(&c.HeartbeatInterval, 10*time.Second)
	def(&c.StatusInterval, 5*time.Second)
	if c.BatchMaxMessages == 0 {
		// New sets the publisher's limit first; this is for Validate alone.
		c.BatchMaxMessages = bus.DefaultMaxBatch
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = max(10000, 4*c.BatchMaxMessages)
	}
	def(&c.BatchMaxDelay, 5*time.Millisecond)
	def(&c.Timeouts.Connect, 10*time.Second)
	def(&c.Timeouts.Query, 30*time.Second)
	def(&c.Timeouts.Snapshot, time.Hour)
	def(&c.Timeouts.SnapshotStep, time.Minute)
	def(&c.Timeouts.Stop, 30*time.Second)
	def(&c.Timeouts.Idle, max(12*c.StatusInterval, 60*time.Second))
	def(&c.Backoff.Initial, 250*time.Millisecond)
	def(&c.Backoff.Max, 30*time.Second)
	return c
}

// Validate reports every problem of the config (with defaults applied to the
// zero fields) at once. The error wraps ErrConfig and names each field.
func (c Config) Validate() error {
	c = c.withDefaults()
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if c.ID == "" {
		add("id: missing")
	}
	if c.ConnString == "" {
		add("connString: missing")
	} else if _, err := pgconn.ParseConfig(c.ConnString); err != nil {
		add("connString: cannot be parsed (%s)", redactParseError(err))
	}
	if c.ReplicationConnString != "" {
		if _, err := pgconn.ParseConfig(c.ReplicationConnString); err != nil {
			add("replicationConnString: cannot be parsed (%s)", redactParseError(err))
		}
	}
	if len(c.Tables) == 0 {
		add("tables: at least one table is needed")
	}
	seen := map[string]bool{}
	for i, t := range c.Tables {
		q, err := parseTableName(t)
		if err != nil {
			add("tables[%d]: %v", i, err)
			continue
		}
		if seen[q.String()] {
			add("tables[%d]: %s is listed twice", i, q)
		}
		seen[q.String()] = true
	}
	keyTables := make([]string, 0, len(c.TableKeys))
	for t := range c.TableKeys {
		keyTables = append(keyTables, t)
	}
	sort.Strings(keyTables)
	for _, t := range keyTables {
		q, err := parseTableName(t)
		if err != nil {
			add("tableKeys[%s]: %v", t, err)
			continue
		}
		if !seen[q.String()] {
			add("tableKeys[%s]: not one of the tables", t)
		}
		cols := c.TableKeys[t]
		if len(cols) == 0 {
			add("tableKeys[%s]: no columns", t)
		}
		dup := map[string]bool{}
		for _, col := range cols {
			if col == "" {
				add("tableKeys[%s]: empty column name", t)
			}
			if dup[col] {
				add("tableKeys[%s]: column %q listed twice", t, col)
			}
			dup[col] = true
		}
	}
	switch {
	case c.PublicationName == "":
		add("publicationName: missing")
	case !pubNameRE.MatchString(c.PublicationName) || len(c.PublicationName) > 63:
		add("publicationName: %q: use at most 63 lower-case letters, digits and '_', not starting with a digit", c.PublicationName)
	}
	switch {
	case c.SlotName == "":
		add("slotName: missing")
	case !slotNameRE.MatchString(c.SlotName) || len(c.SlotName) > maxSlotName:
		add("slotName: %q: use at most %d lower-case letters, digits and '_'", c.SlotName, maxSlotName)
	}
	switch c.Snapshot {
	case SnapshotInitial, SnapshotNever:
	default:
		add("snapshot: %q is not initial or never", c.Snapshot)
	}
	if c.SnapshotChunkRows < 1 {
		add("snapshotChunkRows: %d is below 1", c.SnapshotChunkRows)
	}
	if c.BatchMaxMessages < 1 {
		add("batchMaxMessages: %d is below 1", c.BatchMaxMessages)
	}
	if c.MaxInFlight < c.BatchMaxMessages {
		add("maxInFlight: %d is below batchMaxMessages (%d)", c.MaxInFlight, c.BatchMaxMessages)
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"heartbeatInterval", c.HeartbeatInterval},
		{"statusInterval", c.StatusInterval},
		{"batchMaxDelay", c.BatchMaxDelay},
		{"timeouts.connect", c.Timeouts.Connect},
		{"timeouts.query", c.Timeouts.Query},
		{"timeouts.snapshot", c.Timeouts.Snapshot},
		{"timeouts.snapshotStep", c.Timeouts.SnapshotStep},
		{"timeouts.stop", c.Timeouts.Stop},
		{"timeouts.idle", c.Timeouts.Idle},
		{"backoff.initial", c.Backoff.Initial},
		{"backoff.max", c.Backoff.Max},
	}
	for _, p := range positive {
		if p.d < 0 {
			add("%s: %s is negative", p.name, p.d)
		}
	}
	if c.Timeouts.Idle > 0 && c.Timeouts.Idle <= c.StatusInterval {
		add("timeouts.idle: %s must be longer than statusInterval (%s), which asks the server for keepalives", c.Timeouts.Idle, c.StatusInterval)
	}
	if c.Backoff.MaxElapsed < 0 {
		add("backoff.maxElapsed: %s is negative (0 retries forever)", c.Backoff.MaxElapsed)
	}
	if c.Backoff.Max < c.Backoff.Initial {
		add("backoff.max: %s is below backoff.initial %s", c.Backoff.Max, c.Backoff.Initial)
	}
	if c.Timeouts.SnapshotStep > c.Timeouts.Snapshot {
		add("timeouts.snapshotStep: %s is above timeouts.snapshot %s", c.Timeouts.SnapshotStep, c.Timeouts.Snapshot)
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrConfig, strings.Join(probs, "; "))
}

// redactParseError keeps pgconn's parse errors from echoing a password: it
// reports only the error's category.
func redactParseError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "password") || strings.Contains(msg, "@") || strings.Contains(msg, "://") {
		return "invalid connection string"
	}
	return msg
}

// tableName is a schema-qualified table name.
type tableName struct {
	Schema, Name string
}

func (t tableName) String() string { return t.Schema + "." + t.Name }

// Label is the element label: the table name, schema-qualified outside
// public.
func (t tableName) Label() string {
	if t.Schema == "public" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// parseTableName reads "table" or "schema.table".
func parseTableName(s string) (tableName, error) {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if !identRE.MatchString(schema) || !identRE.MatchString(name) {
		return tableName{}, fmt.Errorf("%q is not \"table\" or \"schema.table\"", s)
	}
	return tableName{Schema: schema, Name: name}, nil
}
