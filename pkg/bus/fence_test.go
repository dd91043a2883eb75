package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
)

// fenceSubject is the fence of the tests' writers: in the stream, but on a
// subject no data message uses.
const fenceSubject = "f.fence"

// stored is one stored message, as an operator reads it.
type stored struct {
	seq     uint64
	subject string
	id      string
}

// storedMessages reads every message of stream in stream order.
func storedMessages(t *testing.T, js jetstream.JetStream, stream string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading sequence %d: %v", seq, err)
		}
		out = append(out, stored{seq: seq, subject: m.Subject, id: m.Header.Get(jetstream.MsgIDHeader)})
	}
	return out
}

func fenceMsgs(subject, prefix string, from, to int) []bus.Message {
	var msgs []bus.Message
	for i := from; i <= to; i++ {
		msgs = append(msgs, bus.Message{Subject: subject, ID: fmt.Sprintf("%s-%d", prefix, i), Data: []byte(fmt.Sprint(i))})
	}
	return msgs
}

// fenceWriter is one writer process: its own connection and publisher.
func fenceWriter(t *testing.T, url string) (*bus.Conn, *bus.Publisher) {
	t.Helper()
	c, err := bus.Connect(context.Background(), bus.ConnectOptions{
		URL: url, ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	p, err := c.NewPublisher(bus.PublisherOptions{PublishTimeout: 2 * time.Second, RetryWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return c, p
}

// testStaleWriterIsFenced: A claims and writes; B claims; every later
// write of A is refused with ErrFenced and stores nothing (a fresh batch, a
// batch staged before B's claim and committed after it, a re-send that
// falls back to one-by-one publishing), while B writes; A cannot claim back
// with its older token.
func testStaleWriterIsFenced(t *testing.T, url string, js jetstream.JetStream, replicas int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "F", Subjects: []string{"f.>"}, Replicas: replicas, AllowAtomicPublish: true, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	connA, pubA := fenceWriter(t, url)
	connB, pubB := fenceWriter(t, url)

	fa, err := connA.ClaimFence(ctx, "F", fenceSubject, "a", 7)
	if err != nil {
		t.Fatal(err)
	}
	if fa.Sequence() != 1 || fa.Token() != 7 || fa.Holder() != "a" || fa.Subject() != fenceSubject || fa.Stream() != "F" {
		t.Fatalf("A's fence: %s", fa)
	}
	if _, err := pubA.PublishBatch(ctx, fenceMsgs("f.data", "a", 1, 10), bus.WithFence(fa)); err != nil {
		t.Fatalf("A's batch while it holds the fence: %v", err)
	}
	// A stages its next batch now and commits it only after B's claim: the
	// server checks the fence at the commit.
	stagedA, err := pubA.StageBatch(fenceMsgs("f.data", "a", 11, 20), bus.WithFence(fa))
	if err != nil {
		t.Fatal(err)
	}

	fb, err := connB.ClaimFence(ctx, "F", fenceSubject, "b", 9)
	if err != nil {
		t.Fatal(err)
	}
	if fb.Sequence() != 12 {
		t.Fatalf("B's claim at sequence %d, want 12 (after A's claim and 10 messages)", fb.Sequence())
	}

	if _, err := stagedA.Commit(ctx); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("A's batch staged before B's claim, committed after: want ErrFenced, got %v", err)
	}
	if _, err := pubA.PublishBatch(ctx, fenceMsgs("f.data", "a", 21, 30), bus.WithFence(fa)); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("A's batch after B's claim: want ErrFenced, got %v", err)
	}
	// A batch whose first messages were stored before falls back to
	// publishing one by one: still fenced.
	if _, err := pubA.PublishBatch(ctx, fenceMsgs("f.data", "a", 5, 15), bus.WithFence(fa)); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("A's partly stored batch after B's claim: want ErrFenced, got %v", err)
	}
	if _, err := connA.ClaimFence(ctx, "F", fenceSubject, "a", 7); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("A claiming back with its older token: want ErrFenced, got %v", err)
	}
	ack, err := pubB.PublishBatch(ctx, fenceMsgs("f.data", "b", 1, 10), bus.WithFence(fb))
	if err != nil {
		t.Fatalf("B's batch: %v", err)
	}
	if ack.Sequence != 22 || ack.Duplicate {
		t.Fatalf("B's ack %+v, want sequence 22", ack)
	}

	var got []string
	for _, m := range storedMessages(t, js, "F") {
		got = append(got, fmt.Sprintf("%d %s %s", m.seq, m.subject, m.id))
	}
	var want []string
	want = append(want, fmt.Sprintf("1 %s %s", fenceSubject, "?"))
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("%d f.data a-%d", i+1, i))
	}
	want = append(want, fmt.Sprintf("12 %s %s", fenceSubject, "?"))
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("%d f.data b-%d", i+12, i))
	}
	if len(got) != len(want) {
		t.Fatalf("stream holds\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if want[i][len(want[i])-1] == '?' { // a claim: its id is random
			continue
		}
		if got[i] != want[i] {
			t.Fatalf("stream holds\n%v\nwant\n%v", got, want)
		}
	}
	// The claims say who holds the fence.
	last, err := connA.LastMessage(ctx, "F", fenceSubject)
	if err != nil {
		t.Fatal(err)
	}
	var claim bus.FenceClaim
	if err := json.Unmarshal(last.Data, &claim); err != nil || claim.Holder != "b" || claim.Token != 9 || claim.Time.IsZero() {
		t.Fatalf("last claim %s: %+v, %v", last.Data, claim, err)
	}
}

func TestStaleWriterIsFencedSingleNode(t *testing.T) {
	srv := natstest.Start(t)
	js, _ := jetstreamFor(t, srv.URL())
	testStaleWriterIsFenced(t, srv.URL(), js, 1)
}

func TestStaleWriterIsFencedR3(t *testing.T) {
	cl := natstest.StartCluster(t)
	js, _ := jetstreamFor(t, cl.URLs())
	testStaleWriterIsFenced(t, cl.URLs(), js, 3)
}

// Fenced batches on a replicated stream, staged ahead and committed back
// to back as the source does, are all stored: a writer that holds the
// fence is never fenced by its own writes (each of them checks the fence
// subject, which they do not write).
func TestFencedBatchesBackToBackR3(t *testing.T) {
	cl := natstest.StartCluster(t)
	js, _ := jetstreamFor(t, cl.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "F", Subjects: []string{"f.>"}, Replicas: 3, AllowAtomicPublish: true, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	c, p := fenceWriter(t, cl.URLs())
	f, err := c.ClaimFence(ctx, "F", fenceSubject, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	// Staged ahead, committed one after the other as the source does.
	const n = 200
	next, err := p.StageBatch(fenceMsgs("f.data", "x", 1, 5), bus.WithFence(f))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		cur := next
		if i < n {
			if next, err = p.StageBatch(fenceMsgs("f.data", "x", i*5+1, i*5+5), bus.WithFence(f)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cur.Commit(ctx); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if got := len(storedMessages(t, js, "F")); got != n*5+1 {
		t.Fatalf("stream holds %d messages, want %d", got, n*5+1)
	}
}

// Concurrent claims with distinct tokens: each ends with a fence or with
// ErrFenced (a newer token claimed first), and only the fence whose claim
// is last on the subject can write.
func TestConcurrentClaims(t *testing.T) {
	srv := natstest.Start(t)
	js, _ := jetstreamFor(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "F", Subjects: []string{"f.>"}, AllowAtomicPublish: true}); err != nil {
		t.Fatal(err)
	}
	c, p := fenceWriter(t, srv.URL())
	const n = 8
	fences := make([]*bus.Fence, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			fences[i], errs[i] = c.ClaimFence(ctx, "F", fenceSubject, fmt.Sprint("w", i), uint64(i+1))
		})
	}
	wg.Wait()
	last, err := c.LastMessage(ctx, "F", fenceSubject)
	if err != nil {
		t.Fatal(err)
	}
	writers := 0
	for i := range n {
		if errs[i] != nil {
			if !errors.Is(errs[i], bus.ErrFenced) {
				t.Fatalf("claim %d: %v", i, errs[i])
			}
			continue
		}
		_, err := p.PublishBatch(ctx, fenceMsgs("f.data", fmt.Sprint("w", i), 1, 2), bus.WithFence(fences[i]))
		switch {
		case fences[i].Sequence() == last.Sequence && err != nil:
			t.Fatalf("the last claimer %d cannot write: %v", i, err)
		case fences[i].Sequence() != last.Sequence && !errors.Is(err, bus.ErrFenced):
			t.Fatalf("claimer %d (sequence %d, last claim %d) wrote: %v", i, fences[i].Sequence(), last.Sequence, err)
		case err == nil:
			writers++
		}
	}
	if writers != 1 {
		t.Fatalf("%d writers, want exactly 1", writers)
	}
}

func TestClaimFenceRejectsBadArguments(t *testing.T) {
	srv := natstest.Start(t)
	c, _ := fenceWriter(t, srv.URL())
	_, err := c.ClaimFence(context.Background(), "", "f.*", "", 0)
	if !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("want ErrInvalidMessage, got %v", err)
	}
	for _, want := range []string{"stream is empty", "wildcard", "holder is empty", "token is 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := c.ClaimFence(context.Background(), "NOPE", "f.fence", "a", 1); !errors.Is(err, bus.ErrStreamNotFound) {
		t.Fatalf("missing stream: want ErrStreamNotFound, got %v", err)
	}
}

// A writer commits fenced batches back to back while another claims the
// fence on a replicated stream: each of its batches is either stored before
// the claim or refused with ErrFenced (never another error, even when the
// claim is still being replicated as the batch arrives), and nothing of it
// is stored after the claim.
func TestClaimDuringWritesR3(t *testing.T) {
	cl := natstest.StartCluster(t)
	js, _ := jetstreamFor(t, cl.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "F", Subjects: []string{"f.>"}, Replicas: 3, AllowAtomicPublish: true, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	connA, pubA := fenceWriter(t, cl.URLs())
	connB, _ := fenceWriter(t, cl.URLs())
	for round := range 5 {
		fa, err := connA.ClaimFence(ctx, "F", fenceSubject, "a", uint64(2*round+1))
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				if _, err := pubA.PublishBatch(ctx, fenceMsgs("f.data", fmt.Sprintf("a%d", round), i*3+1, i*3+3), bus.WithFence(fa)); err != nil {
					errc <- err
					return
				}
			}
		}()
		// Let A write a little (pacing, not a wait for a condition).
		time.Sleep(time.Duration(20+round*10) * time.Millisecond)
		fb, err := connB.ClaimFence(ctx, "F", fenceSubject, "b", uint64(2*round+2))
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, bus.ErrFenced) {
			t.Fatalf("round %d: A's writes ended with %v, want ErrFenced", round, err)
		}
		for _, m := range storedMessages(t, js, "F") {
			if m.seq > fb.Sequence() && m.subject != fenceSubject {
				t.Fatalf("round %d: %s stored at sequence %d, after B's claim at %d", round, m.id, m.seq, fb.Sequence())
			}
		}
	}
}

// A claim removed by the stream's age limit fences its holder (nobody can
// tell that no newer claim came and went meanwhile); claiming again, once
// the holder has its lease back, lets it write again.
func TestAgedOutClaimFencesItsHolder(t *testing.T) {
	srv := natstest.Start(t)
	js, _ := jetstreamFor(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "F", Subjects: []string{"f.>"}, AllowAtomicPublish: true, MaxAge: time.Second, Duplicates: time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	c, p := fenceWriter(t, srv.URL())
	f, err := c.ClaimFence(ctx, "F", fenceSubject, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	testwait.UntilErr(ctx, t, 10*time.Second, "the claim to age out", func() (bool, error) {
		_, err := c.LastMessage(ctx, "F", fenceSubject)
		if errors.Is(err, bus.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	if _, err := p.PublishBatch(ctx, fenceMsgs("f.data", "a", 1, 2), bus.WithFence(f)); !errors.Is(err, bus.ErrFenced) {
		t.Fatalf("write under an aged-out claim: want ErrFenced, got %v", err)
	}
	f2, err := c.ClaimFence(ctx, "F", fenceSubject, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishBatch(ctx, fenceMsgs("f.data", "a", 1, 2), bus.WithFence(f2)); err != nil {
		t.Fatalf("write under the new claim: %v", err)
	}
}
