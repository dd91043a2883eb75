package config

// LanguageCypher is the only queries[].queryLanguage.
const LanguageCypher = "Cypher"

// Query is one entry of queries: a continuous query.
type Query struct {
	// ID names the query in subjects and in reactions' queries. Required,
	// unique among queries, a NATS token.
	ID string `yaml:"id"`
	// QueryLanguage is "Cypher" (default, the only value).
	QueryLanguage string `yaml:"queryLanguage"`
	// Sources feeding the query. Required, non-empty; each sourceId must name
	// a source when the file defines sources.
	Sources []QuerySource `yaml:"sources"`
	// Joins turn equal property values into relationships, as in Drasi.
	Joins []Join `yaml:"joins"`
	// Parameters are the query's $name parameters: any YAML scalar, list or
	// map. Names are letters, digits and "_", not starting with a digit.
	Parameters map[string]any `yaml:"parameters"`
	// Query is the Cypher text. Required.
	Query string `yaml:"query"`
}

// QuerySource is one queries[].sources entry.
type QuerySource struct {
	// SourceID names a source. Required; unique within the query.
	SourceID string `yaml:"sourceId"`
}

// Join is one queries[].joins entry: elements with Keys[0].Label and
// Keys[1].Label are related by a relationship of type ID when the two
// properties are equal.
type Join struct {
	// ID is the relationship type used in the query, e.g. ASSIGNED_TO.
	// Required; letters, digits and "_", not starting with a digit.
	ID string `yaml:"id"`
	// Keys are exactly two {label, property} pairs: from, then to.
	Keys []JoinKey `yaml:"keys"`
}

// JoinKey is one side of a join.
type JoinKey struct {
	// Label of the elements on this side (a table name). Required.
	Label string `yaml:"label"`
	// Property compared with the other side's. Required.
	Property string `yaml:"property"`
}
