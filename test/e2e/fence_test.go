package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// fenceSubject is source shop's fence (streams.Topology.SourceFence).
const fenceSubject = "tributary.changes.shop"

// The bulk transaction's rows: ids far above the writer's.
const (
	bulkFirst = 1_000_000
	bulkRows  = 20_000
)

// walSenderTimeout is the test database's wal_sender_timeout: Postgres
// drops the walsender of a paused source-pg after it, so that the new
// owner can take the slot.
const walSenderTimeout = "2s"

// holderRE finds the instance a process claims the fence as.
var holderRE = regexp.MustCompile(`msg="fence claimed" .*holder=(\S+)`)

// H1 at the write site, with the real binary: source-pg A captures a bulk
// transaction and a writer's trickle, B stands by. A is paused (SIGSTOP)
// with a backlog, past its lease; B takes the lease and claims the
// source's fence, and A resumes at once: whatever it still had in flight
// or in its socket, none of its writes after B's claim is stored (every
// stored batch was written under the claim that was the fence's last when
// it was stored), and A steps down in-process and stands by. B gets the
// slot (at the latest once Postgres dropped A's walsender, after the
// test database's short wal_sender_timeout) and captures the rest: the
// stream holds every committed change exactly once, in commit order.
// Finally B stops and A, standing by, takes the source back.
func TestPausedSourceIsFencedOut(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%8s %s", time.Since(t0).Round(time.Millisecond), what) }
	defer phase("done")
	Binaries(t)
	phase("binaries built")
	dsn, admin := newDatabase(ctx, t, `CREATE TABLE items(id bigint PRIMARY KEY, version bigint NOT NULL, payload text NOT NULL);
		ALTER TABLE items REPLICA IDENTITY FULL;
		CREATE TABLE txlog(n bigint PRIMARY KEY)`)
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := pcfg.Database
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s SET wal_sender_timeout = '%s'", pgx.Identifier{db}.Sanitize(), walSenderTimeout)); err != nil {
		t.Fatal(err)
	}
	checkWalSenderTimeout(ctx, t, pg.ReplicationDSN(db))

	srv := natstest.Start(t)
	cfg := sourceConfig(t, srv.URL(), dsn)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	a := Start(t, "source-pg", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 60*time.Second, "source-pg A streaming", func() (bool, error) {
		return strings.Contains(a.Log(), "msg=streaming"), nil
	})
	phase("A streams")
	b := Start(t, "source-pg", "--config", cfg, "--metrics", "127.0.0.1:0")
	testwait.UntilErr(ctx, t, 30*time.Second, "source-pg B standing by", func() (bool, error) {
		return strings.Contains(b.Log(), "standing by"), nil
	})
	phase("A streams, B stands by")

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	w := newWriter(ctx, t, dsn, seed)
	// A bulk transaction first, so that A is paused with a backlog: batches
	// staged and committing, changes decoded and waiting, more in its
	// socket. Without the fence it would store them after B's claim when it
	// resumes (its graceful stop even waits for them).
	if _, err := admin.Exec(ctx, `INSERT INTO items(id, version, payload)
		SELECT g, 1, 'bulk' FROM generate_series($1::bigint, $2::bigint) g`, bulkFirst, bulkFirst+bulkRows-1); err != nil {
		t.Fatal(err)
	}
	for id := int64(bulkFirst); id < bulkFirst+bulkRows; id++ {
		w.events[id] = []rowEvent{{change.OpInsert, 1}}
	}
	w.total += bulkRows
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := w.step(ctx); err != nil {
				done <- err
				return
			}
			// Pacing: a steady trickle of transactions around the takeover.
			time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}()
	var before uint64
	testwait.UntilErr(ctx, t, 30*time.Second, "A capturing the bulk transaction", func() (bool, error) {
		n, err := changeCount(ctx, js, "shop")
		before = n
		return n >= 1000, err
	})
	holderA := holderOf(t, a)
	a.Pause()
	paused := time.Now()
	phase(fmt.Sprintf("A paused with %d changes stored", before))
	if before >= bulkRows {
		t.Logf("A stored the whole bulk transaction before the pause: less for it to write late")
	}
	// A resumes as soon as B claimed the fence, before B gets the slot
	// (Postgres drops A's walsender only wal_sender_timeout after A's last
	// answer) and long before B has stored what A was about to store.
	var claimB uint64
	testwait.UntilErr(ctx, t, 60*time.Second, "B claiming the fence", func() (bool, error) {
		s, err := js.Stream(ctx, "TRIBUTARY_CHANGES")
		if err != nil {
			return false, err
		}
		m, err := s.GetLastMsgForSubject(ctx, fenceSubject)
		if err != nil {
			return false, err
		}
		var c bus.FenceClaim
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return false, err
		}
		claimB = m.Sequence
		return c.Holder != holderA, nil
	})
	a.Resume()
	phase(fmt.Sprintf("B claimed at sequence %d, %s after A's pause; A resumed", claimB, time.Since(paused).Round(time.Millisecond)))
	testwait.UntilErr(ctx, t, 30*time.Second, "A stepping down", func() (bool, error) {
		if a.Exited() {
			return false, fmt.Errorf("A exited")
		}
		return strings.Contains(a.Log(), "stepped down; standing by"), nil
	})
	phase("A stepped down")
	testwait.UntilErr(ctx, t, 60*time.Second, "B streaming", func() (bool, error) {
		return strings.Contains(b.Log(), "msg=streaming"), nil
	})
	phase("B streams")
	if a.Exited() {
		t.Fatal("A exited instead of standing by")
	}

	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("writer committed %d row changes on %d rows in %d transactions", w.total, len(w.events), w.txn)
	testwait.UntilErr(ctx, t, 60*time.Second, "every committed change in the stream", func() (bool, error) {
		n, err := changeCount(ctx, js, "shop")
		if err != nil {
			return false, err
		}
		return n >= uint64(w.total)+1, fmt.Errorf("%d of %d (+1 truncate before the snapshot)", n, w.total)
	})
	got, n := streamEvents(ctx, t, js)
	for id, want := range w.events {
		if !slices.Equal(got[id], want) {
			t.Errorf("row %d: stream has %v, committed %v", id, got[id], want)
		}
	}
	if n != w.total || len(got) != len(w.events) {
		t.Fatalf("read %d changes of %d rows, want %d of %d", n, len(got), w.total, len(w.events))
	}
	holderB := holderOf(t, b)
	claims := checkFencedWrites(ctx, t, js)
	if want := []string{holderA, holderB}; !slices.Equal(claims, want) {
		t.Fatalf("claims by %v, want A then B %v", claims, want)
	}
	phase("stream checked")

	// A stands by: once B stops, it takes the source back.
	if code, err := b.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM B: exit %d, %v", code, err)
	}
	testwait.UntilErr(ctx, t, 30*time.Second, "A streaming again", func() (bool, error) {
		return strings.Count(a.Log(), "msg=streaming") >= 2, nil
	})
	phase("A took the source back")
	if code, err := a.Terminate(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM A: exit %d, %v", code, err)
	}
	if claims := checkFencedWrites(ctx, t, js); !slices.Equal(claims, []string{holderA, holderB, holderA}) {
		t.Fatalf("claims by %v, want A, B, A", claims)
	}
	if left, err := changeCount(ctx, js, "shop"); err != nil || left != uint64(w.total)+1 {
		t.Fatalf("after both stopped the stream holds %d changes (%v), want %d", left, err, w.total+1)
	}
	if strings.Contains(a.Log(), "fenced out") {
		t.Log("A had a batch refused by the fence after it resumed")
	}
}

// checkWalSenderTimeout checks that a replication connection to the test
// database gets the short wal_sender_timeout.
func checkWalSenderTimeout(ctx context.Context, t *testing.T, replDSN string) {
	t.Helper()
	conn, err := pgconn.Connect(ctx, replDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "SHOW wal_sender_timeout").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != walSenderTimeout {
		t.Fatalf("wal_sender_timeout of a replication connection: %v, want %s", res, walSenderTimeout)
	}
}

func holderOf(t *testing.T, p *Process) string {
	t.Helper()
	m := holderRE.FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("%s never claimed the fence:\n%s", p.Name, p.LogTail(30))
	}
	return m[1]
}

// checkFencedWrites reads the whole changes stream and checks that every
// atomic batch was written under the fence's last claim at the time it was
// stored: its first message expects that claim's sequence on the fence
// subject. It returns the claims' holders in stream order.
func checkFencedWrites(ctx context.Context, t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	s, err := js.Stream(ctx, "TRIBUTARY_CHANGES")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := s.CachedInfo().State.Msgs
	var holders []string
	var lastClaim uint64
	batches := map[string]bool{}
	read := uint64(0)
	for read < want {
		batch, err := cons.Fetch(int(min(1000, want-read)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		before := read
		for m := range batch.Messages() {
			read++
			seq := mustSeq(m)
			if m.Subject() == fenceSubject {
				var c bus.FenceClaim
				if err := json.Unmarshal(m.Data(), &c); err != nil {
					t.Fatalf("claim at %d: %v", seq, err)
				}
				holders = append(holders, c.Holder)
				lastClaim = seq
				continue
			}
			// A fenced write carries the fence on its first message: the
			// first of an atomic batch, or each message of a batch re-sent
			// one by one.
			h := m.Headers()
			id := h.Get("Nats-Batch-Id")
			if h.Get(jetstream.ExpectedLastSubjSeqSubjHeader) == "" {
				if id == "" || h.Get("Nats-Batch-Sequence") == "1" || !batches[id] {
					t.Fatalf("change at %d (batch %q, message %s) was not written under a fence", seq, id, h.Get("Nats-Batch-Sequence"))
				}
				continue
			}
			batches[id] = true
			expect := h.Get(jetstream.ExpectedLastSubjSeqHeader)
			if h.Get(jetstream.ExpectedLastSubjSeqSubjHeader) != fenceSubject || expect != strconv.FormatUint(lastClaim, 10) {
				t.Fatalf("change at %d (batch %q) was written under the claim at %s (fence %s), but the fence's last claim was at %d: a stale writer's write was stored",
					seq, id, expect, h.Get(jetstream.ExpectedLastSubjSeqSubjHeader), lastClaim)
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if read == before {
			t.Fatalf("no more messages after %d of %d", read, want)
		}
	}
	return holders
}
