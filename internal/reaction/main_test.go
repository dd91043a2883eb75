package reaction

import (
	"testing"

	"github.com/tributary/tributary/internal/natstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakIgnores()...)
}
