package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// TestingM is what *testing.M offers and goleak.VerifyTestMain accepts.
type TestingM interface{ Run() int }

// WithServer wraps m so that Run starts a cluster, stores it in *srv, runs
// the tests, stops the cluster and removes it. If the cluster cannot start,
// Run prints why and returns 1 without running the tests (they fail, never
// skip). Combine with goleak:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.WithServer(m, &pg, pgtest.Options{})) }
func WithServer(m TestingM, srv **Server, opts Options) TestingM {
	return runFunc(func() int {
		ctx := context.Background()
		s, err := Start(ctx, opts)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: cannot start Postgres for the tests: %v\n", err)
			return 1
		}
		*srv = s
		code := m.Run()
		if err := s.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping Postgres: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		return code
	})
}

type runFunc func() int

func (f runFunc) Run() int { return f() }

// Main is TestMain for a package with one private cluster: it starts the
// cluster into *srv, runs the tests, stops it and exits.
func Main(m TestingM, srv **Server, opts Options) {
	os.Exit(WithServer(m, srv, opts).Run())
}

// StartT starts a cluster for one test and stops it at the test's
// cleanup. Failures end the test with t.Fatal.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}
