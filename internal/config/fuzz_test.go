package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that it returns either a config
// or a *ValidationError with problems, and that a returned config validates
// and prints.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/example-config.yaml"); err == nil {
		f.Add(string(data))
	}
	f.Add(okSource + okQuery + okReaction)
	f.Add("nats: {url: '${X:-nats://h}', password: $$x}\n")
	f.Add("sources:\n  - &a {kind: postgres, id: s}\n  - <<: *a\n")
	f.Add("reactions:\n  - {kind: http, id: h, queries: [q], baseUrl: 'http://h', routes: {q: {added: {path: /}}}}\n")
	lookup := env(map[string]string{"X": "nats://h:4222", "SECRET": "zz-secret-zz"})
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := Parse([]byte(doc), lookup)
		if err != nil {
			ps := problemsOf(t, err)
			_ = ps
			if strings.Contains(err.Error(), "zz-secret-zz") && !strings.Contains(doc, "zz-secret-zz") {
				t.Fatalf("error leaks an expanded secret: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		_ = c.String()
	})
}
