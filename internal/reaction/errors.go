package reaction

import "errors"

// Sentinel errors of the reaction kinds. Returned errors wrap one of them
// and say what was being done; bus.IsPermanent tells whether the consumer
// retries the result (retryable) or dead-letters it (permanent).
var (
	// ErrTargetRejected: the target refused the effect for a reason that
	// sending it again cannot fix (an HTTP 4xx other than 408 and 429, an
	// SQL statement with a syntax error or a constraint violation).
	// Always wrapped with bus.Permanent.
	ErrTargetRejected = errors.New("target rejected the effect")
	// ErrTargetUnavailable: the target could not be reached or asked to
	// be called later (connection refused or lost, timeout, HTTP 408, 429
	// or 5xx, a lost database connection). Retryable.
	ErrTargetUnavailable = errors.New("target unavailable")
	// ErrBadResult: the result cannot be turned into an effect (a template
	// that fails on the row, a value JSON cannot encode, a missing SQL
	// parameter). Always wrapped with bus.Permanent.
	ErrBadResult = errors.New("result cannot be turned into an effect")
)
