package pgsource

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
)

// Schema changes while the source streams: pgoutput describes a table
// again (a Relation message) before its next change, and the envelopes
// follow the new shape. A renamed table is the same table (the publication
// holds it by OID): its changes keep coming under the configured label,
// never dropped because the name in the WAL no longer matches.
func TestSchemaChangesWhileStreaming(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE sc (id int PRIMARY KEY, v int, gone text)`)
	cfg := e.config("schema", "sc")
	cfg.Snapshot = SnapshotNever
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	steps := []string{
		`INSERT INTO sc VALUES (1, 1, 'x')`,
		`ALTER TABLE sc ADD COLUMN added text DEFAULT 'd'`,
		`INSERT INTO sc (id, v) VALUES (2, 2)`,
		`ALTER TABLE sc DROP COLUMN gone`,
		`ALTER TABLE sc ALTER COLUMN v TYPE numeric(10,2)`,
		`UPDATE sc SET v = 2.5 WHERE id = 2`,
		`ALTER TABLE sc RENAME TO sc_renamed`,
		`INSERT INTO sc_renamed (id, v, added) VALUES (3, 3, 'after rename')`,
		`ALTER TABLE sc_renamed RENAME COLUMN added TO extra`,
		`DELETE FROM sc_renamed WHERE id = 1`,
	}
	for _, s := range steps {
		e.exec(s)
	}
	want := []string{
		`insert sc:1 map[gone:x id:1 v:1]`,
		`insert sc:2 map[added:d gone:<nil> id:2 v:2]`,
		`update sc:2 map[added:d id:2 v:2.50]`,
		`insert sc:3 map[added:after rename id:3 v:3.00]`,
		`delete sc:1 map[id:1]`,
	}
	testwait.Until(t, 20*time.Second, "every change", func() bool { return e.streamCount() >= uint64(len(want)) })
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	var got []string
	for _, m := range msgs {
		props := m.env.Element.Properties
		if m.env.Op == "delete" {
			props = m.env.Before
		}
		got = append(got, fmt.Sprintf("%s %s %v", m.env.Op, m.env.Element.ID, props))
		if l := m.env.Element.Labels; len(l) != 1 || l[0] != "sc" {
			t.Errorf("%s %s has labels %v, want [sc]", m.env.Op, m.env.Element.ID, l)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream holds\n%v\nwant\n%v", got, want)
	}

	// A change the key can no longer be read from stops the source with
	// the reason, before anything of that transaction is published.
	e.exec(`ALTER TABLE sc_renamed DROP COLUMN id`)
	e.exec(`INSERT INTO sc_renamed (v) VALUES (4)`)
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), `key column "id" of table public.sc is no longer in the table`) {
			t.Fatalf("after the key column was dropped: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the source still runs after its key column was dropped")
	}
	if n := e.streamCount(); n != uint64(len(want)) {
		t.Fatalf("the stream holds %d changes after the failure, want %d", n, len(want))
	}
}

// Tables whose changes stop being captured while the source streams are
// reported, since pgoutput itself says nothing: one removed from the
// publication, one dropped, one dropped and created again (the new table is
// not in a FOR TABLE publication). A renamed table is still captured and is
// not reported. Once the publication holds a table again the report clears,
// and the new table's changes arrive.
func TestUncapturedTablesAreReported(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE ua (id int PRIMARY KEY); CREATE TABLE ub (id int PRIMARY KEY);
		CREATE TABLE uc (id int PRIMARY KEY); CREATE TABLE ud (id int PRIMARY KEY)`)
	cfg := e.config("uncaptured", "ua", "ub", "uc", "ud")
	cfg.Snapshot = SnapshotNever
	cfg.HeartbeatInterval = 100 * time.Millisecond
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })
	pub := cfg.PublicationName

	e.exec(`ALTER PUBLICATION ` + pub + ` DROP TABLE ua`)
	e.exec(`DROP TABLE ub`)
	e.exec(`DROP TABLE uc; CREATE TABLE uc (id int PRIMARY KEY)`)
	e.exec(`ALTER TABLE ud RENAME TO ud_renamed`)
	want := []string{
		"table public.ua left publication " + pub,
		"table public.ub was dropped",
		"table public.uc was dropped and created again: the new table is not in publication " + pub,
	}
	matches := func(got, want []string) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if !strings.HasPrefix(got[i], want[i]) {
				return false
			}
		}
		return true
	}
	testwait.Until(t, 20*time.Second, "the three uncaptured tables reported", func() bool {
		return matches(r.src.Status().Uncaptured, want)
	})
	if st := r.src.Status(); st.State != StateStreaming {
		t.Fatalf("state %s while tables are uncaptured, want streaming (the others are captured)", st.State)
	}

	e.exec(`ALTER PUBLICATION ` + pub + ` ADD TABLE ua, uc`)
	testwait.Until(t, 20*time.Second, "only the dropped table still reported", func() bool {
		return matches(r.src.Status().Uncaptured, want[1:2])
	})
	e.exec(`INSERT INTO uc VALUES (1); INSERT INTO ud_renamed VALUES (1)`)
	testwait.Until(t, 20*time.Second, "the new table's change and the renamed table's", func() bool { return e.streamCount() >= 2 })
	var got []string
	for _, m := range e.messages() {
		got = append(got, string(m.env.Op)+" "+m.env.Element.ID)
	}
	if fmt.Sprint(got) != "[insert uc:1 insert ud:1]" {
		t.Fatalf("stream holds %v, want the insert into the new uc and the renamed ud", got)
	}
}
