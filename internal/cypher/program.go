package cypher

// Program is a checked, resolved query: what the engine executes. It is
// immutable and safe for concurrent use.
type Program struct {
	// Query is the resolved AST the parts point into.
	Query *Query
	// Parts are the query parts in order; the last one ends in RETURN.
	Parts []*Part
	// Params are the parameter names the query references ($name), sorted.
	Params []string
	// Columns are the result column names (the RETURN items), in order.
	Columns []string
}

// VarKind is what a variable holds.
type VarKind uint8

// Variable kinds.
const (
	// VarValue is any value (a projected expression).
	VarValue VarKind = iota
	// VarNode is a node element (Element with IsRelation false), or null
	// when bound by OPTIONAL MATCH without a match.
	VarNode
	// VarRelation is a relation element, or null (OPTIONAL MATCH).
	VarRelation
)

func (k VarKind) String() string {
	switch k {
	case VarNode:
		return "node"
	case VarRelation:
		return "relation"
	}
	return "value"
}

// VarInfo describes one slot of a part's row.
type VarInfo struct {
	Name string
	Kind VarKind
	// Anonymous is true for the generated name of an anonymous pattern
	// element; such slots are never visible to expressions but are part of
	// a row's identity.
	Anonymous bool
}

// Part is one query part: MATCH clauses, then a WITH or RETURN projection.
//
// Row layout: Env.Row for every expression of a part (pattern property
// predicates, MATCH WHERE, non-aggregating items, grouping keys and aggregate
// arguments) has len(Vars) slots. Vars[:NumInputs] are the previous part's
// output columns, in its Items order (so the previous output row can be
// copied in as is); then come the pattern variables each MATCH clause
// introduces, named and anonymous, in order of first appearance (each
// Match.NewSlots lists its own). Slots not bound yet are nil.
type Part struct {
	Index     int
	Vars      []VarInfo
	NumInputs int
	Matches   []*Match
	// Items are the projection items, in order; they are the output row.
	Items    []*Item
	Distinct bool
	// Where is the WHERE after WITH (nil when absent). It is evaluated
	// with Env.Row = the output row (Items' values in order).
	Where Expr
	// Return is true for the last part (RETURN).
	Return bool
	// Aggregating is true when some item contains an aggregate call.
	// Then GroupKeys lists the indexes (in Items) of the non-aggregating
	// items, which are the grouping keys, and Aggregates the aggregate
	// calls; with no GroupKeys there is exactly one group.
	Aggregating bool
	GroupKeys   []int
	Aggregates  []*Aggregate
}

// Item is one projection item.
type Item struct {
	// Name is the column name: the alias, or the expression's text.
	Name string
	// Expr is the item's expression. For a non-aggregating item (and for
	// every item of a non-aggregating part) it is evaluated against the
	// part's input row. For an aggregating item it is evaluated per group
	// with Env.Keys (grouping key values, in GroupKeys order) and
	// Env.Aggregates (aggregate results, by Aggregate.Index); it reads no
	// row variables (grouping keys in it are *KeyRef).
	Expr        Expr
	Aggregating bool
	// Kind is VarNode/VarRelation when the item is a bare node or relation
	// variable (it then stays an element in the next part), else VarValue.
	Kind VarKind
}

// AggFunc is an aggregate function.
type AggFunc uint8

// Aggregate functions.
const (
	AggCount AggFunc = iota + 1
	AggSum
	AggAvg
	AggMin
	AggMax
	AggCollect
)

func (f AggFunc) String() string {
	switch f {
	case AggCount:
		return "count"
	case AggSum:
		return "sum"
	case AggAvg:
		return "avg"
	case AggMin:
		return "min"
	case AggMax:
		return "max"
	case AggCollect:
		return "collect"
	}
	return "?"
}

// Aggregate is one aggregate call of an aggregating part. Identical calls
// (same function, DISTINCT and argument text) share one Aggregate.
type Aggregate struct {
	// Index is the position in Part.Aggregates and in Env.Aggregates.
	Index    int
	Func     AggFunc
	Distinct bool
	// Star is count(*): it counts rows, Arg is nil.
	Star bool
	// Arg is evaluated per input row against the part's row. Aggregates
	// skip null values (count(x) counts non-null x).
	Arg Expr
	// Call is the call in the AST (for positions and messages).
	Call *Call
}

// Match is a resolved MATCH or OPTIONAL MATCH clause.
type Match struct {
	Optional bool
	// Nodes are the clause's distinct node variables, in order of first
	// appearance; a variable written several times appears once, with
	// its labels and property predicates merged.
	Nodes []*NodeSlot
	// Rels are the clause's relationship patterns, in order; a relation
	// variable can appear only once in a clause.
	Rels []*RelSlot
	// Where is the clause's WHERE, nil when absent, evaluated against the
	// part's row.
	Where Expr
	// NewSlots are the row slots this clause binds (its nodes and relations
	// that were not bound before it), in order.
	NewSlots []int
	// Clause is the AST clause.
	Clause *MatchClause
}

// NodeSlot is a node variable of a Match.
type NodeSlot struct {
	Slot      int // row index
	Name      string
	Anonymous bool
	// Bound is true when the variable was bound before this clause (an
	// earlier clause of the part or an input column): the clause must
	// match that very element.
	Bound bool
	// Labels is a conjunction of disjunctions (see NodePattern.Labels),
	// merged from every occurrence in the clause.
	Labels [][]string
	// Props must all hold: Property(Key) = Eval(Value) (Cypher =, so a
	// null on either side fails). See Accepts and PropsHold.
	Props []PropertyPredicate
	// PropsReadRow is true when some Props expression reads a row
	// variable (e.g. (b {x: a.x})); otherwise they depend only on
	// parameters and can be checked before anything else is bound.
	PropsReadRow bool
}

// RelSlot is one relationship pattern of a Match.
type RelSlot struct {
	Slot      int // row index
	Name      string
	Anonymous bool
	Bound     bool
	Types     []string // alternatives; empty = any
	Props     []PropertyPredicate
	// PropsReadRow: see NodeSlot.PropsReadRow.
	PropsReadRow bool
	// From and To are the row slots of the endpoint nodes, normalized so
	// that for a directed pattern the relation goes From -> To (a
	// right-to-left arrow is swapped). For an undirected pattern
	// (Directed false) From is the left node and To the right one, and
	// both orientations match.
	From, To int
	Directed bool
}

// Node returns the NodeSlot of row slot slot, or nil.
func (m *Match) Node(slot int) *NodeSlot {
	for _, n := range m.Nodes {
		if n.Slot == slot {
			return n
		}
	}
	return nil
}

// Env is what an expression is evaluated against. The zero value is valid
// (no variables, no parameters, no history). Eval never modifies an Env or
// the slices it points to, so one Env may be reused between calls, but not
// shared by concurrent calls while being refilled.
type Env struct {
	// Row holds the part's row slots (see Part); a Variable with
	// ScopeRow reads Row[Index].
	Row []Value
	// Keys holds a group's grouping key values, in Part.GroupKeys order,
	// for aggregating items (*KeyRef reads Keys[Key]).
	Keys []Value
	// Aggregates holds a group's aggregate results, by Aggregate.Index,
	// for aggregating items.
	Aggregates []Value
	// Params holds the query parameters; a missing parameter is an error.
	Params map[string]Value
	// Host gives element history for drasi.previousValue and
	// drasi.changeDateTime; nil means no history (previousValue yields its
	// default, changeDateTime null).
	Host Host
}

// Host is the engine's side of the element history.
type Host interface {
	// PreviousVersion returns the element's version before its latest
	// change; ok is false when there is none (the element is new).
	PreviousVersion(e Element) (prev Element, ok bool)
	// ChangeTime returns when the element last changed; ok is false when
	// unknown.
	ChangeTime(e Element) (t DateTime, ok bool)
}
