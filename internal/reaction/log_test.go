package reaction_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"

	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
)

// switchWriter is a log output that can be made to fail, as a full disk.
type switchWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	broken bool
}

func (w *switchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return 0, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func (w *switchWriter) effects(t testing.TB) []reactiontest.Effect {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []reactiontest.Effect
	dec := json.NewDecoder(bytes.NewReader(w.buf.Bytes()))
	for dec.More() {
		var line struct {
			Query string `json:"query"`
			Seq   uint64 `json:"seq"`
		}
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		out = append(out, reactiontest.Effect{Query: line.Query, Seq: line.Seq})
	}
	return out
}

// The log kind writes a repeat again (at-least-once, each line names its
// query and seq).
func TestLogConformance(t *testing.T) {
	reactiontest.Run(t, reactiontest.Kind{New: func(t *testing.T) *reactiontest.Target {
		w := &switchWriter{}
		l, err := reaction.NewLog("console", "json", w)
		if err != nil {
			t.Fatal(err)
		}
		return &reactiontest.Target{
			Reaction: l,
			Effects:  w.effects,
			BreakRetryable: func(testing.TB) func() {
				w.mu.Lock()
				w.broken = true
				w.mu.Unlock()
				return func() {
					w.mu.Lock()
					w.broken = false
					w.mu.Unlock()
				}
			},
		}
	}})
}

// With templates and a file, each row change of a templated kind is one
// line appended to the file (kinds without a template write nothing), a
// file that existed keeps its lines, and a template failing on a row is
// permanent.
func TestLogTemplatesToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.log")
	if err := os.WriteFile(path, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &config.LogReaction{
		Templates: config.LogTemplates{
			Added:   `+ {{.query}}#{{.seq}} {{.after.id}}`,
			Deleted: "- {{.query}}#{{.seq}} {{json .before}}\n",
		},
		File: path,
	}
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionLog, ID: "file", Queries: []string{"q1"}, Spec: spec}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if spec.Sync != config.LogSyncAlways {
		t.Fatalf("sync defaults to %q, want always", spec.Sync)
	}
	l, err := reaction.NewLogFromConfig("file", spec, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	e := newBusEnv(t)
	e.publishResult(&change.Result{Query: "q1", Seq: 1, Added: []change.Row{{"id": 1}, {"id": 2}}})
	e.publishResult(&change.Result{Query: "q1", Seq: 2,
		Updated: []change.RowUpdate{{Before: change.Row{"id": 1}, After: change.Row{"id": 1, "v": 2}}},
		Deleted: []change.Row{{"id": 2}}})
	e.consume("file", []string{"q1"}, l)
	want := "before\n+ q1#1 1\n+ q1#1 2\n- q1#2 {\"id\":2}\n"
	var got []byte
	testwait.Until(t, 10*time.Second, "the lines in the file", func() bool {
		got, err = os.ReadFile(path)
		return err == nil && len(got) >= len(want)
	})
	if string(got) != want {
		t.Fatalf("file holds %q, want %q", got, want)
	}
	err = l.React(t.Context(), &change.Result{Query: "q1", Seq: 3, Added: []change.Row{{"other": 1}}})
	if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrBadResult) {
		t.Fatalf("template on a row without the column: %v, want permanent ErrBadResult", err)
	}
	// Closed: nothing more is written (the consumer stopped first).
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
