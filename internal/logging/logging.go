package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ErrInvalid is returned (wrapped) by New when the format or the level is not
// one of the accepted values.
var ErrInvalid = errors.New("logging: invalid setting")

// Formats accepted by New.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w in format ("text" or "json") at level
// ("debug", "info", "warn" or "error"). Both are case-insensitive; an empty
// format means text and an empty level means info. Any other value is an
// error wrapping ErrInvalid that names the bad value and the accepted ones.
// New never changes slog's default logger.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: nil writer", ErrInvalid)
	}
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w: log format %q (want %q or %q)", ErrInvalid, format, FormatText, FormatJSON)
	}
}

// ParseLevel parses "debug", "info", "warn" (or "warning") and "error",
// case-insensitively; empty means info. Other values give an error wrapping
// ErrInvalid.
func ParseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("%w: log level %q (want debug, info, warn or error)", ErrInvalid, level)
	}
}

// Component returns l with the attributes component=kind and id=id, the pair
// every component's log lines carry (for example kind "source-pg", id "shop").
// A nil l gives a discard logger with the same attributes.
func Component(l *slog.Logger, kind, id string) *slog.Logger {
	if l == nil {
		l = Discard()
	}
	return l.With(slog.String("component", kind), slog.String("id", id))
}

// Discard returns a logger that drops everything. Packages use it as the
// default when no logger is passed in.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}
