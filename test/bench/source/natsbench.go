package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// benchStream is the stream nats bench creates.
const benchStream = "benchstream"

// msgsPerSec finds nats bench's publisher rate ("... 123,456 msgs/sec ...").
var msgsPerSec = regexp.MustCompile(`([0-9][0-9,]*) msgs/sec`)

// parseBenchRate reads the publish rate from nats bench's report: the
// aggregated rate when several clients ran, else the one client's.
func parseBenchRate(out string) (float64, error) {
	line := out
	for l := range strings.Lines(out) {
		if strings.Contains(l, "aggregated stats:") {
			line = l
			break
		}
	}
	mm := msgsPerSec.FindStringSubmatch(line)
	if mm == nil {
		return 0, fmt.Errorf("nats bench printed no msgs/sec figure:\n%s", out)
	}
	rate, err := strconv.ParseFloat(strings.ReplaceAll(mm[1], ",", ""), 64)
	if err != nil || rate <= 0 {
		return 0, fmt.Errorf("nats bench rate %q is not a positive number:\n%s", mm[1], out)
	}
	return rate, nil
}

// sourceShape are the nats bench flags that give messages the shape of
// source-pg's: a message id (deduplication) and a subject of its own (one
// per row) on every message.
var sourceShape = []string{"--dedup", "--multisubject", "--multisubjectmax=0"}

// natsBench runs `nats bench js pub <kind> [extra...]` against a fresh server
// with the durability mode sm and returns the rate nats bench reports. The
// stream is file storage; afterwards it must hold exactly msgs messages.
func natsBench(ctx context.Context, bin string, sm syncMode, kind string, batch, msgs, size int, log *slog.Logger, extra ...string) (measure, error) {
	b, err := startBus(ctx, sm, log)
	if err != nil {
		return measure{}, err
	}
	defer b.close()
	args := []string{"bench", "js", "pub", kind, "bench.pub",
		"--server", b.url,
		"--msgs", itoa(msgs), "--size", itoa(size) + "B", "--batch", itoa(batch),
		"--storage", "file", "--create", "--purge", "--no-progress"}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return measure{}, fmt.Errorf("nats %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	rate, err := parseBenchRate(out.String())
	if err != nil {
		return measure{}, err
	}
	s, err := b.js.Stream(ctx, benchStream)
	if err != nil {
		return measure{}, fmt.Errorf("looking up the bench stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return measure{}, fmt.Errorf("reading the bench stream: %w", err)
	}
	if info.Config.Storage != jetstream.FileStorage {
		return measure{}, fmt.Errorf("nats bench made a %s stream, want file storage", info.Config.Storage)
	}
	if info.State.Msgs != uint64(msgs) {
		return measure{}, fmt.Errorf("the bench stream holds %d messages after nats bench, want %d", info.State.Msgs, msgs)
	}
	return measure{count: msgs, elapsed: elapsed, rate: rate}, nil
}
