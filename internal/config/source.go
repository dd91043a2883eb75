package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/tributary/tributary/internal/logging"
)

// KindPostgres is the sources[].kind (and reactions[].kind) for Postgres.
const KindPostgres = "postgres"

// Snapshot modes of a postgres source.
const (
	SnapshotInitial = "initial"
	SnapshotNever   = "never"
)

// Source is one entry of sources. Kind selects the struct that holds the
// remaining keys (Spec); keys not known to that kind are errors.
type Source struct {
	// Kind of source: "postgres" (captured by source-pg) or "external"
	// (another producer publishes its changes; nothing captures it here).
	// Required.
	Kind string `yaml:"kind"`
	// ID names the source in subjects and in queries' sources[].sourceId.
	// Required, unique among sources, a NATS token (letters, digits, "-", "_").
	ID string `yaml:"id"`
	// Spec holds the kind's keys: *PostgresSource for "postgres",
	// *ExternalSource for "external". Nil when the
	// kind is missing or unknown (which Validate reports).
	Spec SourceSpec `yaml:"-"`
}

// Postgres returns the postgres keys, or nil when the source is of another
// kind.
func (s *Source) Postgres() *PostgresSource {
	p, _ := s.Spec.(*PostgresSource)
	return p
}

// KindExternal is the sources[].kind of a source whose changes another
// producer publishes on the changes stream (docs/formats.md, "Other
// producers"). It declares the source id so that queries may name it;
// no Tributary binary captures anything for it.
const KindExternal = "external"

// ExternalSource holds the keys of a source of kind external.
type ExternalSource struct {
	// Description says who produces the source's changes (free text,
	// optional).
	Description string `yaml:"description"`
}

// SourceKind implements SourceSpec.
func (*ExternalSource) SourceKind() string { return KindExternal }

func (*ExternalSource) applyDefaults(string) {}

func (*ExternalSource) validate(*problems, string, *Source) {}

// External returns the external keys, or nil when the source is of another
// kind.
func (s *Source) External() *ExternalSource {
	e, _ := s.Spec.(*ExternalSource)
	return e
}

// PostgresSource holds the keys of a source of kind postgres. The server is
// given either as ConnectionString or by Host, Port, Database, User,
// Password and SSLMode, never both.
type PostgresSource struct {
	// ConnectionString is a libpq URL (postgres://...) or key=value string.
	// Excludes the discrete keys below.
	ConnectionString string `yaml:"connectionString" secret:"url"`
	// Host is the server's host name, address or Unix socket directory
	// (starting with "/"). Default 127.0.0.1.
	Host string `yaml:"host"`
	// Port is the server's port, 1-65535. Default 5432.
	Port int `yaml:"port"`
	// Database to replicate from. Required without connectionString.
	Database string `yaml:"database"`
	// User to connect as; it needs the REPLICATION attribute. Default: the
	// driver's (the OS user).
	User string `yaml:"user"`
	// Password of User; usually ${PGPASSWORD}.
	Password string `yaml:"password" secret:"true"`
	// SSLMode is disable, allow, prefer (default), require, verify-ca or
	// verify-full.
	SSLMode string `yaml:"sslMode"`
	// Tables to capture, "table" (schema public) or "schema.table".
	// Required, non-empty, no duplicates.
	Tables []string `yaml:"tables"`
	// PublicationName is the publication to read. Default "tributary_<id>"
	// with "-" replaced by "_", lower-cased; letters, digits and "_", at most
	// 63 characters.
	PublicationName string `yaml:"publicationName"`
	// SlotName is the logical replication slot. Default as PublicationName;
	// must match [a-z0-9_]{1,63}.
	SlotName string `yaml:"slotName"`
	// Create makes the source create the publication and the slot when they
	// are missing. Default false: they must exist.
	Create bool `yaml:"create"`
	// Snapshot is "initial" (default: load current rows before streaming) or
	// "never".
	Snapshot string `yaml:"snapshot"`
	// TableKeys sets the identity columns of tables without a usable primary
	// key. Each table must be listed in Tables.
	TableKeys []TableKey `yaml:"tableKeys"`
	// HeartbeatInterval is how often a heartbeat is written to the WAL so an
	// idle publication does not pin WAL. Default 30s.
	HeartbeatInterval Duration `yaml:"heartbeatInterval"`
	// StatusInterval is the period of standby status updates. Default 10s.
	StatusInterval Duration `yaml:"statusInterval"`
	// DropSlotOnStop drops the slot when the source stops. Default false
	// (the slot is kept so the source resumes where it stopped).
	DropSlotOnStop bool `yaml:"dropSlotOnStop"`
	// MaxInFlight bounds changes published but not yet acknowledged by
	// JetStream. Default 4 × batch.maxMessages and at least 10000; at least
	// batch.maxMessages.
	MaxInFlight int `yaml:"maxInFlight"`
	// Batch groups changes into atomic JetStream batches.
	Batch BatchConfig `yaml:"batch"`
	// Timeouts of the source's network steps.
	Timeouts PostgresTimeouts `yaml:"timeouts"`
	// Backoff between reconnect attempts.
	Backoff BackoffConfig `yaml:"backoff"`
}

// SourceKind implements SourceSpec.
func (*PostgresSource) SourceKind() string { return KindPostgres }

// TableKey is one sources[].tableKeys entry.
type TableKey struct {
	// Table is one of the source's tables. Required.
	Table string `yaml:"table"`
	// KeyColumns identify a row of Table, in order. Required, non-empty,
	// no duplicates.
	KeyColumns []string `yaml:"keyColumns"`
}

// BatchConfig is sources[].batch.
type BatchConfig struct {
	// MaxMessages per atomic batch: at least 1, at most nats.maxBatch (the
	// default).
	MaxMessages int `yaml:"maxMessages"`
	// MaxDelay is how long a partial batch may wait for more changes.
	// Default 10ms.
	MaxDelay Duration `yaml:"maxDelay"`
}

// PostgresTimeouts is sources[].timeouts; all positive.
type PostgresTimeouts struct {
	// Connect bounds establishing a connection. Default 10s.
	Connect Duration `yaml:"connect"`
	// Query bounds one ordinary statement. Default 30s.
	Query Duration `yaml:"query"`
	// Snapshot bounds the whole initial snapshot. Default 30m.
	Snapshot Duration `yaml:"snapshot"`
	// SnapshotStep bounds one step (one table or chunk) of it. Default 5m.
	SnapshotStep Duration `yaml:"snapshotStep"`
	// Stop bounds a graceful stop (flush, final status, close). Default 30s.
	Stop Duration `yaml:"stop"`
	// Idle is how long the replication connection may stay silent (the
	// source asks for keepalives) before it is taken for dead, e.g. after a
	// silent network cut, and replaced. Default 12 × statusInterval, at
	// least 60s.
	Idle Duration `yaml:"idle"`
}

// BackoffConfig is capped exponential backoff with jitter.
type BackoffConfig struct {
	// Initial wait. Default 500ms.
	Initial Duration `yaml:"initial"`
	// Max caps the wait; at least Initial. Default 30s.
	Max Duration `yaml:"max"`
	// MaxElapsed gives up after this long; 0 (default) retries forever.
	MaxElapsed Duration `yaml:"maxElapsed"`
}

// ConnString returns the connection string for pgx: ConnectionString as
// given, or a postgres:// URL built from the discrete keys. It contains the
// password; log Redacted() instead.
func (p *PostgresSource) ConnString() string {
	if p.ConnectionString != "" {
		return p.ConnectionString
	}
	u := url.URL{Scheme: "postgres"}
	if p.User != "" {
		if p.Password != "" {
			u.User = url.UserPassword(p.User, p.Password)
		} else {
			u.User = url.User(p.User)
		}
	}
	q := url.Values{}
	port := ""
	if p.Port != 0 {
		port = strconv.Itoa(p.Port)
	}
	switch {
	case strings.HasPrefix(p.Host, "/"): // Unix socket directory
		q.Set("host", p.Host)
		if port != "" {
			q.Set("port", port)
		}
	case port != "":
		u.Host = net.JoinHostPort(p.Host, port)
	default:
		u.Host = p.Host
	}
	if p.Database != "" {
		u.Path = "/" + p.Database
	}
	if p.SSLMode != "" {
		q.Set("sslmode", p.SSLMode)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ReplicationConnString returns ConnString with replication=database added,
// for the logical replication connection.
func (p *PostgresSource) ReplicationConnString() string {
	return WithConnParam(p.ConnString(), "replication", "database")
}

// Redacted returns ConnString with the password hidden, for logs.
func (p *PostgresSource) Redacted() string { return logging.RedactURL(p.ConnString()) }

// WithConnParam returns the libpq connection string cs (URL or key=value)
// with the parameter key set to value, replacing an earlier setting.
func WithConnParam(cs, key, value string) string {
	if isURLConnString(cs) {
		u, err := url.Parse(cs)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	// key=value form: the last setting of a key wins in libpq and pgx.
	if strings.TrimSpace(cs) == "" {
		return key + "=" + quoteConnValue(value)
	}
	return cs + " " + key + "=" + quoteConnValue(value)
}

func isURLConnString(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// checkConnString reports what is wrong with a libpq connection string
// without ever quoting it (it may hold a password).
func checkConnString(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "is empty"
	}
	if strings.Contains(s, "://") {
		if !isURLConnString(s) {
			return "must be a postgres:// or postgresql:// URL or a key=value string"
		}
		if _, err := url.Parse(s); err != nil {
			return "is not a valid URL"
		}
		return ""
	}
	i := 0
	for i < len(s) {
		for i < len(s) && isConnSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isConnSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isConnSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' || key == "" {
			return "is not a valid key=value string (each setting must be key=value)"
		}
		i++
		for i < len(s) && isConnSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					closed = true
					i++
					break
				}
				i++
			}
			if !closed {
				return "is not a valid key=value string (unterminated quoted value of " + strconv.Quote(key) + ")"
			}
		} else {
			for i < len(s) && !isConnSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
	}
	return ""
}

func isConnSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
