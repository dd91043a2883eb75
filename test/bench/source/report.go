package main

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

const (
	// throughputTarget is the share of the smaller limit source-pg must
	// reach.
	throughputTarget = 0.60
	// latencyTarget bounds the p99 commit-to-ack latency.
	latencyTarget = 100 * time.Millisecond
)

// report renders the results as markdown.
func report(r *results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pgf := "off"
	if r.pgFsync {
		pgf = "on"
	}
	w("\n### Run of %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	w("Machine: %d CPUs (nproc), load average %s before and %s after. Postgres fsync %s. "+
		"N = %d rows per workload; large transactions of %d rows. nats bench message size %d B "+
		"(mean source-pg envelope payload %.0f B). GOGC %d in this process (source-pg and its embedded server), as in the binaries.\n\n",
		runtime.NumCPU(), r.loadBefore, r.loadAfter, pgf, r.n, r.txRows, r.benchSize, r.envSize, r.gcPercent)

	if len(r.gen) > 0 {
		w("Workload generation (server-side, synchronous_commit off):")
		for _, wl := range sortedKeys(r.gen) {
			g := r.gen[wl]
			w(" %s %.1f s (%s rows/s);", wl, g.elapsed.Seconds(), num(g.rate))
		}
		w("\n\n")
	}

	w("Throughput (the issue's limits: pg_recvlogical, and nats bench async per-message publish):\n\n")
	w("| workload | bus fsync | pg_recvlogical rows/s | nats bench async msgs/s | limit (smaller) | source-pg rows/s | source-pg / limit | ≥ 60%% |\n")
	w("|---|---|---:|---:|---:|---:|---:|:---:|\n")
	for _, wl := range sortedKeys(r.source) {
		for _, sm := range syncModes {
			src := r.source[wl][sm.name]
			recv := r.recv[wl]
			bench, benched := r.benchAsync[sm.name]
			limit, which := recv.rate, "pg"
			if benched && bench.rate < limit {
				limit, which = bench.rate, "bus"
			}
			w("| %s | %s | %s | %s | %s (%s) | %s | %.0f%% | %s |\n",
				wl, sm.name, num(recv.rate), rate(bench), num(limit), which,
				num(src.rate), 100*src.rate/limit, verdict(src.rate/limit, benched))
		}
	}
	w("\npg_recvlogical is measured once per workload (it does not involve the bus), nats bench once per fsync mode " +
		"(it does not involve Postgres); each appears in every row it bounds.\n\n")

	if len(r.benchAtomic) > 0 {
		w("Bus limits on the kind of path source-pg takes (nats bench: atomic batches of %d, nats-server's default limit, one at a time; source-pg sends batches of up to %d and stages the next during a commit), and source-pg against them:\n\n", bus.DefaultMaxBatch, bus.DefaultEmbeddedMaxBatch)
		w("| bus fsync | nats bench atomic msgs/s | atomic, source-pg's message shape msgs/s | single-row source-pg / shaped | large tx source-pg / shaped |\n")
		w("|---|---:|---:|---:|---:|\n")
		for _, sm := range syncModes {
			shaped := r.benchShaped[sm.name]
			cell := func(prefix string) string {
				for _, wl := range sortedKeys(r.source) {
					if strings.HasPrefix(wl, prefix) && shaped.rate > 0 {
						return fmt.Sprintf("%.0f%%", 100*r.source[wl][sm.name].rate/shaped.rate)
					}
				}
				return "—"
			}
			w("| %s | %s | %s | %s | %s |\n", sm.name, rate(r.benchAtomic[sm.name]), rate(shaped), cell("single"), cell("large"))
		}
		w("\nsource-pg's message shape: a message id (`--dedup`) and a subject of its own (`--multisubject --multisubjectmax=0`) on every message.\n\n")
	}

	w("Where source-pg's time goes (one batch commits while the next is staged; a batch's time runs from staging to acknowledgement, so the sum exceeds the elapsed time when they overlap):\n\n")
	w("| workload | bus fsync | elapsed | atomic batches | mean batch | mean stage→ack per batch | batches in progress (mean) |\n")
	w("|---|---|---:|---:|---:|---:|---:|\n")
	for _, wl := range sortedKeys(r.source) {
		for _, sm := range syncModes {
			src := r.source[wl][sm.name]
			if src.batches == 0 {
				continue
			}
			w("| %s | %s | %.1f s | %d | %.0f | %s | %.2f |\n", wl, sm.name, src.elapsed.Seconds(), src.batches,
				float64(src.count)/float64(src.batches), ms(src.batchBusy/time.Duration(src.batches)),
				src.batchBusy.Seconds()/src.elapsed.Seconds())
		}
	}
	w("\n")

	if len(r.latency) == 0 {
		return b.String()
	}
	w("Commit-to-ack latency while a writer commits one-row transactions (synchronous_commit on) at a fixed rate:\n\n")
	w("| bus fsync | writer target commits/s | achieved commits/s | changes | commit→stored p50 | p99 | max | commit→ack p50 | p99 | max | p99 < 100 ms |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n")
	for _, sm := range syncModes {
		l, ok := r.latency[sm.name]
		if !ok {
			continue
		}
		verdict := "pass"
		if l.acked.p99 >= latencyTarget {
			verdict = "**FAIL**"
		}
		w("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n",
			sm.name, num(float64(l.target)), num(l.achieved), l.count,
			ms(l.stored.p50), ms(l.stored.p99), ms(l.stored.max),
			ms(l.acked.p50), ms(l.acked.p99), ms(l.acked.max), verdict)
	}
	return b.String()
}

// verdict says whether ratio meets the throughput target; limitsComplete
// is false when the bus limit was not measured.
func verdict(ratio float64, limitsComplete bool) string {
	v := "pass"
	if ratio < throughputTarget {
		v = "**FAIL**"
	}
	if !limitsComplete {
		v += " (pg limit only)"
	}
	return v
}

// rate formats a measured rate, "—" when it was not measured.
func rate(m measure) string {
	if m.rate <= 0 {
		return "—"
	}
	return num(m.rate)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// num formats a rate with thousands separators.
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

// sortedKeys returns the workload names in the order of the tables:
// single-row first, then alphabetical.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if strings.HasPrefix(k, "single") {
			return 0
		}
		return 1
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}
