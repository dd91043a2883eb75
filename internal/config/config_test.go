package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/streams"
)

// env returns a lookup function over a fixed map.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func mustParse(t *testing.T, yaml string, vars map[string]string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml), env(vars))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError: %v", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("errors.Is(err, ErrInvalid) is false")
	}
	if len(ve.Problems) == 0 {
		t.Fatal("ValidationError without problems")
	}
	return ve.Problems
}

func TestExampleConfigParses(t *testing.T) {
	data, err := os.ReadFile("testdata/example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, env(nil))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if !c.NATS.Embedded() || c.NATS.StoreDir != "./data/nats" || c.NATS.Credentials != "" || c.NATS.Sync != SyncAlways {
		t.Errorf("nats = %+v", c.NATS)
	}
	if len(c.Sources) != 1 || len(c.Queries) != 2 || len(c.Reactions) != 3 {
		t.Fatalf("sections: %d sources, %d queries, %d reactions", len(c.Sources), len(c.Queries), len(c.Reactions))
	}
	pg := c.Sources[0].Postgres()
	if pg == nil {
		t.Fatal("source 0 is not postgres")
	}
	want := &PostgresSource{
		Host: "127.0.0.1", Port: 5432, Database: "shop", User: "tributary", SSLMode: "prefer",
		Tables: []string{"orders", "drivers", "vehicles"}, PublicationName: "tributary_shop", SlotName: "tributary_shop",
		Create: true, Snapshot: SnapshotInitial,
		TableKeys:         []TableKey{{Table: "vehicles", KeyColumns: []string{"plate"}}},
		HeartbeatInterval: Duration(30 * time.Second), StatusInterval: Duration(10 * time.Second),
		Batch: BatchConfig{MaxDelay: Duration(10 * time.Millisecond)},
		Timeouts: PostgresTimeouts{Connect: Duration(10 * time.Second), Query: Duration(30 * time.Second),
			Snapshot: Duration(30 * time.Minute), SnapshotStep: Duration(5 * time.Minute), Stop: Duration(30 * time.Second), Idle: Duration(2 * time.Minute)},
		Backoff: BackoffConfig{Initial: Duration(500 * time.Millisecond), Max: Duration(30 * time.Second)},
	}
	if !reflect.DeepEqual(pg, want) {
		t.Errorf("postgres source =\n%+v\nwant\n%+v", pg, want)
	}
	q := c.Queries[0]
	if q.QueryLanguage != LanguageCypher || len(q.Joins) != 2 || q.Joins[1].Keys[1] != (JoinKey{"vehicles", "plate"}) ||
		q.Sources[0].SourceID != "shop" || !strings.HasPrefix(q.Query, "MATCH (o:orders)") {
		t.Errorf("query 0 = %+v", q)
	}
	if c.Queries[1].QueryLanguage != LanguageCypher {
		t.Errorf("query 1 language = %q, want the default", c.Queries[1].QueryLanguage)
	}
	if l, ok := c.Reactions[0].Spec.(*LogReaction); !ok || l.Format != "json" {
		t.Errorf("reaction 0 spec = %#v", c.Reactions[0].Spec)
	}
	h, ok := c.Reactions[1].Spec.(*HTTPReaction)
	if !ok {
		t.Fatalf("reaction 1 spec = %#v", c.Reactions[1].Spec)
	}
	call := h.Routes["ready-for-pickup"].Added
	if h.BaseURL != "http://127.0.0.1:8081" || h.Timeout.D() != 5*time.Second || call == nil ||
		call.Path != "/pickup/ready" || call.Method != "POST" || !strings.Contains(call.Body, "{{.after.orderId}}") ||
		h.Retry != (RetryConfig{Duration(200 * time.Millisecond), Duration(30 * time.Second), 20}) {
		t.Errorf("http reaction = %+v", h)
	}
	p, ok := c.Reactions[2].Spec.(*PostgresReaction)
	if !ok || !strings.HasPrefix(p.Added, "INSERT") || !strings.HasPrefix(p.Deleted, "DELETE") || p.Retry.MaxDeliver != 20 {
		t.Errorf("postgres reaction = %#v", c.Reactions[2].Spec)
	}
}

func TestExampleConfigWithEnvironment(t *testing.T) {
	data, err := os.ReadFile("testdata/example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, env(map[string]string{
		"NATS_URL":    "nats://n1:4222, tls://n2:4222",
		"NATS_CREDS":  "/etc/tributary/app.creds",
		"PGHOST":      "db.internal",
		"PGPASSWORD":  "s3cr3t/pw@x",
		"WEBHOOK_URL": "https://hooks.example.com",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Embedded() || !reflect.DeepEqual(c.NATS.URLs(), []string{"nats://n1:4222", "tls://n2:4222"}) ||
		c.NATS.Credentials != "/etc/tributary/app.creds" {
		t.Errorf("nats = %+v", c.NATS)
	}
	pg := c.Sources[0].Postgres()
	if pg.Host != "db.internal" || pg.Password != "s3cr3t/pw@x" {
		t.Errorf("host/password = %q/%q", pg.Host, pg.Password)
	}
	if got := c.Reactions[1].Spec.(*HTTPReaction).BaseURL; got != "https://hooks.example.com" {
		t.Errorf("baseUrl = %q", got)
	}
	if s := c.String(); strings.Contains(s, "s3cr3t") || !strings.Contains(s, "REDACTED") {
		t.Errorf("String() leaks or lacks redaction:\n%s", s)
	}
	if r := pg.Redacted(); strings.Contains(r, "s3cr3t") {
		t.Errorf("Redacted() = %q", r)
	}
}

func TestEnvExpansion(t *testing.T) {
	vars := map[string]string{"SET": "value", "EMPTY": "", "PORT": "6543", "YES": "true"}
	tests := []struct {
		name, in, want string
	}{
		{"plain", "abc", "abc"},
		{"set", "${SET}", "value"},
		{"embedded in text", "x-${SET}-y", "x-value-y"},
		{"unset", "a${UNSET}b", "ab"},
		{"default when unset", "${UNSET:-dflt}", "dflt"},
		{"default when empty", "${EMPTY:-dflt}", "dflt"},
		{"default ignored when set", "${SET:-dflt}", "value"},
		{"empty default", "${UNSET:-}", ""},
		{"default with colon and slash", "${UNSET:-nats://h:4222}", "nats://h:4222"},
		{"escaped dollar", "$${SET}", "${SET}"},
		{"double escape", "a$$$$b", "a$$b"},
		{"cypher parameter kept", "WHERE o.total > $minTotal", "WHERE o.total > $minTotal"},
		{"sql placeholder kept", "VALUES ($1, $2)", "VALUES ($1, $2)"},
		{"trailing dollar", "cost$", "cost$"},
		{"value not rescanned", "${DOLLAR}", "${SET}"},
	}
	vars["DOLLAR"] = "${SET}"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := expandString(tt.in, env(vars))
			if err != nil {
				t.Fatalf("expandString(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("expandString(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}

	// Typed values follow the expanded text; quoted ones stay strings.
	c := mustParse(t, `
sources:
  - kind: postgres
    id: s
    port: ${PORT}
    database: "${UNSET:-1234}"
    create: ${YES}
    tables: [t]
    heartbeatInterval: ${HB:-45s}
queries:
  - id: q
    sources: [{sourceId: s}]
    parameters:
      limit: ${PORT}
      name: "${SET}"
      off: ${UNSET}
    query: MATCH (n) WHERE n.x > $$limit RETURN n
`, vars)
	pg := c.Sources[0].Postgres()
	if pg.Port != 6543 || pg.Database != "1234" || !pg.Create || pg.HeartbeatInterval.D() != 45*time.Second {
		t.Errorf("source = %+v", pg)
	}
	params := c.Queries[0].Parameters
	if params["limit"] != 6543 || params["name"] != "value" || params["off"] != nil {
		t.Errorf("parameters = %#v", params)
	}
	if c.Queries[0].Query != "MATCH (n) WHERE n.x > $limit RETURN n" {
		t.Errorf("query = %q", c.Queries[0].Query)
	}
}

func TestEnvExpansionErrors(t *testing.T) {
	for _, tt := range []struct{ value, want string }{
		{"${UNCLOSED", "unterminated ${"},
		{"${}", "invalid variable name"},
		{"${1X}", "invalid variable name"},
		{"${A-B}", "invalid variable name"},
	} {
		_, err := Parse([]byte("nats:\n  name: \""+tt.value+"\"\n"), env(nil))
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Path != "nats.name" || !strings.Contains(ps[0].Message, tt.want) || ps[0].Line != 2 {
			t.Errorf("%q: problems = %v, want one at nats.name line 2 with %q", tt.value, ps, tt.want)
		}
	}
}

func TestUnsetVariableIsAnErrorOnlyWhenRequired(t *testing.T) {
	// Optional: password unset is fine.
	c := mustParse(t, "sources:\n  - {kind: postgres, id: s, database: d, password: '${PW}', tables: [t]}\n", nil)
	if c.Sources[0].Postgres().Password != "" {
		t.Fatal("password not empty")
	}
	// Required: database unset is an error naming the variable.
	_, err := Parse([]byte("sources:\n  - {kind: postgres, id: s, database: '${DB}', tables: [t]}\n"), env(nil))
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Path != "sources[0].database" || !strings.Contains(ps[0].Message, "environment variable DB is not set") {
		t.Fatalf("problems = %v", ps)
	}
}

const (
	okSource   = "sources:\n  - {kind: postgres, id: s, database: d, tables: [t]}\n"
	okQuery    = "queries:\n  - {id: q, sources: [{sourceId: s}], query: MATCH (n) RETURN n}\n"
	okReaction = "reactions:\n  - {kind: log, id: r, queries: [q]}\n"
)

func TestMinimalSectionsAreValid(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          "",
		"comment only":   "# nothing\n",
		"nats only":      "nats: {url: 'nats://a:4222,nats://b:4222', replicas: 3, user: u, password: p}\n",
		"sources only":   okSource,
		"external":       okSource + "  - {kind: external, id: sensors, description: 'the IoT gateway'}\nqueries:\n  - {id: q, sources: [{sourceId: sensors}, {sourceId: s}], query: x}\n",
		"queries only":   okQuery, // source s not defined here: no referential check
		"reactions only": okReaction,
		"all":            okSource + okQuery + okReaction,
		"connectionStr":  "sources:\n  - {kind: postgres, id: s, connectionString: 'host=h dbname=d password=''x y''', tables: [t]}\n",
		"interval sync":  "nats: {sync: interval, syncInterval: 1s}\n",
		"tls remote":     "nats: {url: tls://h:4222, tls: {ca: ca.pem, cert: c.pem, key: k.pem}}\n",
		"sse":            "reactions:\n  - {kind: sse, id: r, queries: [q], listen: ':8080'}\n",
		"schema tables":  "sources:\n  - {kind: postgres, id: s, database: d, tables: [inv.items, orders], tableKeys: [{table: public.orders, keyColumns: [a, b]}]}\n",
		"postgres react": "reactions:\n  - {kind: postgres, id: r, queries: [q], connection: 'postgres://u@h/db', deleted: DELETE FROM t}\n",
		"http no routes": "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'https://h/x', headers: {Authorization: Bearer x}}\n",
		"http full":      "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'https://h', perRow: true, tls: {ca: ca.pem, cert: c.pem, key: k.pem}, routes: {q: {updated: {path: /u, method: PUT, headers: {X-A: b}, body: '{{json .after}}'}}}}\n",
		"log templates":  "reactions:\n  - {kind: log, id: r, queries: [q], templates: {deleted: '{{.before.id}}'}, file: /tmp/x.log, sync: none}\n",
		"onGap resync":   "reactions:\n  - {kind: log, id: r, queries: [q], onGap: resync}\n",
		"nats":           "reactions:\n  - {kind: nats, id: r, queries: [q], subject: 'out.{{.query}}', perRow: true, mode: core}\n",
		"postgres table": "reactions:\n  - {kind: postgres, id: r, queries: [q], connection: 'host=h', added: x, offsetTable: ops.offsets}\n",
	} {
		t.Run(name, func(t *testing.T) {
			mustParse(t, doc, nil)
		})
	}
}

func TestAliasesAndMergeKeys(t *testing.T) {
	c := mustParse(t, `
sources:
  - &base {kind: postgres, id: a, database: d, tables: [t], backoff: {initial: 1s, max: 2s}}
  - <<: *base
    id: b
    tables: [u]
`, nil)
	b := c.Sources[1].Postgres()
	if c.Sources[1].ID != "b" || b.Database != "d" || !reflect.DeepEqual(b.Tables, []string{"u"}) || b.Backoff.Initial.D() != time.Second {
		t.Fatalf("merged source = %+v %+v", c.Sources[1], b)
	}
	_, err := Parse([]byte(`
sources:
  - &base {kind: postgres, id: a, database: d, tables: [t]}
  - <<: *base
    id: b
    bogus: 1
`), env(nil))
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Path != "sources[1].bogus" {
		t.Fatalf("problems = %v", ps)
	}
}

// TestProblems checks each kind of problem alone: the config must give
// exactly one problem, at the path, with the message part.
func TestProblems(t *testing.T) {
	tests := []struct {
		name, doc, path, msg string
	}{
		// Decoding.
		{"unknown top-level key", "nat: {}\n", "nat", `unknown key "nat"`},
		{"unknown nats key suggests", "nats: {storedir: x}\n", "nats.storedir", `did you mean "storeDir"`},
		{"want map", "nats: embedded\n", "nats", "want a map"},
		{"want list", "sources: {kind: postgres}\n", "sources", "want a list"},
		{"want string", "nats: {name: [a]}\n", "nats.name", "want a string"},
		{"want integer", "nats: {replicas: three}\n", "nats.replicas", `want an integer, got "three"`},
		{"want bool", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], create: yes}\n", "sources[0].create", "want true or false"},
		{"bad duration", "nats: {connectTimeout: 10}\n", "nats.connectTimeout", `invalid duration "10"`},
		{"root not a map", "- a\n", "", "must be a map"},
		{"two documents", "nats: {}\n---\nnats: {}\n", "", "more than one YAML document"},
		{"yaml syntax", "nats: {url: [}\n", "", "YAML syntax"},
		{"merge of a scalar", "nats:\n  <<: 5\n", "nats", "merge (<<) must refer to a map"},
		// nats.
		{"nats url scheme", "nats: {url: 'http://h:4222'}\n", "nats.url", "nats:// or tls://"},
		{"nats url no host", "nats: {url: 'nats://'}\n", "nats.url", "no host"},
		{"nats sync", "nats: {sync: sometimes}\n", "nats.sync", `"sometimes" is not one of always, interval`},
		{"nats syncInterval without interval", "nats: {syncInterval: 1m}\n", "nats.syncInterval", "only allowed with sync: interval"},
		{"nats prefix", "nats: {subjectPrefix: a.b}\n", "nats.subjectPrefix", "NATS token"},
		{"nats replicas value", "nats: {url: 'nats://h', replicas: 2}\n", "nats.replicas", "must be 1, 3 or 5"},
		{"nats replicas embedded", "nats: {replicas: 3}\n", "nats.replicas", "must be 1 with the embedded server"},
		{"nats user without password", "nats: {url: 'nats://h', user: u}\n", "nats.password", "required with user"},
		{"nats two auths", "nats: {url: 'nats://h', token: t, credentials: c}\n", "nats", "choose one way to authenticate"},
		{"nats auth embedded", "nats: {credentials: c}\n", "nats", "only apply to remote servers"},
		{"nats tls cert without key", "nats: {url: 'tls://h', tls: {cert: c}}\n", "nats.tls", "cert and key must be given together"},
		{"nats reconnect cap", "nats: {reconnectWait: 5s, maxReconnectWait: 1s}\n", "nats.maxReconnectWait", "less than reconnectWait"},
		{"nats negative", "nats: {connectTimeout: -1s}\n", "nats.connectTimeout", "positive"},
		{"retention bad size", "nats: {retention: {changes: {maxBytes: 10 gigs}}}\n", "nats.retention.changes.maxBytes", `invalid size "10 gigs"`},
		{"retention size not scalar", "nats: {retention: {results: {maxBytes: [1]}}}\n", "nats.retention.results.maxBytes", "want a size such as 512MiB"},
		{"retention unknown stream", "nats: {retention: {change: {}}}\n", "nats.retention.change", `unknown key "change"`},
		{"retention per subject on results", "nats: {retention: {results: {maxMsgsPerSubject: 1}}}\n", "nats.retention.results.maxMsgsPerSubject", "unknown key"},
		{"retention tiny age", "nats: {retention: {changes: {maxAge: 10s}}}\n", "nats.retention.changes.maxAge", "at least 1m0s, got 10s"},
		{"retention negative age", "nats: {retention: {deadLetters: {maxAge: -1h}}}\n", "nats.retention.deadLetters.maxAge", "at least 1m0s"},
		{"retention tiny bytes", "nats: {retention: {results: {maxBytes: 1KiB}}}\n", "nats.retention.results.maxBytes", "at least 1MiB, got 1024 bytes"},
		{"retention negative bytes", "nats: {retention: {deadLetters: {maxBytes: -5}}}\n", "nats.retention.deadLetters.maxBytes", "at least 1MiB"},
		{"retention negative per subject", "nats: {retention: {changes: {maxMsgsPerSubject: -1}}}\n", "nats.retention.changes.maxMsgsPerSubject", "must be 0"},
		// sources.
		{"source kind missing", "sources:\n  - {id: s}\n", "sources[0].kind", "required (one of external, postgres)"},
		{"external unknown key", "sources:\n  - {kind: external, id: s, tables: [t]}\n", "sources[0].tables", `unknown key "tables"`},
		{"query external mistyped", "sources:\n  - {kind: external, id: sensors}\nqueries:\n  - {id: q, sources: [{sourceId: sensor}], query: x}\n", "queries[0].sources[0].sourceId", `no source with id "sensor"`},
		{"source kind unknown", "sources:\n  - {kind: mysql, id: s, host: h}\n", "sources[0].kind", `unknown source kind "mysql"`},
		{"source id missing", "sources:\n  - {kind: postgres, database: d, tables: [t], slotName: x, publicationName: x}\n", "sources[0].id", "required"},
		{"source id bad", "sources:\n  - {kind: postgres, id: 'a.b', database: d, tables: [t], slotName: x, publicationName: x}\n", "sources[0].id", "only letters, digits"},
		{"source id duplicate", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t]}\n  - {kind: postgres, id: s, database: d, tables: [t], slotName: x}\n", "sources[1].id", `duplicate source id "s"`},
		{"source unknown key", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], table: [x]}\n", "sources[0].table", `unknown key "table" for kind "postgres"`},
		{"both connection forms", "sources:\n  - {kind: postgres, id: s, connectionString: 'host=h', database: d, tables: [t]}\n", "sources[0].connectionString", "cannot be combined with database"},
		{"connectionString scheme", "sources:\n  - {kind: postgres, id: s, connectionString: 'mysql://h/d', tables: [t]}\n", "sources[0].connectionString", "postgres:// or postgresql://"},
		{"connectionString kv", "sources:\n  - {kind: postgres, id: s, connectionString: 'host', tables: [t]}\n", "sources[0].connectionString", "key=value"},
		{"database missing", "sources:\n  - {kind: postgres, id: s, tables: [t]}\n", "sources[0].database", "required without connectionString"},
		{"port range", "sources:\n  - {kind: postgres, id: s, database: d, port: 70000, tables: [t]}\n", "sources[0].port", "between 1 and 65535"},
		{"sslMode", "sources:\n  - {kind: postgres, id: s, database: d, sslMode: on, tables: [t]}\n", "sources[0].sslMode", `"on" is not one of disable`},
		{"tables missing", "sources:\n  - {kind: postgres, id: s, database: d}\n", "sources[0].tables", "at least one table"},
		{"table name", "sources:\n  - {kind: postgres, id: s, database: d, tables: ['a b']}\n", "sources[0].tables[0]", "not a table name"},
		{"table duplicate", "sources:\n  - {kind: postgres, id: s, database: d, tables: [orders, public.orders]}\n", "sources[0].tables[1]", "duplicate table"},
		{"slot name", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], slotName: Slot}\n", "sources[0].slotName", "[a-z0-9_]{1,63}"},
		{"slot name from long id", "sources:\n  - {kind: postgres, id: " + strings.Repeat("x", 60) + ", database: d, tables: [t], publicationName: p}\n", "sources[0].slotName", "default derived from the id"},
		{"publication name", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], publicationName: 'a-b'}\n", "sources[0].publicationName", "letters, digits and '_'"},
		{"snapshot", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], snapshot: always}\n", "sources[0].snapshot", `"always" is not one of initial, never`},
		{"tableKeys table", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], tableKeys: [{table: u, keyColumns: [a]}]}\n", "sources[0].tableKeys[0].table", `"u" is not in tables`},
		{"tableKeys columns", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], tableKeys: [{table: t}]}\n", "sources[0].tableKeys[0].keyColumns", "at least one column"},
		{"tableKeys dup column", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], tableKeys: [{table: t, keyColumns: [a, a]}]}\n", "sources[0].tableKeys[0].keyColumns[1]", `duplicate column "a"`},
		{"tableKeys unknown key", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], tableKeys: [{table: t, keyColumns: [a], keys: [b]}]}\n", "sources[0].tableKeys[0].keys", `unknown key "keys"`},
		{"batch size", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], batch: {maxMessages: 5001}}\n", "sources[0].batch.maxMessages", "above nats.maxBatch (5000)"},
		{"batch size remote", "nats: {url: nats://h:4222}\nsources:\n  - {kind: postgres, id: s, database: d, tables: [t], batch: {maxMessages: 1001}}\n", "sources[0].batch.maxMessages", "above nats.maxBatch (1000)"},
		{"max batch", "nats: {maxBatch: 100001}\n", "nats.maxBatch", "between 1 and 100000"},
		{"idle", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], statusInterval: 10s, timeouts: {idle: 5s}}\n", "sources[0].timeouts.idle", "longer than statusInterval"},
		{"in flight", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], maxInFlight: 10}\n", "sources[0].maxInFlight", "less than batch.maxMessages"},
		{"negative interval", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], statusInterval: -1s}\n", "sources[0].statusInterval", "positive"},
		{"timeout", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], timeouts: {snapshotStep: -5m}}\n", "sources[0].timeouts.snapshotStep", "positive"},
		{"backoff order", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], backoff: {initial: 1m, max: 1s}}\n", "sources[0].backoff.max", "less than initial"},
		{"backoff elapsed", "sources:\n  - {kind: postgres, id: s, database: d, tables: [t], backoff: {maxElapsed: -1s}}\n", "sources[0].backoff.maxElapsed", "negative"},
		// queries.
		{"query id dup", "queries:\n  - {id: q, sources: [{sourceId: s}], query: x}\n  - {id: q, sources: [{sourceId: s}], query: x}\n", "queries[1].id", `duplicate query id "q"`},
		{"query language", "queries:\n  - {id: q, queryLanguage: GQL, sources: [{sourceId: s}], query: x}\n", "queries[0].queryLanguage", `"GQL" is not supported`},
		{"query sources missing", "queries:\n  - {id: q, query: x}\n", "queries[0].sources", "at least one"},
		{"query sourceId missing", "queries:\n  - {id: q, sources: [{}], query: x}\n", "queries[0].sources[0].sourceId", "required"},
		{"query source unknown", okSource + "queries:\n  - {id: q, sources: [{sourceId: z}], query: x}\n", "queries[0].sources[0].sourceId", `no source with id "z"`},
		{"query source key", "queries:\n  - {id: q, sources: [{sourceId: s, source: s}], query: x}\n", "queries[0].sources[0].source", `unknown key "source"`},
		{"join keys count", "queries:\n  - {id: q, sources: [{sourceId: s}], query: x, joins: [{id: R, keys: [{label: a, property: b}]}]}\n", "queries[0].joins[0].keys", "exactly two"},
		{"join id", "queries:\n  - {id: q, sources: [{sourceId: s}], query: x, joins: [{id: 'has-a', keys: [{label: a, property: b}, {label: c, property: d}]}]}\n", "queries[0].joins[0].id", "letters, digits and '_'"},
		{"join key property", "queries:\n  - {id: q, sources: [{sourceId: s}], query: x, joins: [{id: R, keys: [{label: a, property: b}, {label: c}]}]}\n", "queries[0].joins[0].keys[1].property", "required"},
		{"parameter name", "queries:\n  - {id: q, sources: [{sourceId: s}], query: x, parameters: {'a-b': 1}}\n", "queries[0].parameters.a-b", "parameter name"},
		{"query text", "queries:\n  - {id: q, sources: [{sourceId: s}], query: '  '}\n", "queries[0].query", "required"},
		{"log template", "reactions:\n  - {kind: log, id: r, queries: [q], templates: {added: '{{.after'}}\n", "reactions[0].templates.added", "not a valid Go template"},
		{"log sync without file", "reactions:\n  - {kind: log, id: r, queries: [q], sync: none}\n", "reactions[0].sync", "only allowed with file"},
		{"log sync", "reactions:\n  - {kind: log, id: r, queries: [q], file: x.log, sync: sometimes}\n", "reactions[0].sync", `"sometimes" is not one of always, none`},
		{"reaction onGap", "reactions:\n  - {kind: log, id: r, queries: [q], onGap: skip}\n", "reactions[0].onGap", `"skip" is not one of stop, resync`},
		// reactions.
		{"reaction kind unknown", "reactions:\n  - {kind: kafka, id: r, queries: [q], topic: t}\n", "reactions[0].kind", `unknown reaction kind "kafka" (want one of http, log, nats, postgres, sse)`},
		{"reaction kind missing", "reactions:\n  - {id: r, queries: [q]}\n", "reactions[0].kind", "required"},
		{"reaction id dup", "reactions:\n  - {kind: log, id: r, queries: [q]}\n  - {kind: log, id: r, queries: [q]}\n", "reactions[1].id", "duplicate reaction id"},
		{"reaction queries missing", "reactions:\n  - {kind: log, id: r}\n", "reactions[0].queries", "required"},
		{"reaction query dup", "reactions:\n  - {kind: log, id: r, queries: [q, q]}\n", "reactions[0].queries[1]", "duplicate query id"},
		{"reaction query unknown", okQuery + "reactions:\n  - {kind: log, id: r, queries: [z]}\n", "reactions[0].queries[0]", `no query with id "z"`},
		{"key of another kind", "reactions:\n  - {kind: log, id: r, queries: [q], baseUrl: 'http://h'}\n", "reactions[0].baseUrl", `unknown key "baseUrl" for kind "log"`},
		{"log format", "reactions:\n  - {kind: log, id: r, queries: [q], format: xml}\n", "reactions[0].format", `"xml" is not one of json, text`},
		{"http baseUrl missing", "reactions:\n  - {kind: http, id: r, queries: [q]}\n", "reactions[0].baseUrl", "required"},
		{"http baseUrl relative", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: /hook}\n", "reactions[0].baseUrl", "absolute"},
		{"http header name", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', headers: {'X Y': v}}\n", "reactions[0].headers.X Y", "header name"},
		{"http route query", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {z: {added: {path: /a}}}}\n", "reactions[0].routes.z", "not in this reaction's queries"},
		{"http route empty", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {}}}\n", "reactions[0].routes.q", "at least one of added"},
		{"http route path", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {deleted: {path: a}}}}\n", "reactions[0].routes.q.deleted.path", "starting with /"},
		{"http route method", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {added: {path: /a, method: post}}}}\n", "reactions[0].routes.q.added.method", `"post" is not one of`},
		{"http route key", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {added: {path: /a}, inserted: {path: /a}}}}\n", "reactions[0].routes.q.inserted", `unknown key "inserted"`},
		{"retry deliver", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', retry: {maxDeliver: -1}}\n", "reactions[0].retry.maxDeliver", "at least 1"},
		{"postgres statements", "reactions:\n  - {kind: postgres, id: r, queries: [q], connection: 'host=h'}\n", "reactions[0]", "at least one of added, updated, deleted"},
		{"postgres connection", "reactions:\n  - {kind: postgres, id: r, queries: [q], added: x}\n", "reactions[0].connection", "required"},
		{"http tls half", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', tls: {cert: c.pem}}\n", "reactions[0].tls", "cert and key must be given together"},
		{"http body template", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {added: {path: /a, body: '{{.after'}}}}\n", "reactions[0].routes.q.added.body", "not a valid Go template"},
		{"http call header", "reactions:\n  - {kind: http, id: r, queries: [q], baseUrl: 'http://h', routes: {q: {added: {path: /a, headers: {'a b': c}}}}}\n", "reactions[0].routes.q.added.headers.a b", "header name"},
		{"postgres offset table", "reactions:\n  - {kind: postgres, id: r, queries: [q], connection: 'host=h', added: x, offsetTable: 'x;drop'}\n", "reactions[0].offsetTable", "must be a table name"},
		{"nats subject", "reactions:\n  - {kind: nats, id: r, queries: [q]}\n", "reactions[0].subject", "required"},
		{"nats subject template", "reactions:\n  - {kind: nats, id: r, queries: [q], subject: 'a.{{'}\n", "reactions[0].subject", "not a valid Go template"},
		{"nats subject prefix", "reactions:\n  - {kind: nats, id: r, queries: [q], subject: 'tributary.results.{{.query}}'}\n", "reactions[0].subject", "belongs to Tributary's own streams"},
		{"nats mode", "reactions:\n  - {kind: nats, id: r, queries: [q], subject: a, mode: kafka}\n", "reactions[0].mode", `"kafka" is not one of jetstream, core`},
		{"sse path root", "reactions:\n  - {kind: sse, id: r, queries: [q], listen: ':1', path: /}\n", "reactions[0].path", "the page is served at /"},
		{"sse listen", "reactions:\n  - {kind: sse, id: r, queries: [q], listen: 8080}\n", "reactions[0].listen", "not host:port"},
		{"sse path", "reactions:\n  - {kind: sse, id: r, queries: [q], listen: ':1', path: events}\n", "reactions[0].path", "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), env(nil))
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %d:\n%v", len(ps), err)
			}
			if ps[0].Path != tt.path || !strings.Contains(ps[0].Message, tt.msg) {
				t.Fatalf("problem = %q %q, want path %q and message containing %q", ps[0].Path, ps[0].Message, tt.path, tt.msg)
			}
			if tt.path != "" && ps[0].Line == 0 {
				t.Errorf("problem %v has no position", ps[0])
			}
		})
	}
}

func TestAllProblemsAtOnceWithPositions(t *testing.T) {
	doc := `nats:
  replicas: 2
  bogus: true
sources:
  - kind: postgres
    id: shop
    database: shop
    port: 0x
    tables: []
    tableKeys:
      - table: orders
        keyColumns: [id]
      - table: drivers
        keyColumns: []
queries:
  - id: q
    sources: [{sourceId: nope}]
    query: MATCH (n) RETURN n
reactions:
  - kind: http
    id: h
    queries: [q, missing]
    baseUrl: ftp://x
`
	_, err := Parse([]byte(doc), env(nil))
	ps := problemsOf(t, err)
	want := []Problem{
		{"nats.replicas", 2, 13, "must be 1, 3 or 5, got 2"},
		{"nats.bogus", 3, 3, `unknown key "bogus"`},
		{"sources[0].port", 8, 11, `want an integer, got "0x"`},
		{"sources[0].tables", 9, 13, "required: list at least one table"},
		{"sources[0].tableKeys[0].table", 11, 16, `"orders" is not in tables`},
		{"sources[0].tableKeys[1].table", 13, 16, `"drivers" is not in tables`},
		{"sources[0].tableKeys[1].keyColumns", 14, 21, "required: list at least one column"},
		{"queries[0].sources[0].sourceId", 17, 26, `no source with id "nope" in sources`},
		{"reactions[0].queries[1]", 22, 18, `no query with id "missing" in queries`},
		{"reactions[0].baseUrl", 23, 14, "must be an absolute http:// or https:// URL"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if ps[i].Path != w.Path || ps[i].Line != w.Line || ps[i].Column != w.Column || !strings.Contains(ps[i].Message, w.Message) {
			t.Errorf("problem %d = %+v, want %+v", i, ps[i], w)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || lines[0] != "2:13: nats.replicas: must be 1, 3 or 5, got 2" {
		t.Errorf("Error() =\n%s", err)
	}
}

func TestSecretsNeverInErrorsOrString(t *testing.T) {
	const secret = "hunter2"
	vars := map[string]string{"PW": secret}
	docs := []string{
		// Valid configs: String() must hide every secret.
		`nats: {url: 'nats://u:${PW}@h:4222', user: u, password: '${PW}'}
sources:
  - {kind: postgres, id: a, database: d, user: u, password: '${PW}', tables: [t]}
  - {kind: postgres, id: b, connectionString: 'postgres://u:${PW}@h/d?sslmode=disable', tables: [t]}
  - {kind: postgres, id: c, connectionString: 'host=h password=${PW} dbname=d', tables: [t]}
reactions:
  - {kind: postgres, id: p, queries: [q], connection: 'postgres://u:${PW}@h/d', added: x}
  - {kind: http, id: h, queries: [q], baseUrl: 'https://u:${PW}@h', headers: {Authorization: 'Bearer ${PW}'}}
  - {kind: http, id: h2, queries: [q], baseUrl: 'https://h', routes: {q: {added: {path: /a, headers: {X-Key: '${PW}'}}}}}
`,
		`nats: {url: 'nats://h', token: '${PW}'}`,
		// Invalid configs: the errors must not quote secrets either.
		`nats: {url: 'nats://u:${PW}@', password: ['${PW}'], token: {a: '${PW}'}}`,
		`nats: {url: 'http://x:${PW}@h', user: u, password: '${PW}', token: '${PW}'}`,
		"sources:\n  - {kind: postgres, id: a, connectionString: \"host=h password='${PW}\", tables: [t]}\n",
		"sources:\n  - {kind: postgres, id: a, connectionString: 'mysql://u:${PW}@h/d', password: '${PW}', tables: [t]}\n",
		"sources:\n  - {kind: postgres, id: a, database: d, password: '${PW}', tables: [t], port: x}\n",
		"reactions:\n  - {kind: postgres, id: p, queries: [q], connection: 'host=h password=${PW} x'}\n",
		"reactions:\n  - {kind: http, id: h, queries: [q], baseUrl: 'ftp://u:${PW}@h', headers: {'X-Token': '${PW}', 'bad name': '${PW}'}}\n",
		"nats: {password: '${PW} ${UNSET_BY_DESIGN'}\n",
		// A secret in a non-secret key by mistake, also through an alias.
		"x: &p ${PW}\nnats: {replicas: *p}\n",
		"sources:\n  - &s {kind: postgres, id: a, database: d, tables: [t]}\n  - <<: *s\n    port: ${PW}\n",
		"nats:\n  replicas: ${PW}\n  subjectPrefix: a.${PW}\n",
		"sources:\n  - kind: postgres\n    id: a\n    database: d\n    tables: [t]\n    sslMode: x${PW}\n    port: ${PW}\n",
	}
	for i, doc := range docs {
		c, err := Parse([]byte(doc), env(vars))
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("doc %d: error leaks the secret:\n%v", i, err)
			}
			continue
		}
		s := c.String()
		if strings.Contains(s, secret) {
			t.Errorf("doc %d: String() leaks the secret:\n%s", i, s)
		}
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("doc %d: String() shows no redaction:\n%s", i, s)
		}
		for _, src := range c.Sources {
			if strings.Contains(src.Postgres().Redacted(), secret) {
				t.Errorf("doc %d: Redacted() = %q", i, src.Postgres().Redacted())
			}
			if !strings.Contains(src.Postgres().ConnString(), secret) && src.ID != "c" {
				t.Errorf("doc %d: ConnString() lost the password", i)
			}
		}
		for _, r := range c.Reactions {
			if p, ok := r.Spec.(*PostgresReaction); ok && strings.Contains(p.Redacted(), secret) {
				t.Errorf("doc %d: reaction Redacted() = %q", i, p.Redacted())
			}
		}
	}
}

func TestConnString(t *testing.T) {
	tests := []struct {
		name      string
		src       PostgresSource
		conn, rep string
	}{
		{"discrete",
			PostgresSource{Host: "db", Port: 5433, Database: "shop", User: "bob", Password: "p@ss word", SSLMode: "require"},
			"postgres://bob:p%40ss%20word@db:5433/shop?sslmode=require",
			"postgres://bob:p%40ss%20word@db:5433/shop?replication=database&sslmode=require"},
		{"ipv6 no user",
			PostgresSource{Host: "::1", Port: 5432, Database: "d", SSLMode: "disable"},
			"postgres://[::1]:5432/d?sslmode=disable",
			"postgres://[::1]:5432/d?replication=database&sslmode=disable"},
		{"unix socket",
			PostgresSource{Host: "/var/run/postgresql", Port: 5432, Database: "d", User: "u", SSLMode: "disable"},
			"postgres://u@/d?host=%2Fvar%2Frun%2Fpostgresql&port=5432&sslmode=disable",
			"postgres://u@/d?host=%2Fvar%2Frun%2Fpostgresql&port=5432&replication=database&sslmode=disable"},
		{"url as given",
			PostgresSource{ConnectionString: "postgresql://u:pw@h/d?replication=false"},
			"postgresql://u:pw@h/d?replication=false",
			"postgresql://u:pw@h/d?replication=database"},
		{"key value",
			PostgresSource{ConnectionString: "host=h dbname=d password=pw"},
			"host=h dbname=d password=pw",
			"host=h dbname=d password=pw replication=database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.src.ConnString(); got != tt.conn {
				t.Errorf("ConnString() = %q, want %q", got, tt.conn)
			}
			if got := tt.src.ReplicationConnString(); got != tt.rep {
				t.Errorf("ReplicationConnString() = %q, want %q", got, tt.rep)
			}
			if tt.src.Password != "" && strings.Contains(tt.src.Redacted(), "ss%20word") {
				t.Errorf("Redacted() = %q", tt.src.Redacted())
			}
		})
	}
	if got := WithConnParam("", "a", "b c"); got != "a='b c'" {
		t.Errorf("WithConnParam(empty) = %q", got)
	}
}

func TestDefaultObjectNames(t *testing.T) {
	c := mustParse(t, "sources:\n  - {kind: postgres, id: Shop-EU, database: d, tables: [t]}\n", nil)
	pg := c.Sources[0].Postgres()
	if pg.SlotName != "tributary_shop_eu" || pg.PublicationName != "tributary_shop_eu" {
		t.Fatalf("names = %q, %q", pg.SlotName, pg.PublicationName)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{
		Sources:   []Source{{Kind: KindPostgres, ID: "s", Spec: &PostgresSource{Database: "d", Tables: []string{"t"}}}},
		Queries:   []Query{{ID: "q", Sources: []QuerySource{{SourceID: "s"}}, Query: "MATCH (n) RETURN n"}},
		Reactions: []Reaction{{Kind: ReactionSSE, ID: "r", Queries: []string{"q"}, Spec: &SSEReaction{Listen: "127.0.0.1:0"}}},
	}
	if err := c.Validate(); err == nil {
		t.Fatal("Validate before ApplyDefaults accepted zero durations")
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	before := c.String()
	c.ApplyDefaults()
	if c.String() != before {
		t.Fatal("ApplyDefaults is not idempotent")
	}

	c.Reactions[0].Spec = &LogReaction{Format: "json"}
	c.Sources = append(c.Sources, Source{Kind: KindPostgres, ID: "t"})
	ps := problemsOf(t, c.Validate())
	if len(ps) != 2 || ps[0].Path != "sources[1]" || ps[1].Path != "reactions[0].kind" || ps[0].Line != 0 {
		t.Fatalf("problems = %+v", ps)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Load(missing) = %v", err)
	}
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte("nats:\n  replicas: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || err.Error() != path+":2:13: nats.replicas: must be 1, 3 or 5, got 2" {
		t.Fatalf("Load(bad) = %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(okSource), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good); err != nil {
		t.Fatalf("Load(good) = %v", err)
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.D() != 90*time.Second || d.String() != "1m30s" {
		t.Fatalf("d = %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Fatal("a bare number was accepted")
	}
	b, _ := d.MarshalText()
	if string(b) != "1m30s" {
		t.Fatalf("MarshalText = %q", b)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("sources: *a8\n")
	start := time.Now()
	_, err := Parse([]byte(b.String()), env(nil))
	if err == nil {
		t.Fatal("alias bomb accepted")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("alias bomb took %v", time.Since(start))
	}
}

func TestNATSListen(t *testing.T) {
	ok := "nats:\n  listen: 127.0.0.1:4222\n"
	if _, err := Parse([]byte(ok), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatalf("valid listen: %v", err)
	}
	for doc, want := range map[string]string{
		"nats:\n  listen: nope\n":                                 "nats.listen: must be host:port",
		"nats:\n  url: nats://a:4222\n  listen: 127.0.0.1:4222\n": "nats.listen: only used by the embedded server",
	} {
		_, err := Parse([]byte(doc), func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", doc, want, err)
		}
	}
}

func TestRetention(t *testing.T) {
	c := mustParse(t, `nats:
  retention:
    changes: {maxAge: 720h, maxBytes: 50GiB, maxMsgsPerSubject: 3}
    results: {maxAge: 168h, maxBytes: "2.5 GB"}
    deadLetters: {maxBytes: 1048576}
`, nil)
	o := c.NATS.StreamsOptions()
	if o.Changes.MaxAge != 720*time.Hour || o.Changes.MaxBytes != 50<<30 || o.Changes.MaxMsgsPerSubject != 3 {
		t.Errorf("changes = %+v", o.Changes)
	}
	if o.Results.MaxAge != 168*time.Hour || o.Results.MaxBytes != 2_500_000_000 || o.Results.MaxMsgsPerSubject != 0 {
		t.Errorf("results = %+v", o.Results)
	}
	if o.DeadLetters.MaxAge != 0 || o.DeadLetters.MaxBytes != 1<<20 {
		t.Errorf("dead letters = %+v", o.DeadLetters)
	}
	if o.Replicas != 1 || o.LeaseTTL != 10*time.Second {
		t.Errorf("replicas %d lease TTL %s", o.Replicas, o.LeaseTTL)
	}
	if s := c.String(); !strings.Contains(s, "maxBytes: 50GiB") || !strings.Contains(s, "maxBytes: 1MiB") {
		t.Errorf("String() does not render the sizes:\n%s", s)
	}
	// Unset: every stream unlimited.
	if o := mustParse(t, "nats: {}\n", nil).NATS.StreamsOptions(); o.Changes != (streams.Limits{}) || o.Results != (streams.Limits{}) || o.DeadLetters != (streams.Limits{}) {
		t.Errorf("default limits = %+v", o)
	}
	// Every problem of the section at once, each with its key.
	_, err := Parse([]byte(`nats:
  retention:
    changes: {maxAge: 1s, maxBytes: 10}
    results: {maxBytes: 2XB}
    deadLetters: {maxAge: 30s}
`), env(nil))
	var paths []string
	for _, p := range problemsOf(t, err) {
		paths = append(paths, p.Path)
	}
	want := []string{"nats.retention.changes.maxAge", "nats.retention.changes.maxBytes", "nats.retention.results.maxBytes", "nats.retention.deadLetters.maxAge"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("problems at %v, want %v:\n%v", paths, want, err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "512mib": 512 << 20, "10GB": 10e9, "1.5 GiB": 3 << 29,
		"2KiB": 2048, "7B": 7, "1TiB": 1 << 40, "3kb": 3000,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || int64(b) != want {
			t.Errorf("%q = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "ten MB", "1e3MB", "1.5", "5 XB", "0x10", "9999999TiB", "NaNGB", "infGB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	for b, want := range map[ByteSize]string{0: "0B", 1 << 20: "1MiB", 3 << 29: "1536MiB", 1000: "1000B", 50 << 30: "50GiB"} {
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", int64(b), got, want)
		}
	}
}
