package obs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /metrics, /healthz and /readyz. Stop it with Shutdown.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	err  error // the serve loop's error, set before done closes

	once     sync.Once
	shutdown error
}

// Serve listens on addr at once (so that a taken port fails the caller's
// start step immediately) and serves in a goroutine the Server owns:
//   - /metrics: reg, through promhttp;
//   - /healthz: 200 while the process serves;
//   - /readyz: 200 when ready returns nil, else 503 with its error (a nil
//     ready is always ready).
//
// ctx bounds the listen only; the server runs until Shutdown.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, ready func() error) (*Server, error) {
	if reg == nil {
		return nil, errors.New("obs: a metrics registry is required")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (with the real port when addr
// asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Done is closed when the serve goroutine has ended.
func (s *Server) Done() <-chan struct{} { return s.done }

// Shutdown stops accepting, waits for in-flight requests within ctx (then
// closes them), and waits for the serve goroutine. The listener is closed
// when it returns. Safe to call more than once; later calls return the
// first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		err := s.srv.Shutdown(ctx)
		if err != nil {
			_ = s.srv.Close()
			err = fmt.Errorf("shutting the metrics server down: %w", err)
		}
		<-s.done
		s.shutdown = errors.Join(err, s.err)
	})
	return s.shutdown
}

// Register registers c with reg, or returns the collector already
// registered with the same description, so that several publishers,
// consumers or supervisors in one process share one labelled family.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		var zero T
		return zero, fmt.Errorf("registering metrics: %w", err)
	}
	return c, nil
}
