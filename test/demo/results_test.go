package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// The log reaction's text lines parse back into results, and fold refuses
// what the demo must never show: a repeated or missing seq, or a diff that
// removes a row the result does not hold.
func TestLogLinesFoldAndRefuseRepeats(t *testing.T) {
	const out = `reaction=console query=q seq=1 added=2 updated=0 deleted=0
  + {"id":1,"n":10}
  + {"id":2,"n":20}
reaction=console query=q seq=2 added=1 updated=1 deleted=1
  + {"id":3,"n":30}
  ~ {"before":{"id":1,"n":10},"after":{"id":1,"n":11}}
  - {"id":2,"n":20}
`
	l := newLogReader()
	l.read(strings.NewReader(out), io.Discard)
	got, err := l.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := fold("q", got["q"])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"id":1,"n":11}`, `{"id":3,"n":30}`}; !slices.Equal(rows, want) {
		t.Fatalf("folded to %v, want %v", rows, want)
	}

	// The same result twice: a repeat.
	if _, err := fold("q", append(got["q"], got["q"][1])); err == nil || !strings.Contains(err.Error(), "result 3 has seq 2") {
		t.Fatalf("a repeated seq folded: %v", err)
	}
	// A gap.
	if _, err := fold("q", got["q"][1:]); err == nil || !strings.Contains(err.Error(), "result 1 has seq 2") {
		t.Fatalf("a missing seq folded: %v", err)
	}
	// A result still being printed is left out until its rows came.
	l = newLogReader()
	l.read(strings.NewReader(out[:strings.Index(out, "  - ")]), io.Discard)
	if got, err := l.snapshot(); err != nil || len(got["q"]) != 1 {
		t.Fatalf("with the last row missing: %d results, %v", len(got["q"]), err)
	}
	// A line the log reaction does not write is a problem.
	l = newLogReader()
	l.read(strings.NewReader("panic: boom\n"), io.Discard)
	if _, err := l.snapshot(); err == nil {
		t.Fatal("an unexpected line on the reactor's stdout was accepted")
	}
}
