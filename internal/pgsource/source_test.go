package pgsource

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/change"
)

const allTypesDDL = `
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE alltypes (
	id bigint PRIMARY KEY,
	i2 smallint, i4 integer, f4 real, f8 double precision, f8nan double precision,
	num numeric, numinf numeric, b boolean, t text, vc varchar(10), ch char(3), u uuid,
	m mood, d posint, j json, jb jsonb, ba bytea, dt date, ts timestamp, tstz timestamptz,
	tm time, iv interval, ia integer[], ta text[], ma mood[], na numeric[], nul text
)`

const allTypesValues = `-32768, 2147483647, 1.5, 1.0000000000000002, 'NaN',
	12345678901234567890.123456789012345678, 'Infinity', true, 'héllo "x"', 'abc', 'ab',
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 7, '{"a": [1, 2.50]}', '{"b": {"c": null}}',
	'\xdeadbeef', '2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.5+02',
	'13:14:15', '1 day 02:03:04', '{1,NULL,3}', '{"a,b",NULL,"c\"d"}', '{sad,happy}',
	'{{1.5,2},{3,4}}', NULL`

// allTypesJSON is the documented JSON of every column of allTypesValues.
var allTypesJSON = map[string]string{
	"i2": `-32768`, "i4": `2147483647`, "f4": `1.5`, "f8": `1.0000000000000002`, "f8nan": `"NaN"`,
	"num": `12345678901234567890.123456789012345678`, "numinf": `"Infinity"`, "b": `true`,
	"t": `"héllo \"x\""`, "vc": `"abc"`, "ch": `"ab "`, "u": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
	"m": `"happy"`, "d": `7`, "j": `{"a":[1,2.50]}`, "jb": `{"b":{"c":null}}`, "ba": `"3q2+7w=="`,
	"dt": `"2024-02-29"`, "ts": `"2024-02-29T13:14:15.123456Z"`, "tstz": `"2024-02-29T11:14:15.5Z"`,
	"tm": `"13:14:15"`, "iv": `"1 day 02:03:04"`, "ia": `[1,null,3]`, "ta": `["a,b",null,"c\"d"]`,
	"ma": `["sad","happy"]`, "na": `[[1.5,2],[3,4]]`, "nul": `null`,
}

// TestEveryTypeRoundTrips: a row read by the snapshot and the same row
// streamed give the documented JSON for every type.
func TestEveryTypeRoundTrips(t *testing.T) {
	e := newEnv(t)
	e.exec(allTypesDDL)
	e.exec(`INSERT INTO alltypes VALUES (1, ` + allTypesValues + `)`)
	r := e.start(e.config("types", "alltypes"))
	testwait.Until(t, 20*time.Second, "the snapshot row", func() bool { return e.streamCount() >= 2 })
	e.exec(`INSERT INTO alltypes VALUES (2, ` + allTypesValues + `)`)
	testwait.Until(t, 20*time.Second, "the streamed row", func() bool { return e.streamCount() >= 3 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != 3 {
		t.Fatalf("got %d messages, want truncate + 2 inserts", len(msgs))
	}
	if m := msgs[0]; m.env.Op != change.OpTruncate || m.subject != "trib.changes.types.alltypes.%truncate" {
		t.Fatalf("first message = %s on %s, want the snapshot's truncate", m.env.Op, m.subject)
	}
	for i, m := range msgs[1:] {
		id := fmt.Sprint(i + 1)
		if m.env.Op != change.OpInsert || m.env.Element.ID != "alltypes:"+id || m.subject != "trib.changes.types.alltypes."+id {
			t.Fatalf("message %d: %s %s on %s", m.seq, m.env.Op, m.env.Element.ID, m.subject)
		}
		props := m.env.Element.Properties
		if len(props) != len(allTypesJSON)+1 {
			t.Errorf("row %s: %d properties, want %d", id, len(props), len(allTypesJSON)+1)
		}
		for col, want := range allTypesJSON {
			got, err := json.Marshal(props[col])
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := props[col]; !ok || string(got) != want {
				t.Errorf("row %s column %s = %s, want %s", id, col, got, want)
			}
		}
		if got := fmt.Sprint(props["id"]); got != id {
			t.Errorf("row %s: id = %s", id, got)
		}
	}
	snapLSN, _, _ := change.ParsePGPosition(msgs[1].env.Position)
	streamLSN, _, _ := change.ParsePGPosition(msgs[2].env.Position)
	if snapLSN >= streamLSN {
		t.Errorf("snapshot position %s is not before the streamed one %s", msgs[1].env.Position, msgs[2].env.Position)
	}
}

// TestChangesArriveOnceInCommitOrder: inserts, updates (with unchanged
// TOAST values and key changes), deletes, truncates and multi-row statements
// in mixed transactions reach the stream once each, in commit order, with
// positions (commit LSN, index).
func TestChangesArriveOnceInCommitOrder(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE a (id int PRIMARY KEY, v int, big text);
		CREATE TABLE b (k1 text, k2 int, v text, PRIMARY KEY (k1, k2));
		ALTER TABLE b REPLICA IDENTITY FULL;
		CREATE SCHEMA s2; CREATE TABLE s2.c (id int PRIMARY KEY, v int);
		CREATE TABLE ignored (id int PRIMARY KEY)`)
	cfg := e.config("mixed", "a", "b", "s2.c")
	cfg.Snapshot = SnapshotNever
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	big := strings.Repeat("x", 1) + randomText(20000) // stored out of line (TOAST)
	steps := []string{
		`INSERT INTO a SELECT g, g, NULL FROM generate_series(1, 5) g`,
		`BEGIN; INSERT INTO b VALUES ('p.q', 1, 'one'); UPDATE a SET v = 10 WHERE id = 1; INSERT INTO ignored VALUES (1); DELETE FROM a WHERE id = 2; COMMIT`,
		`UPDATE a SET big = '` + big + `' WHERE id = 3`,
		`UPDATE a SET v = 33 WHERE id = 3`,
		`UPDATE a SET id = 30 WHERE id = 3`,
		`BEGIN; UPDATE b SET v = 'uno' WHERE k1 = 'p.q'; INSERT INTO s2.c VALUES (1, 1); TRUNCATE a; COMMIT`,
		`DELETE FROM b`,
	}
	for _, s := range steps {
		e.exec(s)
	}
	type want struct {
		op, id string
		check  func(*change.Envelope) error
	}
	wants := []want{
		{"insert", "a:1", nil}, {"insert", "a:2", nil}, {"insert", "a:3", nil}, {"insert", "a:4", nil}, {"insert", "a:5", nil},
		{"insert", "b:p.q_1", nil},
		{"update", "a:1", func(env *change.Envelope) error {
			if fmt.Sprint(env.Element.Properties["v"]) != "10" || env.Before != nil {
				return fmt.Errorf("properties %v before %v", env.Element.Properties, env.Before)
			}
			return nil
		}},
		{"delete", "a:2", func(env *change.Envelope) error {
			if fmt.Sprint(env.Before) != "map[id:2]" {
				return fmt.Errorf("before %v, want only the key", env.Before)
			}
			return nil
		}},
		{"update", "a:3", func(env *change.Envelope) error {
			if len(env.Element.Properties["big"].(string)) != len(big) {
				return fmt.Errorf("big not carried")
			}
			return nil
		}},
		{"update", "a:3", func(env *change.Envelope) error {
			if _, ok := env.Element.Properties["big"]; ok || len(env.Unchanged) != 1 || env.Unchanged[0] != "big" {
				return fmt.Errorf("unchanged TOAST column: properties %v unchanged %v", env.Element.Properties, env.Unchanged)
			}
			return nil
		}},
		{"delete", "a:3", nil},
		{"update", "a:30", func(env *change.Envelope) error {
			if fmt.Sprint(env.Unchanged) != "[big]" || fmt.Sprint(env.Element.Properties["v"]) != "33" {
				return fmt.Errorf("key change with unchanged TOAST: %v unchanged %v", env.Element.Properties, env.Unchanged)
			}
			return nil
		}},
		{"update", "b:p.q_1", func(env *change.Envelope) error {
			if env.Before["v"] != "one" || env.Element.Properties["v"] != "uno" {
				return fmt.Errorf("REPLICA IDENTITY FULL update: before %v after %v", env.Before, env.Element.Properties)
			}
			return nil
		}},
		{"insert", "s2.c:1", func(env *change.Envelope) error {
			if env.Element.Labels[0] != "s2.c" {
				return fmt.Errorf("labels %v", env.Element.Labels)
			}
			return nil
		}},
		{"truncate", "", func(env *change.Envelope) error {
			if fmt.Sprint(env.Element.Labels) != "[a]" {
				return fmt.Errorf("labels %v", env.Element.Labels)
			}
			return nil
		}},
		{"delete", "b:p.q_1", func(env *change.Envelope) error {
			if env.Before["v"] != "uno" {
				return fmt.Errorf("before %v", env.Before)
			}
			return nil
		}},
	}
	testwait.Until(t, 20*time.Second, "every change", func() bool { return e.streamCount() >= uint64(len(wants)) })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != len(wants) {
		for _, m := range msgs {
			t.Logf("%s %s %s", m.env.Position, m.env.Op, m.env.Element.ID)
		}
		t.Fatalf("got %d messages, want %d", len(msgs), len(wants))
	}
	// Changes of one transaction share the commit LSN, with indexes 0..n-1.
	txOf := []int{0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 4, 5, 5, 5, 6}
	var prevLSN uint64
	var idx uint32
	for i, w := range wants {
		env := msgs[i].env
		if string(env.Op) != w.op || env.Element.ID != w.id {
			t.Fatalf("message %d = %s %s, want %s %s", i, env.Op, env.Element.ID, w.op, w.id)
		}
		if env.Source != "mixed" || env.TsMs <= 0 {
			t.Errorf("message %d: source %q ts_ms %d", i, env.Source, env.TsMs)
		}
		if w.check != nil {
			if err := w.check(env); err != nil {
				t.Errorf("message %d (%s %s): %v", i, w.op, w.id, err)
			}
		}
		lsn, index, _ := change.ParsePGPosition(env.Position)
		if i > 0 && txOf[i] == txOf[i-1] {
			idx++
			if lsn != prevLSN || index != idx {
				t.Errorf("message %d: position %s, want the same commit LSN as the previous one and index %d", i, env.Position, idx)
			}
		} else {
			idx = 0
			if index != 0 || lsn <= prevLSN {
				t.Errorf("message %d: position %s, want a later commit LSN with index 0", i, env.Position)
			}
		}
		prevLSN = lsn
	}
}

// randomText returns incompressible text, so that Postgres stores it out of
// line.
func randomText(n int) string {
	var b strings.Builder
	x := uint32(2463534242)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[x%36])
	}
	return b.String()
}

// TestReplicaIdentityFullCompletesUnchangedTOAST: with REPLICA IDENTITY
// FULL the old row carries the TOASTed value the new row leaves out, so
// updates are complete (nothing listed as unchanged) — also when the key
// changes, where there is no previous element to keep the value from.
func TestReplicaIdentityFullCompletesUnchangedTOAST(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE f (id int PRIMARY KEY, v int, big text); ALTER TABLE f REPLICA IDENTITY FULL`)
	cfg := e.config("full", "f")
	cfg.Snapshot = SnapshotNever
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	big := randomText(20000) // stored out of line (TOAST)
	e.exec(`INSERT INTO f VALUES (1, 1, '` + big + `')`)
	e.exec(`UPDATE f SET v = 2 WHERE id = 1`)   // big unchanged
	e.exec(`UPDATE f SET id = 10 WHERE id = 1`) // key change, big unchanged
	testwait.Until(t, 20*time.Second, "four changes", func() bool { return e.streamCount() >= 4 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != 4 {
		t.Fatalf("%d changes, want insert, update, delete, insert", len(msgs))
	}
	for i, want := range []struct{ op, id string }{{"insert", "f:1"}, {"update", "f:1"}, {"delete", "f:1"}, {"insert", "f:10"}} {
		env := msgs[i].env
		if string(env.Op) != want.op || env.Element.ID != want.id {
			t.Fatalf("change %d is %s %s, want %s %s", i, env.Op, env.Element.ID, want.op, want.id)
		}
		if want.op == "delete" {
			continue
		}
		if got, _ := env.Element.Properties["big"].(string); got != big || len(env.Unchanged) != 0 {
			t.Fatalf("change %d (%s %s): big has %d characters, want %d; unchanged %v", i, env.Op, env.Element.ID, len(got), len(big), env.Unchanged)
		}
	}
}
