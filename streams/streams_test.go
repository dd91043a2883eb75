package streams

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultTopology(t *testing.T) {
	top, err := Default("my-app", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if top.Changes.Name != "MY_APP_CHANGES" || top.Results.Name != "MY_APP_RESULTS" || top.DeadLetters.Name != "MY_APP_DLQ" {
		t.Fatalf("stream names %s %s %s", top.Changes.Name, top.Results.Name, top.DeadLetters.Name)
	}
	if top.Lifecycle.Name != "my_app_lifecycle" || top.Leases.Name != "my_app_leases" {
		t.Fatalf("bucket names %s %s", top.Lifecycle.Name, top.Leases.Name)
	}
	if !top.Changes.AllowAtomicPublish || !top.Results.AllowAtomicPublish {
		t.Fatal("changes and results must take atomic batches")
	}
	if top.Leases.TTL != 10*time.Second || top.Leases.LimitMarkerTTL != top.Leases.TTL {
		t.Fatalf("lease TTL %s marker %s", top.Leases.TTL, top.Leases.LimitMarkerTTL)
	}
	if got := top.ChangeSubject("shop", "orders", "orders:1"); got != "my-app.changes.shop.orders.orders:1" {
		t.Fatalf("change subject %s", got)
	}
	if got := top.ChangeFilter("shop"); got != "my-app.changes.shop.>" {
		t.Fatalf("change filter %s", got)
	}
	if got := top.ResultSubject("q1"); got != "my-app.results.q1" {
		t.Fatalf("result subject %s", got)
	}
	// Fence subjects: in the stream they fence, outside every filter its
	// consumers use (a source's changes, a query's results).
	if got := top.SourceFence("shop"); got != "my-app.changes.shop" {
		t.Fatalf("source fence %s", got)
	}
	if got := top.QueryFence("q1"); got != "my-app.results.q1.fence" {
		t.Fatalf("query fence %s", got)
	}
	if len(top.Consumers.BackOff) >= top.Consumers.MaxDeliver {
		t.Fatal("back-off list must be shorter than MaxDeliver")
	}
	for _, s := range top.Streams() {
		if s.Replicas != 1 || len(s.Subjects) != 1 || !strings.HasPrefix(s.Subjects[0], "my-app.") {
			t.Fatalf("stream %s: %+v", s.Name, s)
		}
	}
}

func TestDefaultRejectsBadOptions(t *testing.T) {
	for _, c := range []struct {
		prefix string
		o      Options
		want   string
	}{
		{"has.dot", Options{}, "subject prefix"},
		{"", Options{}, "subject prefix"},
		{"ok", Options{Replicas: 2}, "replicas 2"},
		{"ok", Options{LeaseTTL: 500 * time.Millisecond}, "lease TTL"},
		{"ok", Options{Changes: Limits{MaxAge: -time.Second}}, "changes stream: max age -1s"},
		{"ok", Options{Results: Limits{MaxBytes: -1}}, "results stream: max bytes -1"},
		{"ok", Options{DeadLetters: Limits{MaxMsgsPerSubject: -2}}, "dead-letter stream: max messages per subject -2"},
	} {
		if _, err := Default(c.prefix, c.o); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Default(%q, %+v) = %v, want an error about %s", c.prefix, c.o, err, c.want)
		}
	}
}

func TestDefaultReportsEveryProblemAndPassesLimits(t *testing.T) {
	_, err := Default("a.b", Options{Replicas: 2, Changes: Limits{MaxBytes: -1}, Results: Limits{MaxAge: -1}})
	for _, want := range []string{"subject prefix", "replicas 2", "changes stream: max bytes", "results stream: max age"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %q", err, want)
		}
	}
	ch := Limits{MaxAge: time.Hour, MaxBytes: 1 << 30, MaxMsgsPerSubject: 3}
	res := Limits{MaxAge: 2 * time.Hour, MaxBytes: 1 << 20}
	dlq := Limits{MaxAge: 3 * time.Hour, MaxBytes: 1 << 25}
	top, err := Default("x", Options{Changes: ch, Results: res, DeadLetters: dlq})
	if err != nil {
		t.Fatal(err)
	}
	if top.Changes.Limits != ch || top.Results.Limits != res || top.DeadLetters.Limits != dlq {
		t.Fatalf("limits not passed through: %+v %+v %+v", top.Changes.Limits, top.Results.Limits, top.DeadLetters.Limits)
	}
}
