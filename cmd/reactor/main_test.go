package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/internal/pgtest"
)

// pg is the package's private Postgres cluster (the postgres reaction's
// target in the redrive test).
var pg *pgtest.Server

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithServer(m, &pg, pgtest.Options{}), natstest.LeakIgnores()...)
}
