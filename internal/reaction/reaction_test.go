package reaction

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

func TestDecodeResultIsStrict(t *testing.T) {
	good := `{"query":"q","seq":3,"ts_ms":1,"added":[{"a":1}],"updated":[],"deleted":[]}`
	r, err := DecodeResult([]byte(good))
	if err != nil || r.Query != "q" || r.Seq != 3 || len(r.Added) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{
		`nope`,
		`{"query":"q","seq":1,"extra":true}`,
		`{"seq":1}`,
		`{"query":"q","seq":0}`,
	} {
		if _, err := DecodeResult([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

type failingReaction struct{ err error }

func (f failingReaction) React(context.Context, *change.Result) error { return f.err }

func TestHandlerClassifiesErrors(t *testing.T) {
	ctx := context.Background()
	// A result that does not decode can never succeed: permanent.
	err := Handler(failingReaction{})(ctx, &bus.Delivery{Data: []byte(`{"bogus":1}`)})
	if !bus.IsPermanent(err) {
		t.Fatalf("undecodable result: %v is not permanent", err)
	}
	// A reaction's ordinary failure is retried.
	boom := errors.New("target unavailable")
	err = Handler(failingReaction{err: boom})(ctx, &bus.Delivery{Data: []byte(`{"query":"q","seq":1}`)})
	if !errors.Is(err, boom) || bus.IsPermanent(err) {
		t.Fatalf("reaction failure: %v should be retryable", err)
	}
}

func TestLogFormats(t *testing.T) {
	res := &change.Result{Query: "q", Seq: 7, TsMs: 5,
		Added:   []change.Row{{"id": 1}},
		Updated: []change.RowUpdate{{Before: change.Row{"n": 1}, After: change.Row{"n": 2}}},
		Deleted: []change.Row{{"id": 2}}}
	var js bytes.Buffer
	l, err := NewLog("console", "json", &js)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.React(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	want := `{"reaction":"console","query":"q","seq":7,"ts_ms":5,"added":[{"id":1}],"updated":[{"before":{"n":1},"after":{"n":2}}],"deleted":[{"id":2}]}` + "\n"
	if js.String() != want {
		t.Fatalf("json line:\n%s\nwant\n%s", js.String(), want)
	}
	var txt bytes.Buffer
	l, _ = NewLog("console", "text", &txt)
	if err := l.React(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"reaction=console query=q seq=7 added=1 updated=1 deleted=1", `+ {"id":1}`, `~ {"before":{"n":1},"after":{"n":2}}`, `- {"id":2}`} {
		if !strings.Contains(txt.String(), w) {
			t.Errorf("text output lacks %q:\n%s", w, txt.String())
		}
	}
	if _, err := NewLog("x", "xml", &txt); err == nil {
		t.Fatal("format xml accepted")
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// A failed write is retried (not acked, not dead-lettered).
func TestLogWriteFailureIsRetryable(t *testing.T) {
	l, _ := NewLog("console", "json", brokenWriter{})
	err := l.React(context.Background(), &change.Result{Query: "q", Seq: 1})
	if err == nil || bus.IsPermanent(err) {
		t.Fatalf("write failure: %v", err)
	}
}

func TestConsumerOptionsHonourRetryConfig(t *testing.T) {
	topo, err := streams.Default("t", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := ConsumerOptions(topo, "hook", []string{"q"}, config.RetryConfig{
		Initial: config.Duration(100 * time.Millisecond), Max: config.Duration(time.Second), MaxDeliver: 5,
	})
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	if !o.Ordered || o.Concurrency != 1 || o.MaxDeliver != 5 || !slices.Equal(o.BackOff, want) {
		t.Fatalf("options: ordered %v, concurrency %d, maxDeliver %d, backOff %v; want ordered, 1, 5, %v",
			o.Ordered, o.Concurrency, o.MaxDeliver, o.BackOff, want)
	}
	// A kind without retry settings takes the topology's defaults.
	o = ConsumerOptions(topo, "log", []string{"q"}, config.RetryConfig{})
	if !o.Ordered || o.MaxDeliver != topo.Consumers.MaxDeliver || !slices.Equal(o.BackOff, topo.Consumers.BackOff) {
		t.Fatalf("defaults: ordered %v, maxDeliver %d, backOff %v", o.Ordered, o.MaxDeliver, o.BackOff)
	}
}
