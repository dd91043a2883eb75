// Package logging builds the log/slog loggers every Tributary binary and
// component uses, and redacts secrets from connection strings before they are
// logged.
//
// It owns: the text/JSON handler choice and level parsing (New), the per-
// component attributes (Component), a discard logger for defaults and tests
// (Discard), and RedactURL for postgres://, nats:// and key=value connection
// strings and NATS server lists (comma-separated, schemes optional).
//
// It must never: touch the global slog default logger, hold state between
// calls, or log anything itself. Code that logs a connection string passes it
// through RedactURL first; no other package re-implements redaction.
package logging
