package lifecycle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/pkg/bus"
)

// Lease errors.
var (
	// ErrLeaseLost is the cause of a lease context that ended because the
	// lease could not be renewed (the key changed, was deleted, or the TTL
	// passed without a successful renewal).
	ErrLeaseLost = errors.New("lease lost")
	// ErrLeaseReleased is the cause of a lease context that ended because
	// Release was called.
	ErrLeaseReleased = errors.New("lease released")
)

// LeaseConfig configures AcquireLease.
type LeaseConfig struct {
	// KV is the lease bucket; its TTL must be TTL (each renewal restarts
	// it) and its LimitMarkerTTL must be set, so that expiry leaves a
	// marker a standby sees.
	KV *bus.KV
	// Key is the leased key, e.g. ComponentID.Key().
	Key string
	// TTL is the bucket's TTL: a lease not renewed for this long expires.
	TTL time.Duration
	// Holder names the instance in the stored value (for operators).
	Holder string
	// RenewEvery defaults to TTL/3. PollEvery is how often a standby
	// retries besides watching the key; default TTL/3.
	RenewEvery time.Duration
	PollEvery  time.Duration
	Logger     *slog.Logger
}

func (c *LeaseConfig) setDefaults() error {
	if c.KV == nil || c.Key == "" || c.TTL <= 0 {
		return fmt.Errorf("lease config: KV, Key and a positive TTL are required")
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = c.TTL / 3
	}
	if c.RenewEvery >= c.TTL {
		return fmt.Errorf("lease config: renew interval %s must be shorter than the TTL %s", c.RenewEvery, c.TTL)
	}
	if c.PollEvery == 0 {
		c.PollEvery = c.TTL / 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

type leaseValue struct {
	Holder   string    `json:"holder"`
	Nonce    string    `json:"nonce"`
	Acquired time.Time `json:"acquired"`
}

// Lease is a held single-active lease. Its goroutine renews it every
// RenewEvery and watches the key; on a failed renewal (the key changed or
// was deleted, or TTL passed without a successful renewal) it cancels
// Context at once. Call Release when done, also after a loss.
type Lease struct {
	cfg   LeaseConfig
	value []byte
	token uint64

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu  sync.Mutex
	rev uint64

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// AcquireLease takes the lease, or waits as a standby until it can: it
// watches the key for its delete or expiry marker and also retries every
// PollEvery. It returns when the lease is held, or with ctx's error.
func AcquireLease(ctx context.Context, cfg LeaseConfig) (*Lease, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("lease", cfg.Key)
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	value, err := json.Marshal(leaseValue{Holder: cfg.Holder, Nonce: hex.EncodeToString(nonce), Acquired: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("encoding the lease value: %w", err)
	}
	var firstSent time.Time // earliest attempt whose outcome is unknown
	standbyLogged := false
	misses := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("acquiring lease %s: %w", cfg.Key, err)
		}
		sent := time.Now()
		if firstSent.IsZero() {
			firstSent = sent
		}
		rev, err := cfg.KV.Create(ctx, cfg.Key, value)
		if err == nil {
			return startLease(cfg, value, rev, sent, log), nil
		}
		if !errors.Is(err, bus.ErrKeyExists) {
			log.Warn("acquiring the lease failed; retrying", "err", err)
			_ = retry.Sleep(ctx, cfg.PollEvery) // the loop checks ctx
			continue
		}
		cur, err := cfg.KV.Get(ctx, cfg.Key)
		if errors.Is(err, bus.ErrKeyNotFound) {
			// Expired or released in between: create again, but do not
			// spin if the two answers keep disagreeing.
			if misses++; misses > 2 {
				_ = retry.Sleep(ctx, cfg.PollEvery) // the loop checks ctx
			}
			continue
		}
		misses = 0
		if err != nil {
			log.Warn("reading the lease failed; retrying", "err", err)
			_ = retry.Sleep(ctx, cfg.PollEvery) // the loop checks ctx
			continue
		}
		if bytes.Equal(cur.Value, value) {
			// An earlier create of ours was stored although its answer
			// was lost.
			return startLease(cfg, value, cur.Revision, firstSent, log), nil
		}
		firstSent = time.Time{}
		if !standbyLogged {
			var other leaseValue
			_ = json.Unmarshal(cur.Value, &other)
			log.Info("standing by: the lease is held by another instance", "holder", other.Holder, "revision", cur.Revision)
			standbyLogged = true
		}
		waitForRelease(ctx, cfg, cur.Revision, log)
	}
}

// waitForRelease returns when the key gets a delete or expiry marker after
// rev, PollEvery passed, or ctx ended.
func waitForRelease(ctx context.Context, cfg LeaseConfig, rev uint64, log *slog.Logger) {
	wctx, cancel := context.WithTimeout(ctx, cfg.PollEvery)
	defer cancel()
	w, err := cfg.KV.Watch(wctx, cfg.Key, rev+1)
	if err != nil {
		log.Warn("watching the lease failed; polling", "err", err)
		<-wctx.Done()
		return
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e.Op != bus.OpPut {
			return
		}
	}
}

func startLease(cfg LeaseConfig, value []byte, rev uint64, sent time.Time, log *slog.Logger) *Lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	l := &Lease{
		cfg: cfg, value: value, token: rev, rev: rev,
		ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	log.Info("lease acquired", "fencing_token", rev)
	// Watch the key, to see at once when someone else writes or deletes
	// it. Creating the watch may not delay the deadline check: if it takes
	// until the deadline, it is abandoned and renewals alone decide.
	deadline := sent.Add(cfg.TTL)
	wctx, wcancel := context.WithCancel(context.Background())
	giveUp := time.AfterFunc(time.Until(deadline), wcancel)
	w, err := cfg.KV.Watch(wctx, cfg.Key, rev+1)
	giveUp.Stop()
	if err != nil {
		wcancel()
		w = nil
		log.Warn("watching the held lease failed; relying on renewals", "err", err)
	}
	go l.hold(deadline, w, wcancel, log)
	return l
}

// Token is the fencing token: the revision at which the lease was
// acquired. Every later holder's token is greater; pass it to systems that
// can reject writes from an older holder.
func (l *Lease) Token() uint64 { return l.token }

// Revision is the key's latest revision written by this holder.
func (l *Lease) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Context ends when the lease is lost (cause wraps ErrLeaseLost) or
// released (cause ErrLeaseReleased). Run the leased work under it.
func (l *Lease) Context() context.Context { return l.ctx }

// Done is closed when the lease is no longer held.
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Err is nil while the lease is held, then why it ended (wrapping
// ErrLeaseLost or ErrLeaseReleased).
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// Release stops renewing, ends Context and deletes the key if this holder
// still owns it (so a standby takes over at once). It waits for the
// renewal goroutine. Safe to call more than once and after a loss.
func (l *Lease) Release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	lost := errors.Is(l.Err(), ErrLeaseLost)
	l.cancel(ErrLeaseReleased)
	if lost {
		return nil
	}
	err := l.cfg.KV.Delete(ctx, l.cfg.Key, l.Revision())
	if errors.Is(err, bus.ErrRevisionMismatch) {
		return nil // no longer ours: nothing to release
	}
	if err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.cfg.Key, err)
	}
	return nil
}

// Lose ends the lease as lost, with cause: Context ends with a cause
// wrapping ErrLeaseLost and cause, and renewals stop. Call it when a write
// was refused because a newer holder exists (bus.ErrFenced): the key is
// not this holder's any more, so it is neither renewed nor deleted (Release
// after Lose deletes nothing). It does nothing after a loss or a release.
func (l *Lease) Lose(cause error) {
	l.cancel(fmt.Errorf("%w: %s: %w", ErrLeaseLost, l.cfg.Key, cause))
	l.stopOnce.Do(func() { close(l.stop) })
}

func (l *Lease) lose(log *slog.Logger, format string, args ...any) {
	err := fmt.Errorf("%w: %s: %s", ErrLeaseLost, l.cfg.Key, fmt.Sprintf(format, args...))
	log.Error("lease lost; stopping the work", "err", err)
	l.cancel(err)
}

// hold renews the lease until stop or loss. deadline is when the current
// revision's TTL ends at the earliest (its write was sent no earlier than
// deadline-TTL, and the server's TTL starts when it stores it). w, when not
// nil, watches the key.
func (l *Lease) hold(deadlineAt time.Time, w *bus.Watcher, wcancel context.CancelFunc, log *slog.Logger) {
	defer close(l.done)
	defer wcancel()
	deadline := time.NewTimer(time.Until(deadlineAt))
	defer deadline.Stop()
	tick := time.NewTicker(l.cfg.RenewEvery)
	defer tick.Stop()

	var updates <-chan bus.Entry
	if w != nil {
		defer w.Stop()
		updates = w.Updates()
	}
	var unconfirmed time.Time // first renewal sent whose outcome is unknown
	for {
		select {
		case <-l.stop:
			return
		case <-deadline.C:
			l.lose(log, "not renewed within the TTL of %s", l.cfg.TTL)
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			if e.Op == bus.OpPut && bytes.Equal(e.Value, l.value) {
				continue // one of our renewals
			}
			var other leaseValue
			_ = json.Unmarshal(e.Value, &other)
			l.lose(log, "the key was %s (revision %d, holder %q)", map[bus.Op]string{bus.OpPut: "overwritten", bus.OpDelete: "deleted", bus.OpPurge: "purged or expired"}[e.Op], e.Revision, other.Holder)
			return
		case <-tick.C:
			s := time.Now()
			if unconfirmed.IsZero() {
				unconfirmed = s
			}
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RenewEvery)
			rev, err := l.cfg.KV.Update(ctx, l.cfg.Key, l.value, l.Revision())
			if err != nil {
				// The write may have been stored although its answer was
				// lost: adopt it if the key holds our value.
				if cur, gerr := l.cfg.KV.Get(ctx, l.cfg.Key); gerr == nil && bytes.Equal(cur.Value, l.value) && cur.Revision > l.Revision() {
					rev, err = cur.Revision, nil
					s = unconfirmed
				}
			}
			cancel()
			switch {
			case err == nil:
				l.mu.Lock()
				l.rev = rev
				l.mu.Unlock()
				unconfirmed = time.Time{}
				deadline.Reset(time.Until(s.Add(l.cfg.TTL)))
			case errors.Is(err, bus.ErrRevisionMismatch):
				l.lose(log, "renewal rejected, the key changed: %v", err)
				return
			default:
				log.Warn("renewing the lease failed; retrying", "err", err, "lease_left", time.Until(unconfirmed.Add(l.cfg.TTL)))
			}
		}
	}
}
