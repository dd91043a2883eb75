package pgsource

import (
	"fmt"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
)

// BenchmarkStreamLargeTransaction measures streaming one transaction of
// 20,000 rows (20 atomic batches of 1000) into a JetStream server that
// fsyncs every write. Run without -race for meaningful figures:
//
//	go test -run XXX -bench Stream -benchtime 3x ./internal/pgsource
func BenchmarkStreamLargeTransaction(b *testing.B) {
	benchStream(b, 20000, func(base int) string {
		return fmt.Sprintf(`INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(%d, %d) g`, base, base+19999)
	})
}

// BenchmarkStreamSmallTransactions measures 5,000 one-row transactions,
// committed as fast as one session can.
func BenchmarkStreamSmallTransactions(b *testing.B) {
	benchStream(b, 5000, func(base int) string {
		return fmt.Sprintf(`DO $$ BEGIN FOR i IN 0..4999 LOOP INSERT INTO t VALUES (%d + i, i, 'row'); COMMIT; END LOOP; END $$`, base)
	})
}

func benchStream(b *testing.B, rows int, sql func(base int) string) {
	e := newEnv(b, natstest.Options{SyncAlways: true})
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int, note text)`)
	cfg := e.config("bench", "t")
	cfg.Snapshot = SnapshotNever
	cfg.StatusInterval = time.Second
	r := e.start(cfg)
	testwait.Until(b, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		start := time.Now()
		e.exec(sql(i*rows + 1))
		total += rows
		testwait.Until(b, 120*time.Second, "the rows", func() bool { return e.streamCount() >= uint64(total) })
		b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
	}
	b.StopTimer()
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
}
