package queryservice

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/engine"
)

// ErrUndeclaredSource: a query names a source id that the config's sources
// do not declare (a typo, or another producer that needs a source of kind
// external).
var ErrUndeclaredSource = errors.New("query reads an undeclared source")

// Spec converts a configured query into the engine's spec.
func Spec(q config.Query) engine.QuerySpec {
	spec := engine.QuerySpec{ID: q.ID, Query: q.Query, Parameters: q.Parameters}
	for _, j := range q.Joins {
		join := engine.Join{ID: j.ID}
		for _, k := range j.Keys {
			join.Keys = append(join.Keys, engine.JoinKey{Label: k.Label, Property: k.Property})
		}
		spec.Joins = append(spec.Joins, join)
	}
	return spec
}

// SourceIDs are the source ids a configured query reads.
func SourceIDs(q config.Query) []string {
	ids := make([]string, len(q.Sources))
	for i, s := range q.Sources {
		ids[i] = s.SourceID
	}
	return ids
}

// Check is what query-engine checks beyond the file's validation, for
// every query: each source it names is declared in sources (ErrUndeclaredSource,
// naming the query and the id), and its text compiles (engine.New's error,
// with line and column). Every problem is returned, joined. The warnings
// say what cannot be wrong for sure but probably is: a query that reads a
// label that none of its sources can produce (all of them postgres sources
// that do not capture a table of that name) never sees it.
func Check(cfg *config.Config) (problems error, warnings []string) {
	srcs := sources(cfg)
	errs := []error{CheckSources(cfg)}
	for _, q := range cfg.Queries {
		eng, err := engine.New(Spec(q))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if w := labelWarning(q, eng.Inputs(), srcs); w != "" {
			warnings = append(warnings, w)
		}
	}
	return errors.Join(errs...), warnings
}

// CheckSources returns an error (wrapping ErrUndeclaredSource) for every
// source id a query names that sources does not declare, joined.
func CheckSources(cfg *config.Config) error {
	srcs := sources(cfg)
	var errs []error
	for _, q := range cfg.Queries {
		for _, id := range SourceIDs(q) {
			if srcs[id] == nil {
				errs = append(errs, fmt.Errorf("%w: query %q reads source %q, which sources does not declare "+
					"(declare it: kind postgres to capture a database, kind external for another producer)", ErrUndeclaredSource, q.ID, id))
			}
		}
	}
	return errors.Join(errs...)
}

func sources(cfg *config.Config) map[string]*config.Source {
	srcs := map[string]*config.Source{}
	for i := range cfg.Sources {
		srcs[cfg.Sources[i].ID] = &cfg.Sources[i]
	}
	return srcs
}

// labelWarning names the labels q reads that no postgres source of q
// captures, when all of q's sources are postgres sources (an external
// producer may publish any label). Join ids are synthetic relation types,
// never published.
func labelWarning(q config.Query, in engine.Inputs, srcs map[string]*config.Source) string {
	tables := map[string]bool{}
	for _, id := range SourceIDs(q) {
		s := srcs[id]
		if s == nil || s.Postgres() == nil {
			return ""
		}
		for _, t := range s.Postgres().Tables {
			tables[strings.TrimPrefix(t, "public.")] = true
		}
	}
	var missing []string
	for _, l := range in.Labels {
		if !tables[l] && !slices.ContainsFunc(q.Joins, func(j config.Join) bool { return j.ID == l }) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("query %q reads %s, which none of its sources captures (tables: %s)",
		q.ID, strings.Join(missing, ", "), strings.Join(slices.Sorted(maps.Keys(tables)), ", "))
}
