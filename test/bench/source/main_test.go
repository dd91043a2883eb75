package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseBenchRateOneClient(t *testing.T) {
	out := "12:00:00 Starting JetStream publisher benchmark\n\nNATS JetStream atomic batch publisher stats: 107,398 msgs/sec ~ 24 MiB/sec\n"
	got, err := parseBenchRate(out)
	if err != nil || got != 107398 {
		t.Fatalf("parseBenchRate = %v, %v; want 107398", got, err)
	}
}

func TestParseBenchRatePrefersTheAggregate(t *testing.T) {
	out := "  [1] 60,000 msgs/sec ~ 13 MiB/sec (50,000 msgs)\n  [2] 61,000 msgs/sec ~ 13 MiB/sec (50,000 msgs)\n\n" +
		" NATS JetStream async publisher aggregated stats: 120,500 msgs/sec ~ 27 MiB/sec\n"
	got, err := parseBenchRate(out)
	if err != nil || got != 120500 {
		t.Fatalf("parseBenchRate = %v, %v; want 120500", got, err)
	}
}

func TestParseBenchRateRejectsOutputWithoutARate(t *testing.T) {
	if _, err := parseBenchRate("nats: error: nats: no responders available for request\n"); err == nil {
		t.Fatal("want an error for output without a rate")
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

func TestValidateReportsEveryProblem(t *testing.T) {
	o := options{n: 10, txRows: 3, rate: 0, writers: 0, latencyFor: time.Millisecond, phases: map[string]bool{"nope": true}}
	err := o.validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"-phases", "-n 10", "-tx-rows 3", "-rate 0", "-writers 0", "-latency-duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	good := options{n: 50_000, txRows: 10_000, rate: 5000, writers: 8, latencyFor: 5 * time.Second, phases: map[string]bool{phaseBench: true}}
	if err := good.validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
}

func TestReportMarksTargets(t *testing.T) {
	r := &results{
		n: 1000, txRows: 100, benchSize: 236, envSize: 236,
		gen:  map[string]measure{},
		recv: map[string]measure{"single-row": {rate: 100_000}},
		source: map[string]map[string]measure{"single-row": {
			"fsync always": {count: 1000, elapsed: time.Second, rate: 70_000, batches: 2, batchBusy: 500 * time.Millisecond},
			"lazy fsync":   {count: 1000, elapsed: time.Second, rate: 50_000, batches: 2, batchBusy: 500 * time.Millisecond},
		}},
		benchAsync:  map[string]measure{"fsync always": {rate: 5000}, "lazy fsync": {rate: 120_000}},
		benchAtomic: map[string]measure{"fsync always": {rate: 100_000}, "lazy fsync": {rate: 120_000}},
		benchShaped: map[string]measure{"fsync always": {rate: 50_000}, "lazy fsync": {rate: 60_000}},
		latency: map[string]latencyResult{
			"fsync always": {count: 10, target: 5000, achieved: 5000, acked: percentiles{p99: 150 * time.Millisecond}},
			"lazy fsync":   {count: 10, target: 5000, achieved: 5000, acked: percentiles{p99: 40 * time.Millisecond}},
		},
	}
	out := report(r)
	for _, want := range []string{
		"| single-row | fsync always | 100,000 | 5,000 | 5,000 (bus) | 70,000 | 1400% | pass |",
		"| single-row | lazy fsync | 100,000 | 120,000 | 100,000 (pg) | 50,000 | 50% | **FAIL** |",
		"| fsync always | 100,000 | 50,000 | 140% | — |",
		"| single-row | fsync always | 1.0 s | 2 | 500 | 250.0 ms | 0.50 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "**FAIL**") != 2 { // the lazy throughput row and the fsync-always latency row
		t.Errorf("want 2 failures marked:\n%s", out)
	}
}
