package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/tributary/tributary/internal/retry"
)

// Server error codes of a refused expected-sequence check.
const (
	// errCodeWrongLastSeq: the subject's last sequence is not the expected
	// one (for a fenced write: someone claimed the fence since).
	errCodeWrongLastSeq = 10071
	// errCodeWrongLastSeqConstant: the check could not be made, because a
	// write to the same subject is being replicated (a clustered stream)
	// or the subject is written earlier in the same batch.
	errCodeWrongLastSeqConstant = 10164
)

// Backoff of ClaimFence between attempts.
const (
	claimRetryWait    = 20 * time.Millisecond
	claimMaxRetryWait = time.Second
)

// FenceClaim is the payload of a claim on a fence subject (JSON; see
// docs/formats.md).
type FenceClaim struct {
	// Holder names the claiming instance (for operators).
	Holder string `json:"holder"`
	// Token is the claimer's lease fencing token: the revision of the lease
	// key at which it acquired the lease. Tokens only grow.
	Token uint64    `json:"token"`
	Time  time.Time `json:"time"`
}

// Fence is a single writer's claim on a fence subject: a subject of a
// stream that only claims are written to. Writes made WithFence carry the
// claim's stream sequence as the expected last sequence of the fence
// subject, so the server refuses them, all or nothing, once anyone has
// claimed the fence after this claim: a stale owner (paused, partitioned)
// cannot write after its successor claimed, whatever its own clock says.
//
// A Fence is immutable and safe for concurrent use.
type Fence struct {
	stream  string
	subject string
	holder  string
	token   uint64
	seq     uint64
}

// Stream is the stream that holds the fence subject; fenced writes must go
// to the same stream (the server checks the fence per stream).
func (f *Fence) Stream() string { return f.stream }

// Subject is the fence subject.
func (f *Fence) Subject() string { return f.subject }

// Holder is the claiming instance.
func (f *Fence) Holder() string { return f.holder }

// Token is the lease token the claim was made with.
func (f *Fence) Token() uint64 { return f.token }

// Sequence is the stream sequence of the claim: fenced writes expect it
// to be the fence subject's last sequence.
func (f *Fence) Sequence() uint64 { return f.seq }

func (f *Fence) String() string {
	return fmt.Sprintf("fence %s (stream %s) claimed at sequence %d by %s with token %d", f.subject, f.stream, f.seq, f.holder, f.token)
}

// ClaimFence claims the fence subject in stream for holder, whose lease
// fencing token is token (> 0). The caller must hold the lease the token
// comes from; the claim then takes over any claim with a lower or equal
// token: it reads the subject's last message (its stream sequence L, 0 if
// none) and appends a claim (FenceClaim) that the server stores only if L
// is still the subject's last sequence, retrying on a concurrent claim.
// Every later write made WithFence of the returned Fence is refused once
// another claim follows this one.
//
// A claim with a higher token on the subject means that a newer lease
// holder already claimed: ClaimFence then returns an error wrapping
// ErrFenced, since the caller's lease is stale. Other errors: ErrInvalidMessage
// for bad arguments; ErrStreamNotFound; ErrRejected for a refusal that
// retrying cannot fix (the subject is not bound to stream, ...); otherwise
// ctx's error with the last attempt's. Timeouts and disconnects are
// retried until ctx ends; a re-sent claim that the stream stored before is
// recognised by its message id.
func (c *Conn) ClaimFence(ctx context.Context, stream, subject, holder string, token uint64) (*Fence, error) {
	var probs []string
	if stream == "" {
		probs = append(probs, "stream is empty")
	}
	if err := validSubject(subject); err != nil {
		probs = append(probs, err.Error())
	}
	if holder == "" {
		probs = append(probs, "holder is empty")
	}
	if token == 0 {
		probs = append(probs, "token is 0 (pass the lease's fencing token)")
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("%w: claiming fence %q in stream %q: %s", ErrInvalidMessage, subject, stream, strings.Join(probs, "; "))
	}
	data, err := json.Marshal(FenceClaim{Holder: holder, Token: token, Time: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("claiming fence %s: encoding the claim: %w", subject, err)
	}
	// One id for every attempt: an attempt whose answer was lost but that
	// was stored makes the next attempt a duplicate, which tells its
	// sequence.
	id := "fence:" + strconv.FormatUint(token, 10) + ":" + nuid.Next()
	desc := fmt.Sprintf("claiming fence %s in stream %s for %s (token %d)", subject, stream, holder, token)
	bo := retry.NewBackOff(claimRetryWait, claimMaxRetryWait)
	for attempt := 1; ; attempt++ {
		seq, err := c.claimOnce(ctx, stream, subject, id, data, token)
		if err == nil {
			c.log.Info("fence claimed", "fence", subject, "stream", stream, "holder", holder, "token", token, "sequence", seq)
			return &Fence{stream: stream, subject: subject, holder: holder, token: token, seq: seq}, nil
		}
		if errors.Is(err, ErrFenced) || errors.Is(err, ErrStreamNotFound) || errors.Is(err, ErrRejected) {
			return nil, fmt.Errorf("%s: %w", desc, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: gave up after %d attempts: %w (last attempt: %v)", desc, attempt, ctx.Err(), err)
		}
		c.log.Debug("fence claim not stored; retrying", "fence", subject, "attempt", attempt, "err", err)
		if serr := retry.Sleep(ctx, bo.NextBackOff()); serr != nil {
			return nil, fmt.Errorf("%s: gave up after %d attempts: %w (last attempt: %v)", desc, attempt, serr, err)
		}
	}
}

// claimOnce makes one attempt of ClaimFence and returns the claim's
// sequence. Errors that are worth another attempt are returned bare.
func (c *Conn) claimOnce(ctx context.Context, stream, subject, id string, data []byte, token uint64) (uint64, error) {
	var last uint64
	m, err := c.LastMessage(ctx, stream, subject)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return 0, err
	default:
		last = m.Sequence
		var prev FenceClaim
		if json.Unmarshal(m.Data, &prev) == nil && prev.Token > token {
			return 0, fmt.Errorf("%w: the fence holds a newer claim (sequence %d, holder %q, token %d above %d)",
				ErrFenced, m.Sequence, prev.Holder, prev.Token, token)
		}
	}
	nm := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	nm.Header[jetstream.MsgIDHeader] = []string{id}
	nm.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(last, 10)}
	actx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	ack, err := c.js.PublishMsg(actx, nm, jetstream.WithExpectStream(stream))
	if err == nil {
		return ack.Sequence, nil
	}
	if isAPIError(err, errCodeWrongLastSeq) || isAPIError(err, errCodeWrongLastSeqConstant) {
		return 0, err // a concurrent claim: read again
	}
	if !retryablePublishErr(err) {
		return 0, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	return 0, err
}

// claimTimeout bounds one claim attempt's wait for its acknowledgement.
const claimTimeout = 5 * time.Second

// fenceHeaders adds the headers of a write fenced by f to nm.
func (f *Fence) fenceHeaders(nm *nats.Msg) {
	// Canonical names, assigned directly (Set would check them).
	nm.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(f.seq, 10)}
	nm.Header[jetstream.ExpectedLastSubjSeqSubjHeader] = []string{f.subject}
}

// fencedErr classifies the refusal err of a write fenced by f: it returns
// an error wrapping ErrFenced when another claim follows f's, and nil when
// err says nothing about the fence (the caller then handles err as usual).
// A refusal because a write to the fence subject was being replicated
// (10164) is confirmed by reading the fence subject's last message: if f's
// claim is still the last one the write is worth another attempt.
func (c *Conn) fencedErr(ctx context.Context, f *Fence, what string, err error) error {
	if f == nil {
		return nil
	}
	switch {
	case isAPIError(err, errCodeWrongLastSeq):
		return fmt.Errorf("%w: %s refused: %s is no longer the last claim: %w", ErrFenced, what, f, err)
	case isAPIError(err, errCodeWrongLastSeqConstant):
		m, rerr := c.LastMessage(ctx, f.stream, f.subject)
		if rerr == nil && m.Sequence != f.seq {
			var other FenceClaim
			_ = json.Unmarshal(m.Data, &other)
			return fmt.Errorf("%w: %s refused: %s was followed by a claim at sequence %d (holder %q, token %d): %w",
				ErrFenced, what, f, m.Sequence, other.Holder, other.Token, err)
		}
		if errors.Is(rerr, ErrNotFound) {
			return fmt.Errorf("%w: %s refused: the claim of %s was removed from the stream: %w", ErrFenced, what, f, err)
		}
	}
	return nil
}
