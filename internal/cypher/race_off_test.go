//go:build !race

package cypher

// raceEnabled: see race_on_test.go.
const raceEnabled = false
