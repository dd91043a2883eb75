package pgsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// Publisher stores messages in JetStream as atomic batches, staged ahead
// of their commits. BusPublisher adapts a *bus.Publisher.
type Publisher interface {
	// StageBatch sends msgs ahead as one atomic batch that is stored, all or
	// none, only by its Commit. Batches are stored in the order of their
	// commits.
	StageBatch(msgs []bus.Message) (StagedBatch, error)
	// MaxBatch is the largest batch StageBatch accepts.
	MaxBatch() int
}

// StagedBatch is a batch staged by a Publisher.
type StagedBatch interface {
	// Commit stores the batch: all or none. It retries by itself until ctx
	// ends; a message whose id the stream already holds counts as stored.
	Commit(ctx context.Context) (bus.BatchAck, error)
}

// BusPublisher is the Publisher of p; every batch is staged with opts.
// A source that runs under a lease passes bus.WithFence with the fence it
// claimed (streams.Topology.SourceFence, the lease token) after taking the
// lease and before Run: every batch it commits is then refused, with an
// error wrapping bus.ErrFenced, once another instance claimed the fence.
func BusPublisher(p *bus.Publisher, opts ...bus.BatchOption) Publisher {
	return busPublisher{p: p, opts: opts}
}

type busPublisher struct {
	p    *bus.Publisher
	opts []bus.BatchOption
}

func (b busPublisher) MaxBatch() int { return b.p.MaxBatch() }

// Stalled is why the publisher re-sends its current batch (a full stream,
// a timeout), or nil; checkStall puts it in the Degraded reason.
func (b busPublisher) Stalled() error { return b.p.Stalled() }

func (b busPublisher) StageBatch(msgs []bus.Message) (StagedBatch, error) {
	sb, err := b.p.StageBatch(msgs, b.opts...)
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// PositionStore reads back what the stream already holds. *bus.Conn
// implements it.
type PositionStore interface {
	// LastMessage returns the newest message stored in stream on the
	// subject filter; the error wraps bus.ErrNotFound when there is none.
	LastMessage(ctx context.Context, stream, subjectFilter string) (*bus.StoredMessage, error)
}

// The bus implements the roles the source needs.
var (
	_ StagedBatch   = (*bus.StagedBatch)(nil)
	_ PositionStore = (*bus.Conn)(nil)
)

// PositionHeader is the message header that carries the change's position,
// so that a restarted source finds where it stopped without decoding
// payloads.
const PositionHeader = "Tributary-Position"

// truncateKeyToken is the subject key token of truncate envelopes. It can
// never come out of bus.Token (which writes '%' only before two upper-case
// hex digits), so it never collides with a row key.
const truncateKeyToken = "%truncate"

// heartbeatPrefix is the prefix of the logical decoding messages the source
// writes to keep its slot moving.
const heartbeatPrefix = "tributary_heartbeat"

// closeTimeout bounds closing a connection.
const closeTimeout = 5 * time.Second

// State is the state of a source, as reported through Options.OnStatus.
type State string

// States of a source.
const (
	StateStarting     State = "starting"
	StateSnapshotting State = "snapshotting"
	StateStreaming    State = "streaming"
	// StateDegraded: not streaming, retrying (Postgres unreachable, the slot
	// in use by another process, a snapshot that failed) or waiting for
	// JetStream to acknowledge. Status.Reason says why.
	StateDegraded State = "degraded"
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
	// StateFailed: Run returned an error that retrying cannot fix.
	StateFailed State = "failed"
)

// Status is a state change of the source.
type Status struct {
	State  State
	Reason string
	Err    error
	// ConfirmedLSN is the last position confirmed to Postgres ("" before the
	// first).
	ConfirmedLSN string
	// Uncaptured names the watched tables whose changes are not captured
	// although the source streams (dropped, dropped and created again, or
	// removed from the publication), one problem each with what to do;
	// checked with every heartbeat. Nil when every table is captured.
	Uncaptured []string
}

// Options are the source's dependencies besides its config.
type Options struct {
	// Logger receives the source's log; default: discard.
	Logger *slog.Logger
	// Registerer receives the metrics; default: a private registry.
	Registerer prometheus.Registerer
	// OnStatus, when set, is called on every state change, from Run's
	// goroutine. It must not block.
	OnStatus func(Status)
}

// Source streams one Postgres database's watched tables into the changes
// stream. Create it with New and run it with Run.
type Source struct {
	cfg      Config
	pub      Publisher
	store    PositionStore
	topo     streams.Topology
	log      *slog.Logger
	met      *metrics
	onStatus func(Status)
	types    *typeRegistry
	srcToken string

	running atomic.Bool

	// reportMu orders status reports: held from a change of the status
	// to the end of its OnStatus call, so reports from the session and
	// the heartbeat goroutines arrive in the order of the changes and the
	// last one is always the current status.
	reportMu  sync.Mutex
	mu        sync.Mutex
	status    Status
	confirmed uint64
}

// New validates cfg (every problem at once, wrapping ErrConfig) and returns a
// Source that is not running yet. It opens no connection.
func New(cfg Config, pub Publisher, store PositionStore, topo streams.Topology, opts Options) (*Source, error) {
	if pub == nil || store == nil {
		return nil, fmt.Errorf("%w: a Publisher and a PositionStore are required", ErrConfig)
	}
	if cfg.BatchMaxMessages == 0 {
		cfg.BatchMaxMessages = pub.MaxBatch()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BatchMaxMessages > pub.MaxBatch() {
		return nil, fmt.Errorf("%w: source %s: batchMaxMessages %d is above the largest atomic batch the bus accepts (%d, nats.maxBatch)",
			ErrConfig, cfg.ID, cfg.BatchMaxMessages, pub.MaxBatch())
	}
	if topo.Prefix == "" || topo.Changes.Name == "" {
		return nil, fmt.Errorf("%w: the topology has no changes stream", ErrConfig)
	}
	if !topo.Changes.AllowAtomicPublish {
		return nil, fmt.Errorf("%w: the changes stream %s does not allow atomic publish", ErrConfig, topo.Changes.Name)
	}
	cfg = cfg.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	met, err := newMetrics(opts.Registerer, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("registering the metrics of source %s: %w", cfg.ID, err)
	}
	s := &Source{
		cfg:      cfg,
		pub:      pub,
		store:    store,
		topo:     topo,
		log:      opts.Logger.With("component", "source-pg", "id", cfg.ID),
		met:      met,
		onStatus: opts.OnStatus,
		types:    newTypeRegistry(),
		srcToken: bus.Token(cfg.ID),
	}
	return s, nil
}

// Status returns the source's current state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Source) setStatus(st State, reason string, err error) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	s.mu.Lock()
	changed := s.status.State != st || s.status.Reason != reason
	s.status = Status{State: st, Reason: reason, Err: err, ConfirmedLSN: s.status.ConfirmedLSN, Uncaptured: s.status.Uncaptured}
	cur := s.status
	s.mu.Unlock()
	s.met.setState(st)
	if changed && s.onStatus != nil {
		s.onStatus(cur)
	}
}

func (s *Source) setConfirmed(lsn uint64) {
	s.mu.Lock()
	if lsn > s.confirmed {
		s.confirmed = lsn
		s.status.ConfirmedLSN = lsnString(lsn)
	}
	s.mu.Unlock()
	s.met.confirmedLSN.Set(float64(lsn))
}

// Run streams until ctx is cancelled or a fatal error. Lost connections,
// a slot in use by another process, failed snapshots and publish failures
// are retried with capped exponential backoff and jitter (forever unless
// Backoff.MaxElapsed is set), reporting StateDegraded with the reason.
//
// Cancelling ctx stops gracefully: reading stops, outstanding batches are
// awaited for at most Timeouts.Stop, a final status update confirms the last
// durable position, the replication connection is closed, and the slot is
// dropped when DropSlotOnStop is set. Run then returns nil, or an error
// wrapping ErrStopIncomplete when acknowledgements were missing (those
// changes are sent again next time; nothing is lost), or the error of
// dropping the slot.
//
// A batch refused because another instance claimed the source's fence
// (bus.ErrFenced: this instance's lease is stale) ends Run at once, without
// retrying: nothing more is published, and no position is confirmed to
// Postgres any more (not even the last durable one: the replication
// connection is closed without a final status update). The caller must
// step down.
//
// Run returns errors wrapping bus.ErrFenced, ErrSetup, ErrSlotInvalidated,
// ErrPositionConflict or ErrDecode without retrying. Every goroutine it starts has ended
// when it returns. Run may be called once at a time.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("pgsource: Run called while already running")
	}
	defer s.running.Store(false)

	bo := retry.NewBackOff(s.cfg.Backoff.Initial, s.cfg.Backoff.Max)
	var failingSince time.Time
	s.setStatus(StateStarting, "", nil)
	for {
		res := s.runSession(ctx)
		err := res.err
		if errors.Is(err, bus.ErrFenced) {
			// Another instance holds the source now. Even a stop must not
			// drop the slot that instance streams from.
			s.log.Error("fenced out: another instance claimed the source; publishing stopped, stepping down", "err", err)
			s.setStatus(StateFailed, err.Error(), err)
			return err
		}
		if ctx.Err() != nil {
			return s.stopped(err)
		}
		if isFatal(err) || errors.Is(err, ErrDecode) {
			// A change that cannot be decoded would fail the same way on
			// every retry; skipping it would lose it.
			s.log.Error("source failed", "err", err)
			s.setStatus(StateFailed, err.Error(), err)
			return err
		}
		if res.streamedFor >= 5*time.Second {
			bo.Reset()
			failingSince = time.Time{}
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if max := s.cfg.Backoff.MaxElapsed; max > 0 && time.Since(failingSince) > max {
			err = fmt.Errorf("giving up after failing for %s: %w", time.Since(failingSince).Round(time.Second), err)
			s.setStatus(StateFailed, err.Error(), err)
			return err
		}
		delay := bo.NextBackOff()
		s.met.reconnects.Inc()
		s.log.Warn("source session ended; retrying", "err", err, "retry_in", delay)
		s.setStatus(StateDegraded, err.Error(), err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return s.stopped(nil)
		}
	}
}

// stopped ends Run after its context was cancelled: the slot is dropped
// when configured. Only an incomplete drain is an error: whatever a session
// was doing when the stop interrupted it (connecting, a snapshot) is not.
func (s *Source) stopped(err error) error {
	if !errors.Is(err, ErrStopIncomplete) {
		err = nil
	}
	if s.cfg.DropSlotOnStop {
		if derr := s.dropSlot(); derr != nil && err == nil {
			err = derr
		}
	}
	s.setStatus(StateStopped, "", err)
	return err
}

// dropSlot drops the slot after a stop, waiting for the walsender that used
// it to exit, within Timeouts.Stop.
func (s *Source) dropSlot() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeouts.Stop)
	defer cancel()
	conn, err := s.connectQuery(ctx, "drop")
	if err != nil {
		return fmt.Errorf("dropping replication slot %q: %w", s.cfg.SlotName, err)
	}
	defer closeConn(conn)
	for {
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", s.cfg.SlotName)
		if err == nil {
			s.log.Info("dropped replication slot", "slot", s.cfg.SlotName)
			return nil
		}
		// The walsender may not have released the slot yet (object in use).
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("dropping replication slot %q: %w", s.cfg.SlotName, err)
		}
	}
}

// readFloor returns the position of the newest message of this source in
// the changes stream ("" when there is none). Changes at or below it are
// already stored.
func (s *Source) readFloor(ctx context.Context) (string, error) {
	filter := s.topo.ChangeFilter(s.srcToken)
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Query)
	defer cancel()
	m, err := s.store.LastMessage(qctx, s.topo.Changes.Name, filter)
	if errors.Is(err, bus.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the last stored position of source %s (%s): %w", s.cfg.ID, filter, err)
	}
	pos := m.Header[PositionHeader]
	if pos == "" {
		var env struct {
			Position string `json:"position"`
		}
		if json.Unmarshal(m.Data, &env) == nil {
			pos = env.Position
		}
	}
	if _, _, err := change.ParsePGPosition(pos); err != nil {
		return "", fatal(fmt.Errorf("%w: the newest message of source %s (stream %s sequence %d, subject %s) has no Postgres position (%v): another producer publishes under this source id",
			ErrPositionConflict, s.cfg.ID, m.Stream, m.Sequence, m.Subject, err))
	}
	return pos, nil
}

// message builds the bus message of one envelope.
func (s *Source) message(env *change.Envelope, keyToken string) (bus.Message, error) {
	data, err := env.Encode()
	if err != nil {
		return bus.Message{}, fmt.Errorf("%w: encoding the %s of %s at %s: %v", ErrDecode, env.Op, env.Element.ID, env.Position, err)
	}
	label := env.Element.Labels[0]
	return bus.Message{
		Subject: s.topo.ChangeSubject(s.srcToken, bus.Token(label), keyToken),
		ID:      s.cfg.ID + ":" + env.Position,
		Data:    data,
		Header:  map[string]string{PositionHeader: env.Position},
	}, nil
}

func lsnString(lsn uint64) string {
	return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn))
}
