package reaction_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tributary/tributary/internal/testwait"
	"github.com/tributary/tributary/pkg/change"
)

// chromiumPath is where Debian's chromium package (scripts/install-deps.sh)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium for the test and returns a tab's
// context; both end at cleanup. A missing browser fails the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is required for the live page test: %v (run scripts/install-deps.sh)", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser process to exit
	})
	// Start the browser now (with this context, which has no timeout: the
	// first Run's context bounds the browser's life), so that a failure
	// shows here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting headless Chromium: %v", err)
	}
	return ctx
}

// pageTable is a query's table as the page shows it.
type pageTable struct {
	Query string     `json:"query"`
	Seq   string     `json:"seq"`
	Head  []string   `json:"head"`
	Rows  [][]string `json:"rows"`
}

const readTables = `JSON.stringify([...document.querySelectorAll("table.result")].map(t => ({
	query: t.dataset.query,
	seq: t.dataset.seq,
	head: [...t.tHead.rows[0].cells].map(c => c.textContent),
	rows: [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent)),
})))`

func tables(ctx context.Context) (map[string]pageTable, error) {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](readTables))
	if err != nil {
		return nil, err
	}
	var ts []pageTable
	if err := json.Unmarshal([]byte(raw), &ts); err != nil {
		return nil, err
	}
	out := map[string]pageTable{}
	for _, t := range ts {
		out[t.Query] = t
	}
	return out, nil
}

// waitTable waits until the page shows want for its query.
func waitTable(t *testing.T, ctx context.Context, want pageTable) {
	t.Helper()
	var last pageTable
	testwait.UntilErr(ctx, t, 15*time.Second, fmt.Sprintf("the page to show %+v", want), func() (bool, error) {
		ts, err := tables(ctx)
		if err != nil {
			return false, err
		}
		last = ts[want.Query]
		if reflect.DeepEqual(last, want) {
			return true, nil
		}
		return false, fmt.Errorf("page shows %+v", last)
	})
}

func snapshotsSeen(t *testing.T, ctx context.Context) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.body.dataset.snapshots || 0)`))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The live page in a real browser: it shows the result set present when it
// loads, follows inserts, updates (in place) and deletes, and is right
// again after its stream is cut and it reconnects.
func TestSSELivePageInHeadlessChromium(t *testing.T) {
	s := newSSE(t, []string{"orders", "drivers"})
	ctx := t.Context()
	react := func(r *change.Result) {
		t.Helper()
		if err := s.React(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	head := []string{"id", "item", "status"}
	row := func(id int, item, status string) change.Row {
		return change.Row{"id": id, "item": item, "status": status}
	}
	// Results before the page loads: it must start from them.
	react(&change.Result{Query: "orders", Seq: 1, Added: []change.Row{row(1, "tea", "new"), row(2, "cake", "new")}})

	tab := browser(t)
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+s.Addr()+"/")); err != nil {
		t.Fatal(err)
	}
	waitTable(t, tab, pageTable{Query: "orders", Seq: "1", Head: head, Rows: [][]string{{"1", "tea", "new"}, {"2", "cake", "new"}}})
	waitTable(t, tab, pageTable{Query: "drivers", Seq: "0", Head: []string{}, Rows: [][]string{}})

	// Insert.
	react(&change.Result{Query: "orders", Seq: 2, Added: []change.Row{row(3, "soup", "new")}})
	waitTable(t, tab, pageTable{Query: "orders", Seq: "2", Head: head, Rows: [][]string{{"1", "tea", "new"}, {"2", "cake", "new"}, {"3", "soup", "new"}}})
	// Update: the row keeps its place.
	react(&change.Result{Query: "orders", Seq: 3, Updated: []change.RowUpdate{{Before: row(1, "tea", "new"), After: row(1, "tea", "ready")}}})
	waitTable(t, tab, pageTable{Query: "orders", Seq: "3", Head: head, Rows: [][]string{{"1", "tea", "ready"}, {"2", "cake", "new"}, {"3", "soup", "new"}}})
	// Delete, and another query's first rows (new columns).
	react(&change.Result{Query: "orders", Seq: 4, Deleted: []change.Row{row(2, "cake", "new")}})
	react(&change.Result{Query: "drivers", Seq: 1, Added: []change.Row{{"driver": "ann", "orders": 2}}})
	waitTable(t, tab, pageTable{Query: "orders", Seq: "4", Head: head, Rows: [][]string{{"1", "tea", "ready"}, {"3", "soup", "new"}}})
	waitTable(t, tab, pageTable{Query: "drivers", Seq: "1", Head: []string{"driver", "orders"}, Rows: [][]string{{"ann", "2"}}})

	// Cut the stream; results applied while the page is away show after
	// it reconnects (it starts again from a snapshot).
	before := snapshotsSeen(t, tab)
	if n := s.DropClients(); n != 1 {
		t.Fatalf("dropped %d clients, want the page's 1", n)
	}
	react(&change.Result{Query: "orders", Seq: 5,
		Added:   []change.Row{row(4, "pie", "new")},
		Updated: []change.RowUpdate{{Before: row(3, "soup", "new"), After: row(3, "soup", "ready")}},
		Deleted: []change.Row{row(1, "tea", "ready")}})
	react(&change.Result{Query: "drivers", Seq: 2, Updated: []change.RowUpdate{{Before: change.Row{"driver": "ann", "orders": 2}, After: change.Row{"driver": "ann", "orders": 3}}}})
	testwait.Until(t, 15*time.Second, "the page to reconnect", func() bool { return snapshotsSeen(t, tab) > before })
	waitTable(t, tab, pageTable{Query: "orders", Seq: "5", Head: head, Rows: [][]string{{"3", "soup", "ready"}, {"4", "pie", "new"}}})
	waitTable(t, tab, pageTable{Query: "drivers", Seq: "2", Head: []string{"driver", "orders"}, Rows: [][]string{{"ann", "3"}}})
}
