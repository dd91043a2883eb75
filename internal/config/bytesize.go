package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is a number of bytes written in YAML as a plain integer
// ("1048576") or a number with a unit: B, KB, MB, GB, TB (powers of 1000)
// or KiB, MiB, GiB, TiB (powers of 1024), e.g. "512MiB", "1.5GB" or
// "20 GiB". Units are case-insensitive; "0" is zero.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	// Longer suffixes first: "kib" must not be read as "b".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// parseByteSize parses s, with an error message fit for a Problem.
func parseByteSize(s string) (ByteSize, error) {
	bad := fmt.Errorf("invalid size %q: want bytes or a number with a unit, such as 1048576, 512MiB or 10GB", s)
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return ByteSize(n), nil
	}
	lower := strings.ToLower(t)
	for _, u := range byteUnits {
		num, ok := strings.CutSuffix(lower, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if num == "" || strings.ContainsAny(num, "eE_xXpP") { // plain decimals only
			return 0, bad
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, bad
		}
		v := f * u.mult
		if v >= math.MaxInt64 || v <= math.MinInt64 {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		return ByteSize(v), nil
	}
	return 0, bad
}

// String formats b with the largest binary unit that divides it exactly
// ("512MiB"), or in bytes ("1000000B").
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalText parses a size.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := parseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText formats b as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// MarshalYAML formats b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }
