package config

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string such
// as "250ms", "30s", "2m" or "1h30m" ("0" is zero). A bare number without a
// unit is an error.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// parseDuration parses s, with an error message fit for a Problem.
func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as 250ms, 30s or 2m", s)
	}
	return Duration(v), nil
}

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText formats d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML parses a scalar Go duration string, for code that decodes a
// Duration with yaml.v3 directly.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration string", n.Line)
	}
	return d.UnmarshalText([]byte(n.Value))
}

// MarshalYAML formats d as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
