package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tributary/tributary/pkg/bus"
)

var (
	tokenRe      = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	identRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tableRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)
	slotRe       = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	pubRe        = regexp.MustCompile(`^[A-Za-z0-9_]{1,63}$`)
	headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

var (
	sslModes    = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
)

// Validate checks c (after ApplyDefaults) and returns a *ValidationError
// listing every problem, or nil. It does not change c. Problems carry paths
// but no positions; Parse adds those.
func (c *Config) Validate() error {
	ps := &problems{}
	c.validate(ps)
	if len(ps.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps.list}
}

func (c *Config) validate(ps *problems) {
	c.NATS.validate(ps, "nats")

	sourceIDs := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		p := index("sources", i)
		checkID(ps, join(p, "id"), s.ID, "source", sourceIDs)
		switch {
		case s.Kind == "":
			ps.add(join(p, "kind"), "required (one of %s)", strings.Join(s.knownKinds(), ", "))
		case s.Spec == nil:
			if _, ok := sourceKinds[s.Kind]; ok {
				ps.add(p, "kind %q has no settings (Spec is nil)", s.Kind)
			} else {
				ps.add(join(p, "kind"), "unknown source kind %q (want one of %s)", s.Kind, strings.Join(s.knownKinds(), ", "))
			}
		case s.Spec.SourceKind() != s.Kind:
			ps.add(join(p, "kind"), "is %q but the settings are for %q", s.Kind, s.Spec.SourceKind())
		default:
			s.Spec.validate(ps, p, s)
			if pg, ok := s.Spec.(*PostgresSource); ok {
				pg.validateLimits(ps, p, c.NATS.EffectiveMaxBatch())
			}
		}
	}

	queryIDs := map[string]bool{}
	for i := range c.Queries {
		c.Queries[i].validate(ps, index("queries", i), queryIDs, sourceIDs, len(c.Sources) > 0)
	}

	reactionIDs := map[string]bool{}
	for i := range c.Reactions {
		r := &c.Reactions[i]
		p := index("reactions", i)
		checkID(ps, join(p, "id"), r.ID, "reaction", reactionIDs)
		switch {
		case r.Kind == "":
			ps.add(join(p, "kind"), "required (one of %s)", strings.Join(r.knownKinds(), ", "))
		case r.Spec == nil:
			if _, ok := reactionKinds[r.Kind]; ok {
				ps.add(p, "kind %q has no settings (Spec is nil)", r.Kind)
			} else {
				ps.add(join(p, "kind"), "unknown reaction kind %q (want one of %s)", r.Kind, strings.Join(r.knownKinds(), ", "))
			}
		case r.Spec.ReactionKind() != r.Kind:
			ps.add(join(p, "kind"), "is %q but the settings are for %q", r.Kind, r.Spec.ReactionKind())
		}
		if r.OnGap != "" { // "" is the default, stop
			oneOf(ps, join(p, "onGap"), r.OnGap, OnGapStop, OnGapResync)
		}
		if len(r.Queries) == 0 {
			ps.add(join(p, "queries"), "required: list the ids of the queries this reaction consumes")
		}
		seen := map[string]bool{}
		for j, q := range r.Queries {
			qp := index(join(p, "queries"), j)
			switch {
			case q == "":
				ps.add(qp, "empty query id")
			case seen[q]:
				ps.add(qp, "duplicate query id %q", q)
			case len(c.Queries) > 0 && !queryIDs[q]:
				ps.add(qp, "no query with id %q in queries", q)
			}
			seen[q] = true
		}
		if r.Spec != nil && r.Spec.ReactionKind() == r.Kind {
			r.Spec.validate(ps, p, r)
		}
		if n, ok := r.Spec.(*NATSReaction); ok && strings.HasPrefix(n.Subject, c.NATS.SubjectPrefix+".") {
			ps.add(join(p, "subject"), "%q is under nats.subjectPrefix %q, which belongs to Tributary's own streams", n.Subject, c.NATS.SubjectPrefix)
		}
	}
}

// checkID checks a required, unique token id.
func checkID(ps *problems, path, id, what string, seen map[string]bool) {
	switch {
	case id == "":
		ps.add(path, "required")
	case !tokenRe.MatchString(id):
		ps.add(path, "%s id %q must contain only letters, digits, '-' and '_'", what, id)
	case seen[id]:
		ps.add(path, "duplicate %s id %q", what, id)
	}
	seen[id] = true
}

func oneOf(ps *problems, path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ps.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func positive(ps *problems, path string, d Duration) {
	if d <= 0 {
		ps.add(path, "must be a positive duration, got %s", d)
	}
}

func backoffRange(ps *problems, path string, initial, max Duration) {
	positive(ps, join(path, "initial"), initial)
	positive(ps, join(path, "max"), max)
	if initial > 0 && max > 0 && max < initial {
		ps.add(join(path, "max"), "%s is less than initial (%s)", max, initial)
	}
}

func (n *NATSConfig) validate(ps *problems, path string) {
	embedded := n.Embedded()
	if !embedded {
		urls := n.URLs()
		if len(urls) == 0 {
			ps.add(join(path, "url"), "required: %q or nats:// / tls:// URLs separated by commas", EmbeddedURL)
		}
		for i, raw := range urls {
			u, err := url.Parse(raw)
			switch {
			case err != nil:
				ps.add(join(path, "url"), "server %d is not a valid URL", i+1)
			case u.Scheme != "nats" && u.Scheme != "tls":
				ps.add(join(path, "url"), "server %d: scheme must be nats:// or tls:// (or the url %q)", i+1, EmbeddedURL)
			case u.Host == "":
				ps.add(join(path, "url"), "server %d has no host", i+1)
			}
		}
	}
	if embedded && strings.TrimSpace(n.StoreDir) == "" {
		ps.add(join(path, "storeDir"), "required for the embedded server")
	}
	if n.LeaseTTL.D() < time.Second {
		ps.add(join(path, "leaseTTL"), "must be at least 1s")
	}
	if n.Listen != "" {
		if !embedded {
			ps.add(join(path, "listen"), "only used by the embedded server")
		} else if _, port, err := net.SplitHostPort(n.Listen); err != nil || port == "" {
			ps.add(join(path, "listen"), "must be host:port, e.g. 127.0.0.1:4222")
		}
	}
	if n.MaxBatch < 0 || n.MaxBatch > bus.MaxBatchLimit {
		ps.add(join(path, "maxBatch"), "must be between 1 and %d, got %d", bus.MaxBatchLimit, n.MaxBatch)
	}
	oneOf(ps, join(path, "sync"), n.Sync, SyncAlways, SyncInterval)
	switch {
	case n.Sync == SyncInterval:
		positive(ps, join(path, "syncInterval"), n.SyncInterval)
	case n.SyncInterval != 0:
		ps.add(join(path, "syncInterval"), "only allowed with sync: %s", SyncInterval)
	}
	var auths []string
	if n.Credentials != "" {
		auths = append(auths, "credentials")
	}
	if n.NKey != "" {
		auths = append(auths, "nkey")
	}
	if n.User != "" || n.Password != "" {
		auths = append(auths, "user/password")
		if n.User == "" {
			ps.add(join(path, "user"), "required with password")
		}
		if n.Password == "" {
			ps.add(join(path, "password"), "required with user")
		}
	}
	if n.Token != "" {
		auths = append(auths, "token")
	}
	if len(auths) > 1 {
		ps.add(path, "choose one way to authenticate, got %s", strings.Join(auths, " and "))
	}
	if embedded && len(auths) > 0 {
		ps.add(path, "%s only apply to remote servers, but url is %q", strings.Join(auths, ", "), EmbeddedURL)
	}
	if n.TLS != nil {
		tp := join(path, "tls")
		if (n.TLS.Cert == "") != (n.TLS.Key == "") {
			ps.add(tp, "cert and key must be given together")
		}
		if embedded {
			ps.add(tp, "only applies to remote servers, but url is %q", EmbeddedURL)
		}
	}
	if !tokenRe.MatchString(n.SubjectPrefix) {
		ps.add(join(path, "subjectPrefix"), "%q must be a NATS token: letters, digits, '-' and '_'", n.SubjectPrefix)
	}
	switch {
	case n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5:
		ps.add(join(path, "replicas"), "must be 1, 3 or 5, got %d", n.Replicas)
	case embedded && n.Replicas != 1:
		ps.add(join(path, "replicas"), "must be 1 with the embedded server, got %d", n.Replicas)
	}
	positive(ps, join(path, "connectTimeout"), n.ConnectTimeout)
	positive(ps, join(path, "reconnectWait"), n.ReconnectWait)
	positive(ps, join(path, "maxReconnectWait"), n.MaxReconnectWait)
	if n.ReconnectWait > 0 && n.MaxReconnectWait > 0 && n.MaxReconnectWait < n.ReconnectWait {
		ps.add(join(path, "maxReconnectWait"), "%s is less than reconnectWait (%s)", n.MaxReconnectWait, n.ReconnectWait)
	}
	rp := join(path, "retention")
	ch := n.Retention.Changes
	checkRetention(ps, join(rp, "changes"), ch.MaxAge, ch.MaxBytes)
	if ch.MaxMsgsPerSubject < 0 {
		ps.add(join(join(rp, "changes"), "maxMsgsPerSubject"), "must be 0 (every version) or positive, got %d", ch.MaxMsgsPerSubject)
	}
	checkRetention(ps, join(rp, "results"), n.Retention.Results.MaxAge, n.Retention.Results.MaxBytes)
	checkRetention(ps, join(rp, "deadLetters"), n.Retention.DeadLetters.MaxAge, n.Retention.DeadLetters.MaxBytes)
}

// Smallest stream limits accepted: a shorter max age would also shrink the
// deduplication window (2m) that makes re-sends safe, and a smaller stream
// would not hold one atomic batch.
const (
	minRetentionAge   = time.Minute
	minRetentionBytes = 1 << 20
)

func checkRetention(ps *problems, path string, maxAge Duration, maxBytes ByteSize) {
	if maxAge != 0 && maxAge.D() < minRetentionAge {
		ps.add(join(path, "maxAge"), "must be 0 (keep forever) or at least %s, got %s", minRetentionAge, maxAge)
	}
	if maxBytes != 0 && maxBytes < minRetentionBytes {
		ps.add(join(path, "maxBytes"), "must be 0 (no limit) or at least 1MiB, got %d bytes", int64(maxBytes))
	}
}

// normTable strips the default schema so "public.orders" equals "orders".
func normTable(t string) string { return strings.TrimPrefix(t, "public.") }

// validateLimits checks the batch size and the in-flight bound against the
// bus's largest atomic batch (nats.maxBatch), which also gives the batch
// size its default.
func (p *PostgresSource) validateLimits(ps *problems, path string, maxBatch int) {
	batch := p.Batch.MaxMessages
	if batch == 0 {
		batch = maxBatch
	}
	if batch > maxBatch {
		ps.add(join(path, "batch.maxMessages"), "%d is above nats.maxBatch (%d), the largest atomic batch the servers accept", batch, maxBatch)
	}
	if p.MaxInFlight > 0 && p.MaxInFlight < batch {
		ps.add(join(path, "maxInFlight"), "%d is less than batch.maxMessages (%d)", p.MaxInFlight, batch)
	}
}

func (p *PostgresSource) validate(ps *problems, path string, src *Source) {
	if p.ConnectionString != "" {
		var both []string
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"host", p.Host != ""}, {"port", p.Port != 0}, {"database", p.Database != ""},
			{"user", p.User != ""}, {"password", p.Password != ""}, {"sslMode", p.SSLMode != ""},
		} {
			if f.set {
				both = append(both, f.name)
			}
		}
		if len(both) > 0 {
			ps.add(join(path, "connectionString"), "cannot be combined with %s: give one or the other", strings.Join(both, ", "))
		}
		if msg := checkConnString(p.ConnectionString); msg != "" {
			ps.add(join(path, "connectionString"), "%s", msg)
		}
	} else {
		if p.Host == "" {
			ps.add(join(path, "host"), "required without connectionString")
		}
		if p.Port < 1 || p.Port > 65535 {
			ps.add(join(path, "port"), "must be between 1 and 65535, got %d", p.Port)
		}
		if p.Database == "" {
			ps.add(join(path, "database"), "required without connectionString")
		}
		oneOf(ps, join(path, "sslMode"), p.SSLMode, sslModes...)
	}

	tables := map[string]bool{}
	if len(p.Tables) == 0 {
		ps.add(join(path, "tables"), "required: list at least one table")
	}
	for i, t := range p.Tables {
		tp := index(join(path, "tables"), i)
		switch {
		case !tableRe.MatchString(t):
			ps.add(tp, "%q is not a table name (want table or schema.table)", t)
		case tables[normTable(t)]:
			ps.add(tp, "duplicate table %q", t)
		}
		tables[normTable(t)] = true
	}
	if !pubRe.MatchString(p.PublicationName) {
		ps.add(join(path, "publicationName"), "%q must be 1-63 letters, digits and '_'", p.PublicationName)
	}
	if !slotRe.MatchString(p.SlotName) {
		msg := fmt.Sprintf("%q must match [a-z0-9_]{1,63}", p.SlotName)
		if p.SlotName == DefaultObjectName(src.ID) {
			msg += " (the default derived from the id; set slotName)"
		}
		ps.add(join(path, "slotName"), "%s", msg)
	}
	oneOf(ps, join(path, "snapshot"), p.Snapshot, SnapshotInitial, SnapshotNever)

	keyed := map[string]bool{}
	for i, tk := range p.TableKeys {
		kp := index(join(path, "tableKeys"), i)
		switch {
		case tk.Table == "":
			ps.add(join(kp, "table"), "required")
		case !tables[normTable(tk.Table)]:
			ps.add(join(kp, "table"), "%q is not in tables", tk.Table)
		case keyed[normTable(tk.Table)]:
			ps.add(join(kp, "table"), "duplicate entry for table %q", tk.Table)
		}
		keyed[normTable(tk.Table)] = true
		if len(tk.KeyColumns) == 0 {
			ps.add(join(kp, "keyColumns"), "required: list at least one column")
		}
		cols := map[string]bool{}
		for j, c := range tk.KeyColumns {
			cp := index(join(kp, "keyColumns"), j)
			switch {
			case c == "":
				ps.add(cp, "empty column name")
			case cols[c]:
				ps.add(cp, "duplicate column %q", c)
			}
			cols[c] = true
		}
	}
	positive(ps, join(path, "heartbeatInterval"), p.HeartbeatInterval)
	positive(ps, join(path, "statusInterval"), p.StatusInterval)
	if p.Batch.MaxMessages < 0 {
		ps.add(join(path, "batch.maxMessages"), "must be at least 1, got %d", p.Batch.MaxMessages)
	}
	if p.Batch.MaxDelay < 0 {
		ps.add(join(path, "batch.maxDelay"), "must not be negative, got %s", p.Batch.MaxDelay)
	}
	if p.MaxInFlight < 0 {
		ps.add(join(path, "maxInFlight"), "must be at least 1, got %d", p.MaxInFlight)
	}
	tp := join(path, "timeouts")
	positive(ps, join(tp, "connect"), p.Timeouts.Connect)
	positive(ps, join(tp, "query"), p.Timeouts.Query)
	positive(ps, join(tp, "snapshot"), p.Timeouts.Snapshot)
	positive(ps, join(tp, "snapshotStep"), p.Timeouts.SnapshotStep)
	positive(ps, join(tp, "stop"), p.Timeouts.Stop)
	positive(ps, join(tp, "idle"), p.Timeouts.Idle)
	if p.Timeouts.Idle > 0 && p.Timeouts.Idle <= p.StatusInterval {
		ps.add(join(tp, "idle"), "%s must be longer than statusInterval (%s), which asks the server for keepalives", p.Timeouts.Idle, p.StatusInterval)
	}
	bp := join(path, "backoff")
	backoffRange(ps, bp, p.Backoff.Initial, p.Backoff.Max)
	if p.Backoff.MaxElapsed < 0 {
		ps.add(join(bp, "maxElapsed"), "must not be negative (0 retries forever), got %s", p.Backoff.MaxElapsed)
	}
}

func (q *Query) validate(ps *problems, path string, ids, sourceIDs map[string]bool, haveSources bool) {
	checkID(ps, join(path, "id"), q.ID, "query", ids)
	if q.QueryLanguage != LanguageCypher {
		ps.add(join(path, "queryLanguage"), "%q is not supported (want %s)", q.QueryLanguage, LanguageCypher)
	}
	if len(q.Sources) == 0 {
		ps.add(join(path, "sources"), "required: list at least one {sourceId: ...}")
	}
	seen := map[string]bool{}
	for i, s := range q.Sources {
		sp := join(index(join(path, "sources"), i), "sourceId")
		switch {
		case s.SourceID == "":
			ps.add(sp, "required")
		case seen[s.SourceID]:
			ps.add(sp, "duplicate source %q", s.SourceID)
		case haveSources && !sourceIDs[s.SourceID]:
			ps.add(sp, "no source with id %q in sources", s.SourceID)
		}
		seen[s.SourceID] = true
	}
	for i, j := range q.Joins {
		jp := index(join(path, "joins"), i)
		if !identRe.MatchString(j.ID) {
			if j.ID == "" {
				ps.add(join(jp, "id"), "required")
			} else {
				ps.add(join(jp, "id"), "%q must be letters, digits and '_', not starting with a digit", j.ID)
			}
		}
		if len(j.Keys) != 2 {
			ps.add(join(jp, "keys"), "must have exactly two {label, property} entries, got %d", len(j.Keys))
		}
		for k, key := range j.Keys {
			kp := index(join(jp, "keys"), k)
			if key.Label == "" {
				ps.add(join(kp, "label"), "required")
			}
			if key.Property == "" {
				ps.add(join(kp, "property"), "required")
			}
		}
	}
	for _, name := range sortedKeys(q.Parameters) {
		if !identRe.MatchString(name) {
			ps.add(join(join(path, "parameters"), name), "parameter name must be letters, digits and '_', not starting with a digit")
		}
	}
	if strings.TrimSpace(q.Query) == "" {
		ps.add(join(path, "query"), "required: the Cypher text")
	}
}

func (l *LogReaction) validate(ps *problems, path string, _ *Reaction) {
	oneOf(ps, join(path, "format"), l.Format, "json", "text")
	for _, t := range []struct{ key, text string }{{"added", l.Templates.Added}, {"updated", l.Templates.Updated}, {"deleted", l.Templates.Deleted}} {
		if t.text == "" {
			continue
		}
		if _, err := ParseRowTemplate(t.text); err != nil {
			ps.add(join(join(path, "templates"), t.key), "%v", err)
		}
	}
	switch {
	case l.File == "" && l.Sync != "":
		ps.add(join(path, "sync"), "only allowed with file")
	case l.Sync != "": // "" is the default, always
		oneOf(ps, join(path, "sync"), l.Sync, LogSyncAlways, LogSyncNone)
	}
}

func (r *RetryConfig) validate(ps *problems, path string) {
	backoffRange(ps, path, r.Initial, r.Max)
	if r.MaxDeliver < 1 {
		ps.add(join(path, "maxDeliver"), "must be at least 1, got %d", r.MaxDeliver)
	}
}

func (h *HTTPReaction) validate(ps *problems, path string, r *Reaction) {
	bp := join(path, "baseUrl")
	if h.BaseURL == "" {
		ps.add(bp, "required: an absolute http:// or https:// URL")
	} else if u, err := url.Parse(h.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add(bp, "must be an absolute http:// or https:// URL")
	}
	positive(ps, join(path, "timeout"), h.Timeout)
	headerNames(ps, join(path, "headers"), h.Headers)
	if h.TLS != nil && (h.TLS.Cert == "") != (h.TLS.Key == "") {
		ps.add(join(path, "tls"), "cert and key must be given together")
	}
	queries := map[string]bool{}
	for _, q := range r.Queries {
		queries[q] = true
	}
	for _, qid := range sortedKeys(h.Routes) {
		rp := join(join(path, "routes"), qid)
		if !queries[qid] {
			ps.add(rp, "query %q is not in this reaction's queries", qid)
		}
		route := h.Routes[qid]
		if route.Added == nil && route.Updated == nil && route.Deleted == nil {
			ps.add(rp, "set at least one of added, updated, deleted")
		}
		for _, c := range []struct {
			name string
			call *HTTPCall
		}{{"added", route.Added}, {"updated", route.Updated}, {"deleted", route.Deleted}} {
			if c.call == nil {
				continue
			}
			cp := join(rp, c.name)
			if !strings.HasPrefix(c.call.Path, "/") {
				ps.add(join(cp, "path"), "required, starting with /")
			}
			oneOf(ps, join(cp, "method"), c.call.Method, httpMethods...)
			headerNames(ps, join(cp, "headers"), c.call.Headers)
			if _, err := ParseRowTemplate(c.call.Body); err != nil {
				ps.add(join(cp, "body"), "%v", err)
			}
		}
	}
	h.Retry.validate(ps, join(path, "retry"))
}

func (p *PostgresReaction) validate(ps *problems, path string, _ *Reaction) {
	if p.Connection == "" {
		ps.add(join(path, "connection"), "required: a postgres:// URL or key=value connection string")
	} else if msg := checkConnString(p.Connection); msg != "" {
		ps.add(join(path, "connection"), "%s", msg)
	}
	if strings.TrimSpace(p.Added+p.Updated+p.Deleted) == "" {
		ps.add(path, "set at least one of added, updated, deleted (SQL statements)")
	}
	if !tableRe.MatchString(p.OffsetTable) {
		ps.add(join(path, "offsetTable"), "%q must be a table name, table or schema.table", p.OffsetTable)
	}
	positive(ps, join(path, "timeout"), p.Timeout)
	p.Retry.validate(ps, join(path, "retry"))
}

func (n *NATSReaction) validate(ps *problems, path string, _ *Reaction) {
	if strings.TrimSpace(n.Subject) == "" {
		ps.add(join(path, "subject"), "required: a subject, e.g. out.{{.query}}")
	} else if _, err := ParseRowTemplate(n.Subject); err != nil {
		ps.add(join(path, "subject"), "%v", err)
	}
	oneOf(ps, join(path, "mode"), n.Mode, NATSModeJetStream, NATSModeCore)
	positive(ps, join(path, "timeout"), n.Timeout)
}

func headerNames(ps *problems, path string, headers map[string]string) {
	for _, name := range sortedKeys(headers) {
		if !headerNameRe.MatchString(name) {
			ps.add(join(path, name), "not a valid HTTP header name")
		}
	}
}

func (s *SSEReaction) validate(ps *problems, path string, _ *Reaction) {
	if s.Listen == "" {
		ps.add(join(path, "listen"), "required: host:port to serve on")
	} else if _, port, err := net.SplitHostPort(s.Listen); err != nil || port == "" {
		ps.add(join(path, "listen"), "%q is not host:port", s.Listen)
	}
	if !strings.HasPrefix(s.Path, "/") {
		ps.add(join(path, "path"), "%q must start with /", s.Path)
	} else if strings.Trim(s.Path, "/") == "" {
		ps.add(join(path, "path"), "%q: the page is served at /; give the streams a path of their own, e.g. /events", s.Path)
	}
}

// sortProblems orders problems by position; those without one keep their
// order after the rest.
func sortProblems(list []Problem) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
