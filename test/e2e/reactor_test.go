package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
)

func reactorConfig(t *testing.T, natsURL string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reactor.yaml")
	body := fmt.Sprintf(`nats:
  url: %s
queries:
  - id: q1
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) RETURN o.id AS id
reactions:
  - kind: log
    id: console
    queries: [q1]
`, natsURL)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// delivered returns the result sequence numbers a reactor logged.
func delivered(p *Process) map[uint64]int {
	seqs := map[uint64]int{}
	for _, line := range strings.Split(p.Log(), "\n") {
		if !strings.HasPrefix(line, `{"reaction"`) {
			continue
		}
		var r struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal([]byte(line), &r) == nil {
			seqs[r.Seq]++
		}
	}
	return seqs
}

// H1 with the real binary: two reactors with the same reaction id; exactly
// one is active, the other stands by. After kill -9 of the active one, the
// standby takes over within the lease TTL and every result is delivered.
func TestReactorStandbyTakesOverAfterKill(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	cfg := reactorConfig(t, srv.URL())
	a := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 30*time.Second, "the first reactor running", func() (bool, error) {
		return strings.Contains(a.Log(), "msg=running"), nil
	})
	b := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 30*time.Second, "the second reactor standing by", func() (bool, error) {
		return strings.Contains(b.Log(), "standing by"), nil
	})

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			msg := fmt.Sprintf(`{"query":"q1","seq":%d,"ts_ms":1,"added":[{"id":%d}],"updated":[],"deleted":[]}`, i, i)
			if _, err := js.Publish("tributary.results.q1", []byte(msg), nats.MsgId(fmt.Sprintf("q1:%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 50)
	testwait.UntilErr(ctx, t, 30*time.Second, "the active reactor to deliver 50 results", func() (bool, error) {
		return len(delivered(a)) == 50, nil
	})
	if n := len(delivered(b)); n != 0 {
		t.Fatalf("the standby delivered %d results while the other was active", n)
	}

	a.Kill()
	killed := time.Now()
	publish(51, 100)
	testwait.UntilErr(ctx, t, 60*time.Second, "the standby to take over and deliver the rest", func() (bool, error) {
		return len(delivered(b)) >= 50, nil
	})
	took := time.Since(killed)
	all := delivered(a)
	for seq, n := range delivered(b) {
		all[seq] += n
	}
	for i := uint64(1); i <= 100; i++ {
		if all[i] == 0 {
			t.Fatalf("result %d was never delivered", i)
		}
	}
	t.Logf("standby took over and caught up %s after kill -9 (lease TTL 10s)", took.Round(time.Millisecond))
	if code, err := b.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v\n%s", code, err, b.LogTail(20))
	}
}
