package pgsource

import "errors"

// Sentinel errors. The errors returned by this package wrap them and say what
// was being done; callers test them with errors.Is.
var (
	// ErrConfig: the Config is invalid. The message names every problem.
	ErrConfig = errors.New("invalid postgres source config")
	// ErrSetup: Postgres is not set up for this source and the source may
	// not (or cannot) fix it: a missing table, publication or slot with
	// Create false, a table without a key, wal_level not logical. The message
	// names the SQL to run. Run returns it without retrying.
	ErrSetup = errors.New("postgres source setup")
	// ErrSlotInvalidated: the replication slot lost the WAL it needed
	// (wal_status lost). The changes since its confirmed position are gone
	// from Postgres; a resync (drop the slot, start with snapshot initial) is
	// needed. Run returns it without retrying.
	ErrSlotInvalidated = errors.New("replication slot invalidated")
	// ErrPositionConflict: the changes stream holds positions of this source
	// that do not fit the slot (ahead of the database's WAL, or the slot is
	// missing while history exists and no snapshot may resync it). Run
	// returns it without retrying: something outside Tributary replaced the
	// database or the slot.
	ErrPositionConflict = errors.New("stored positions do not match the replication slot")
	// ErrSnapshot: the initial snapshot failed (a lock held too long, a step
	// or the whole snapshot over its deadline). Run retries the snapshot
	// from the start after a backoff.
	ErrSnapshot = errors.New("initial snapshot failed")
	// ErrDecode: a pgoutput message or a column value could not be decoded.
	// Run returns it without retrying (the same change would fail again, and
	// skipping it would lose it).
	ErrDecode = errors.New("decoding a replication message")
	// ErrStopIncomplete: a graceful stop did not see every outstanding batch
	// acknowledged (the stop timeout passed, or a publish failed); the
	// unacknowledged changes stay unconfirmed and are sent again by the next
	// run. Nothing is lost.
	ErrStopIncomplete = errors.New("stop incomplete: changes left unacknowledged")
)

// fatalError marks an error that retrying cannot fix: Run returns it.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err: err}
}

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}
