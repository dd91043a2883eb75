package reaction_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// BenchmarkHTTPThroughConsumer measures results delivered per second to a
// loopback webhook through the real consumer (fetch, handler, confirmed
// ack), 10 rows per result, one request per result, 8 queries.
func BenchmarkHTTPThroughConsumer(b *testing.B) {
	e := newBusEnv(b)
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var queries []string
	for i := range 8 {
		queries = append(queries, fmt.Sprintf("q%d", i))
	}
	n := b.N
	for seq := 1; seq <= n; seq++ {
		q := queries[seq%len(queries)]
		r := &change.Result{Query: q, Seq: uint64(seq/len(queries) + 1)}
		for i := range 10 {
			r.Added = append(r.Added, change.Row{"id": i})
		}
		e.publishResult(r)
	}
	h := newHTTP(b, &config.HTTPReaction{BaseURL: srv.URL})
	b.ResetTimer()
	start := time.Now()
	opts := reaction.ConsumerOptions(e.topo, "bench", queries, config.RetryConfig{})
	cons, err := e.conn.Consume(b.Context(), opts, reaction.Handler(h))
	if err != nil {
		b.Fatal(err)
	}
	testwait.Until(b, 5*time.Minute, "every result delivered", func() bool { return got.Load() >= int64(n) })
	el := time.Since(start)
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = cons.Drain(ctx)
	b.ReportMetric(float64(n)/el.Seconds(), "results/s")
	b.ReportMetric(float64(n*10)/el.Seconds(), "rows/s")
}

// BenchmarkPostgresThroughConsumer measures row changes applied per second
// by the gap-guarded postgres kind, as the reactor runs it, through the
// real consumer (fetch, handler, confirmed ack): one result per
// transaction (the per-message Handler) against batches (reaction.Consume:
// up to BatchSize results per transaction). 1 or 10 rows per result, 8
// queries.
func BenchmarkPostgresThroughConsumer(b *testing.B) {
	for _, bc := range []struct {
		mode string
		rows int
	}{{"per-result", 1}, {"batched", 1}, {"per-result", 10}, {"batched", 10}} {
		mode, rows := bc.mode, bc.rows
		b.Run(fmt.Sprintf("%s/rows=%d", mode, rows), func(b *testing.B) {
			e := newBusEnv(b)
			g := newPGTarget(b)
			p := newPostgres(b, &config.PostgresReaction{Connection: g.dsn, Added: insertEffect})
			guard, err := reaction.GuardGaps("bench", p, reaction.GapOptions{})
			if err != nil {
				b.Fatal(err)
			}
			var queries []string
			for i := range 8 {
				queries = append(queries, fmt.Sprintf("q%d", i))
			}
			n := b.N
			for i := range n {
				q := queries[i%len(queries)]
				e.publishResult(rowsResult(q, uint64(i/len(queries)+1), rows))
			}
			b.ResetTimer()
			start := time.Now()
			opts := reaction.ConsumerOptions(e.topo, "bench", queries, config.RetryConfig{})
			var cons *bus.Consumer
			if mode == "batched" {
				cons, err = reaction.Consume(b.Context(), e.conn, opts, guard)
			} else {
				cons, err = e.conn.Consume(b.Context(), opts, reaction.Handler(guard))
			}
			if err != nil {
				b.Fatal(err)
			}
			testwait.Until(b, 10*time.Minute, "every result applied", func() bool {
				var sum int64
				if err := g.db.QueryRow(context.Background(), `SELECT coalesce(sum(seq), 0) FROM tributary_reaction_offsets`).Scan(&sum); err != nil {
					return false // the table is created with the first result
				}
				return sum >= int64(n)
			})
			el := time.Since(start)
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = cons.Drain(ctx)
			b.ReportMetric(float64(n)/el.Seconds(), "results/s")
			b.ReportMetric(float64(n*rows)/el.Seconds(), "rows/s")
		})
	}
}
