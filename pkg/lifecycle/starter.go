package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// RollbackTimeout bounds the undos of a failed start.
const RollbackTimeout = 30 * time.Second

// Undo reverses a completed start step (close a listener, stop a consumer).
// It is called at most once, with a context bounding it.
type Undo func(ctx context.Context) error

// Step is one named start step. Run returns the Undo of what it started
// (nil if nothing needs undoing); on error it must leave nothing running.
type Step struct {
	Name string
	Run  func(ctx context.Context) (Undo, error)
}

// StepError says which start step failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("start step %q: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Starter runs start steps all-or-nothing.
type Starter struct {
	steps []Step
	log   *slog.Logger
}

// NewStarter returns a Starter for steps, run in order. A nil logger
// discards.
func NewStarter(log *slog.Logger, steps ...Step) *Starter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Starter{steps: steps, log: log}
}

// Add appends a step.
func (s *Starter) Add(name string, run func(ctx context.Context) (Undo, error)) {
	s.steps = append(s.steps, Step{Name: name, Run: run})
}

// Start runs the steps in order. If one fails (or ctx ends between steps),
// the undos of the completed steps run in reverse order and the error is a
// *StepError naming the failed step, joined with any undo errors. On
// success it returns one Undo that reverses every step in reverse order.
func (s *Starter) Start(ctx context.Context) (Undo, error) {
	var undos []namedUndo
	for _, st := range s.steps {
		err := ctx.Err()
		var undo Undo
		if err == nil {
			undo, err = st.Run(ctx)
		}
		if err != nil {
			serr := &StepError{Step: st.Name, Err: err}
			s.log.Error("start failed; rolling back", "step", st.Name, "err", err)
			// Roll back even if ctx ended: the steps' resources must go.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
			uerr := undoAll(rctx, undos)
			cancel()
			return nil, errors.Join(serr, uerr)
		}
		s.log.Debug("start step done", "step", st.Name)
		if undo != nil {
			undos = append(undos, namedUndo{st.Name, undo})
		}
	}
	done := false
	return func(ctx context.Context) error {
		if done {
			return nil
		}
		done = true
		return undoAll(ctx, undos)
	}, nil
}

type namedUndo struct {
	name string
	undo Undo
}

func undoAll(ctx context.Context, undos []namedUndo) error {
	var errs []error
	for i := len(undos) - 1; i >= 0; i-- {
		if err := undos[i].undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("undo step %q: %w", undos[i].name, err))
		}
	}
	return errors.Join(errs...)
}
