package obs_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	// A fresh transport per request, closed after, so that no keep-alive
	// connection goroutine outlives the test.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "obs_test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady atomic.Pointer[error]
	reason := errors.New("component query/q1 is starting")
	notReady.Store(&reason)
	s, err := obs.Serve(context.Background(), "127.0.0.1:0", reg, func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "query/q1 is starting") {
		t.Fatalf("/readyz while not ready: %d %q", code, body)
	}
	notReady.Store(nil)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz when ready: %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "obs_test_things_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Fatalf("/nothing: %d", code)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	// The port is free again.
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	ln.Close()
}

func TestServeFailsAtOnceOnATakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = obs.Serve(context.Background(), ln.Addr().String(), prometheus.NewRegistry(), nil)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "metrics listener") {
		t.Fatalf("want address in use, got %v", err)
	}
}
