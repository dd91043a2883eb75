package bus

import (
	"errors"
	"fmt"
)

// Sentinel errors of package bus. Callers test them with errors.Is; the
// returned errors wrap them and say what was being done.
var (
	// ErrNotFound: the asked-for message does not exist (LastMessage on a
	// subject filter that matches no stored message).
	ErrNotFound = errors.New("not found")
	// ErrStreamNotFound: the named stream does not exist (the topology was
	// not applied, or the name is wrong).
	ErrStreamNotFound = errors.New("stream not found")
	// ErrInvalidMessage: a Message or batch is malformed (empty subject or
	// id, wildcard subject, reserved header, duplicate id in a batch, batch
	// size outside 1..Conn.MaxBatch, payload above the server's limit).
	ErrInvalidMessage = errors.New("invalid message")
	// ErrRejected: the server refused a publish for a reason that re-sending
	// cannot fix (atomic publish disabled on the stream, batch too large,
	// message too large, unsupported header, ...). Nothing was stored.
	ErrRejected = errors.New("publish rejected by the server")
	// ErrFenced: a fenced write (WithFence) was refused because another
	// writer claimed the fence after the writer's claim, or ClaimFence found
	// a claim with a newer lease token. The writer's lease is stale: it must
	// stop writing and step down. Nothing of the refused write was stored;
	// it is never re-sent.
	ErrFenced = errors.New("fenced out by a newer writer")
	// ErrClosed: the Publisher or Consumer was closed (or its connection).
	ErrClosed = errors.New("closed")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that IsPermanent reports true: a Consumer
// terminates the message and dead-letters it instead of retrying. A nil err
// stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	if IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent. Every other error is retryable.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
