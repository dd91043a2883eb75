package config

import (
	"encoding/json"
	"fmt"
	"text/template"

	"github.com/tributary/tributary/internal/logging"
)

// Reaction kinds.
const (
	ReactionLog      = "log"
	ReactionHTTP     = "http"
	ReactionPostgres = KindPostgres
	ReactionSSE      = "sse"
	ReactionNATS     = "nats"
)

// DefaultOffsetTable is the postgres reaction's offset table by default.
const DefaultOffsetTable = "tributary_reaction_offsets"

// Gap policies of a reaction (reactions[].onGap): what it does when a
// query's next result is not the one after the last it applied.
const (
	// OnGapStop keeps the result unacknowledged and retries it in place
	// until an operator acts (the default).
	OnGapStop = "stop"
	// OnGapResync resynchronises from the query's reset message when one
	// exists; otherwise it reports that it cannot and applies the result.
	OnGapResync = "resync"
)

// NATS reaction modes.
const (
	NATSModeJetStream = "jetstream"
	NATSModeCore      = "core"
)

// Reaction is one entry of reactions. Kind selects the struct that holds the
// remaining keys (Spec); keys not known to that kind are errors.
type Reaction struct {
	// Kind is log, http, postgres, nats or sse. Required.
	Kind string `yaml:"kind"`
	// ID names the reaction (its durable consumer). Required, unique among
	// reactions, a NATS token.
	ID string `yaml:"id"`
	// Queries whose results the reaction consumes. Required, non-empty, no
	// duplicates; each must name a query when the file defines queries.
	Queries []string `yaml:"queries"`
	// OnGap is the policy when a query's results have a gap in seq:
	// OnGapStop (default) or OnGapResync (docs/reactions.md).
	OnGap string `yaml:"onGap"`
	// Spec holds the kind's keys: *LogReaction, *HTTPReaction,
	// *PostgresReaction, *NATSReaction or *SSEReaction. Nil when the kind is missing or
	// unknown (which Validate reports).
	Spec ReactionSpec `yaml:"-"`
}

// LogReaction is a reaction of kind log: it writes every result to the log.
type LogReaction struct {
	// Format is "json" (default) or "text": the line(s) of a result
	// message when Templates is empty.
	Format string `yaml:"format"`
	// Templates, when any is set, replace Format: one line per row change
	// of a kind that has a template (a Go template over the row change,
	// as http bodies); row changes of the other kinds write nothing.
	Templates LogTemplates `yaml:"templates"`
	// File, when set, is the file the lines are appended to (created if
	// missing) instead of standard output.
	File string `yaml:"file"`
	// Sync is "always" (default: the file is fsynced after each result,
	// before the result is acknowledged) or "none" (left to the OS: a
	// machine crash may lose acknowledged lines). Only with File.
	Sync string `yaml:"sync"`
}

// LogTemplates are the log reaction's line templates per change kind.
type LogTemplates struct {
	Added   string `yaml:"added"`
	Updated string `yaml:"updated"`
	Deleted string `yaml:"deleted"`
}

// Log sync policies.
const (
	LogSyncAlways = "always"
	LogSyncNone   = "none"
)

// ReactionKind implements ReactionSpec.
func (*LogReaction) ReactionKind() string { return ReactionLog }

// HTTPReaction is a reaction of kind http: it calls a webhook per result.
type HTTPReaction struct {
	// BaseURL is an absolute http:// or https:// URL that routes' paths are
	// appended to. Required.
	BaseURL string `yaml:"baseUrl" secret:"url"`
	// Timeout of one HTTP call (connect, send, read the response). Default
	// 10s.
	Timeout Duration `yaml:"timeout"`
	// Headers sent with every call. Values are secrets (redacted in String);
	// use ${VAR} for tokens.
	Headers map[string]string `yaml:"headers" secret:"values"`
	// PerRow makes a query without a route send one request per row change
	// (a Debezium-like body) instead of one per result message.
	PerRow bool `yaml:"perRow"`
	// TLS verifies the server with a CA and authenticates with a client
	// certificate. Optional: system roots, no client certificate.
	TLS *TLSConfig `yaml:"tls"`
	// Routes maps a query id (one of Queries) to the calls made for its
	// added, updated and deleted rows, one call per row change. A routed
	// query's change kind without a call makes no request. Optional.
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
	// Headers added to this call (over the reaction's headers). Values are
	// secrets.
	Headers map[string]string `yaml:"headers" secret:"values"`
	// Body is a Go text/template over the row change: .before, .after
	// (nil for an added or deleted row respectively), .op, .query, .seq;
	// the function json renders a value as JSON. Empty: the Debezium-like
	// JSON of the row change.
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
	// at least one is required. @name is bound to the row's column name (an
	// updated row's new values; @before_name to its old ones).
	Added   string `yaml:"added"`
	Updated string `yaml:"updated"`
	Deleted string `yaml:"deleted"`
	// OffsetTable holds the last applied seq per (reaction, query), updated
	// in the transaction of the statements; created when missing. Default
	// tributary_reaction_offsets.
	OffsetTable string `yaml:"offsetTable"`
	// Timeout bounds one result's transaction. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// Retry of failed statements.
	Retry RetryConfig `yaml:"retry"`
}

// ReactionKind implements ReactionSpec.
func (*PostgresReaction) ReactionKind() string { return ReactionPostgres }

// Redacted returns Connection with the password hidden, for logs.
func (p *PostgresReaction) Redacted() string { return logging.RedactURL(p.Connection) }

// NATSReaction is a reaction of kind nats: it republishes results to a
// subject of the reactor's NATS connection.
type NATSReaction struct {
	// Subject is a Go text/template naming the subject of each message,
	// over .query (the query id as a subject token), .seq and .op (empty
	// per result message). Required.
	Subject string `yaml:"subject"`
	// Mode is jetstream (default: a stream must capture the subject; each
	// message carries a Nats-Msg-Id for deduplication and waits for its
	// PubAck) or core (fire and forget after a flush).
	Mode string `yaml:"mode"`
	// PerRow publishes one message per row change (a Debezium-like body)
	// instead of one per result message.
	PerRow bool `yaml:"perRow"`
	// Timeout of one publish. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

// ReactionKind implements ReactionSpec.
func (*NATSReaction) ReactionKind() string { return ReactionNATS }

// SSEReaction is a reaction of kind sse: it serves results as
// Server-Sent Events.
type SSEReaction struct {
	// Listen is the host:port to serve on. Required.
	Listen string `yaml:"listen"`
	// Path of the event streams; starts with "/". Default "/events". Query
	// q's stream is <path>/q; the live page is served at "/".
	Path string `yaml:"path"`
}

// ReactionKind implements ReactionSpec.
func (*SSEReaction) ReactionKind() string { return ReactionSSE }

// TemplateFuncs are the functions of reaction templates (http bodies, nats
// subjects): json renders a value as JSON.
var TemplateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// ParseRowTemplate parses a reaction template (an http body, a nats
// subject) with TemplateFuncs; a key missing from the data is an error at
// execution, not "<no value>".
func ParseRowTemplate(text string) (*template.Template, error) {
	t, err := template.New("").Funcs(TemplateFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("not a valid Go template: %w", err)
	}
	return t, nil
}
