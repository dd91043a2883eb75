package main

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

const (
	// ratioTarget is the share of the smaller limit a query must reach.
	ratioTarget = 0.50
	// filterRateTarget is the filter query's least throughput, changes/s.
	filterRateTarget = 50_000
	// latencyTarget bounds the p99 publish-to-result latency.
	latencyTarget = 50 * time.Millisecond
)

// report renders the results as markdown.
func report(r *results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("\n### Run of %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	w("Machine: %d CPUs (nproc), load average %s before and %s after (the run took %s). "+
		"Embedded nats-server, %s, file store in a temporary directory. N = %d changes "+
		"(querytest's workload: three quarters orders, a quarter drivers). GOGC %d in this process, as in the binaries. "+
		"Rates are changes of the stream per second (N / elapsed), for the queries and the limits alike.\n\n",
		runtime.NumCPU(), r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second), syncName(r.sync), r.n, r.gcPercent)

	w("Throughput over history (N changes stored before the query starts; start → last result acknowledged):\n\n")
	w("| query | reads | ack-only consumer | engine Apply | limit (smaller) | query | path | query / limit | ≥ 50%% | ≥ 50,000/s |\n")
	w("|---|---:|---:|---:|---:|---:|---|---:|:---:|:---:|\n")
	for _, q := range queries {
		qr := r.perQuery[q.name]
		if qr.history == nil {
			continue
		}
		limit, which := limitOf(qr)
		path := "live"
		if qr.replayed {
			path = "replay"
		}
		ratio := qr.history.query.rate / limit
		w("| %s | %d | %s | %s | %s (%s) | %s | %s | %s | %s | %s |\n", q.name, qr.read,
			num(qr.acks.rate), num(qr.apply.rate), num(limit), which, num(qr.history.query.rate), path,
			pct(ratio), pass(ratio >= ratioTarget), rateVerdict(q, qr.history.query.rate))
	}
	w("\n")

	if anyLive(r) {
		w("Throughput live (the query consuming live; N changes published as fast as the bus takes them, one atomic batch at a time; first publish → last result acknowledged):\n\n")
		w("| query | publishing alone | query | query / limit | ≥ 50%% | ≥ 50,000/s | result messages |\n")
		w("|---|---:|---:|---:|:---:|:---:|---:|\n")
		for _, q := range queries {
			qr := r.perQuery[q.name]
			if qr.live == nil {
				continue
			}
			ratio, verdict := "—", "—"
			if qr.history != nil {
				limit, _ := limitOf(qr)
				ratio = pct(qr.live.query.rate / limit)
				verdict = pass(qr.live.query.rate/limit >= ratioTarget)
			}
			w("| %s | %s | %s | %s | %s | %s | %d |\n", q.name, num(qr.live.publish.rate), num(qr.live.query.rate),
				ratio, verdict, rateVerdict(q, qr.live.query.rate), qr.live.seq)
		}
		w("\nThe limits are those of the history table (the same changes, read from the stream).\n\n")
		w("Where the live query's time goes (its metrics: one handler call per batch of changes, which applies them and publishes their results as one fenced atomic batch; the rest of a cycle is fetching and acknowledging):\n\n")
		w("| query | batches | changes per batch | cycle (elapsed / batches) | handler per batch | of which publishing results | result publishes |\n")
		w("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, q := range queries {
			qr := r.perQuery[q.name]
			if qr.live == nil {
				continue
			}
			cycleRow(w, q.name, qr.read, qr.live.query.elapsed, qr.live.cycles)
		}
		w("\n")
	}

	if anyHistory(r) {
		w("Restart with N changes of history (no checkpoints yet: the second instance rebuilds by replaying):\n\n")
		w("| query | first start → caught up | restart → consuming live (rebuild) | restart → nothing pending |\n")
		w("|---|---:|---:|---:|\n")
		for _, q := range queries {
			qr := r.perQuery[q.name]
			if qr.history == nil {
				continue
			}
			h := qr.history
			w("| %s | %.2f s | %.2f s | %.2f s |\n", q.name, h.query.elapsed.Seconds(), h.restart.elapsed.Seconds(), h.restartQ.elapsed.Seconds())
		}
		w("\n")
	}

	if anyLatency(r) {
		w("Live latency (changes published on a schedule, each batch holding the changes due):\n\n")
		w("| query | asked / achieved changes/s | publish calls | results measured | publish→result stored p50 / p99 / max | change stored→result stored p50 / p99 / max | p99 < 50 ms |\n")
		w("|---|---|---:|---:|---|---|:---:|\n")
		for _, q := range queries {
			l := r.perQuery[q.name].latency
			if l == nil {
				continue
			}
			w("| %s | %d / %s | %d | %d | %s | %s | %s |\n", q.name, l.target, num(l.achieved), l.batches, l.samples,
				pcts(l.published), pcts(l.stored), pass(l.published.p99 < latencyTarget))
		}
		w("\nThe query's batches during the latency run:\n\n")
		w("| query | batches | changes per batch | cycle (elapsed / batches) | handler per batch | of which publishing results | result publishes |\n")
		w("|---|---:|---:|---:|---:|---:|---:|\n")
		for _, q := range queries {
			l := r.perQuery[q.name].latency
			if l == nil {
				continue
			}
			cycleRow(w, q.name, l.read, l.elapsed, l.cycles)
		}
		w("\n")
	}
	return b.String()
}

func cycleRow(w func(string, ...any), name string, read int, elapsed time.Duration, c cycles) {
	if c.handled == 0 {
		w("| %s | 0 | — | — | — | — | 0 |\n", name)
		return
	}
	per := func(d time.Duration, n uint64) string {
		if n == 0 {
			return "—"
		}
		return ms(d/time.Duration(n)) + " ms"
	}
	w("| %s | %d | %.0f | %s | %s | %s | %d |\n", name, c.handled, float64(read)/float64(c.handled),
		per(elapsed, c.handled), per(c.handlerBusy, c.handled), per(c.publishBusy, c.handled), c.published)
}

func syncName(m bus.SyncMode) string {
	if m == bus.SyncInterval {
		return "**lazy fsync** (Sync interval, not the default)"
	}
	return "fsync always"
}

func limitOf(qr *queryResults) (float64, string) {
	if qr.acks.rate <= qr.apply.rate {
		return qr.acks.rate, "ack-only"
	}
	return qr.apply.rate, "Apply"
}

func rateVerdict(q benchQuery, rate float64) string {
	if q.name != "filter" {
		return "—"
	}
	return pass(rate >= filterRateTarget)
}

func anyHistory(r *results) bool {
	for _, qr := range r.perQuery {
		if qr.history != nil {
			return true
		}
	}
	return false
}

func anyLive(r *results) bool {
	for _, qr := range r.perQuery {
		if qr.live != nil {
			return true
		}
	}
	return false
}

func anyLatency(r *results) bool {
	for _, qr := range r.perQuery {
		if qr.latency != nil {
			return true
		}
	}
	return false
}

// pct shows a ratio as a whole percentage rounded down, so that a ratio
// just under a target never reads as the target.
func pct(ratio float64) string {
	return fmt.Sprintf("%d%%", int(math.Floor(100*ratio+1e-9))) // 1e-9: 0.57 is 56.99999… in binary
}

func pass(ok bool) string {
	if ok {
		return "pass"
	}
	return "**no**"
}

func pcts(p percentiles) string {
	return fmt.Sprintf("%s / %s / %s ms", ms(p.p50), ms(p.p99), ms(p.max))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

// num formats f rounded, with thousands separators.
func num(f float64) string {
	n := int64(f + 0.5)
	s := fmt.Sprint(n)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}
