package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"tributary.changes.shop.orders.>", "tributary.changes.shop.orders.orders:1", true},
		{"tributary.changes.shop.orders.>", "tributary.changes.shop.orders", false},
		{"tributary.changes.shop.orders.>", "tributary.changes.shop.drivers.drivers:1", false},
		{"tributary.changes.*.orders.>", "tributary.changes.shop.orders.a.b", true},
		{"tributary.changes.shop.orders.x", "tributary.changes.shop.orders.x", true},
		{"tributary.changes.shop.orders.x", "tributary.changes.shop.orders.x.y", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}

func TestSummarise(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := summarise(d)
	if p.p50 != 51*time.Millisecond || p.p99 != 99*time.Millisecond || p.max != 100*time.Millisecond {
		t.Fatalf("summarise = %+v; want p50 51ms, p99 99ms, max 100ms", p)
	}
	if (summarise(nil) != percentiles{}) {
		t.Fatal("summarise(nil) is not zero")
	}
}

func TestNum(t *testing.T) {
	for f, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.6: "1,234,568"} {
		if got := num(f); got != want {
			t.Errorf("num(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestPctRoundsDown(t *testing.T) {
	for r, want := range map[float64]string{0.4997: "49%", 0.5: "50%", 0.57: "57%", 1.2: "120%"} {
		if got := pct(r); got != want {
			t.Errorf("pct(%v) = %q, want %q", r, got, want)
		}
	}
}
