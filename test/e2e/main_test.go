package e2e

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/pgtest"
)

// pg is this package's private Postgres cluster.
var pg *pgtest.Server

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithServer(m, &pg, pgtest.Options{}), natstest.LeakIgnores()...)
}
