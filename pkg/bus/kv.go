package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/retry"
)

// Sentinel errors of the key-value API.
var (
	// ErrKeyNotFound: the key has no value (never written, deleted, purged
	// or expired).
	ErrKeyNotFound = errors.New("key not found")
	// ErrKeyExists: Create found a live value under the key.
	ErrKeyExists = errors.New("key exists")
	// ErrRevisionMismatch: a compare-and-swap (Update, Delete with a
	// revision) found another revision than the one given: someone else
	// wrote the key in between. Re-read and decide again.
	ErrRevisionMismatch = errors.New("key revision mismatch")
	// ErrInvalidKey: the key or pattern is not a valid key (empty, or with
	// characters outside A-Z a-z 0-9 - _ / = and '.' as a separator). Build
	// keys from arbitrary text with KeyToken.
	ErrInvalidKey = errors.New("invalid key")
	// ErrBucketNotFound: the bucket does not exist (the topology was not
	// applied, or the name is wrong).
	ErrBucketNotFound = errors.New("key-value bucket not found")
)

// kvOpTimeout bounds one key-value request when the caller's context has no
// deadline, and each attempt to (re)create a watch.
const kvOpTimeout = 5 * time.Second

// Op says what a key-value entry did to its key.
type Op string

// Operations of an Entry.
const (
	// OpPut stores a value.
	OpPut Op = "put"
	// OpDelete is a delete marker (Delete, or a server "Remove" marker).
	OpDelete Op = "delete"
	// OpPurge removes the key and its history; expiry by the bucket's TTL
	// (a "MaxAge" limit marker) is reported as a purge too.
	OpPurge Op = "purge"
)

// Entry is one revision of a key.
type Entry struct {
	Key   string
	Value []byte
	// Revision is the entry's sequence in the bucket's stream: it grows with
	// every write to any key of the bucket, never repeats, and is the
	// compare-and-swap token for Update and Delete.
	Revision uint64
	Op       Op
	// Created is when the server stored the entry.
	Created time.Time
}

// KV is one key-value bucket. It is safe for concurrent use.
type KV struct {
	c      *Conn
	kv     jetstream.KeyValue
	bucket string
	log    *slog.Logger
}

// KV opens an existing bucket (EnsureTopology creates them). It returns an
// error wrapping ErrBucketNotFound when the bucket does not exist.
func (c *Conn) KV(ctx context.Context, bucket string) (*KV, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, bucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("opening key-value bucket %q: %w", bucket, ErrBucketNotFound)
		}
		return nil, fmt.Errorf("opening key-value bucket %q: %w", bucket, err)
	}
	return &KV{c: c, kv: kv, bucket: bucket, log: c.log.With("bucket", bucket)}, nil
}

// Bucket is the bucket's name.
func (k *KV) Bucket() string { return k.bucket }

// Get returns the latest value of key. It returns an error wrapping
// ErrKeyNotFound when the key has no live value (never written, deleted,
// purged or expired). A read may be served by a follower and be stale:
// decide with the revision-checked write, never with the read alone.
func (k *KV) Get(ctx context.Context, key string) (Entry, error) {
	if err := checkKey(key); err != nil {
		return Entry{}, err
	}
	e, err := k.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, k.mapErr("reading", key, err)
	}
	return fromJS(e), nil
}

// History returns every stored revision of key, oldest first, including
// delete and purge markers (as many as the bucket's history keeps). It
// returns an error wrapping ErrKeyNotFound when nothing is stored.
func (k *KV) History(ctx context.Context, key string) ([]Entry, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	es, err := k.kv.History(ctx, key)
	if err != nil {
		return nil, k.mapErr("reading the history of", key, err)
	}
	out := make([]Entry, 0, len(es))
	for _, e := range es {
		out = append(out, fromJS(e))
	}
	return out, nil
}

// Create stores value under key only if the key has no live value (it
// succeeds over a delete, purge or expiry marker) and returns the new
// revision. It returns an error wrapping ErrKeyExists when a value is there.
func (k *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	rev, err := k.kv.Create(ctx, key, value)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err) {
			return 0, fmt.Errorf("creating %s/%s: %w", k.bucket, key, ErrKeyExists)
		}
		return 0, k.mapErr("creating", key, err)
	}
	return rev, nil
}

// Update stores value under key only if the key's latest revision is rev
// (compare-and-swap) and returns the new revision. It returns an error
// wrapping ErrRevisionMismatch when another write came in between (server
// error 10071, or 10164 on replicated buckets).
func (k *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if rev == 0 {
		return 0, fmt.Errorf("updating %s/%s: revision 0: %w (use Create for a new key)", k.bucket, key, ErrRevisionMismatch)
	}
	n, err := k.kv.Update(ctx, key, value, rev)
	if err != nil {
		return 0, k.mapErr("updating", key, err)
	}
	return n, nil
}

// Delete places a delete marker on key. With lastRev > 0 it is a
// compare-and-swap: it returns an error wrapping ErrRevisionMismatch unless
// the key's latest revision is lastRev. With lastRev 0 it deletes whatever
// is there. Deleting a key that has no value is not an error.
func (k *KV) Delete(ctx context.Context, key string, lastRev uint64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if lastRev > 0 {
		opts = append(opts, jetstream.LastRevision(lastRev))
	}
	if err := k.kv.Delete(ctx, key, opts...); err != nil {
		return k.mapErr("deleting", key, err)
	}
	return nil
}

func (k *KV) mapErr(doing, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		err = ErrKeyNotFound
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), isWrongLastSequence(err):
		err = ErrRevisionMismatch
	case errors.Is(err, jetstream.ErrInvalidKey):
		err = ErrInvalidKey
	}
	return fmt.Errorf("%s %s/%s: %w", doing, k.bucket, key, err)
}

// isWrongLastSequence reports a CAS conflict: 10071 on R1 streams, 10164 on
// replicated ones.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func fromJS(e jetstream.KeyValueEntry) Entry {
	op := OpPut
	switch e.Operation() {
	case jetstream.KeyValueDelete:
		op = OpDelete
	case jetstream.KeyValuePurge:
		op = OpPurge
	}
	return Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Op: op, Created: e.Created()}
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, kvOpTimeout)
}

// checkKey validates a key (no wildcards) before it reaches the server.
func checkKey(key string) error {
	if !validKey(key, false) {
		return fmt.Errorf("key %q: %w", key, ErrInvalidKey)
	}
	return nil
}

// validKey accepts dot-separated non-empty tokens of A-Z a-z 0-9 - _ / =;
// with wildcards, a token may be '*' and the last one '>'.
func validKey(key string, wildcards bool) bool {
	if key == "" {
		return false
	}
	toks := strings.Split(key, ".")
	for i, t := range toks {
		if t == "" {
			return false
		}
		if wildcards && (t == "*" || (t == ">" && i == len(toks)-1)) {
			continue
		}
		for j := 0; j < len(t); j++ {
			if !keyChar(t[j]) && t[j] != '=' {
				return false
			}
		}
	}
	return true
}

func keyChar(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
		ch == '-' || ch == '_' || ch == '/'
}

// KeyToken escapes s into one key token: bytes other than A-Z a-z 0-9 - _ /
// are written as =XX (so '.', which separates tokens, and '=' itself are
// escaped); the empty string becomes "=". Distinct inputs give distinct
// tokens. Subject tokens (Token) use '%', which keys do not allow, so keys
// have their own escaping.
func KeyToken(s string) string {
	if s == "" {
		return "="
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !keyChar(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if keyChar(ch) {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}

// Watcher delivers the entries of the keys matching a pattern, in revision
// order, each exactly once, across lost connections and server restarts. It
// is owned by the goroutine that Watch starts; Stop ends it.
type Watcher struct {
	updates chan Entry
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // set before done is closed
}

// Updates yields the entries. It is closed when the watcher stops (its
// context ended, Stop was called, or the connection was closed for good).
func (w *Watcher) Updates() <-chan Entry { return w.updates }

// Stop ends the watcher and waits for its goroutine. Safe to call more than
// once and concurrently.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Wait blocks until the watcher has stopped and returns why: the context's
// error, or an error wrapping ErrClosed when the connection was closed.
func (w *Watcher) Wait() error {
	<-w.done
	return w.err
}

// Done is closed once the watcher has stopped.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Watch delivers every entry of the keys matching pattern (a key, or with
// '*' for one token and a final '>' for the rest). With fromRevision 0 it
// starts with the latest entry of every matching key (including delete
// markers), then every later change; with fromRevision > 0 it delivers every
// stored entry with a revision >= fromRevision (as far as the bucket's
// history reaches), then every later change.
//
// The watch survives a lost connection and a server restart: a goroutine
// owned by the Watcher re-creates the server-side watch from the last
// delivered revision after any error or reconnect, with capped backoff,
// until ctx ends, Stop is called or the connection is closed. Entries are
// delivered in revision order and never twice. The caller must keep
// reading Updates (or Stop the watcher): a slow reader holds the watch back.
// Stop watchers before closing the Conn.
//
// The first server-side watch is created before Watch returns, so every
// change made afterwards is delivered; if that fails, Watch returns the
// error (an invalid pattern wraps ErrInvalidKey) and nothing runs.
func (k *KV) Watch(ctx context.Context, pattern string, fromRevision uint64) (*Watcher, error) {
	if !validKey(pattern, true) {
		return nil, fmt.Errorf("watch pattern %q: %w", pattern, ErrInvalidKey)
	}
	ctx, cancel := context.WithCancel(ctx)
	status := k.c.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	// The first server-side watch is created here, so that every change
	// made after Watch returns is delivered.
	first, err := k.startWatch(ctx, pattern, fromRevision, 0)
	if err != nil {
		cancel()
		k.c.nc.RemoveStatusListener(status)
		return nil, fmt.Errorf("watching %s/%s: %w", k.bucket, pattern, err)
	}
	w := &Watcher{updates: make(chan Entry), cancel: cancel, done: make(chan struct{})}
	go k.runWatch(ctx, w, pattern, fromRevision, status, first)
	return w, nil
}

// serverWatch is one server-side watch (an ordered consumer) and the
// context that owns its subscription.
type serverWatch struct {
	kw     jetstream.KeyWatcher
	cancel context.CancelFunc
}

// startWatch creates a server-side watch from the last delivered revision
// (or as asked, when nothing was delivered yet).
func (k *KV) startWatch(ctx context.Context, pattern string, fromRevision, last uint64) (*serverWatch, error) {
	var opts []jetstream.WatchOpt
	switch {
	case last > 0:
		opts = append(opts, jetstream.IncludeHistory(), jetstream.ResumeFromRevision(last+1))
	case fromRevision > 0:
		opts = append(opts, jetstream.IncludeHistory(), jetstream.ResumeFromRevision(fromRevision))
	}
	// Cancelling wctx unsubscribes; the timer bounds the creation, which
	// has no deadline of its own.
	wctx, wcancel := context.WithCancel(ctx)
	timer := time.AfterFunc(kvOpTimeout, wcancel)
	kw, err := k.kv.Watch(wctx, pattern, opts...)
	timer.Stop()
	if err != nil {
		wcancel()
		return nil, mapWatchErr(err)
	}
	return &serverWatch{kw: kw, cancel: wcancel}, nil
}

func mapWatchErr(err error) error {
	if errors.Is(err, jetstream.ErrInvalidKey) {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return err
}

// stopWatch ends a server-side watch and drains it until its delivery goroutine
// ends, so that it never stays blocked on a send nobody reads. When
// connected, it also deletes the server's consumer before returning.
func (k *KV) stopWatch(sw *serverWatch) {
	if k.c.nc.IsConnected() {
		_ = sw.kw.Stop() // unsubscribes and deletes the consumer
	}
	sw.cancel()
	for range sw.kw.Updates() {
	}
}

func (k *KV) runWatch(ctx context.Context, w *Watcher, pattern string, fromRevision uint64, status chan nats.Status, sw *serverWatch) {
	log := k.log.With("watch", pattern)
	defer func() {
		k.c.nc.RemoveStatusListener(status)
		close(w.updates)
		close(w.done)
	}()

	bo := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	var last uint64 // last delivered revision
	for {
		if sw == nil {
			if k.c.nc.IsClosed() {
				w.err = fmt.Errorf("watching %s/%s: %w", k.bucket, pattern, ErrClosed)
				return
			}
			var err error
			if sw, err = k.startWatch(ctx, pattern, fromRevision, last); err != nil {
				if ctx.Err() != nil {
					w.err = ctx.Err()
					return
				}
				d := bo.NextBackOff()
				log.Warn("creating key-value watch failed; retrying", "err", err, "retry_in", d, "last_revision", last)
				if stop := k.pause(ctx, w, status, d); stop {
					return
				}
				continue
			}
		}
		reason, stop := k.pump(ctx, w, sw.kw, status, &last, bo)
		k.stopWatch(sw)
		sw = nil
		if stop {
			return
		}
		log.Info("re-creating key-value watch", "reason", reason, "last_revision", last)
		if reason != "reconnected" {
			if stop := k.pause(ctx, w, status, bo.NextBackOff()); stop {
				return
			}
		}
	}
}

// pump forwards entries from one server-side watch. It returns why the
// watch must be re-created, or stop=true when the Watcher ends.
func (k *KV) pump(ctx context.Context, w *Watcher, kw jetstream.KeyWatcher, status chan nats.Status, last *uint64, bo *backoff.ExponentialBackOff) (reason string, stop bool) {
	for {
		select {
		case <-ctx.Done():
			w.err = ctx.Err()
			return "", true
		case s := <-status:
			if s == nats.CLOSED {
				w.err = fmt.Errorf("watching %s: %w", k.bucket, ErrClosed)
				return "", true
			}
			return "reconnected", false
		case e, ok := <-kw.Updates():
			if !ok {
				return "watch subscription ended", false
			}
			if e == nil { // the end of the initial values
				continue
			}
			if e.Revision() <= *last {
				continue // redelivered after a consumer reset
			}
			select {
			case w.updates <- fromJS(e):
				*last = e.Revision()
				bo.Reset()
			case <-ctx.Done():
				w.err = ctx.Err()
				return "", true
			}
		}
	}
}

// pause waits d before the next attempt; a reconnect cuts it short. It
// reports stop=true when the Watcher must end.
func (k *KV) pause(ctx context.Context, w *Watcher, status chan nats.Status, d time.Duration) (stop bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		w.err = ctx.Err()
		return true
	case s := <-status:
		if s == nats.CLOSED {
			w.err = fmt.Errorf("watching %s: %w", k.bucket, ErrClosed)
			return true
		}
		return false
	case <-t.C:
		return false
	}
}
