package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tributary/tributary/pkg/change"
)

// logReader reads the reactor's standard output: the log reaction's text
// lines (docs/reactions.md), which it prints as they come, prefixed, and
// parses back into result messages per query.
type logReader struct {
	mu      sync.Mutex
	results map[string][]*change.Result // per query, in the order printed
	pending *change.Result
	want    int // rows the pending result still has to get
	problem error
}

func newLogReader() *logReader { return &logReader{results: map[string][]*change.Result{}} }

// read consumes r until EOF, echoing every line to out.
func (l *logReader) read(r io.Reader, out io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintf(out, "reactor   | %s\n", line)
		l.mu.Lock()
		if err := l.parse(line); err != nil && l.problem == nil {
			l.problem = err
		}
		l.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		l.mu.Lock()
		if l.problem == nil {
			l.problem = fmt.Errorf("reading the reactor's output: %w", err)
		}
		l.mu.Unlock()
	}
}

// parse takes one line: "reaction=R query=Q seq=N added=A updated=U
// deleted=D", then A+U+D lines "  + ROW", "  ~ {before, after}", "  - ROW".
func (l *logReader) parse(line string) error {
	if strings.HasPrefix(line, "reaction=") {
		if l.want > 0 {
			return fmt.Errorf("result %s/%d is missing %d row lines", l.pending.Query, l.pending.Seq, l.want)
		}
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		seq, err := strconv.ParseUint(f["seq"], 10, 64)
		if err != nil || f["query"] == "" {
			return fmt.Errorf("log line %q: no query or seq", line)
		}
		res := &change.Result{Query: f["query"], Seq: seq}
		l.want = 0
		for _, k := range []string{"added", "updated", "deleted"} {
			n, err := strconv.Atoi(f[k])
			if err != nil {
				return fmt.Errorf("log line %q: %s: %w", line, k, err)
			}
			l.want += n
		}
		l.pending = res
		l.results[res.Query] = append(l.results[res.Query], res)
		return nil
	}
	row, ok := strings.CutPrefix(line, "  ")
	if !ok || l.want == 0 || len(row) < 3 {
		return fmt.Errorf("unexpected line on the reactor's output: %q", line)
	}
	sign, data := row[0], []byte(row[2:])
	l.want--
	switch sign {
	case '+', '-':
		var r change.Row
		if err := decode(data, &r); err != nil {
			return fmt.Errorf("row %q: %w", row, err)
		}
		if sign == '+' {
			l.pending.Added = append(l.pending.Added, r)
		} else {
			l.pending.Deleted = append(l.pending.Deleted, r)
		}
	case '~':
		var u change.RowUpdate
		if err := decode(data, &u); err != nil {
			return fmt.Errorf("row %q: %w", row, err)
		}
		l.pending.Updated = append(l.pending.Updated, u)
	default:
		return fmt.Errorf("row line %q: sign %q is not +, ~ or -", line, sign)
	}
	return nil
}

// snapshot returns a copy of every query's results so far, and the first
// parse problem.
func (l *logReader) snapshot() (map[string][]*change.Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]*change.Result, len(l.results))
	for q, rs := range l.results {
		out[q] = slices.Clone(rs)
	}
	if l.pending != nil && l.want > 0 {
		// The last result is still being printed: leave it out.
		q := l.pending.Query
		out[q] = out[q][:len(out[q])-1]
	}
	return out, l.problem
}

func decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// canonical encodes a row as JSON with sorted keys and numbers as their
// text, so that a row from SQL, from the log and from the stream compare
// equal when they hold the same values.
func canonical(r change.Row) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	var back map[string]any
	if err := decode(b, &back); err != nil {
		return "", err
	}
	b, err = json.Marshal(back)
	return string(b), err
}

// fold checks that results are seqs 1..n, each once and in order, and
// applies them to an empty result set, which it returns sorted. A deleted
// or updated row the set does not hold is an error.
func fold(query string, results []*change.Result) ([]string, error) {
	set := map[string]int{}
	take := func(r change.Row, seq uint64, what string) error {
		k, err := canonical(r)
		if err != nil {
			return err
		}
		if set[k] == 0 {
			return fmt.Errorf("%s seq %d %s row %s, which the result set does not hold", query, seq, what, k)
		}
		if set[k]--; set[k] == 0 {
			delete(set, k)
		}
		return nil
	}
	put := func(r change.Row) error {
		k, err := canonical(r)
		set[k]++
		return err
	}
	for i, r := range results {
		if r.Seq != uint64(i+1) {
			return nil, fmt.Errorf("%s: result %d has seq %d (each seq once, in order, from 1)", query, i+1, r.Seq)
		}
		for _, d := range r.Deleted {
			if err := take(d, r.Seq, "deletes"); err != nil {
				return nil, err
			}
		}
		for _, u := range r.Updated {
			if err := take(u.Before, r.Seq, "updates"); err != nil {
				return nil, err
			}
			if err := put(u.After); err != nil {
				return nil, err
			}
		}
		for _, a := range r.Added {
			if err := put(a); err != nil {
				return nil, err
			}
		}
	}
	var rows []string
	for k, n := range set {
		for range n {
			rows = append(rows, k)
		}
	}
	slices.Sort(rows)
	return rows, nil
}
