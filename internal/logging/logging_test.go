package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNewFormatsAndLevels(t *testing.T) {
	tests := []struct {
		format, level string
		wantJSON      bool
		debugShown    bool
		infoShown     bool
	}{
		{"", "", false, false, true},
		{"text", "debug", false, true, true},
		{"JSON", "info", true, false, true},
		{"json", "warn", true, false, false},
		{"text", "error", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, tt.format, tt.level)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			l.Debug("dbg")
			if got := strings.Contains(buf.String(), "dbg"); got != tt.debugShown {
				t.Fatalf("debug shown = %v, want %v: %q", got, tt.debugShown, buf.String())
			}
			buf.Reset()
			l.Info("inf", "k", "v")
			if got := strings.Contains(buf.String(), "inf"); got != tt.infoShown {
				t.Fatalf("info shown = %v, want %v", got, tt.infoShown)
			}
			buf.Reset()
			l.Error("err")
			isJSON := json.Valid(bytes.TrimSpace(buf.Bytes()))
			if isJSON != tt.wantJSON {
				t.Fatalf("json = %v, want %v: %q", isJSON, tt.wantJSON, buf.String())
			}
		})
	}
}

func TestNewRejectsBadValues(t *testing.T) {
	for _, c := range []struct{ format, level, want string }{
		{"xml", "info", `log format "xml"`},
		{"text", "verbose", `log level "verbose"`},
	} {
		_, err := New(&bytes.Buffer{}, c.format, c.level)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %q) = %v, want ErrInvalid naming %s", c.format, c.level, err, c.want)
		}
	}
	if _, err := New(nil, "text", "info"); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(nil writer) = %v, want ErrInvalid", err)
	}
}

func TestComponentAddsAttributes(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	Component(l, "source-pg", "shop").Info("hello")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("decode %q: %v", buf.String(), err)
	}
	if rec["component"] != "source-pg" || rec["id"] != "shop" {
		t.Fatalf("record %v lacks component/id", rec)
	}
	// nil logger must not panic.
	Component(nil, "x", "y").Info("dropped")
}

func TestDiscard(t *testing.T) {
	l := Discard()
	if l.Enabled(t.Context(), 12) {
		t.Fatal("discard logger enabled")
	}
	l.Error("nothing")
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
		secret   string // must not appear in the output
	}{
		{"", "", ""},
		{"embedded", "embedded", ""},
		{"postgres://bob:s3cret@db:5432/shop?sslmode=require", "postgres://bob:REDACTED@db:5432/shop?sslmode=require", "s3cret"},
		{"postgresql://bob@db/shop", "postgresql://bob@db/shop", ""},
		{"postgres://bob@db/shop?password=hunter2&sslmode=disable", "postgres://bob@db/shop?password=REDACTED&sslmode=disable", "hunter2"},
		{"postgres://db/shop?sslpassword=kp", "postgres://db/shop?sslpassword=REDACTED", "kp"},
		{"nats://alice:pw1@n1:4222,nats://alice:pw1@n2:4222", "nats://alice:REDACTED@n1:4222,nats://alice:REDACTED@n2:4222", "pw1"},
		{"nats://tok3n@n1:4222", "nats://REDACTED@n1:4222", "tok3n"},
		{"tls://n1:4222?token=abc", "tls://n1:4222?token=REDACTED", "abc"},
		{"host=db user=bob password=s3cret dbname=shop", "host=db user=bob password=REDACTED dbname=shop", "s3cret"},
		{"host=db password = 'it\\'s secret' dbname=shop", "host=db password = REDACTED dbname=shop", "secret"},
		{"host=db password='a b c' port=5432", "host=db password=REDACTED port=5432", "a b c"},
		{"user=x token=abc", "user=x token=REDACTED", "abc"},
		{"host=db sslmode=disable", "host=db sslmode=disable", ""},
		{"postgres://bob:p%40ss@db/x", "postgres://bob:REDACTED@db/x", "p%40ss"},
		{"postgres://bob:bad pass@db:x:y/%zz", "", "bad pass"},
	}
	for _, tt := range tests {
		got := RedactURL(tt.in)
		if tt.want != "" && got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if tt.secret != "" && strings.Contains(got, tt.secret) {
			t.Errorf("RedactURL(%q) = %q still holds %q", tt.in, got, tt.secret)
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	f.Add("postgres://u:p@h/d")
	f.Add("host=h password='x\\' y'")
	f.Add("nats://t@h,tls://u:p@h2")
	f.Fuzz(func(t *testing.T, s string) {
		_ = RedactURL(s) // must not panic
	})
}

// A NATS server list (as bus.ConnectOptions.URL takes it) with credentials
// in every form nats.go accepts: user:password, a token, with or without a
// scheme (nats.go assumes nats://), spaces after the commas.
func TestRedactURLNATSServerList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://alice:pw1@n1:4222,nats://alice:pw1@n2:4222,nats://alice:pw1@n3:4222",
			"nats://alice:REDACTED@n1:4222,nats://alice:REDACTED@n2:4222,nats://alice:REDACTED@n3:4222"},
		{"nats://alice:pw1@n1:4222, nats://alice:pw1@n2:4222", "nats://alice:REDACTED@n1:4222, nats://alice:REDACTED@n2:4222"},
		{"tls://bob:pw1@n1:4222,nats://pw1@n2:4222,n3:4222", "tls://bob:REDACTED@n1:4222,nats://REDACTED@n2:4222,n3:4222"},
		{"alice:pw1@n1:4222,alice:pw1@n2:4222", "alice:REDACTED@n1:4222,alice:REDACTED@n2:4222"},
		{"nats://n1:4222,pw1@n2:4222", "nats://n1:4222,REDACTED@n2:4222"},
		{"alice:pw1@n1", "alice:REDACTED@n1"},
		{"n1:4222,n2:4222", "n1:4222,n2:4222"},
		{"nats://n1:4222,nats://n2:4222", "nats://n1:4222,nats://n2:4222"},
	}
	for _, tt := range tests {
		got := RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, "pw1") {
			t.Errorf("RedactURL(%q) = %q still holds the secret", tt.in, got)
		}
	}
}

// Whatever the password, it never survives in a NATS server list, with or
// without schemes.
func FuzzRedactURLServerListHidesPassword(f *testing.F) {
	f.Add("s3cretpw", "n1:4222")
	f.Add("Zz9zz9", "10.0.0.1")
	f.Fuzz(func(t *testing.T, pw, host string) {
		if len(pw) < 6 || strings.Trim(pw, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" ||
			host == "" || strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789.:") != "" ||
			strings.Contains(host, pw) || strings.Contains(Redacted, pw) {
			return // not a password and host this property is about
		}
		for _, in := range []string{
			"nats://alice:" + pw + "@" + host + ",nats://alice:" + pw + "@" + host,
			"alice:" + pw + "@" + host + ", tls://" + pw + "@" + host,
			pw + "@" + host + "," + host,
		} {
			if got := RedactURL(in); strings.Contains(got, pw) {
				t.Fatalf("RedactURL(%q) = %q still holds the password", in, got)
			}
		}
	})
}
