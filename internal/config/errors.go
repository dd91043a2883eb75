package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError, so callers can
// tell a bad config from an I/O failure without a type assertion.
var ErrInvalid = errors.New("invalid config")

// Problem is one thing wrong with a config.
type Problem struct {
	// Path names the key, e.g. "sources[0].tableKeys[1].keyColumns". Empty for
	// problems with the document as a whole (such as YAML syntax errors).
	Path string
	// Line and Column locate the key or value in the YAML text (1-based); zero
	// when unknown, e.g. for a Config built in code or a missing key.
	Line, Column int
	// Message says what is wrong. It never contains a secret value.
	Message string
}

// String formats the problem as "[line:col: ]path: message".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", p.Line, p.Column)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a config. Parse, Load and
// Validate return it (never an empty one); errors.Is(err, ErrInvalid) holds.
type ValidationError struct {
	// File is the config file's path when it came from Load, else empty.
	File string
	// Problems in document order where positions are known, the rest after.
	Problems []Problem
}

// Error prints one problem per line, each prefixed with the file name when
// known.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteByte(':')
			if p.Line == 0 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// problems collects Problems during decoding and validation.
type problems struct {
	list []Problem
}

func (ps *problems) add(path, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) addAt(path string, line, col int, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: path, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// join builds child paths: field names with ".", indexes with "[i]".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
