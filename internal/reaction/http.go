package reaction

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/obs"
	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// HeaderIdempotencyKey carries the key of every webhook request:
// <query>:<seq> for a result message, <query>:<seq>:<row> for a row change.
// A redelivered result is sent with the same keys, so the target can drop
// a repeat (after a crash between its 2xx and the acknowledgement).
const HeaderIdempotencyKey = "Idempotency-Key"

// bodyExcerpt bounds the part of an error response quoted in the error.
const bodyExcerpt = 256

// DefaultMaxRetryAfter caps the wait a Retry-After header may ask for.
const DefaultMaxRetryAfter = 5 * time.Minute

// HTTPOptions tune an HTTP reaction.
type HTTPOptions struct {
	// MaxRetryAfter caps how long React waits when the target answers 429
	// or 503 with Retry-After. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Logger and Registerer default to discarding and a private registry.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// HTTP is the webhook reaction. A query without a route sends one request
// per result message (POST baseUrl, the message as JSON), or with perRow
// one per row change (a RowChange as JSON); a routed query sends one
// request per row change of a kind that has a call, to its path, with its
// method, headers and body template. Requests of one result go out one at
// a time in message order; every one carries HeaderIdempotencyKey.
//
// React classifies the outcome: 2xx is success; 408, 429, 5xx, timeouts
// and connection errors are retryable (ErrTargetUnavailable; with a
// Retry-After, React first waits that long within ctx); any other status
// is permanent (ErrTargetRejected, with the status and an excerpt of the
// body). Header values are secrets: they appear in no log and no error.
type HTTP struct {
	id            string
	base          *url.URL
	client        *http.Client
	headers       http.Header
	perRow        bool
	routes        map[string]*httpRoute
	maxRetryAfter time.Duration
	log           *slog.Logger
	m             *httpMetrics

	mu       sync.Mutex
	progress map[string]httpProgress // by query: a result whose requests partly succeeded
}

// httpProgress says that the first done requests of result seq succeeded:
// its retry starts after them (a restart starts over: the keys let the
// target drop the repeats).
type httpProgress struct {
	seq  uint64
	done int
}

type httpRoute struct {
	calls map[Op]*httpCall
}

type httpCall struct {
	method  string
	path    *template.Template
	headers http.Header
	body    *template.Template // nil: the RowChange as JSON
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	req, err := obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_reaction_http_requests_total",
		Help: "Webhook requests by reaction and outcome (the status class, or error for no response).",
	}, []string{"reaction", "outcome"}))
	if err != nil {
		return nil, err
	}
	dur, err := obs.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tributary_reaction_http_request_duration_seconds",
		Help:    "Webhook request latency, until the response body is read.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"reaction"}))
	if err != nil {
		return nil, err
	}
	return &httpMetrics{requests: req, duration: dur}, nil
}

// NewHTTP builds the webhook reaction id from its (validated, defaulted)
// config: it parses the templates and loads the TLS files. Errors name the
// offending key.
func NewHTTP(id string, spec *config.HTTPReaction, opts HTTPOptions) (*HTTP, error) {
	if opts.MaxRetryAfter == 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	base, err := url.Parse(spec.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("http reaction %s: baseUrl %s is not an absolute http(s) URL", id, logging.RedactURL(spec.BaseURL))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if spec.TLS != nil {
		tc, err := tlsConfig(spec.TLS)
		if err != nil {
			return nil, fmt.Errorf("http reaction %s: tls: %w", id, err)
		}
		transport.TLSClientConfig = tc
	}
	h := &HTTP{
		id:   id,
		base: base,
		client: &http.Client{
			Transport: transport,
			Timeout:   spec.Timeout.D(),
			// A webhook that redirects is answered like any other 3xx
			// (permanent): following it would re-send the body and the
			// credentials somewhere the config does not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		headers:       make(http.Header),
		perRow:        spec.PerRow,
		routes:        make(map[string]*httpRoute),
		progress:      make(map[string]httpProgress),
		maxRetryAfter: opts.MaxRetryAfter,
		log:           opts.Logger,
	}
	if h.client.Timeout <= 0 {
		h.client.Timeout = 10 * time.Second
	}
	for k, v := range spec.Headers {
		h.headers.Set(k, v)
	}
	for q, route := range spec.Routes {
		r := &httpRoute{calls: make(map[Op]*httpCall)}
		for op, c := range map[Op]*config.HTTPCall{OpCreate: route.Added, OpUpdate: route.Updated, OpDelete: route.Deleted} {
			if c == nil {
				continue
			}
			call, err := newHTTPCall(c)
			if err != nil {
				return nil, fmt.Errorf("http reaction %s: routes.%s.%s: %w", id, q, opName(op), err)
			}
			r.calls[op] = call
		}
		h.routes[q] = r
	}
	if h.m, err = newHTTPMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("http reaction %s: %w", id, err)
	}
	return h, nil
}

func newHTTPCall(c *config.HTTPCall) (*httpCall, error) {
	call := &httpCall{method: c.Method, headers: make(http.Header)}
	if call.method == "" {
		call.method = http.MethodPost
	}
	var err error
	if call.path, err = config.ParseRowTemplate(c.Path); err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	if c.Body != "" {
		if call.body, err = config.ParseRowTemplate(c.Body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	for k, v := range c.Headers {
		call.headers.Set(k, v)
	}
	return call, nil
}

func opName(op Op) string {
	switch op {
	case OpCreate:
		return "added"
	case OpUpdate:
		return "updated"
	default:
		return "deleted"
	}
}

// tlsConfig loads a CA bundle and a client certificate.
func tlsConfig(c *config.TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("reading ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate found", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" || c.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Close releases idle connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }

// httpRequest is one request to make for a result.
type httpRequest struct {
	method  string
	url     string
	headers http.Header
	body    []byte
	key     string
}

// React implements Reaction: it sends the result's requests in order and
// returns nil once every one got a 2xx. A retry of a result whose first
// requests succeeded in this process resumes after them; a redelivered
// result is otherwise sent again from its first request, with the same
// idempotency keys.
func (h *HTTP) React(ctx context.Context, r *change.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("webhook for %s: %w", IdempotencyKey(r), err)
	}
	reqs, err := h.requests(r)
	if err != nil {
		return bus.Permanent(err)
	}
	h.mu.Lock()
	p := h.progress[r.Query]
	delete(h.progress, r.Query)
	h.mu.Unlock()
	start := 0
	if p.seq == r.Seq {
		start = min(p.done, len(reqs))
	}
	for i := start; i < len(reqs); i++ {
		if err := h.send(ctx, reqs[i]); err != nil {
			if i > 0 {
				h.mu.Lock()
				h.progress[r.Query] = httpProgress{seq: r.Seq, done: i}
				h.mu.Unlock()
			}
			return err
		}
	}
	return nil
}

// requests builds the requests of r; an error is permanent (ErrBadResult).
func (h *HTTP) requests(r *change.Result) ([]httpRequest, error) {
	route := h.routes[r.Query]
	if route == nil && !h.perRow {
		body, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("%w: encoding result %s: %v", ErrBadResult, IdempotencyKey(r), err)
		}
		return []httpRequest{{method: http.MethodPost, url: h.base.String(), headers: h.headers, body: body, key: IdempotencyKey(r)}}, nil
	}
	var out []httpRequest
	for _, rc := range RowChanges(r) {
		if route == nil {
			body, err := json.Marshal(rc)
			if err != nil {
				return nil, fmt.Errorf("%w: encoding row change %s: %v", ErrBadResult, rc.Key(), err)
			}
			out = append(out, httpRequest{method: http.MethodPost, url: h.base.String(), headers: h.headers, body: body, key: rc.Key()})
			continue
		}
		call := route.calls[rc.Op]
		if call == nil {
			continue
		}
		req, err := h.callRequest(call, &rc)
		if err != nil {
			return nil, err
		}
		out = append(out, req)
	}
	return out, nil
}

func (h *HTTP) callRequest(call *httpCall, rc *RowChange) (httpRequest, error) {
	data := rc.templateData()
	var path strings.Builder
	if err := call.path.Execute(&path, data); err != nil {
		return httpRequest{}, fmt.Errorf("%w: path of row change %s: %v", ErrBadResult, rc.Key(), err)
	}
	var body []byte
	if call.body != nil {
		var b bytes.Buffer
		if err := call.body.Execute(&b, data); err != nil {
			return httpRequest{}, fmt.Errorf("%w: body of row change %s: %v", ErrBadResult, rc.Key(), err)
		}
		body = b.Bytes()
	} else {
		var err error
		if body, err = json.Marshal(rc); err != nil {
			return httpRequest{}, fmt.Errorf("%w: encoding row change %s: %v", ErrBadResult, rc.Key(), err)
		}
	}
	u := h.base.JoinPath(path.String())
	hdr := h.headers
	if len(call.headers) > 0 {
		hdr = h.headers.Clone()
		for k, v := range call.headers {
			hdr[k] = v
		}
	}
	return httpRequest{method: call.method, url: u.String(), headers: hdr, body: body, key: rc.Key()}, nil
}

// send makes one request and classifies its outcome.
func (h *HTTP) send(ctx context.Context, r httpRequest) error {
	var body io.Reader
	if r.method != http.MethodGet {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return bus.Permanent(fmt.Errorf("%w: building request %s: %v", ErrBadResult, r.key, err))
	}
	for k, v := range r.headers {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderIdempotencyKey, r.key)
	what := fmt.Sprintf("webhook %s %s (key %s)", r.method, logging.RedactURL(r.url), r.key)

	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		h.m.requests.WithLabelValues(h.id, "error").Inc()
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		// The url.Error repeats the URL with its query; keep only the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("%s: %w: %v", what, ErrTargetUnavailable, err)
	}
	excerpt, readErr := readExcerpt(resp.Body)
	resp.Body.Close()
	h.m.duration.WithLabelValues(h.id).Observe(time.Since(start).Seconds())
	h.m.requests.WithLabelValues(h.id, statusClass(resp.StatusCode)).Inc()

	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if readErr != nil {
			h.log.Debug("reading a 2xx response body failed; the effect counts as done", "key", r.key, "err", readErr)
		}
		return nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		err := fmt.Errorf("%s: %w: %s%s", what, ErrTargetUnavailable, resp.Status, quoteExcerpt(excerpt))
		if wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			wait = min(wait, h.maxRetryAfter)
			h.log.Info("webhook asked to retry later; waiting", "key", r.key, "status", code, "retry_after", wait)
			if serr := retry.Sleep(ctx, wait); serr != nil {
				return fmt.Errorf("%w (waiting for Retry-After: %v)", err, serr)
			}
		}
		return err
	default:
		return bus.Permanent(fmt.Errorf("%s: %w: %s%s", what, ErrTargetRejected, resp.Status, quoteExcerpt(excerpt)))
	}
}

// readExcerpt reads the start of a response body and discards (a bounded
// amount of) the rest, so the connection can be reused.
func readExcerpt(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, bodyExcerpt))
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	}
	return strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "")), " "), err
}

func quoteExcerpt(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(": %q", s)
}

func statusClass(code int) string {
	return strconv.Itoa(code/100) + "xx"
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
