package app

import (
	"log/slog"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/pkg/bus"
)

// ConnectOptions are the bus connection options of cfg for a command-line
// tool of binary kind (e.g. reactor dlq): what the service would use,
// without metrics or status callbacks.
func ConnectOptions(cfg *config.Config, kind string, log *slog.Logger) bus.ConnectOptions {
	return connectOptions(cfg, kind, log, nil, nil)
}
