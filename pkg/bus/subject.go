package bus

import (
	"net"
	"strconv"
	"strings"
)

// Token escapes s into one NATS subject token: characters that separate or
// match tokens ('.', '*', '>'), whitespace, '%', control and non-ASCII
// bytes are written as %XX. The empty string becomes "%00". Distinct inputs
// give distinct tokens, so row keys and table names can be subject tokens.
func Token(s string) string {
	if s == "" {
		return "%00"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if needsEscape(ch) {
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

func needsEscape(ch byte) bool {
	return ch <= ' ' || ch >= 0x7f || ch == '.' || ch == '*' || ch == '>' || ch == '%'
}

// Subject joins tokens with '.', escaping each with Token.
func Subject(prefix string, tokens ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(Token(t))
	}
	return b.String()
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}
