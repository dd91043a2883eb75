package config

import "sort"

// SourceSpec is the kind-specific part of a source. Implementations live in
// this package (one struct per kind) and are registered in sourceKinds.
type SourceSpec interface {
	// SourceKind returns the kind the spec is registered under.
	SourceKind() string
	// applyDefaults fills zero fields; id is the source's id.
	applyDefaults(id string)
	// validate reports the spec's problems under path (the source's path).
	validate(ps *problems, path string, src *Source)
}

// ReactionSpec is the kind-specific part of a reaction. Implementations live
// in this package (one struct per kind) and are registered in reactionKinds.
type ReactionSpec interface {
	// ReactionKind returns the kind the spec is registered under.
	ReactionKind() string
	// applyDefaults fills zero fields.
	applyDefaults()
	// validate reports the spec's problems under path (the reaction's path).
	validate(ps *problems, path string, r *Reaction)
}

// sourceKinds maps sources[].kind to a constructor of its spec.
var sourceKinds = map[string]func() SourceSpec{
	KindPostgres: func() SourceSpec { return new(PostgresSource) },
	KindExternal: func() SourceSpec { return new(ExternalSource) },
}

// reactionKinds maps reactions[].kind to a constructor of its spec.
var reactionKinds = map[string]func() ReactionSpec{
	ReactionLog:      func() ReactionSpec { return new(LogReaction) },
	ReactionHTTP:     func() ReactionSpec { return new(HTTPReaction) },
	ReactionPostgres: func() ReactionSpec { return new(PostgresReaction) },
	ReactionSSE:      func() ReactionSpec { return new(SSEReaction) },
	ReactionNATS:     func() ReactionSpec { return new(NATSReaction) },
}

// kindedHolder is implemented by structs whose remaining keys are decoded
// into a spec chosen by their "kind" key.
type kindedHolder interface {
	newSpec(kind string) (spec any, ok bool)
	setSpec(spec any)
	knownKinds() []string
}

func (s *Source) newSpec(kind string) (any, bool) {
	f, ok := sourceKinds[kind]
	if !ok {
		return nil, false
	}
	return f(), true
}

func (s *Source) setSpec(spec any) { s.Spec = spec.(SourceSpec) }

func (s *Source) knownKinds() []string { return sortedKeys(sourceKinds) }

func (r *Reaction) newSpec(kind string) (any, bool) {
	f, ok := reactionKinds[kind]
	if !ok {
		return nil, false
	}
	return f(), true
}

func (r *Reaction) setSpec(spec any) { r.Spec = spec.(ReactionSpec) }

func (r *Reaction) knownKinds() []string { return sortedKeys(reactionKinds) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
