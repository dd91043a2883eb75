package queryservice_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/streams"
)

func TestCheckNamesUndeclaredSourcesBadQueriesAndUnreadableLabels(t *testing.T) {
	cfg, err := config.Parse([]byte(`
sources:
  - {kind: postgres, id: shop, database: d, tables: [orders, public.drivers]}
  - {kind: external, id: sensors}
queries:
  - id: typo-label
    sources: [{sourceId: shop}]
    joins: [{id: LINK, keys: [{label: orders, property: d}, {label: drivers, property: id}]}]
    query: MATCH (o:order)-[:LINK]->(d:drivers) RETURN o.id AS id
  - id: external-any-label
    sources: [{sourceId: sensors}]
    query: MATCH (r:rooms) RETURN r.id AS id
  - id: broken
    sources: [{sourceId: sensors}]
    query: MATCH (r:rooms) RETURN frobnicate(r.id) AS id
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	problems, warnings := queryservice.Check(cfg)
	if problems == nil || !strings.Contains(problems.Error(), "frobnicate") || errors.Is(problems, queryservice.ErrUndeclaredSource) {
		t.Fatalf("problems: %v", problems)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `query "typo-label" reads order,`) || !strings.Contains(warnings[0], "tables: drivers, orders") {
		t.Fatalf("warnings: %q", warnings)
	}
	cfg.Sources = cfg.Sources[:1]
	if err := queryservice.CheckSources(cfg); !errors.Is(err, queryservice.ErrUndeclaredSource) || !strings.Contains(err.Error(), `"sensors"`) {
		t.Fatalf("CheckSources: %v", err)
	}
}

func TestFiltersAreTheLabelsOfEachSource(t *testing.T) {
	topo, err := streams.Default("tributary", streams.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := queryservice.Filters(topo, []string{"shop", "a.b"}, engine.Inputs{Labels: []string{"orders", "sales.items"}})
	want := []string{"tributary.changes.shop.orders.>", "tributary.changes.shop.sales%2Eitems.>",
		"tributary.changes.a%2Eb.orders.>", "tributary.changes.a%2Eb.sales%2Eitems.>"}
	if !slices.Equal(got, want) {
		t.Fatalf("filters %v, want %v", got, want)
	}
	if got := queryservice.Filters(topo, []string{"shop"}, engine.Inputs{Labels: []string{"x"}, All: true}); !slices.Equal(got, []string{"tributary.changes.shop.>"}) {
		t.Fatalf("filters of a query that reads every label: %v", got)
	}
}
