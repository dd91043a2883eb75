package reaction_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"testing"

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
