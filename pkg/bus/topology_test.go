package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// topologyEnv is a server, a bus connection logging to logs (may be nil)
// and an inspecting client.
func topologyEnv(t *testing.T, logs *lockedBuffer) (*bus.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	o := bus.ConnectOptions{URL: srv.URL()}
	if logs != nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	c, err := bus.Connect(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	js, _ := jetstreamFor(t, srv.URL())
	return c, js
}

func streamCfg(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestEnsureTopologyCreatesStreamsWithTheDeclaredLimits: the retention of
// streams.Options reaches the servers' streams.
func TestEnsureTopologyCreatesStreamsWithTheDeclaredLimits(t *testing.T) {
	c, js := topologyEnv(t, nil)
	topo, err := streams.Default("ret", streams.Options{
		Changes:     streams.Limits{MaxAge: time.Hour, MaxBytes: 64 << 20, MaxMsgsPerSubject: 5},
		Results:     streams.Limits{MaxAge: 30 * time.Minute, MaxBytes: 32 << 20},
		DeadLetters: streams.Limits{MaxAge: 2 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopology(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		stream         string
		age            time.Duration
		bytes, perSubj int64
	}{
		{topo.Changes.Name, time.Hour, 64 << 20, 5},
		{topo.Results.Name, 30 * time.Minute, 32 << 20, -1},
		{topo.DeadLetters.Name, 2 * time.Hour, -1, -1},
	} {
		cfg := streamCfg(t, js, w.stream)
		if cfg.MaxAge != w.age || cfg.MaxBytes != w.bytes || cfg.MaxMsgsPerSubject != w.perSubj {
			t.Errorf("%s: max age %s, max bytes %d, max msgs per subject %d; want %s, %d, %d",
				w.stream, cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgsPerSubject, w.age, w.bytes, w.perSubj)
		}
	}
}

// TestEnsureTopologyUpdatesChangedLimits: changed retention limits are
// applied to the existing stream, which keeps its messages and whatever an
// operator set besides, and the change is logged; applying the same
// topology again changes nothing.
func TestEnsureTopologyUpdatesChangedLimits(t *testing.T) {
	ctx := context.Background()
	var logs lockedBuffer
	c, js := topologyEnv(t, &logs)
	plain, _ := streams.Default("upd", streams.Options{})
	if err := c.EnsureTopology(ctx, plain); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, plain.ChangeSubject("s", "t", fmt.Sprint(i)), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// An operator's own setting, which Tributary does not declare.
	opCfg := streamCfg(t, js, plain.Changes.Name)
	opCfg.MaxMsgs = 100000
	if _, err := js.UpdateStream(ctx, opCfg); err != nil {
		t.Fatal(err)
	}

	limited, _ := streams.Default("upd", streams.Options{
		Changes: streams.Limits{MaxAge: time.Minute, MaxBytes: 8 << 20, MaxMsgsPerSubject: 2},
	})
	if err := c.EnsureTopology(ctx, limited); err != nil {
		t.Fatalf("changed limits: %v", err)
	}
	cfg := streamCfg(t, js, plain.Changes.Name)
	if cfg.MaxAge != time.Minute || cfg.MaxBytes != 8<<20 || cfg.MaxMsgsPerSubject != 2 || cfg.Discard != jetstream.DiscardNew || cfg.Duplicates != time.Minute {
		t.Fatalf("stream after the update: max age %s, max bytes %d, per subject %d, discard %v, duplicates %s",
			cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgsPerSubject, cfg.Discard, cfg.Duplicates)
	}
	if cfg.MaxMsgs != 100000 {
		t.Fatalf("the operator's max msgs became %d", cfg.MaxMsgs)
	}
	s, _ := js.Stream(ctx, plain.Changes.Name)
	if n := s.CachedInfo().State.Msgs; n != 5 {
		t.Fatalf("the stream holds %d messages after the update, want the 5 it had", n)
	}
	for _, want := range []string{"updated stream limits", "stream=UPD_CHANGES", "max bytes is -1, declared 8388608", "max age is 0s, declared 1m0s"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}

	// Again: nothing to change, nothing logged.
	logged := strings.Count(logs.String(), "updated stream limits")
	if err := c.EnsureTopology(ctx, limited); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "updated stream limits"); n != logged {
		t.Fatalf("an unchanged topology updated a stream again:\n%s", logs.String())
	}
	// And back to unlimited.
	if err := c.EnsureTopology(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if cfg := streamCfg(t, js, plain.Changes.Name); cfg.MaxAge != 0 || cfg.MaxBytes != -1 || cfg.MaxMsgsPerSubject != -1 || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("limits not removed: %+v", cfg)
	}
}

// TestEnsureTopologyReportsConflict: a setting that cannot be changed safely
// is reported, and the stream is left entirely as it is (its differing
// limits are not updated either).
func TestEnsureTopologyReportsConflict(t *testing.T) {
	ctx := context.Background()
	c, js := topologyEnv(t, nil)
	topo, _ := streams.Default("trib", streams.Options{Changes: streams.Limits{MaxAge: time.Hour}})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: topo.Changes.Name, Subjects: []string{"trib.changes.>", "other.>"}, Storage: jetstream.FileStorage,
		AllowAtomicPublish: true, AllowDirect: true, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	err := c.EnsureTopology(ctx, topo)
	if !errors.Is(err, bus.ErrTopologyConflict) || !strings.Contains(err.Error(), "subjects is [other.> trib.changes.>], declared [trib.changes.>]") {
		t.Fatalf("want ErrTopologyConflict naming the subjects, got %v", err)
	}
	if cfg := streamCfg(t, js, topo.Changes.Name); len(cfg.Subjects) != 2 || cfg.MaxAge != 0 {
		t.Fatalf("the conflicting stream was changed: %+v", cfg)
	}
}
