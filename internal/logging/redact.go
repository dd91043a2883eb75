package logging

import (
	"net/url"
	"strings"
)

// Redacted is what RedactURL puts in place of a secret.
const Redacted = "REDACTED"

// RedactURL returns s with every secret replaced by "REDACTED", so that the
// result can be logged or put in an error message. It understands:
//
//   - URLs (postgres://, postgresql://, nats://, tls://, http(s)://, ...): the
//     password of the user info; for nats:// and tls:// a user without a
//     password is a token and is replaced too; query parameters whose name
//     contains "password", "token" or "secret" (sslpassword, auth_token, ...).
//   - comma-separated lists of URLs (a NATS server list), where a server may
//     lack its scheme as nats.go allows ("user:pass@host:4222" is taken as
//     nats://), with spaces after the commas kept.
//   - key=value connection strings (libpq style, values optionally in single
//     quotes with backslash escapes): the values of the same keys.
//
// Text it cannot parse is returned with anything after a "password", "token"
// or "secret" marker replaced, erring on the side of hiding too much.
func RedactURL(s string) string {
	if s == "" {
		return s
	}
	if strings.Contains(s, "://") || isSchemelessServerList(s) {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactOneURL(p)
		}
		return strings.Join(parts, ",")
	}
	return redactKeyValue(s)
}

// isSecretKey reports whether a parameter name holds a secret.
func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "token") ||
		strings.Contains(k, "secret") || k == "pass" || k == "pwd"
}

// isSchemelessServerList reports whether s is a server or a list of servers
// without scheme that carries user info ("user:pass@host:4222,..."): it has
// an "@" but none of the "=" and spaces of a key=value string.
func isSchemelessServerList(s string) bool {
	return strings.Contains(s, "@") && !strings.ContainsAny(s, "= \t\n\r\f\v")
}

func redactOneURL(raw string) string {
	lead := raw[:len(raw)-len(strings.TrimLeft(raw, " \t"))]
	trimmed := strings.TrimSpace(raw)
	if trimmed != "" && !strings.Contains(trimmed, "://") {
		// A server without its scheme, which nats.go takes as nats://
		// (url.Parse alone would read "user:pass@host" as scheme "user"):
		// redact it as such, then drop the scheme again.
		const assumed = "nats://"
		return lead + strings.TrimPrefix(redactOneURL(assumed+trimmed), assumed)
	}
	u, err := url.Parse(trimmed)
	if err != nil || u.Scheme == "" {
		return lead + redactUnparsable(trimmed)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else if s := strings.ToLower(u.Scheme); (s == "nats" || s == "tls") && u.User.Username() != "" {
			// nats://TOKEN@host: a bare user name is an auth token.
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = redactUnparsable(u.RawQuery)
		} else {
			changed := false
			for k, vs := range q {
				if isSecretKey(k) {
					for i := range vs {
						vs[i] = Redacted
					}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		}
	}
	return lead + u.String()
}

// redactKeyValue masks secret values in a libpq key=value string, keeping
// everything else byte for byte.
func redactKeyValue(s string) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		// Copy whitespace.
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		if i >= len(s) {
			break
		}
		// Key.
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		b.WriteString(key)
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		if i >= len(s) || s[i] != '=' {
			// Not key=value: give up on structure, hide anything suspicious.
			if isSecretKey(key) {
				return redactUnparsable(s)
			}
			continue
		}
		b.WriteByte('=')
		i++
		for i < len(s) && isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
		}
		// Value: quoted or bare.
		vstart := i
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i < len(s) {
				i++ // closing quote
			} else {
				i = len(s)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i > len(s) {
				i = len(s)
			}
		}
		if isSecretKey(key) {
			b.WriteString(Redacted)
		} else {
			b.WriteString(s[vstart:i])
		}
	}
	return b.String()
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// redactUnparsable hides everything after the first secret marker, and the
// user info of anything that looks like user:pass@host.
func redactUnparsable(s string) string {
	lower := asciiLower(s) // same byte offsets as s, unlike strings.ToLower

	cut := -1
	for _, m := range []string{"password", "token", "secret", "pwd"} {
		if j := strings.Index(lower, m); j >= 0 && (cut < 0 || j < cut) {
			cut = j + len(m)
		}
	}
	if cut >= 0 {
		s = s[:cut] + "=" + Redacted
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		pre := s[:at]
		if sch := strings.Index(pre, "://"); sch >= 0 {
			return pre[:sch+3] + Redacted + s[at:]
		}
		return Redacted + s[at:]
	}
	return s
}

// asciiLower lower-cases ASCII letters only, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
