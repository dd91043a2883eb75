package reaction

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"text/template"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
	"github.com/tributary/tributary/streams"
)

// Reaction performs the effect of one result message. It returns nil only
// when the effect succeeded; an error wrapped with bus.Permanent means the
// result can never succeed (it is dead-lettered); any other error is
// retried with backoff.
type Reaction interface {
	React(ctx context.Context, r *change.Result) error
}

// ConsumerOptions returns the durable consumer of a reaction: the results
// of its queries, one at a time, ordered (a failing result is retried in
// place with backoff and never overtaken by a later one; only results that
// fail permanently or do not decode go to the dead-letter stream).
//
// retry is the reaction's retry config (reactions[].retry): Initial and Max
// bound the backoff, MaxDeliver applies if the consumer is made unordered.
// Zero fields take the topology's consumer defaults.
func ConsumerOptions(topo streams.Topology, reactionID string, queries []string, retry config.RetryConfig) bus.ConsumerOptions {
	filters := make([]string, len(queries))
	for i, q := range queries {
		filters[i] = topo.ResultSubject(bus.Token(q))
	}
	durable := "reaction_" + bus.KeyToken(reactionID)
	o := bus.ConsumerOptions{
		Stream:            topo.Results.Name,
		Durable:           durable,
		FilterSubjects:    filters,
		DeadLetterSubject: topo.DeadLetterSubject(topo.Results.Name, durable),
		AckWait:           topo.Consumers.AckWait,
		MaxDeliver:        topo.Consumers.MaxDeliver,
		// Ordered: no result overtakes a failed one, nor one a crashed
		// instance held (the durable is reset to its ack floor when an
		// ordered consumer takes over), so the offsets of the postgres and
		// sse kinds never skip a result.
		MaxAckPending: topo.Consumers.MaxAckPending,
		BackOff:       topo.Consumers.BackOff,
		Concurrency:   1,
		Ordered:       true,
	}
	if retry.MaxDeliver > 0 {
		o.MaxDeliver = retry.MaxDeliver
	}
	if retry.Initial > 0 || retry.Max > 0 {
		o.BackOff = backOff(retry.Initial.D(), retry.Max.D(), topo.Consumers.BackOff)
	}
	return o
}

// backOff is the doubling series of delays from initial up to maxWait; a
// zero bound is taken from def (its first or last delay).
func backOff(initial, maxWait time.Duration, def []time.Duration) []time.Duration {
	if initial <= 0 && len(def) > 0 {
		initial = def[0]
	}
	if maxWait <= 0 && len(def) > 0 {
		maxWait = def[len(def)-1]
	}
	initial = max(initial, time.Millisecond)
	maxWait = max(maxWait, initial)
	var out []time.Duration
	for d := initial; d < maxWait; d *= 2 {
		out = append(out, d)
	}
	return append(out, maxWait)
}

// Handler adapts a Reaction to a bus handler: it decodes the result
// strictly (a result that does not decode is permanent: dead letter) and
// calls the reaction.
func Handler(r Reaction) bus.Handler {
	return func(ctx context.Context, d *bus.Delivery) error {
		res, err := DecodeResult(d.Data)
		if err != nil {
			return bus.Permanent(err)
		}
		return r.React(ctx, res)
	}
}

// DecodeResult parses one result message strictly.
func DecodeResult(data []byte) (*change.Result, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var r change.Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding result message: %w", err)
	}
	if r.Query == "" {
		return nil, fmt.Errorf("decoding result message: query: missing")
	}
	if r.Seq == 0 {
		return nil, fmt.Errorf("decoding result message: seq: missing (sequences start at 1)")
	}
	return &r, nil
}

// Log writes every result as one JSON line, a text summary, or one line
// per row change rendered by a template of its change kind. Redelivered
// results are written again (a log is at-least-once); the default lines
// carry the query and seq, so a reader can drop repeats.
//
// A result's lines are written with one Write. With a file (NewLogFromConfig)
// they are appended, and with sync always the file is fsynced before React
// returns: a result is acknowledged only once its lines are on disk.
//
// Errors: a template that fails on a row, or a row JSON cannot encode, is
// permanent (ErrBadResult); a failed write or fsync is retried
// (ErrTargetUnavailable; the retry may repeat lines written before the
// failure).
type Log struct {
	ID string
	// Text writes a human-readable summary line before the JSON rows
	// instead of one JSON object per line.
	Text      bool
	templates map[Op]*template.Template
	file      *os.File // nil: w is not the reaction's
	sync      bool
	mu        sync.Mutex
	w         io.Writer
}

// NewLogFromConfig builds the log reaction id from its (validated,
// defaulted) config: it writes to stdout, or appends to spec.File (opened
// here, created with mode 0644 when missing; Close closes it).
func NewLogFromConfig(id string, spec *config.LogReaction, stdout io.Writer) (*Log, error) {
	l, err := NewLog(id, spec.Format, stdout)
	if err != nil {
		return nil, err
	}
	for op, text := range map[Op]string{OpCreate: spec.Templates.Added, OpUpdate: spec.Templates.Updated, OpDelete: spec.Templates.Deleted} {
		if text == "" {
			continue
		}
		t, err := config.ParseRowTemplate(text)
		if err != nil {
			return nil, fmt.Errorf("log reaction %s: template of %s: %w", id, op, err)
		}
		if l.templates == nil {
			l.templates = make(map[Op]*template.Template)
		}
		l.templates[op] = t
	}
	if spec.File != "" {
		f, err := os.OpenFile(spec.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("log reaction %s: opening %s: %w", id, spec.File, err)
		}
		l.file, l.w = f, f
		l.sync = spec.Sync != config.LogSyncNone
	}
	return l, nil
}

// Close closes the reaction's file, if it has one. Call it after the
// consumer stopped.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	l.w = io.Discard
	return err
}

// NewLog returns a log reaction writing to w in format "json" or "text".
func NewLog(id, format string, w io.Writer) (*Log, error) {
	switch format {
	case "", "json":
		return &Log{ID: id, w: w}, nil
	case "text":
		return &Log{ID: id, Text: true, w: w}, nil
	}
	return nil, fmt.Errorf("log reaction %s: format %q is not json or text", id, format)
}

type logLine struct {
	Reaction string `json:"reaction"`
	*change.Result
}

// React implements Reaction.
func (l *Log) React(ctx context.Context, r *change.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing result %s/%d: %w", r.Query, r.Seq, err)
	}
	var line []byte
	var err error
	if l.templates != nil {
		line, err = l.templateLines(r)
		if err != nil {
			return bus.Permanent(fmt.Errorf("log reaction %s: %w", l.ID, err))
		}
		if len(line) == 0 {
			return nil
		}
	} else if l.Text {
		line, err = textLine(l.ID, r)
	} else {
		line, err = json.Marshal(logLine{Reaction: l.ID, Result: r})
		line = append(line, '\n')
	}
	if err != nil {
		return bus.Permanent(fmt.Errorf("encoding result %s/%d: %w", r.Query, r.Seq, err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("writing result %s/%d: %w: %w", r.Query, r.Seq, ErrTargetUnavailable, err)
	}
	if l.sync && l.file != nil {
		if err := l.file.Sync(); err != nil {
			return fmt.Errorf("syncing result %s/%d to %s: %w: %w", r.Query, r.Seq, l.file.Name(), ErrTargetUnavailable, err)
		}
	}
	return nil
}

// templateLines renders one line per row change of a templated kind.
func (l *Log) templateLines(r *change.Result) ([]byte, error) {
	var b bytes.Buffer
	for _, rc := range RowChanges(r) {
		t := l.templates[rc.Op]
		if t == nil {
			continue
		}
		n := b.Len()
		if err := t.Execute(&b, rc.templateData()); err != nil {
			return nil, fmt.Errorf("%w: template of %s for %s: %v", ErrBadResult, rc.Op, rc.Key(), err)
		}
		if b.Len() == n || b.Bytes()[b.Len()-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}

func textLine(id string, r *change.Result) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "reaction=%s query=%s seq=%d added=%d updated=%d deleted=%d\n",
		id, r.Query, r.Seq, len(r.Added), len(r.Updated), len(r.Deleted))
	write := func(sign string, v any) error {
		row, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  %s %s\n", sign, row)
		return nil
	}
	for _, row := range r.Added {
		if err := write("+", row); err != nil {
			return nil, err
		}
	}
	for _, u := range r.Updated {
		if err := write("~", u); err != nil {
			return nil, err
		}
	}
	for _, row := range r.Deleted {
		if err := write("-", row); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}
