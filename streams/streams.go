package streams

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Retention says when a stream removes messages.
type Retention string

// Retention policies.
const (
	// Limits keeps messages until a limit (age, bytes, count) removes them.
	Limits Retention = "limits"
	// WorkQueue removes a message once it is acknowledged.
	WorkQueue Retention = "workqueue"
)

// Stream declares one JetStream stream.
type Stream struct {
	Name     string
	Subjects []string
	// Retention and the limits below; zero means unlimited.
	Retention         Retention
	MaxAge            time.Duration
	MaxBytes          int64
	MaxMsgsPerSubject int64
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
	// ChangesMaxMsgsPerSubject keeps only the latest N versions of every
	// row in the changes stream (0: keep all history). With 1 the stream
	// doubles as the tables' current state, but a consumer that lags behind
	// sees only the latest version of each row.
	ChangesMaxMsgsPerSubject int64
	// ChangesMaxAge and ResultsMaxAge bound history (0: unlimited).
	ChangesMaxAge time.Duration
	ResultsMaxAge time.Duration
	// LeaseTTL is how long a lease lives without renewal. Default 10s.
	LeaseTTL time.Duration
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Default returns the topology for a subject prefix (e.g. "tributary").
func Default(prefix string, o Options) (Topology, error) {
	if !prefixRE.MatchString(prefix) {
		return Topology{}, fmt.Errorf("subject prefix %q: use letters, digits, '-' and '_' only", prefix)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas != 1 && o.Replicas != 3 && o.Replicas != 5 {
		return Topology{}, fmt.Errorf("replicas %d: use 1, 3 or 5", o.Replicas)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseTTL < time.Second {
		return Topology{}, fmt.Errorf("lease TTL %s: at least 1s", o.LeaseTTL)
	}
	up := strings.ToUpper(strings.ReplaceAll(prefix, "-", "_"))
	return Topology{
		Prefix: prefix,
		Changes: Stream{
			Name:               up + "_CHANGES",
			Subjects:           []string{prefix + ".changes.>"},
			Retention:          Limits,
			MaxAge:             o.ChangesMaxAge,
			MaxMsgsPerSubject:  o.ChangesMaxMsgsPerSubject,
			Duplicates:         2 * time.Minute,
			AllowAtomicPublish: true,
			AllowDirect:        true,
			Replicas:           o.Replicas,
			Description:        "Element changes from sources and other producers: <prefix>.changes.<source>.<label>.<key>",
		},
		Results: Stream{
			Name:               up + "_RESULTS",
			Subjects:           []string{prefix + ".results.>"},
			Retention:          Limits,
			MaxAge:             o.ResultsMaxAge,
			Duplicates:         2 * time.Minute,
			AllowAtomicPublish: true,
			AllowDirect:        true,
			Replicas:           o.Replicas,
			Description:        "Continuous query result diffs: <prefix>.results.<query>",
		},
		DeadLetters: Stream{
			Name:        up + "_DLQ",
			Subjects:    []string{prefix + ".dlq.>"},
			Retention:   Limits,
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
