package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// Config is the whole file. Each binary uses its own part: source-pg the
// sources, query-engine the queries, reactor the reactions; all use nats.
type Config struct {
	// NATS says how to reach JetStream. Every binary uses it.
	NATS NATSConfig `yaml:"nats"`
	// Sources are the change sources (source-pg runs the postgres ones).
	Sources []Source `yaml:"sources"`
	// Queries are the continuous queries (query-engine).
	Queries []Query `yaml:"queries"`
	// Reactions consume query results (reactor).
	Reactions []Reaction `yaml:"reactions"`
}

// NATS URL and sync values.
const (
	// EmbeddedURL as nats.url runs an in-process JetStream server.
	EmbeddedURL = "embedded"
	// SyncAlways fsyncs the embedded store on every write.
	SyncAlways = "always"
	// SyncInterval fsyncs the embedded store every syncInterval.
	SyncInterval = "interval"
)

// NATSConfig is the nats section.
type NATSConfig struct {
	// URL is "embedded" (default: an in-process JetStream server for a single
	// machine) or one or more comma-separated nats:// or tls:// server URLs.
	URL string `yaml:"url" secret:"url"`
	// StoreDir is the embedded server's JetStream directory. Default
	// "./data/nats"; used only with the embedded server.
	StoreDir string `yaml:"storeDir"`
	// Listen, with the embedded server, is an address (host:port) where it
	// also accepts connections from other processes, so that the other
	// binaries on this machine can use it (nats://host:port). Default: empty,
	// in-process only.
	Listen string `yaml:"listen"`
	// Sync is the embedded store's fsync policy: "always" (default: every
	// write is on disk before it is acknowledged) or "interval". Embedded
	// server only; a remote cluster has its own setting.
	Sync string `yaml:"sync"`
	// SyncInterval is the fsync period with sync: interval. Default 2m; only
	// allowed with sync: interval.
	SyncInterval Duration `yaml:"syncInterval"`
	// Credentials is a NATS .creds file (JWT + nkey seed). Remote servers only.
	Credentials string `yaml:"credentials"`
	// NKey is an nkey seed file. Remote servers only.
	NKey string `yaml:"nkey"`
	// User and Password authenticate with a user name; both or neither.
	User     string `yaml:"user"`
	Password string `yaml:"password" secret:"true"`
	// Token authenticates with a token.
	Token string `yaml:"token" secret:"true"`
	// TLS configures TLS to remote servers (nil: the URL scheme decides).
	TLS *TLSConfig `yaml:"tls"`
	// SubjectPrefix starts every subject, stream and bucket name. Default
	// "tributary"; a NATS token (letters, digits, "-", "_").
	SubjectPrefix string `yaml:"subjectPrefix"`
	// Replicas of every stream and bucket: 1 (default), 3 or 5; must be 1 for
	// the embedded server.
	Replicas int `yaml:"replicas"`
	// LeaseTTL is how long a component's single-active lease lives without
	// renewal: after a crash, a standby instance takes over within it.
	// Default 10s, at least 1s. It is the lease bucket's TTL, fixed when the
	// bucket is created: changing it later is reported as a conflict.
	LeaseTTL Duration `yaml:"leaseTTL"`
	// Name is the client connection name shown by the server. Default: the
	// binary's choice.
	Name string `yaml:"name"`
	// ConnectTimeout bounds one connection attempt. Default 10s.
	ConnectTimeout Duration `yaml:"connectTimeout"`
	// ReconnectWait is the first reconnect backoff. Default 250ms.
	ReconnectWait Duration `yaml:"reconnectWait"`
	// MaxReconnectWait caps the reconnect backoff. Default 10s.
	MaxReconnectWait Duration `yaml:"maxReconnectWait"`
	// MaxBatch is the largest atomic batch, in messages, that the servers
	// accept: the embedded server is started with it, and with remote
	// servers it must not exceed their JetStream max_batch_size. Default
	// 5000 with the embedded server, 1000 (nats-server's default) with
	// remote ones; 1..100000. See EffectiveMaxBatch.
	MaxBatch int `yaml:"maxBatch"`
	// Retention bounds the history of the changes, results and dead-letter
	// streams. Every limit defaults to 0: unlimited.
	Retention RetentionConfig `yaml:"retention"`
}

// RetentionConfig is nats.retention: how much history each stream keeps.
// Changing a limit later updates the existing stream at the next start.
type RetentionConfig struct {
	Changes     ChangesRetention `yaml:"changes"`
	Results     StreamRetention  `yaml:"results"`
	DeadLetters StreamRetention  `yaml:"deadLetters"`
}

// StreamRetention bounds one stream's history.
type StreamRetention struct {
	// MaxAge removes messages older than this, read or not. 0 (default):
	// keep forever; otherwise at least 1m.
	MaxAge Duration `yaml:"maxAge"`
	// MaxBytes caps the stream's size. When the stream is full it refuses
	// new messages: writers pause (Degraded) and resume once MaxAge expiry
	// or a purge frees space; nothing stored is dropped to make room.
	// 0 (default): only the server's storage limit; otherwise at least 1MiB.
	MaxBytes ByteSize `yaml:"maxBytes"`
}

// ChangesRetention bounds the changes stream's history.
type ChangesRetention struct {
	MaxAge   Duration `yaml:"maxAge"`
	MaxBytes ByteSize `yaml:"maxBytes"`
	// MaxMsgsPerSubject keeps the newest N versions of every row (a subject
	// is one row). 0 (default): every version.
	MaxMsgsPerSubject int `yaml:"maxMsgsPerSubject"`
}

// StreamsOptions returns the topology options this section declares.
func (n *NATSConfig) StreamsOptions() streams.Options {
	r := n.Retention
	return streams.Options{
		Replicas: n.Replicas,
		LeaseTTL: n.LeaseTTL.D(),
		Changes: streams.Limits{
			MaxAge:            r.Changes.MaxAge.D(),
			MaxBytes:          int64(r.Changes.MaxBytes),
			MaxMsgsPerSubject: int64(r.Changes.MaxMsgsPerSubject),
		},
		Results:     streams.Limits{MaxAge: r.Results.MaxAge.D(), MaxBytes: int64(r.Results.MaxBytes)},
		DeadLetters: streams.Limits{MaxAge: r.DeadLetters.MaxAge.D(), MaxBytes: int64(r.DeadLetters.MaxBytes)},
	}
}

// EffectiveMaxBatch is MaxBatch, or its default for the URL when unset. It
// is resolved when used, not by ApplyDefaults, because a binary's --nats
// flag may replace the URL after the file was read.
func (n *NATSConfig) EffectiveMaxBatch() int {
	switch {
	case n.MaxBatch != 0:
		return n.MaxBatch
	case n.Embedded():
		return bus.DefaultEmbeddedMaxBatch
	default:
		return bus.DefaultMaxBatch
	}
}

// TLSConfig is nats.tls. All paths are PEM files.
type TLSConfig struct {
	// CA verifies the servers' certificates (default: system roots).
	CA string `yaml:"ca"`
	// Cert and Key are the client certificate and its key; both or neither.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Embedded reports whether the in-process server is to be used.
func (n *NATSConfig) Embedded() bool { return strings.TrimSpace(n.URL) == EmbeddedURL }

// URLs returns the server URLs of a remote setup (nil when embedded), trimmed.
func (n *NATSConfig) URLs() []string {
	if n.Embedded() {
		return nil
	}
	var out []string
	for _, u := range strings.Split(n.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Load reads the YAML file at path and returns the expanded, defaulted and
// validated config. Variables are looked up with os.LookupEnv. A bad config
// gives a *ValidationError (errors.Is(err, ErrInvalid)) whose File is path; an
// unreadable file gives the os error wrapped.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(data, os.LookupEnv)
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.File = path
	}
	return cfg, err
}

// String renders the config as YAML with every secret replaced by
// "REDACTED" (passwords, tokens, HTTP header values) and connection strings
// redacted; safe to log.
func (c *Config) String() string {
	return redactedYAML(c)
}
