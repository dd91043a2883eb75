package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

// State is a component's lifecycle state.
type State string

// The states of a component.
const (
	// Stopped: not running anywhere (also the state of a component never
	// started).
	Stopped State = "stopped"
	// Starting: an instance claimed the component and runs its start steps.
	Starting State = "starting"
	// Running: working normally.
	Running State = "running"
	// Degraded: working but impaired (reconnecting, a worker restarting).
	Degraded State = "degraded"
	// Stopping: draining in-flight work before Stopped.
	Stopping State = "stopping"
	// Error: failed (start failed, supervisor gave up, lease lost); the
	// message says why.
	Error State = "error"
)

// States lists every state, in a stable order.
var States = []State{Stopped, Starting, Running, Degraded, Stopping, Error}

// transitions is the transition table: the states each state may move to.
var transitions = map[State][]State{
	Stopped:  {Starting},
	Starting: {Running, Stopping, Error},
	Running:  {Degraded, Stopping, Error},
	Degraded: {Running, Stopping, Error},
	Stopping: {Stopped, Error},
	Error:    {Starting, Stopping},
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Active reports whether an instance owns a component in this state
// (Starting, Running, Degraded, Stopping).
func (s State) Active() bool {
	return s == Starting || s == Running || s == Degraded || s == Stopping
}

// ErrInvalidTransition is wrapped by every error about a transition the
// table does not allow; errors.As with *TransitionError gives both states.
var ErrInvalidTransition = errors.New("invalid state transition")

// TransitionError is a transition the table does not allow.
type TransitionError struct {
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("cannot go from %s to %s: %v", e.From, e.To, ErrInvalidTransition)
}

// Is makes errors.Is(err, ErrInvalidTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// CanTransition reports whether the table allows from -> to.
func CanTransition(from, to State) bool {
	return slices.Contains(transitions[from], to)
}

// CheckTransition returns nil when the table allows from -> to, and a
// *TransitionError (wrapping ErrInvalidTransition, naming both states)
// otherwise.
func CheckTransition(from, to State) error {
	if CanTransition(from, to) {
		return nil
	}
	return &TransitionError{From: from, To: to}
}

// ComponentID names a component: its kind (source, query, reaction) and
// its id within the kind.
type ComponentID struct {
	Kind string
	ID   string
}

// String is "kind/id".
func (c ComponentID) String() string { return c.Kind + "/" + c.ID }

// Key is the component's key in the lifecycle and lease buckets:
// "<kind>.<id>", each escaped with bus.KeyToken.
func (c ComponentID) Key() string { return bus.KeyToken(c.Kind) + "." + bus.KeyToken(c.ID) }

func (c ComponentID) validate() error {
	if c.Kind == "" || c.ID == "" {
		return fmt.Errorf("component %q: kind and id are required", c.String())
	}
	return nil
}

// Status is the stored value of a component's key (JSON). Every revision is
// one transition.
type Status struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	State State  `json:"state"`
	// From is the state before this transition ("" for the first).
	From    State  `json:"from,omitempty"`
	Message string `json:"message,omitempty"`
	// Since is when the component entered State.
	Since time.Time `json:"since"`
	// Instance is the process instance that owns the component while it is
	// active (and the last one that did, after).
	Instance string `json:"instance,omitempty"`
	// UpdatedBy is the instance that wrote this transition: the owner, or
	// the standby that took over from an owner that lost its lease.
	UpdatedBy string `json:"updatedBy"`
}

// Record is a Status with the revision it was read at (0: never written,
// State Stopped).
type Record struct {
	Status
	Revision uint64
}

// Event is one stored lifecycle transition (see Store.History).
type Event struct {
	Component ComponentID
	From, To  State
	Message   string
	Instance  string
	UpdatedBy string
	Revision  uint64
	Time      time.Time
}
