package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tributary/tributary/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakIgnores()...)
}
