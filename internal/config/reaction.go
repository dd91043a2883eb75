package config

import (
	"github.com/tributary/tributary/internal/logging"
)

// Reaction kinds.
const (
	ReactionLog      = "log"
	ReactionHTTP     = "http"
	ReactionPostgres = KindPostgres
	ReactionSSE      = "sse"
)

// Reaction is one entry of reactions. Kind selects the struct that holds the
// remaining keys (Spec); keys not known to that kind are errors.
type Reaction struct {
	// Kind is log, http, postgres or sse. Required.
	Kind string `yaml:"kind"`
	// ID names the reaction (its durable consumer). Required, unique among
	// reactions, a NATS token.
	ID string `yaml:"id"`
	// Queries whose results the reaction consumes. Required, non-empty, no
	// duplicates; each must name a query when the file defines queries.
	Queries []string `yaml:"queries"`
	// Spec holds the kind's keys: *LogReaction, *HTTPReaction,
	// *PostgresReaction or *SSEReaction. Nil when the kind is missing or
	// unknown (which Validate reports).
	Spec ReactionSpec `yaml:"-"`
}

// LogReaction is a reaction of kind log: it writes every result to the log.
type LogReaction struct {
	// Format is "json" (default) or "text".
	Format string `yaml:"format"`
}

// ReactionKind implements ReactionSpec.
func (*LogReaction) ReactionKind() string { return ReactionLog }

// HTTPReaction is a reaction of kind http: it calls a webhook per result.
type HTTPReaction struct {
	// BaseURL is an absolute http:// or https:// URL that routes' paths are
	// appended to. Required.
	BaseURL string `yaml:"baseUrl" secret:"url"`
	// Timeout of one HTTP call. Default 10s.
	Timeout Duration `yaml:"timeout"`
	// Headers sent with every call. Values are secrets (redacted in String).
	Headers map[string]string `yaml:"headers" secret:"values"`
	// Routes maps a query id (one of Queries) to the calls made for its
	// added, updated and deleted rows. Optional; the http reaction documents
	// what it does for a query or diff kind without a call.
	Routes map[string]HTTPRoute `yaml:"routes"`
	// Retry of failed calls.
	Retry RetryConfig `yaml:"retry"`
}

// ReactionKind implements ReactionSpec.
func (*HTTPReaction) ReactionKind() string { return ReactionHTTP }

// HTTPRoute is reactions[].routes.<queryId>; at least one call is set.
type HTTPRoute struct {
	Added   *HTTPCall `yaml:"added"`
	Updated *HTTPCall `yaml:"updated"`
	Deleted *HTTPCall `yaml:"deleted"`
}

// HTTPCall is one webhook call.
type HTTPCall struct {
	// Path appended to baseUrl; starts with "/". Required.
	Path string `yaml:"path"`
	// Method is GET, POST (default), PUT, PATCH or DELETE.
	Method string `yaml:"method"`
	// Body is a Go text/template over the result row ({{.after.x}});
	// the http reaction parses it. Empty: the row as JSON.
	Body string `yaml:"body"`
}

// RetryConfig is the redelivery policy of a reaction's failed effects.
type RetryConfig struct {
	// Initial redelivery delay. Default 200ms.
	Initial Duration `yaml:"initial"`
	// Max caps the delay; at least Initial. Default 30s.
	Max Duration `yaml:"max"`
	// MaxDeliver is the number of attempts before the result goes to the
	// dead-letter stream. Default 20; at least 1.
	MaxDeliver int `yaml:"maxDeliver"`
}

// PostgresReaction is a reaction of kind postgres: it runs SQL per result
// row, with the row's columns as @name arguments.
type PostgresReaction struct {
	// Connection is a libpq URL or key=value string. Required.
	Connection string `yaml:"connection" secret:"url"`
	// Added, Updated and Deleted are the statements for each kind of diff;
	// at least one is required.
	Added   string `yaml:"added"`
	Updated string `yaml:"updated"`
	Deleted string `yaml:"deleted"`
	// Retry of failed statements.
	Retry RetryConfig `yaml:"retry"`
}

// ReactionKind implements ReactionSpec.
func (*PostgresReaction) ReactionKind() string { return ReactionPostgres }

// Redacted returns Connection with the password hidden, for logs.
func (p *PostgresReaction) Redacted() string { return logging.RedactURL(p.Connection) }

// SSEReaction is a reaction of kind sse: it serves results as
// Server-Sent Events.
type SSEReaction struct {
	// Listen is the host:port to serve on. Required.
	Listen string `yaml:"listen"`
	// Path of the event stream; starts with "/". Default "/events".
	Path string `yaml:"path"`
}

// ReactionKind implements ReactionSpec.
func (*SSEReaction) ReactionKind() string { return ReactionSSE }
