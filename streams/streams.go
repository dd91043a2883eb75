package streams

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ErrInvalidOptions is wrapped by Default's errors: a prefix or an option
// it cannot build a topology from.
var ErrInvalidOptions = errors.New("invalid topology options")

// Limits bound the history a stream keeps. Zero means unlimited.
type Limits struct {
	// MaxAge removes every message older than this, read or not (0: keep
	// forever). A consumer that falls further behind, or a query rebuilt
	// from history, misses what expired.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size (0: only the server's own storage
	// limit). A full stream refuses new messages (discard new): writers
	// pause and re-send until MaxAge expiry or an operator's purge frees
	// space. Nothing stored is ever removed to make room.
	MaxBytes int64
	// MaxMsgsPerSubject keeps only the newest N messages of every subject
	// (0: all). On the changes stream a subject is one row, so this is
	// the history kept per row.
	MaxMsgsPerSubject int64
}

// Stream declares one JetStream stream. Every stream uses limits retention:
// messages leave it only through its Limits, never because they were read.
type Stream struct {
	Name     string
	Subjects []string
	Limits
	// Duplicates is the deduplication window for Nats-Msg-Id.
	Duplicates time.Duration
	// AllowAtomicPublish lets producers publish all-or-nothing batches.
	AllowAtomicPublish bool
	// AllowDirect enables direct gets (last message per subject).
	AllowDirect bool
	Replicas    int
	Description string
}

// Bucket declares one key-value bucket.
type Bucket struct {
	Name string
	// TTL expires every key this long after its last write (0: never). The
	// lease bucket relies on it: each renewal restarts the TTL.
	TTL     time.Duration
	History int
	// LimitMarkerTTL enables per-key TTLs and delete markers (server 2.11+).
	LimitMarkerTTL time.Duration
	Replicas       int
	Description    string
}

// ConsumerDefaults are applied to durable consumers unless a component
// overrides them (see bus.ConsumerOptions for what each means).
type ConsumerDefaults struct {
	AckWait time.Duration
	// MaxDeliver is enforced by the client (an unordered consumer
	// dead-letters a message whose MaxDeliver-th delivery fails); the
	// server's consumers never drop a message on their own.
	MaxDeliver    int
	MaxAckPending int
	// BackOff are the delays before a failed message is tried again: by
	// delivery count for unordered consumers, the first and last bounding
	// an exponential backoff for ordered ones.
	BackOff []time.Duration
}

// Topology is the whole bus layout for one subject prefix.
type Topology struct {
	Prefix      string
	Changes     Stream
	Results     Stream
	DeadLetters Stream
	Lifecycle   Bucket
	Leases      Bucket
	Consumers   ConsumerDefaults
}

// Options tune the topology. The zero value is the single-machine default.
type Options struct {
	// Replicas for every stream and bucket: 1 (default) or 3/5 on a cluster.
	Replicas int
	// Changes, Results and DeadLetters bound the history of the three
	// streams (zero: unlimited). Changes.MaxMsgsPerSubject 1 makes the
	// changes stream the tables' latest state, but a consumer that lags
	// behind then sees only the latest version of each row.
	Changes     Limits
	Results     Limits
	DeadLetters Limits
	// LeaseTTL is how long a lease lives without renewal. Default 10s.
	LeaseTTL time.Duration
}

func (l Limits) validate(stream string) []error {
	var errs []error
	if l.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%s stream: max age %s is negative (0 keeps messages forever)", stream, l.MaxAge))
	}
	if l.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%s stream: max bytes %d is negative (0 is unlimited)", stream, l.MaxBytes))
	}
	if l.MaxMsgsPerSubject < 0 {
		errs = append(errs, fmt.Errorf("%s stream: max messages per subject %d is negative (0 keeps all)", stream, l.MaxMsgsPerSubject))
	}
	return errs
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Default returns the topology for a subject prefix (e.g. "tributary").
// Every problem with the prefix or o is reported at once, wrapping
// ErrInvalidOptions.
func Default(prefix string, o Options) (Topology, error) {
	var errs []error
	if !prefixRE.MatchString(prefix) {
		errs = append(errs, fmt.Errorf("subject prefix %q: use letters, digits, '-' and '_' only", prefix))
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas != 1 && o.Replicas != 3 && o.Replicas != 5 {
		errs = append(errs, fmt.Errorf("replicas %d: use 1, 3 or 5", o.Replicas))
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("lease TTL %s: at least 1s", o.LeaseTTL))
	}
	errs = append(errs, o.Changes.validate("changes")...)
	errs = append(errs, o.Results.validate("results")...)
	errs = append(errs, o.DeadLetters.validate("dead-letter")...)
	if len(errs) > 0 {
		return Topology{}, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	up := strings.ToUpper(strings.ReplaceAll(prefix, "-", "_"))
	return Topology{
		Prefix: prefix,
		Changes: Stream{
			Name:               up + "_CHANGES",
			Subjects:           []string{prefix + ".changes.>"},
			Limits:             o.Changes,
			Duplicates:         2 * time.Minute,
			AllowAtomicPublish: true,
			AllowDirect:        true,
			Replicas:           o.Replicas,
			Description:        "Element changes from sources and other producers: <prefix>.changes.<source>.<label>.<key>",
		},
		Results: Stream{
			Name:               up + "_RESULTS",
			Subjects:           []string{prefix + ".results.>"},
			Limits:             o.Results,
			Duplicates:         2 * time.Minute,
			AllowAtomicPublish: true,
			AllowDirect:        true,
			Replicas:           o.Replicas,
			Description:        "Continuous query result diffs: <prefix>.results.<query>",
		},
		DeadLetters: Stream{
			Name:        up + "_DLQ",
			Subjects:    []string{prefix + ".dlq.>"},
			Limits:      o.DeadLetters,
			Duplicates:  2 * time.Minute,
			AllowDirect: true,
			Replicas:    o.Replicas,
			Description: "Messages a consumer gave up on, with the reason: <prefix>.dlq.<stream>.<consumer>",
		},
		Lifecycle: Bucket{
			Name:        strings.ReplaceAll(prefix, "-", "_") + "_lifecycle",
			History:     16,
			Replicas:    o.Replicas,
			Description: "Component states, key <kind>.<id>; every revision is a lifecycle event",
		},
		Leases: Bucket{
			Name:           strings.ReplaceAll(prefix, "-", "_") + "_leases",
			TTL:            o.LeaseTTL,
			History:        1,
			LimitMarkerTTL: o.LeaseTTL,
			Replicas:       o.Replicas,
			Description:    "Single-active leases, key <kind>.<id>; the revision is the fencing token",
		},
		Consumers: ConsumerDefaults{
			AckWait:       30 * time.Second,
			MaxDeliver:    20,
			MaxAckPending: 1000,
			BackOff: []time.Duration{
				time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
				30 * time.Second, time.Minute,
			},
		},
	}, nil
}

// ChangeSubject is the subject of one element change. Tokens are escaped by
// the caller through bus.Token (this package does not know the escaping).
func (t Topology) ChangeSubject(sourceToken, labelToken, keyToken string) string {
	return t.Prefix + ".changes." + sourceToken + "." + labelToken + "." + keyToken
}

// ChangeFilter is the subject filter of every change of one source.
func (t Topology) ChangeFilter(sourceToken string) string {
	return t.Prefix + ".changes." + sourceToken + ".>"
}

// SourceFence is the fence subject of one source (see bus.Fence): the
// source's claims, and nothing else, are written to it, in the changes
// stream. It has three tokens, change subjects five, so a consumer that
// filters ChangeFilter(source) or <prefix>.changes.*.> never sees a claim;
// only a filter of <prefix>.changes.> does.
func (t Topology) SourceFence(sourceToken string) string {
	return t.Prefix + ".changes." + sourceToken
}

// QueryFence is the fence subject of one query's results writer, in the
// results stream. Reactions filter ResultSubject(query) exactly, so they
// never see a claim.
func (t Topology) QueryFence(queryToken string) string {
	return t.Prefix + ".results." + queryToken + ".fence"
}

// ResultSubject is the subject of one query's results.
func (t Topology) ResultSubject(queryToken string) string {
	return t.Prefix + ".results." + queryToken
}

// DeadLetterSubject is where a consumer's dead letters go.
func (t Topology) DeadLetterSubject(stream, consumer string) string {
	return t.Prefix + ".dlq." + stream + "." + consumer
}

// Streams lists every stream of the topology.
func (t Topology) Streams() []Stream { return []Stream{t.Changes, t.Results, t.DeadLetters} }

// Buckets lists every key-value bucket of the topology.
func (t Topology) Buckets() []Bucket { return []Bucket{t.Lifecycle, t.Leases} }
