package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
)

// readyz asks addr's /readyz and returns the status code and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitForChanges waits until the changes stream holds at least n messages
// and returns a JetStream context on url (closed at the test's end).
func waitForChanges(ctx context.Context, t *testing.T, url string, n uint64) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testwait.UntilErr(ctx, t, 30*time.Second, fmt.Sprintf("%d messages in the changes stream", n), func() (bool, error) {
		got, err := changeCount(ctx, js, "shop")
		return got >= n, err
	})
	return js
}

// source-pg's /readyz answers 200 only once the source streams: scripts and
// orchestrators wait for it before they rely on the capture, and before the
// slot exists a row written is captured through the snapshot at best (with
// snapshot: never, not at all). A session holding a lock keeps the initial
// snapshot from starting; all that time the process runs (its component is
// Running) and /readyz answers 503 naming the snapshot. Once the lock goes,
// /readyz answers 200, and by then the slot exists and is active.
//
// This caught the README demo writing its changes before the slot existed:
// /readyz answered 200 as soon as the component ran.
func TestSourceIsReadyOnlyOnceStreaming(t *testing.T) {
	ctx := context.Background()
	dsn, setup := newDatabase(ctx, t, `CREATE TABLE items(id bigint PRIMARY KEY, version bigint NOT NULL, payload text NOT NULL);
		INSERT INTO items VALUES (1, 1, 'before the source');
		CREATE PUBLICATION tributary_shop FOR TABLE items`)
	// The lock's transaction has a transaction id (an ACCESS EXCLUSIVE lock
	// is logged), so creating the snapshot slot waits for it to end.
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	lockTx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.Exec(ctx, `LOCK TABLE items IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	srv := natstest.Start(t)
	src := Start(t, "source-pg", "--config", sourceConfig(t, srv.URL(), dsn), "--metrics", "127.0.0.1:0")
	addr := src.MetricsAddr(t)
	// "not ready yet" is what a Running component says (a Starting one
	// says "is starting"): the process runs, only the source cannot serve.
	testwait.UntilErr(ctx, t, 30*time.Second, "/readyz to name the snapshot", func() (bool, error) {
		code, body := readyz(t, addr)
		if code == http.StatusOK {
			t.Fatalf("/readyz answers 200 while the snapshot is blocked by a lock:\n%s", src.LogTail(20))
		}
		return code == http.StatusServiceUnavailable && strings.Contains(body, "source/shop is not ready yet: taking the initial snapshot"), nil
	})
	var slots int
	if err := setup.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tributary_shop'`).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 0 {
		t.Fatal("the slot exists while the snapshot is blocked")
	}

	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.UntilErr(ctx, t, 30*time.Second, "/readyz to answer 200", func() (bool, error) {
		code, _ := readyz(t, addr)
		return code == http.StatusOK, nil
	})
	var active bool
	if err := setup.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = 'tributary_shop'`).Scan(&active); err != nil {
		t.Fatalf("the slot after /readyz answered 200: %v", err)
	}
	if !active {
		t.Fatal("/readyz answers 200 but the slot is not active")
	}

	// What is written once ready arrives as a change, after the snapshot.
	if _, err := setup.Exec(ctx, `INSERT INTO items VALUES (2, 1, 'after ready')`); err != nil {
		t.Fatal(err)
	}
	js := waitForChanges(ctx, t, srv.URL(), 3) // truncate, snapshot row, insert
	got, n := streamEvents(ctx, t, js)
	if n != 2 || len(got[1]) != 1 || got[1][0].String() != "insert@1" || len(got[2]) != 1 || got[2][0].String() != "insert@1" {
		t.Fatalf("stream holds %d row changes %v, want the snapshot's insert of row 1 and the insert of row 2", n, got)
	}
	if code, err := src.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
}

// A watched table dropped while source-pg streams makes /readyz answer 503
// naming it (pgoutput itself says nothing), while the other table keeps
// streaming; the process keeps running.
func TestDroppedTableShowsOnReadyz(t *testing.T) {
	ctx := context.Background()
	dsn, setup := newDatabase(ctx, t, `CREATE TABLE items(id bigint PRIMARY KEY, version bigint NOT NULL, payload text NOT NULL);
		CREATE TABLE scratch(id int PRIMARY KEY)`)
	srv := natstest.Start(t)
	cfg := filepath.Join(t.TempDir(), "source.yaml")
	body := fmt.Sprintf(`nats:
  url: %s
sources:
  - kind: postgres
    id: shop
    connectionString: %q
    tables: [items, scratch]
    create: true
    snapshot: never
    heartbeatInterval: 200ms
`, srv.URL(), dsn)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	src := Start(t, "source-pg", "--config", cfg, "--metrics", "127.0.0.1:0")
	addr := src.MetricsAddr(t)
	testwait.UntilErr(ctx, t, 30*time.Second, "/readyz to answer 200", func() (bool, error) {
		code, _ := readyz(t, addr)
		return code == http.StatusOK, nil
	})
	if _, err := setup.Exec(ctx, `DROP TABLE scratch`); err != nil {
		t.Fatal(err)
	}
	testwait.UntilErr(ctx, t, 30*time.Second, "/readyz to name the dropped table", func() (bool, error) {
		code, body := readyz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "table public.scratch was dropped"), nil
	})
	if _, err := setup.Exec(ctx, `INSERT INTO items VALUES (1, 1, 'still captured')`); err != nil {
		t.Fatal(err)
	}
	waitForChanges(ctx, t, srv.URL(), 1) // the other table's change
	if code, err := src.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", code, err)
	}
}
