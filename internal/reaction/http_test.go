package reaction_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/internal/reaction/reactiontest"
	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// webhook is a real HTTP target on loopback that records every request
// it answered with a 2xx, and can be told to refuse, fail or hang.
type webhook struct {
	srv *httptest.Server

	mu      sync.Mutex
	mode    string        // "", "reject" (400), "unavailable" (503), "stall"
	failKey string        // answer this key once with 503
	stall   chan struct{} // closed to release stalled requests
	applied []reactiontest.Effect
	reqs    []recorded
}

type recorded struct {
	method, path, key string
	header            http.Header
	body              []byte
}

func newWebhook(t testing.TB) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get(reaction.HeaderIdempotencyKey)
	w.mu.Lock()
	mode, stall := w.mode, w.stall
	if key != "" && key == w.failKey {
		w.failKey = ""
		mode = "unavailable"
	}
	w.mu.Unlock()
	switch mode {
	case "reject":
		http.Error(rw, "order id is not a number", http.StatusBadRequest)
		return
	case "unavailable":
		http.Error(rw, "maintenance", http.StatusServiceUnavailable)
		return
	case "stall":
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		http.Error(rw, "was stalled", http.StatusServiceUnavailable)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reqs = append(w.reqs, recorded{method: r.Method, path: r.URL.Path, key: key, header: r.Header.Clone(), body: body})
	if e, ok := effectOfKey(key); ok {
		w.applied = append(w.applied, e)
	}
	rw.WriteHeader(http.StatusNoContent)
}

// effectOfKey reads <query>:<seq>[:<row>].
func effectOfKey(key string) (reactiontest.Effect, bool) {
	parts := strings.Split(key, ":")
	if len(parts) < 2 {
		return reactiontest.Effect{}, false
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	return reactiontest.Effect{Query: parts[0], Seq: seq}, err == nil
}

func (w *webhook) setMode(mode string) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mode = mode
	if mode == "stall" {
		w.stall = make(chan struct{})
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.mode == "stall" {
			close(w.stall)
		}
		w.mode = ""
	}
}

func (w *webhook) effects(testing.TB) []reactiontest.Effect {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]reactiontest.Effect(nil), w.applied...)
}

func (w *webhook) requests() []recorded {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recorded(nil), w.reqs...)
}

func newHTTP(t testing.TB, spec *config.HTTPReaction) *reaction.HTTP {
	t.Helper()
	r := config.Reaction{Kind: config.ReactionHTTP, ID: "hook", Queries: reactiontest.Queries, Spec: spec}
	c := config.Config{Reactions: []config.Reaction{r}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := reaction.NewHTTP("hook", spec, reaction.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func httpKind(perRow bool) reactiontest.Kind {
	return reactiontest.Kind{New: func(t *testing.T) *reactiontest.Target {
		w := newWebhook(t)
		h := newHTTP(t, &config.HTTPReaction{BaseURL: w.srv.URL + "/hook", PerRow: perRow})
		return &reactiontest.Target{
			Reaction:       h,
			Effects:        w.effects,
			BreakPermanent: func(testing.TB) func() { return w.setMode("reject") },
			BreakRetryable: func(testing.TB) func() { return w.setMode("unavailable") },
			Stall:          func(testing.TB) func() { return w.setMode("stall") },
		}
	}}
}

func TestHTTPConformance(t *testing.T) {
	t.Run("PerMessage", func(t *testing.T) { reactiontest.Run(t, httpKind(false)) })
	t.Run("PerRow", func(t *testing.T) { reactiontest.Run(t, httpKind(true)) })
}

var sampleResult = &change.Result{Query: "q1", Seq: 7, TsMs: 99,
	Added:   []change.Row{{"id": 1, "name": "a"}},
	Updated: []change.RowUpdate{{Before: change.Row{"id": 2, "name": "b"}, After: change.Row{"id": 2, "name": "B"}}},
	Deleted: []change.Row{{"id": 3, "name": "c"}}}

// By default one request per result message: POST to baseUrl, the message
// as JSON, key <query>:<seq>.
func TestHTTPPerMessageBody(t *testing.T) {
	w := newWebhook(t)
	h := newHTTP(t, &config.HTTPReaction{BaseURL: w.srv.URL + "/in", Headers: map[string]string{"Authorization": "Bearer s3cret"}})
	if err := h.React(t.Context(), sampleResult); err != nil {
		t.Fatal(err)
	}
	reqs := w.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	want, _ := json.Marshal(sampleResult)
	if r.method != "POST" || r.path != "/in" || r.key != "q1:7" || !bytes.Equal(r.body, want) ||
		r.header.Get("Authorization") != "Bearer s3cret" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s %s key %s headers %v body %s", r.method, r.path, r.key, r.header, r.body)
	}
}

// perRow: one request per row change, Debezium-like, keys <query>:<seq>:<row>.
func TestHTTPPerRowBodies(t *testing.T) {
	w := newWebhook(t)
	h := newHTTP(t, &config.HTTPReaction{BaseURL: w.srv.URL, PerRow: true})
	// The second row fails once: the retry resumes after the first.
	w.mu.Lock()
	w.failKey = "q1:7:1"
	w.mu.Unlock()
	if err := h.React(t.Context(), sampleResult); err == nil || bus.IsPermanent(err) {
		t.Fatalf("503 on row 1: %v", err)
	}
	if err := h.React(t.Context(), sampleResult); err != nil {
		t.Fatal(err)
	}
	reqs := w.requests()
	wantBodies := []string{
		`{"op":"c","before":null,"after":{"id":1,"name":"a"},"query":"q1","seq":7,"ts_ms":99}`,
		`{"op":"u","before":{"id":2,"name":"b"},"after":{"id":2,"name":"B"},"query":"q1","seq":7,"ts_ms":99}`,
		`{"op":"d","before":{"id":3,"name":"c"},"after":null,"query":"q1","seq":7,"ts_ms":99}`,
	}
	if len(reqs) != len(wantBodies) {
		t.Fatalf("%d requests, want %d", len(reqs), len(wantBodies))
	}
	for i, r := range reqs {
		if r.key != fmt.Sprintf("q1:7:%d", i) || string(r.body) != wantBodies[i] {
			t.Errorf("request %d: key %s body %s, want body %s", i, r.key, r.body, wantBodies[i])
		}
	}
}

// Routes: per change kind a path (a template), method, headers and body
// template; kinds without a call send nothing; other queries keep the
// default.
func TestHTTPRoutes(t *testing.T) {
	w := newWebhook(t)
	h := newHTTP(t, &config.HTTPReaction{BaseURL: w.srv.URL + "/api", Routes: map[string]config.HTTPRoute{
		"q1": {
			Added:   &config.HTTPCall{Path: "/items", Body: `{"name": {{json .after.name}}}`, Headers: map[string]string{"X-Kind": "new"}},
			Updated: &config.HTTPCall{Path: "/items/{{.after.id}}", Method: "PUT", Body: `{{.before.name}}->{{.after.name}}`},
		},
	}})
	if err := h.React(t.Context(), sampleResult); err != nil {
		t.Fatal(err)
	}
	other := &change.Result{Query: "q2", Seq: 1, Added: []change.Row{{"x": 1}}}
	if err := h.React(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	reqs := w.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (added, updated, then q2's message)", len(reqs))
	}
	if r := reqs[0]; r.method != "POST" || r.path != "/api/items" || string(r.body) != `{"name": "a"}` || r.key != "q1:7:0" || r.header.Get("X-Kind") != "new" {
		t.Errorf("added: %s %s %s key %s", r.method, r.path, r.body, r.key)
	}
	if r := reqs[1]; r.method != "PUT" || r.path != "/api/items/2" || string(r.body) != "b->B" || r.key != "q1:7:1" || r.header.Get("X-Kind") != "" {
		t.Errorf("updated: %s %s %s key %s", r.method, r.path, r.body, r.key)
	}
	if r := reqs[2]; r.path != "/api" || r.key != "q2:1" {
		t.Errorf("unrouted query: %s key %s", r.path, r.key)
	}
	// A template that fails on the row (a missing column) is permanent.
	bad := newHTTP(t, &config.HTTPReaction{BaseURL: w.srv.URL, Routes: map[string]config.HTTPRoute{
		"q1": {Added: &config.HTTPCall{Path: "/x", Body: `{{.after.nope}}`}}}})
	err := bad.React(t.Context(), sampleResult)
	if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrBadResult) {
		t.Fatalf("template on a missing column: %v, want permanent ErrBadResult", err)
	}
}

// Statuses: 2xx done; 408, 429, 5xx retryable; other 4xx permanent with
// the status and an excerpt of the body; no listener and timeouts
// retryable. Secrets appear in no error and no log line.
func TestHTTPClassifiesResponses(t *testing.T) {
	var status int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := status
		mu.Unlock()
		if s == 0 {
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		if s >= 300 && s < 400 {
			rw.Header().Set("Location", "/elsewhere")
		}
		rw.WriteHeader(s)
		fmt.Fprintf(rw, "status %d:\n  field  'id'\tis bad", s)
	}))
	defer srv.Close()
	var logs bytes.Buffer
	const secret = "t0psecret"
	spec := &config.HTTPReaction{
		BaseURL: strings.Replace(srv.URL, "http://", "http://user:"+secret+"@", 1) + "/h?token=" + secret,
		Timeout: config.Duration(300 * time.Millisecond), Headers: map[string]string{"Authorization": "Bearer " + secret}}
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionHTTP, ID: "h", Queries: []string{"q1"}, Spec: spec}}}
	c.ApplyDefaults()
	h, err := reaction.NewHTTP("h", spec, reaction.HTTPOptions{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	res := &change.Result{Query: "q1", Seq: 1}
	var errs []error
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{200, false}, {201, false}, {302, true}, {408, false}, {429, false}, {500, false}, {502, false}, {503, false},
		{400, true}, {401, true}, {404, true}, {409, true}, {422, true}, {0, false}} {
		mu.Lock()
		status = tc.status
		mu.Unlock()
		err := h.React(t.Context(), res)
		errs = append(errs, err)
		switch {
		case tc.status >= 200 && tc.status < 300:
			if err != nil {
				t.Errorf("%d: %v", tc.status, err)
			}
		case tc.permanent:
			if !bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetRejected) ||
				!strings.Contains(err.Error(), strconv.Itoa(tc.status)) || !strings.Contains(err.Error(), `field 'id' is bad`) {
				t.Errorf("%d: %v, want permanent ErrTargetRejected with status and body excerpt", tc.status, err)
			}
		default:
			if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) {
				t.Errorf("status %d (0: timeout): %v, want retryable ErrTargetUnavailable", tc.status, err)
			}
		}
	}
	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down := &config.HTTPReaction{BaseURL: "http://" + addr, Headers: map[string]string{"Authorization": secret}}
	c = config.Config{Reactions: []config.Reaction{{Kind: config.ReactionHTTP, ID: "h", Queries: []string{"q1"}, Spec: down}}}
	c.ApplyDefaults()
	hd, err := reaction.NewHTTP("down", down, reaction.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer hd.Close()
	err = hd.React(t.Context(), res)
	if err == nil || bus.IsPermanent(err) || !errors.Is(err, reaction.ErrTargetUnavailable) {
		t.Errorf("connection refused: %v, want retryable", err)
	}
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error reveals a secret: %v", err)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("log reveals a secret:\n%s", logs.String())
	}
}

// 429 with Retry-After: React waits that long (within its context) before
// returning the retryable error, so the retry comes after it.
func TestHTTPHonoursRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Retry-After", "1")
		rw.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	h := newHTTP(t, &config.HTTPReaction{BaseURL: srv.URL})
	start := time.Now()
	err := h.React(t.Context(), &change.Result{Query: "q1", Seq: 1})
	if took := time.Since(start); took < time.Second {
		t.Fatalf("returned after %s, before Retry-After's 1s", took)
	}
	if err == nil || bus.IsPermanent(err) || !strings.Contains(err.Error(), "429") {
		t.Fatalf("429: %v, want retryable", err)
	}
	// The wait ends with the context.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = h.React(ctx, &change.Result{Query: "q1", Seq: 1})
	if took := time.Since(start); took > 900*time.Millisecond || err == nil || bus.IsPermanent(err) {
		t.Fatalf("with a 100ms context: %v after %s", err, took)
	}
}

func TestRetryAfterDate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
		rw.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	h := newHTTP(t, &config.HTTPReaction{BaseURL: srv.URL})
	start := time.Now()
	_ = h.React(t.Context(), &change.Result{Query: "q1", Seq: 1})
	// The date has a resolution of one second.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("returned after %s, before the Retry-After date", took)
	}
}

// TLS: the server is verified with the configured CA and asks for a client
// certificate.
func TestHTTPTLSWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	clientCert, clientKey := selfSigned(t, "tributary-client")
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, certFile, "CERTIFICATE", clientCert.Raw)
	kb, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)

	var got []string
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCert)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", srv.Certificate().Raw)

	h := newHTTP(t, &config.HTTPReaction{BaseURL: srv.URL, TLS: &config.TLSConfig{CA: caFile, Cert: certFile, Key: keyFile}})
	if err := h.React(t.Context(), &change.Result{Query: "q1", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "tributary-client" {
		t.Fatalf("server saw client certificates %v", got)
	}
	// Without the CA the server is not trusted: retryable (the operator
	// fixes the config, the result is not lost).
	h2 := newHTTP(t, &config.HTTPReaction{BaseURL: srv.URL, TLS: &config.TLSConfig{Cert: certFile, Key: keyFile}})
	if err := h2.React(t.Context(), &change.Result{Query: "q1", Seq: 1}); err == nil || bus.IsPermanent(err) {
		t.Fatalf("untrusted server: %v", err)
	}
}

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flakyWebhook is an idempotent target (as payment APIs are): it applies a
// key once and answers a repeat with 200 without applying it again. It
// fails 30% of requests at random before applying and is slow at times
// (longer than the client's timeout, after applying: the client sees a
// timeout for an applied effect and sends it again).
type flakyWebhook struct {
	mu         sync.Mutex
	rnd        *mrand.Rand
	rows       int                  // row changes per result (0: one request per result)
	applied    map[string]int       // key -> times applied
	last       map[string][2]uint64 // query -> last applied {seq, row}
	order      map[string][]string  // query -> applied keys in order
	violations []string
	requests   int
	failures   int
	slow       int
	repeats    int
}

// next is the key position that must follow last: the next row of the
// same result, or the first of the next result.
func (f *flakyWebhook) next(last [2]uint64) [][2]uint64 {
	if f.rows == 0 {
		return [][2]uint64{{last[0] + 1, 0}}
	}
	if last == ([2]uint64{}) {
		return [][2]uint64{{1, 0}}
	}
	if last[1]+1 < uint64(f.rows) {
		return [][2]uint64{{last[0], last[1] + 1}}
	}
	return [][2]uint64{{last[0] + 1, 0}}
}

func (f *flakyWebhook) serve(rw http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	key := r.Header.Get(reaction.HeaderIdempotencyKey)
	f.mu.Lock()
	f.requests++
	roll := f.rnd.Float64()
	if roll < 0.30 {
		f.failures++
		f.mu.Unlock()
		code := []int{500, 502, 503, 408, 429}[f.requests%5]
		http.Error(rw, "flaky", code)
		return
	}
	slow := roll > 0.95
	if f.applied[key] > 0 {
		f.repeats++
	} else {
		parts := strings.Split(key, ":")
		var pos [2]uint64
		var err error
		if pos[0], err = strconv.ParseUint(parts[1], 10, 64); err == nil && len(parts) == 3 {
			pos[1], err = strconv.ParseUint(parts[2], 10, 64)
		}
		q := parts[0]
		if err != nil || (len(parts) == 3) != (f.rows > 0) {
			f.violations = append(f.violations, "bad key "+key)
		} else if want := f.next(f.last[q])[0]; pos != want {
			f.violations = append(f.violations, fmt.Sprintf("%s applied after %v", key, f.last[q]))
		}
		f.last[q] = pos
		f.order[q] = append(f.order[q], key)
		f.applied[key]++
	}
	if slow {
		f.slow++
	}
	f.mu.Unlock()
	if slow {
		// Injected fault: slower than the client's 100ms timeout.
		select {
		case <-time.After(150 * time.Millisecond):
		case <-r.Context().Done():
		}
	}
	rw.WriteHeader(http.StatusOK)
}

// The webhook test, through the real consumer over a real NATS:
// a target failing 30% at random and slow at times gets every result (and
// every row change, perRow), in order per query, each idempotency key
// applied exactly once.
func TestHTTPFlakyWebhookThroughConsumer(t *testing.T) {
	t.Run("PerMessage", func(t *testing.T) { testFlakyWebhook(t, 0) })
	t.Run("PerRow", func(t *testing.T) { testFlakyWebhook(t, 3) })
}

func testFlakyWebhook(t *testing.T, rows int) {
	e := newBusEnv(t)
	f := &flakyWebhook{rnd: mrand.New(mrand.NewPCG(1, uint64(rows))), rows: rows,
		applied: map[string]int{}, last: map[string][2]uint64{}, order: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	defer srv.Close()
	queries := []string{"orders", "drivers", "alerts"}
	const n = 60
	for seq := uint64(1); seq <= n; seq++ {
		for _, q := range queries {
			r := reactiontest.Result(q, seq)
			for i := 1; i < rows; i++ {
				r.Added = append(r.Added, change.Row{"q": q, "seq": seq, "i": i})
			}
			e.publishResult(r)
		}
	}
	spec := &config.HTTPReaction{BaseURL: srv.URL, Timeout: config.Duration(100 * time.Millisecond), PerRow: rows > 0}
	c := config.Config{Reactions: []config.Reaction{{Kind: config.ReactionHTTP, ID: "flaky", Queries: queries, Spec: spec}}}
	c.ApplyDefaults()
	h, err := reaction.NewHTTP("flaky", spec, reaction.HTTPOptions{MaxRetryAfter: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e.consume("flaky", queries, h)
	perResult := max(rows, 1)
	testwait.Until(t, 90*time.Second, "every effect applied", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.applied) == n*len(queries)*perResult
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.violations) > 0 {
		t.Fatalf("order violations: %v", f.violations)
	}
	for _, q := range queries {
		if len(f.order[q]) != n*perResult {
			t.Fatalf("query %s applied %v", q, f.order[q])
		}
	}
	for key, times := range f.applied {
		if times != 1 {
			t.Fatalf("key %s applied %d times", key, times)
		}
	}
	if f.failures == 0 || f.slow == 0 {
		t.Fatalf("the faults did not happen: %d failures, %d slow", f.failures, f.slow)
	}
	t.Logf("%d requests for %d effects: %d failed, %d slow, %d repeats of applied keys", f.requests, n*len(queries)*perResult, f.failures, f.slow, f.repeats)
}

// A 400 dead-letters the result with the status and the reason; the
// results after it are delivered.
func TestHTTPBadRequestIsDeadLettered(t *testing.T) {
	e := newBusEnv(t)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(reaction.HeaderIdempotencyKey)
		if key == "orders:2" {
			http.Error(rw, `{"error": "order id is not a number"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, key)
		mu.Unlock()
	}))
	defer srv.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		e.publishResult(reactiontest.Result("orders", seq))
	}
	h := newHTTP(t, &config.HTTPReaction{BaseURL: srv.URL})
	e.consume("hook", []string{"orders"}, h)
	testwait.Until(t, 20*time.Second, "results 1 and 3 delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	if got[0] != "orders:1" || got[1] != "orders:3" {
		t.Fatalf("delivered %v", got)
	}
	mu.Unlock()
	var dls []*bus.DeadLetter
	testwait.Until(t, 10*time.Second, "the dead letter", func() bool {
		dls = e.deadLetters("hook")
		return len(dls) == 1
	})
	dl := dls[0]
	if !strings.Contains(dl.Reason, "400 Bad Request") || !strings.Contains(dl.Reason, "order id is not a number") || dl.MsgID != "orders:2" || dl.Deliveries != 1 {
		t.Fatalf("dead letter: reason %q, msg id %q, deliveries %d", dl.Reason, dl.MsgID, dl.Deliveries)
	}
}

// BenchmarkHTTP measures row changes delivered per second to a loopback
// webhook that answers 204 at once: one request per result message, and
// one per row change, 10 rows per result.
func BenchmarkHTTP(b *testing.B) {
	for _, perRow := range []bool{false, true} {
		b.Run(fmt.Sprintf("perRow=%v", perRow), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				rw.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			h := newHTTP(b, &config.HTTPReaction{BaseURL: srv.URL, PerRow: perRow})
			const rows = 10
			seq := uint64(0)
			for b.Loop() {
				seq++
				r := &change.Result{Query: "q1", Seq: seq}
				for i := range rows {
					r.Added = append(r.Added, change.Row{"id": i, "name": "row"})
				}
				if err := h.React(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
