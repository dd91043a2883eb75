package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

// errNoChange, returned by a Change decision, leaves the record as it is.
var errNoChange = errors.New("no change")

// Store keeps component states in the lifecycle bucket, one key per
// component. It is safe for concurrent use.
type Store struct {
	kv  *bus.KV
	log *slog.Logger
}

// NewStore uses kv (the topology's lifecycle bucket). A nil logger
// discards.
func NewStore(kv *bus.KV, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{kv: kv, log: log}
}

// Get reads a component's state. A component never written is Stopped at
// revision 0. The read may be stale on a cluster: decide with Change.
func (s *Store) Get(ctx context.Context, id ComponentID) (Record, error) {
	if err := id.validate(); err != nil {
		return Record{}, err
	}
	e, err := s.kv.Get(ctx, id.Key())
	if errors.Is(err, bus.ErrKeyNotFound) {
		return Record{Status: Status{Kind: id.Kind, ID: id.ID, State: Stopped}}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("reading the state of %s: %w", id, err)
	}
	var st Status
	if err := json.Unmarshal(e.Value, &st); err != nil {
		return Record{}, fmt.Errorf("decoding the state of %s (revision %d): %w", id, e.Revision, err)
	}
	if !st.State.Valid() {
		return Record{}, fmt.Errorf("the state of %s (revision %d) is %q: not a state", id, e.Revision, st.State)
	}
	return Record{Status: st, Revision: e.Revision}, nil
}

// Change runs one transition as a compare-and-swap loop: read the current
// record, let decide pick the next status from it, check the transition
// table, write with the read revision; on a conflict re-read and decide
// again. decide is called once per attempt and may return an error to give
// up (returned as is); the table check returns a *TransitionError wrapping
// ErrInvalidTransition. Change fills From and Since; decide fills the rest.
// It returns the record written.
func (s *Store) Change(ctx context.Context, id ComponentID, decide func(cur Record) (Status, error)) (Record, error) {
	if err := id.validate(); err != nil {
		return Record{}, err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return Record{}, fmt.Errorf("changing the state of %s: %w", id, err)
		}
		cur, err := s.Get(ctx, id)
		if err != nil {
			return Record{}, err
		}
		next, err := decide(cur)
		if err != nil {
			return cur, err
		}
		if err := CheckTransition(cur.State, next.State); err != nil {
			return cur, fmt.Errorf("component %s: %w", id, err)
		}
		next.Kind, next.ID, next.From = id.Kind, id.ID, cur.State
		next.Since = time.Now().UTC()
		val, err := json.Marshal(next)
		if err != nil {
			return cur, fmt.Errorf("encoding the state of %s: %w", id, err)
		}
		var rev uint64
		if cur.Revision == 0 {
			rev, err = s.kv.Create(ctx, id.Key(), val)
		} else {
			rev, err = s.kv.Update(ctx, id.Key(), val, cur.Revision)
		}
		if errors.Is(err, bus.ErrKeyExists) || errors.Is(err, bus.ErrRevisionMismatch) {
			s.log.Debug("state changed concurrently; re-reading", "component", id.String(), "attempt", attempt)
			continue
		}
		if err != nil {
			return cur, fmt.Errorf("writing the state of %s (%s -> %s): %w", id, cur.State, next.State, err)
		}
		return Record{Status: next, Revision: rev}, nil
	}
}

// History returns the stored transitions of a component, oldest first (as
// many as the bucket keeps).
func (s *Store) History(ctx context.Context, id ComponentID) ([]Event, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	es, err := s.kv.History(ctx, id.Key())
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", id, err)
	}
	var out []Event
	for _, e := range es {
		if ev, ok := decodeEvent(e); ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

func decodeEvent(e bus.Entry) (Event, bool) {
	if e.Op != bus.OpPut {
		return Event{}, false
	}
	var st Status
	if err := json.Unmarshal(e.Value, &st); err != nil || !st.State.Valid() {
		return Event{}, false
	}
	return Event{
		Component: ComponentID{Kind: st.Kind, ID: st.ID},
		From:      st.From, To: st.State,
		Message: st.Message, Instance: st.Instance, UpdatedBy: st.UpdatedBy,
		Revision: e.Revision, Time: st.Since,
	}, true
}
