package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/lifecycle"
)

// TestRetentionFromConfigReachesTheStreams: nats.retention in the file is
// what the binary applies to the streams at start.
func TestRetentionFromConfigReachesTheStreams(t *testing.T) {
	srv := natstest.Start(t)
	cfg := writeConfig(t, `nats:
  url: `+srv.URL()+`
  retention:
    changes: {maxAge: 720h, maxBytes: 64MiB, maxMsgsPerSubject: 3}
    results: {maxAge: 168h, maxBytes: 32MiB}
    deadLetters: {maxAge: 24h}
`)
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	codeCh := make(chan int, 1)
	build := func(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
		return nil, nil
	}
	go func() {
		codeCh <- app.Binary{Kind: "test", Build: build, Stdout: &out, Stderr: &errOut}.Run(ctx, globals(cfg))
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stderr:\n%s", errOut.String())
		}
	})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	want := map[string]string{
		"TRIBUTARY_CHANGES": fmt.Sprint(720*time.Hour, 64<<20, 3, jetstream.DiscardNew),
		"TRIBUTARY_RESULTS": fmt.Sprint(168*time.Hour, 32<<20, -1, jetstream.DiscardNew),
		"TRIBUTARY_DLQ":     fmt.Sprint(24*time.Hour, -1, -1, jetstream.DiscardOld),
	}
	for name, w := range want {
		testwait.UntilErr(ctx, t, 20*time.Second, "stream "+name+" with the configured limits", func() (bool, error) {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false, err
			}
			c := s.CachedInfo().Config
			got := fmt.Sprint(c.MaxAge, c.MaxBytes, c.MaxMsgsPerSubject, c.Discard)
			return got == w, fmt.Errorf("limits %s, want %s", got, w)
		})
	}
	cancel()
	select {
	case <-codeCh:
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30s")
	}
}
