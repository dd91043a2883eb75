package app

import (
	"runtime/debug"
	"testing"
)

func TestApplyGCDefault(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "")
	if got := ApplyGCDefault(); got != DefaultGCPercent {
		t.Fatalf("without GOGC: ApplyGCDefault = %d, want %d", got, DefaultGCPercent)
	}
	if got := debug.SetGCPercent(DefaultGCPercent); got != DefaultGCPercent {
		t.Fatalf("without GOGC the collector runs at %d, want %d", got, DefaultGCPercent)
	}

	// With GOGC set, the runtime applied it at start: the value in effect
	// is kept (77 stands for whatever GOGC said).
	t.Setenv("GOGC", "77")
	debug.SetGCPercent(77)
	if got := ApplyGCDefault(); got != 77 {
		t.Fatalf("with GOGC: ApplyGCDefault = %d, want 77 (unchanged)", got)
	}
	if got := debug.SetGCPercent(77); got != 77 {
		t.Fatalf("with GOGC the collector runs at %d, want 77", got)
	}
}
