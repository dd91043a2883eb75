package cypher

import "regexp"

// Expr is an expression node. Parse builds the tree; Compile resolves it in
// place (variables get their slots, function calls their definitions,
// aggregate calls their indexes) and may replace subtrees (grouping keys in
// aggregating items become *KeyRef). Expressions are immutable after Compile
// and safe for concurrent evaluation.
type Expr interface {
	// Position is where the expression starts in the query text.
	Position() Pos
	exprNode()
}

// Literal is a constant: null, boolean, integer, float, string.
type Literal struct {
	Pos   Pos
	Value Value
}

// Param is a query parameter `$name`, read from Env.Params.
type Param struct {
	Pos  Pos
	Name string
}

// VarScope tells where a Variable's value lives at evaluation time.
type VarScope uint8

const (
	// ScopeRow: Env.Row[Index], a slot of the part's row (see Part.Vars).
	ScopeRow VarScope = iota
	// ScopeLocal: the variable of an enclosing list comprehension or
	// quantifier, managed by Eval itself.
	ScopeLocal
)

// Variable is a reference to a variable. After Compile, Scope and Index say
// where its value is.
type Variable struct {
	Pos   Pos
	Name  string
	Scope VarScope
	Index int
}

// Property is `X.Key`: a property of a node, relation or map, or a component
// of a temporal value.
type Property struct {
	Pos Pos
	X   Expr
	Key string
}

// Index is `X[Index]` on a list (negative indexes count from the end) or a
// map (string key).
type Index struct {
	Pos      Pos
	X, Index Expr
}

// Slice is `X[From..To]` on a list; From or To may be nil.
type Slice struct {
	Pos      Pos
	X        Expr
	From, To Expr
}

// UnaryOp is the operator of a Unary expression.
type UnaryOp uint8

// Unary operators.
const (
	OpNot UnaryOp = iota + 1
	OpNeg
	OpPlus
)

// Unary is NOT x, -x, +x.
type Unary struct {
	Pos Pos
	Op  UnaryOp
	X   Expr
}

// BinaryOp is the operator of a Binary expression.
type BinaryOp uint8

// Binary operators.
const (
	OpOr BinaryOp = iota + 1
	OpXor
	OpAnd
	OpEq
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpAdd
	OpSub
	OpMul
	OpDiv
	OpMod
	OpPow
	OpIn
	OpStartsWith
	OpEndsWith
	OpContains
	OpRegex
)

var binaryOpText = [...]string{
	OpOr: "OR", OpXor: "XOR", OpAnd: "AND", OpEq: "=", OpNe: "<>", OpLt: "<", OpLe: "<=",
	OpGt: ">", OpGe: ">=", OpAdd: "+", OpSub: "-", OpMul: "*", OpDiv: "/", OpMod: "%",
	OpPow: "^", OpIn: "IN", OpStartsWith: "STARTS WITH", OpEndsWith: "ENDS WITH",
	OpContains: "CONTAINS", OpRegex: "=~",
}

func (o BinaryOp) String() string {
	if int(o) < len(binaryOpText) {
		return binaryOpText[o]
	}
	return "?"
}

// Binary is a binary operator application.
type Binary struct {
	Pos  Pos
	Op   BinaryOp
	L, R Expr
	re   *regexp.Regexp // OpRegex with a literal pattern, compiled by Analyze
	set  *inSet         // OpIn with a long literal list of scalars, built by Analyze
}

// IsNull is `X IS NULL`, or `X IS NOT NULL` when Not.
type IsNull struct {
	Pos Pos
	X   Expr
	Not bool
}

// HasLabels is the predicate `x:A:B` (the element has every label).
type HasLabels struct {
	Pos    Pos
	X      Expr
	Labels []string
}

// ListLit is `[a, b, ...]`.
type ListLit struct {
	Pos   Pos
	Elems []Expr
}

// MapLit is `{k: v, ...}`; keys are unique, in source order.
type MapLit struct {
	Pos    Pos
	Keys   []string
	Values []Expr
}

// Case is `CASE [Subject] WHEN w THEN t ... [ELSE e] END`. With a Subject
// (simple form) a branch is taken when Subject = When; without (generic
// form) when When is true.
type Case struct {
	Pos     Pos
	Subject Expr // nil for the generic form
	Whens   []Expr
	Thens   []Expr
	Else    Expr // nil means null
}

// Comprehension is `[Var IN List WHERE Where | Project]`; Where and Project
// may be nil. Var is a local variable (its Index is the local slot).
type Comprehension struct {
	Pos     Pos
	Var     *Variable
	List    Expr
	Where   Expr
	Project Expr
}

// QuantifierKind is the kind of a Quantifier.
type QuantifierKind uint8

// Quantifier kinds.
const (
	QuantAll QuantifierKind = iota + 1
	QuantAny
	QuantNone
	QuantSingle
)

// Quantifier is `all|any|none|single(Var IN List WHERE Where)`.
type Quantifier struct {
	Pos   Pos
	Kind  QuantifierKind
	Var   *Variable
	List  Expr
	Where Expr
}

// Call is a function call. Name is as written (namespaces included);
// Compile resolves it case-insensitively. For an aggregate function
// AggIndex is its index in Part.Aggregates (evaluated from
// Env.Aggregates); for other functions it is -1.
type Call struct {
	Pos      Pos
	Name     string
	Args     []Expr
	Distinct bool // count(DISTINCT x), collect(DISTINCT x), ...
	Star     bool // count(*)
	AggIndex int
	fn       *funcDef
}

// KeyRef replaces, in an aggregating projection item, a subexpression that
// is a grouping key: its value is Env.Keys[Key] (Key indexes
// Part.GroupKeys). Orig is the replaced expression.
type KeyRef struct {
	Pos  Pos
	Key  int
	Orig Expr
}

func (e *Literal) Position() Pos       { return e.Pos }
func (e *Param) Position() Pos         { return e.Pos }
func (e *Variable) Position() Pos      { return e.Pos }
func (e *Property) Position() Pos      { return e.Pos }
func (e *Index) Position() Pos         { return e.Pos }
func (e *Slice) Position() Pos         { return e.Pos }
func (e *Unary) Position() Pos         { return e.Pos }
func (e *Binary) Position() Pos        { return e.Pos }
func (e *IsNull) Position() Pos        { return e.Pos }
func (e *HasLabels) Position() Pos     { return e.Pos }
func (e *ListLit) Position() Pos       { return e.Pos }
func (e *MapLit) Position() Pos        { return e.Pos }
func (e *Case) Position() Pos          { return e.Pos }
func (e *Comprehension) Position() Pos { return e.Pos }
func (e *Quantifier) Position() Pos    { return e.Pos }
func (e *Call) Position() Pos          { return e.Pos }
func (e *KeyRef) Position() Pos        { return e.Pos }

func (*Literal) exprNode()       {}
func (*Param) exprNode()         {}
func (*Variable) exprNode()      {}
func (*Property) exprNode()      {}
func (*Index) exprNode()         {}
func (*Slice) exprNode()         {}
func (*Unary) exprNode()         {}
func (*Binary) exprNode()        {}
func (*IsNull) exprNode()        {}
func (*HasLabels) exprNode()     {}
func (*ListLit) exprNode()       {}
func (*MapLit) exprNode()        {}
func (*Case) exprNode()          {}
func (*Comprehension) exprNode() {}
func (*Quantifier) exprNode()    {}
func (*Call) exprNode()          {}
func (*KeyRef) exprNode()        {}

// ---- statements ----

// Query is the parsed query: a sequence of parts, each ending in WITH or (the
// last one) RETURN.
type Query struct {
	Parts    []*QueryPart
	analyzed bool
}

// QueryPart is the clauses up to and including one WITH or RETURN.
type QueryPart struct {
	Matches    []*MatchClause
	Projection *Projection
}

// MatchClause is MATCH or OPTIONAL MATCH with its comma-separated patterns
// and its WHERE.
type MatchClause struct {
	Pos      Pos
	Optional bool
	Patterns []*Pattern
	Where    Expr // nil when absent
}

// Pattern is one comma-separated path pattern: Nodes[0] Rels[0] Nodes[1]
// Rels[1] ... Nodes[n]; len(Nodes) == len(Rels)+1.
type Pattern struct {
	Pos   Pos
	Nodes []*NodePattern
	Rels  []*RelPattern
}

// NodePattern is `(var:Label|Other {p: expr})`.
type NodePattern struct {
	Pos Pos
	// Var is the variable name; for an anonymous node Compile generates a
	// unique name ("  anon_node_3") and sets Anonymous.
	Var       string
	Anonymous bool
	// Labels is a conjunction of disjunctions: (n:A:B) is [[A] [B]],
	// (n:A|B) is [[A B]]; the element must have, for every inner list, at
	// least one of its labels.
	Labels [][]string
	Props  []PropertyPredicate
	// Slot is set by Compile: the row index of the variable (Part.Vars).
	Slot int
}

// Direction of a relationship pattern, as written between its left and
// right node patterns.
type Direction uint8

// Directions.
const (
	DirRight      Direction = iota + 1 // (a)-[]->(b)
	DirLeft                            // (a)<-[]-(b)
	DirUndirected                      // (a)-[]-(b): either orientation
)

// RelPattern is `-[r:T|U {p: expr}]->` and its variants.
type RelPattern struct {
	Pos       Pos
	Var       string
	Anonymous bool
	Types     []string // alternatives; empty = any type
	Props     []PropertyPredicate
	Dir       Direction
	Slot      int // set by Compile
}

// PropertyPredicate is one `key: expr` entry of a pattern's property map: the
// element's property must equal the expression's value (Cypher =).
type PropertyPredicate struct {
	Key   string
	Value Expr
}

// Projection is WITH or RETURN.
type Projection struct {
	Pos      Pos
	Return   bool // RETURN (the last part) rather than WITH
	Distinct bool
	Items    []*ProjectionItem
	Where    Expr // WITH ... WHERE; nil otherwise
}

// ProjectionItem is `expr [AS alias]`.
type ProjectionItem struct {
	Pos  Pos
	Expr Expr
	// Alias is the AS name, or "" when none was written.
	Alias string
	// Text is the expression's source text (the column name when there is
	// no alias, as in Cypher).
	Text string
}
