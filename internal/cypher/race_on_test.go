//go:build race

package cypher

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, on purpose, so code that reuses pooled state (regexp's matchers)
// allocates at random under it.
const raceEnabled = true
