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
// exists with a configuration that differs from the declared one in a
// setting that cannot be changed safely (subjects, storage, retention,
// replicas, ...). The existing one is left untouched: recreating it could
// lose data.
var ErrTopologyConflict = errors.New("existing stream conflicts with the declared topology")

// EnsureTopology creates every stream and bucket of t that does not exist
// and checks the ones that do. A stream whose limits (max age, max bytes,
// max messages per subject, discard policy, and the deduplication window
// that follows max age) differ from the declared ones is updated to them,
// and the change is logged. Any other difference is reported (wrapping
// ErrTopologyConflict, naming each differing setting) and the stream is
// left as it is, never recreated. It is idempotent and safe to run from
// several processes at once. The Conn remembers t: a consumer recreates a
// missing dead-letter stream from it.
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
	if s.MaxBytes > 0 {
		// A full stream refuses new messages instead of deleting old ones
		// that consumers may not have read: writers re-send until space is
		// freed (ErrStreamFull). The per-subject limit still drops a
		// subject's oldest message (DiscardNewPerSubject stays off).
		cfg.MaxBytes = s.MaxBytes
		cfg.Discard = jetstream.DiscardNew
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
			c.log.Info("created stream", "stream", want.Name, "subjects", want.Subjects,
				"max_age", want.MaxAge, "max_bytes", want.MaxBytes, "max_msgs_per_subject", want.MaxMsgsPerSubject)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	diffs := streamDiffs(have, want)
	var conflicts, updates []string
	for _, d := range diffs {
		if d.updatable {
			updates = append(updates, d.String())
		} else {
			conflicts = append(conflicts, d.String())
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: stream %s: %s; fix the stream with the nats CLI or change the configuration (the stream was left as it is)",
			ErrTopologyConflict, want.Name, strings.Join(conflicts, "; "))
	}
	if len(updates) == 0 {
		return nil
	}
	// Change only the limits: whatever else an operator set on the stream
	// stays as it is.
	upd := have
	upd.MaxAge, upd.MaxBytes, upd.MaxMsgsPerSubject = want.MaxAge, want.MaxBytes, want.MaxMsgsPerSubject
	upd.Discard, upd.Duplicates = want.Discard, want.Duplicates
	if _, err := c.js.UpdateStream(ctx, upd); err != nil {
		return fmt.Errorf("updating the limits of stream %s (%s): %w", want.Name, strings.Join(updates, "; "), err)
	}
	c.log.Info("updated stream limits", "stream", want.Name, "changes", strings.Join(updates, "; "))
	return nil
}

// settingDiff is one setting that differs between an existing stream and
// the declared one.
type settingDiff struct {
	name       string
	have, want any
	// updatable: changing it on the existing stream is safe (a limit).
	updatable bool
}

func (d settingDiff) String() string {
	return fmt.Sprintf("%s is %v, declared %v", d.name, d.have, d.want)
}

// streamDiffs lists the settings that differ between an existing stream
// and the declared one. Only settings Tributary declares are compared.
func streamDiffs(have, want jetstream.StreamConfig) []settingDiff {
	var d []settingDiff
	cmp := func(name string, h, w any, updatable bool) {
		if fmt.Sprint(h) != fmt.Sprint(w) {
			d = append(d, settingDiff{name: name, have: h, want: w, updatable: updatable})
		}
	}
	hs, ws := slices.Clone(have.Subjects), slices.Clone(want.Subjects)
	slices.Sort(hs)
	slices.Sort(ws)
	cmp("subjects", hs, ws, false)
	cmp("storage", have.Storage, want.Storage, false)
	cmp("retention", have.Retention, want.Retention, false)
	cmp("replicas", max(have.Replicas, 1), max(want.Replicas, 1), false)
	cmp("max age", have.MaxAge, want.MaxAge, true)
	cmp("max msgs per subject", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject, true)
	cmp("max bytes", have.MaxBytes, want.MaxBytes, true)
	cmp("discard policy", have.Discard, want.Discard, true)
	cmp("duplicates window", have.Duplicates, want.Duplicates, true)
	cmp("allow atomic publish", have.AllowAtomicPublish, want.AllowAtomicPublish, false)
	cmp("allow direct", have.AllowDirect, want.AllowDirect, false)
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
