package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/streams"
)

// ErrTopologyConflict is returned by EnsureTopology when a stream or bucket
// exists with a configuration that differs from the declared one. The
// existing one is left untouched: recreating it could lose data.
var ErrTopologyConflict = errors.New("existing stream conflicts with the declared topology")

// EnsureTopology creates every stream and bucket of t that does not exist
// and checks the ones that do. It is idempotent and safe to run from several
// processes at once. A conflicting existing stream is reported (wrapping
// ErrTopologyConflict, naming each differing setting) and never recreated.
// The Conn remembers t: a consumer recreates a missing dead-letter stream
// from it.
func (c *Conn) EnsureTopology(ctx context.Context, t streams.Topology) error {
	c.topology.Store(&t)
	var errs []error
	for _, s := range t.Streams() {
		if err := c.ensureStream(ctx, streamConfig(s)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, b := range t.Buckets() {
		if err := c.ensureBucket(ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func streamConfig(s streams.Stream) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:               s.Name,
		Description:        s.Description,
		Subjects:           s.Subjects,
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxAge:             s.MaxAge,
		MaxBytes:           -1,
		MaxMsgs:            -1,
		MaxMsgsPerSubject:  -1,
		Duplicates:         s.Duplicates,
		AllowAtomicPublish: s.AllowAtomicPublish,
		AllowDirect:        s.AllowDirect,
		Replicas:           s.Replicas,
	}
	if s.Retention == streams.WorkQueue {
		cfg.Retention = jetstream.WorkQueuePolicy
	}
	if s.MaxBytes > 0 {
		cfg.MaxBytes = s.MaxBytes
	}
	if s.MaxMsgsPerSubject > 0 {
		cfg.MaxMsgsPerSubject = s.MaxMsgsPerSubject
	}
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge
	}
	return cfg
}

func (c *Conn) ensureStream(ctx context.Context, want jetstream.StreamConfig) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	s, err := c.js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = c.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another process created it between our look-up and create.
			s, err = c.js.Stream(ctx, want.Name)
		} else if err != nil {
			return fmt.Errorf("creating stream %s: %w", want.Name, err)
		} else {
			c.log.Info("created stream", "stream", want.Name, "subjects", want.Subjects)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", want.Name, err)
	}
	if diffs := streamDiffs(s.CachedInfo().Config, want); len(diffs) > 0 {
		return fmt.Errorf("%w: stream %s: %s; fix the stream with the nats CLI or change the configuration (the stream was left as it is)",
			ErrTopologyConflict, want.Name, strings.Join(diffs, "; "))
	}
	return nil
}

// streamDiffs names the settings that differ between an existing stream and
// the declared one. Only settings Tributary declares are compared.
func streamDiffs(have, want jetstream.StreamConfig) []string {
	var d []string
	cmp := func(name string, h, w any) {
		if fmt.Sprint(h) != fmt.Sprint(w) {
			d = append(d, fmt.Sprintf("%s is %v, declared %v", name, h, w))
		}
	}
	hs, ws := slices.Clone(have.Subjects), slices.Clone(want.Subjects)
	slices.Sort(hs)
	slices.Sort(ws)
	cmp("subjects", hs, ws)
	cmp("storage", have.Storage, want.Storage)
	cmp("retention", have.Retention, want.Retention)
	cmp("replicas", max(have.Replicas, 1), max(want.Replicas, 1))
	cmp("max age", have.MaxAge, want.MaxAge)
	cmp("max msgs per subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	cmp("max bytes", have.MaxBytes, want.MaxBytes)
	cmp("duplicates window", have.Duplicates, want.Duplicates)
	cmp("allow atomic publish", have.AllowAtomicPublish, want.AllowAtomicPublish)
	cmp("allow direct", have.AllowDirect, want.AllowDirect)
	return d
}

func (c *Conn) ensureBucket(ctx context.Context, b streams.Bucket) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	want := jetstream.KeyValueConfig{
		Bucket:         b.Name,
		Description:    b.Description,
		History:        uint8(max(b.History, 1)),
		TTL:            b.TTL,
		Storage:        jetstream.FileStorage,
		Replicas:       b.Replicas,
		LimitMarkerTTL: b.LimitMarkerTTL,
	}
	kv, err := c.js.KeyValue(ctx, b.Name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = c.js.CreateKeyValue(ctx, want)
		if err == nil {
			c.log.Info("created key-value bucket", "bucket", b.Name)
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("creating key-value bucket %s: %w", b.Name, err)
		}
		kv, err = c.js.KeyValue(ctx, b.Name)
	}
	if err != nil {
		return fmt.Errorf("looking up key-value bucket %s: %w", b.Name, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("reading key-value bucket %s: %w", b.Name, err)
	}
	var d []string
	if st.TTL() != want.TTL {
		d = append(d, fmt.Sprintf("ttl is %s, declared %s", st.TTL(), want.TTL))
	}
	if st.History() != int64(want.History) {
		d = append(d, fmt.Sprintf("history is %d, declared %d", st.History(), want.History))
	}
	if st.LimitMarkerTTL() != want.LimitMarkerTTL {
		d = append(d, fmt.Sprintf("limit marker ttl is %s, declared %s", st.LimitMarkerTTL(), want.LimitMarkerTTL))
	}
	if len(d) > 0 {
		return fmt.Errorf("%w: key-value bucket %s: %s (left as it is)", ErrTopologyConflict, b.Name, strings.Join(d, "; "))
	}
	return nil
}
