package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
)

// keyRecorder is a slow webhook that records the Idempotency-Key of every
// request it answered with 200.
type keyRecorder struct {
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Pacing, so that the stop comes while the webhook still has work.
	time.Sleep(20 * time.Millisecond)
	k.mu.Lock()
	k.keys = append(k.keys, r.Header.Get("Idempotency-Key"))
	k.mu.Unlock()
}

// firsts returns the distinct keys in the order they first came, and how
// many requests repeated a key.
func (k *keyRecorder) firsts() (order []string, repeats int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	seen := map[string]bool{}
	for _, key := range k.keys {
		if seen[key] {
			repeats++
			continue
		}
		seen[key] = true
		order = append(order, key)
	}
	return order, repeats
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// sseSeq reads the first event of the sse reaction's stream of q1: the
// snapshot, whose id is the seq the reaction applied through.
func sseSeq(addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/events/q1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("no event id: %v", sc.Err())
}

// The reactor binary runs every reaction kind from its config: a webhook,
// a Postgres table, a NATS subject and the live event stream. A SIGTERM
// in the middle of delivery exits 0; after a restart every result is
// delivered, in order, and the Postgres table holds each once.
func TestReactorKindsDeliverAcrossSIGTERM(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	dsn, db := newDatabase(ctx, t, `CREATE TABLE effects (id bigserial PRIMARY KEY, q text NOT NULL, seq bigint NOT NULL)`)
	hook := &keyRecorder{}
	web := httptest.NewServer(hook)
	defer web.Close()
	sseAddr := freeAddr(t)

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	republished := map[string]int{}
	sub, err := nc.Subscribe("out.q1", func(m *nats.Msg) {
		mu.Lock()
		republished[m.Header.Get("Nats-Msg-Id")]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	cfg := filepath.Join(t.TempDir(), "reactor.yaml")
	body := fmt.Sprintf(`nats: {url: %s}
reactions:
  - {kind: http, id: hook, queries: [q1], baseUrl: '%s/hook'}
  - {kind: postgres, id: table, queries: [q1], connection: '%s', added: 'INSERT INTO effects (q, seq) VALUES (@q, @seq)'}
  - {kind: nats, id: out, queries: [q1], subject: 'out.{{.query}}', mode: core}
  - {kind: sse, id: live, queries: [q1], listen: '%s'}
`, srv.URL(), web.URL, dsn, sseAddr)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	js, _ := nc.JetStream()
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			msg := fmt.Sprintf(`{"query":"q1","seq":%d,"ts_ms":1,"added":[{"q":"q1","seq":%d}],"updated":[],"deleted":[]}`, i, i)
			if _, err := js.Publish("tributary.results.q1", []byte(msg), nats.MsgId(fmt.Sprintf("q1:%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := func() int {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	a := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 60*time.Second, "the reactor running", func() (bool, error) {
		return strings.Count(a.Log(), "msg=running") == 4, nil
	})
	publish(1, 200)
	testwait.Until(t, 60*time.Second, "delivery under way", func() bool { keys, _ := hook.firsts(); return len(keys) >= 20 })
	if code, err := a.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM during delivery: exit %d, %v\n%s", code, err, a.LogTail(20))
	}
	stoppedAt, _ := hook.firsts()

	b := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
	publish(201, 300)
	testwait.UntilErr(ctx, t, 120*time.Second, "every result delivered by every kind", func() (bool, error) {
		keys, _ := hook.firsts()
		mu.Lock()
		n := len(republished)
		mu.Unlock()
		seq, err := sseSeq(sseAddr)
		return rows() == 300 && len(keys) == 300 && n == 300 && seq == "300", fmt.Errorf("table %d, webhook %d, nats %d, sse at %q (%v)", rows(), len(keys), n, seq, err)
	})
	if code, err := b.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v\n%s", code, err, b.LogTail(20))
	}

	// Postgres: each result once, in order.
	got, err := db.Query(ctx, `SELECT seq FROM effects ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(got, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("table row %d holds seq %d (table: %v)", i, s, seqs)
		}
	}
	// Webhook: every key, first seen in order; repeats carry a key seen.
	keys, repeats := hook.firsts()
	for i, k := range keys {
		if k != fmt.Sprintf("q1:%d", i+1) {
			t.Fatalf("webhook key %d is %s", i, k)
		}
	}
	if len(stoppedAt) >= 200 {
		t.Fatalf("the webhook had every result before the stop: the test did not stop during delivery")
	}
	t.Logf("SIGTERM with the webhook at %d of 200 results; after the restart all 300 delivered by every kind (webhook repeats: %d)", len(stoppedAt), repeats)
}

// kill -9 of the reactor during delivery, twice, each followed by a
// restart: every effect happens; the Postgres table holds each result
// once, in order; webhook repeats (the result in flight at the kill) carry
// a key already sent. A result in flight at a kill comes back after the
// consumer's AckWait (30s), before any later one.
func TestReactorKillNineDuringDeliveryLosesNothing(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	dsn, db := newDatabase(ctx, t, `CREATE TABLE effects (id bigserial PRIMARY KEY, q text NOT NULL, seq bigint NOT NULL)`)
	hook := &keyRecorder{}
	web := httptest.NewServer(hook)
	defer web.Close()
	cfg := filepath.Join(t.TempDir(), "reactor.yaml")
	// The statement sleeps 10ms: a kill lands inside the table's delivery.
	body := fmt.Sprintf(`nats: {url: %s, leaseTTL: 2s}
reactions:
  - {kind: http, id: hook, queries: [q1], baseUrl: '%s/hook'}
  - {kind: postgres, id: table, queries: [q1], connection: '%s', added: 'INSERT INTO effects (q, seq) SELECT @q, @seq FROM pg_sleep(0.01)'}
`, srv.URL(), web.URL, dsn)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	const n = 400
	publish := func() {
		for i := 1; i <= n; i++ {
			msg := fmt.Sprintf(`{"query":"q1","seq":%d,"ts_ms":1,"added":[{"q":"q1","seq":%d}],"updated":[],"deleted":[]}`, i, i)
			if _, err := js.Publish("tributary.results.q1", []byte(msg), nats.MsgId(fmt.Sprintf("q1:%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := func() int {
		var c int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var killedAt []int
	for i, at := range []int{60, 200} {
		p := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
		if i == 0 { // the reactor creates the streams
			testwait.Until(t, 60*time.Second, "the reactor running", func() bool { return strings.Count(p.Log(), "msg=running") == 2 })
			publish()
		}
		testwait.Until(t, 90*time.Second, fmt.Sprintf("%d rows", at), func() bool { return rows() >= at })
		p.Kill()
		killedAt = append(killedAt, rows())
	}
	last := Start(t, "reactor", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 120*time.Second, "every result delivered", func() (bool, error) {
		keys, _ := hook.firsts()
		return rows() >= n && len(keys) >= n, fmt.Errorf("table %d, webhook %d", rows(), len(keys))
	})
	if code, err := last.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
	got, err := db.Query(ctx, `SELECT seq FROM effects ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(got, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != n {
		t.Fatalf("table holds %d rows for %d results", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("table row %d holds seq %d", i, s)
		}
	}
	keys, repeats := hook.firsts()
	for i, k := range keys {
		if k != fmt.Sprintf("q1:%d", i+1) {
			t.Fatalf("webhook key %d is %s", i, k)
		}
	}
	t.Logf("killed at %v table rows; all %d delivered, table once each in order, webhook repeats %d", killedAt, n, repeats)
}
