package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/streams"
)

// errConfig: the config or the flags are wrong (exit 2).
var errConfig = errors.New("invalid config or flags")

// dlqCmd groups the dead-letter commands. They read the dead-letter
// stream of the results stream, subject <prefix>.dlq.<results
// stream>.reaction_<id> (docs/formats.md "Dead letters").
type dlqCmd struct {
	List    dlqListCmd    `cmd:"" help:"List a reaction's dead letters, oldest first."`
	Show    dlqShowCmd    `cmd:"" help:"Show one dead letter: its headers and the result it holds."`
	Redrive dlqRedriveCmd `cmd:"" help:"Apply dead-lettered results to the reaction's target, oldest first, deleting each once applied."`
	Purge   dlqPurgeCmd   `cmd:"" help:"Delete a reaction's dead letters (all, or --seq)."`
}

// dlqFlags are the flags every dlq command takes.
type dlqFlags struct {
	Config   string        `help:"Config file (YAML)." type:"path" short:"c" required:""`
	NATS     string        `name:"nats" help:"NATS server URL(s); required when the config runs an embedded server (point it at that server's nats.listen). Overrides nats.url." placeholder:"URL"`
	Reaction string        `help:"The reaction's id." required:"" placeholder:"ID"`
	JSON     bool          `name:"json" help:"Print JSON for scripts instead of text."`
	Timeout  time.Duration `help:"How long the command may take." default:"1m"`
}

type dlqListCmd struct {
	dlqFlags `embed:""`
}

type dlqShowCmd struct {
	dlqFlags `embed:""`
	Seq      uint64 `help:"The dead letter's sequence in the dead-letter stream (see list)." required:""`
}

type dlqRedriveCmd struct {
	dlqFlags `embed:""`
	Seq      uint64 `help:"Re-drive only this dead letter (its sequence in the dead-letter stream); default every one, oldest first."`
}

type dlqPurgeCmd struct {
	dlqFlags `embed:""`
	Seq      uint64 `help:"Delete only this dead letter; default every one of the reaction."`
}

func (c *dlqListCmd) Run() error    { return c.run(os.Stdout, "list", 0) }
func (c *dlqShowCmd) Run() error    { return c.run(os.Stdout, "show", c.Seq) }
func (c *dlqRedriveCmd) Run() error { return c.run(os.Stdout, "redrive", c.Seq) }
func (c *dlqPurgeCmd) Run() error   { return c.run(os.Stdout, "purge", c.Seq) }

// dlqEnv is what a dlq command works with.
type dlqEnv struct {
	cfg     *config.Config
	conn    *bus.Conn
	stream  string // the dead-letter stream
	subject string // the reaction's dead-letter subject
	react   *config.Reaction
}

// run connects and runs action (list, show, redrive, purge) writing to out.
func (f *dlqFlags) run(out io.Writer, action string, seq uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	defer cancel()
	cfg, err := config.Load(f.Config)
	if err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	if f.NATS != "" {
		cfg.NATS.URL = f.NATS
		cfg.NATS.Listen = ""
	} else if cfg.NATS.Embedded() {
		return fmt.Errorf("%w: the config runs an embedded NATS server; pass --nats with the URL it listens on (nats.listen)", errConfig)
	}
	topo, err := streams.Default(cfg.NATS.SubjectPrefix, cfg.NATS.StreamsOptions())
	if err != nil {
		return fmt.Errorf("%w: topology: %v", errConfig, err)
	}
	e := &dlqEnv{
		cfg:     cfg,
		stream:  topo.DeadLetters.Name,
		subject: topo.DeadLetterSubject(topo.Results.Name, "reaction_"+bus.KeyToken(f.Reaction)),
	}
	for i := range cfg.Reactions {
		if cfg.Reactions[i].ID == f.Reaction {
			e.react = &cfg.Reactions[i]
		}
	}
	if e.react == nil && action == "redrive" {
		return fmt.Errorf("%w: no reaction %q in %s: redrive needs its target", errConfig, f.Reaction, f.Config)
	}
	log, err := logging.New(os.Stderr, "text", "warn")
	if err != nil {
		return err
	}
	if e.conn, err = bus.Connect(ctx, app.ConnectOptions(cfg, "reactor-dlq", log)); err != nil {
		return err
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = e.conn.Close(cctx)
	}()
	switch action {
	case "list":
		return e.list(ctx, out, f.JSON)
	case "show":
		return e.show(ctx, out, f.JSON, seq)
	case "redrive":
		return e.redrive(ctx, out, f.JSON, seq, log)
	case "purge":
		return e.purge(ctx, out, f.JSON, seq)
	}
	return fmt.Errorf("unknown dlq action %q", action)
}

// dlqJSON is a dead letter as --json prints it.
type dlqJSON struct {
	Seq        uint64            `json:"seq"`
	Time       time.Time         `json:"time"`
	Reason     string            `json:"reason"`
	Subject    string            `json:"subject"`
	Stream     string            `json:"stream"`
	Sequence   uint64            `json:"sequence"`
	Consumer   string            `json:"consumer"`
	Deliveries uint64            `json:"deliveries"`
	MsgID      string            `json:"msgId"`
	Headers    map[string]string `json:"headers,omitempty"`
	Data       json.RawMessage   `json:"data,omitempty"` // the result, when it is JSON
	Text       string            `json:"text,omitempty"` // the body, when it is not
}

func toJSON(d *bus.StoredDeadLetter, full bool) dlqJSON {
	j := dlqJSON{Seq: d.Seq, Time: d.Time.UTC(), Reason: d.Reason, Subject: d.Subject, Stream: d.Stream,
		Sequence: d.Sequence, Consumer: d.Consumer, Deliveries: d.Deliveries, MsgID: d.MsgID}
	if full {
		j.Headers = d.Header
		if json.Valid(d.Data) {
			j.Data = d.Data
		} else {
			j.Text = string(d.Data)
		}
	}
	return j
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *dlqEnv) list(ctx context.Context, out io.Writer, asJSON bool) error {
	dls, err := e.conn.ListDeadLetters(ctx, e.stream, e.subject)
	if err != nil {
		return err
	}
	if asJSON {
		js := make([]dlqJSON, 0, len(dls))
		for _, d := range dls {
			js = append(js, toJSON(d, false))
		}
		return writeJSON(out, js)
	}
	if len(dls) == 0 {
		fmt.Fprintf(out, "no dead letters on %s\n", e.subject)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tRESULT\tORIGINAL SEQ\tDELIVERIES\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.Seq, d.Time.UTC().Format(time.RFC3339), d.MsgID, d.Sequence, d.Deliveries, shorten(d.Reason, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d dead letters on %s\n", len(dls), e.subject)
	return nil
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func (e *dlqEnv) show(ctx context.Context, out io.Writer, asJSON bool, seq uint64) error {
	d, err := e.conn.GetDeadLetter(ctx, e.stream, e.subject, seq)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(out, toJSON(d, true))
	}
	fmt.Fprintf(out, "dead letter %d of %s, stored %s\n", d.Seq, e.subject, d.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "result:     %s (%s, sequence %d of %s)\n", d.MsgID, d.Subject, d.Sequence, d.Stream)
	fmt.Fprintf(out, "consumer:   %s, %d deliveries\n", d.Consumer, d.Deliveries)
	fmt.Fprintf(out, "reason:     %s\n", d.Reason)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, d.Data, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(d.Data)
	}
	fmt.Fprintf(out, "body:\n%s\n", pretty.String())
	return nil
}

// redriveOutcome is one dead letter's fate in a redrive.
type redriveOutcome struct {
	Seq    uint64 `json:"seq"`
	Result string `json:"result"`
	// Status is redriven (applied and deleted), skipped (the target's
	// position already covers it; kept) or failed (kept).
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// redrive applies the dead letters' results to the reaction's target,
// oldest first, each deleted once applied; it stops at the first failure
// so that no later dead letter overtakes it.
func (e *dlqEnv) redrive(ctx context.Context, out io.Writer, asJSON bool, seq uint64, log *slog.Logger) error {
	var dls []*bus.StoredDeadLetter
	if seq != 0 {
		d, err := e.conn.GetDeadLetter(ctx, e.stream, e.subject, seq)
		if err != nil {
			return err
		}
		dls = append(dls, d)
	} else {
		var err error
		if dls, err = e.conn.ListDeadLetters(ctx, e.stream, e.subject); err != nil {
			return err
		}
	}
	if _, isSSE := e.react.Spec.(*config.SSEReaction); isSSE {
		return fmt.Errorf("%w: reaction %s is of kind sse: its result sets live in the running reactor; a dead letter cannot be re-driven into them (purge it: a page reload shows the query's current result once later results arrive)", errConfig, e.react.ID)
	}
	t, err := newTarget(*e.react, e.conn, logging.Discard(), prometheus.NewRegistry(), out)
	if err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	if t.close != nil {
		defer t.close()
	}
	keeper, _ := t.react.(reaction.SeqKeeper)
	var outcomes []redriveOutcome
	var failed error
	for _, d := range dls {
		o := redriveOutcome{Seq: d.Seq, Result: d.MsgID}
		res, err := reaction.DecodeResult(d.Data)
		if err != nil {
			o.Status, o.Detail = "failed", err.Error()
			failed = fmt.Errorf("dead letter %d: %w", d.Seq, err)
			outcomes = append(outcomes, o)
			break
		}
		if keeper != nil {
			applied, ok, err := keeper.AppliedSeq(ctx, res.Query)
			if err != nil {
				o.Status, o.Detail = "failed", err.Error()
				failed = fmt.Errorf("dead letter %d: %w", d.Seq, err)
				outcomes = append(outcomes, o)
				break
			}
			if ok && res.Seq <= applied {
				o.Status = "skipped"
				o.Detail = fmt.Sprintf("the target's position for %s is seq %d, at or past this result's seq %d: the reaction would take it for a repeat; apply it by hand, then purge it", res.Query, applied, res.Seq)
				outcomes = append(outcomes, o)
				continue
			}
		}
		if err := t.react.React(ctx, res); err != nil {
			o.Status, o.Detail = "failed", err.Error()
			failed = fmt.Errorf("dead letter %d (%s): %w", d.Seq, d.MsgID, err)
			outcomes = append(outcomes, o)
			break
		}
		if err := e.conn.DeleteDeadLetter(ctx, e.stream, d.Seq); err != nil {
			// Applied but kept: a second redrive repeats it (the
			// idempotency key is the same).
			log.Warn("re-driven dead letter could not be deleted", "seq", d.Seq, "err", err)
			o.Status, o.Detail = "redriven", "applied, but deleting it failed: "+err.Error()
		} else {
			o.Status = "redriven"
		}
		outcomes = append(outcomes, o)
	}
	if asJSON {
		if outcomes == nil {
			outcomes = []redriveOutcome{}
		}
		if err := writeJSON(out, outcomes); err != nil {
			return err
		}
	} else {
		for _, o := range outcomes {
			line := fmt.Sprintf("%d %s: %s", o.Seq, o.Result, o.Status)
			if o.Detail != "" {
				line += ": " + o.Detail
			}
			fmt.Fprintln(out, line)
		}
		if len(outcomes) == 0 {
			fmt.Fprintf(out, "no dead letters on %s\n", e.subject)
		}
	}
	return failed
}

func (e *dlqEnv) purge(ctx context.Context, out io.Writer, asJSON bool, seq uint64) error {
	var n uint64
	if seq != 0 {
		if _, err := e.conn.GetDeadLetter(ctx, e.stream, e.subject, seq); err != nil {
			return err
		}
		if err := e.conn.DeleteDeadLetter(ctx, e.stream, seq); err != nil {
			return err
		}
		n = 1
	} else {
		var err error
		if n, err = e.conn.PurgeDeadLetters(ctx, e.stream, e.subject); err != nil {
			return err
		}
	}
	if asJSON {
		return writeJSON(out, map[string]any{"subject": e.subject, "deleted": n})
	}
	fmt.Fprintf(out, "deleted %d dead letters from %s\n", n, e.subject)
	return nil
}
