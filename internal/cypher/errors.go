package cypher

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// Sentinel errors. Every error of this package wraps exactly one of them, so
// callers classify with errors.Is.
var (
	// ErrSyntax is wrapped by every *SyntaxError.
	ErrSyntax = errors.New("cypher syntax error")
	// ErrUnsupported marks valid Cypher that a continuous query does not
	// support (ORDER BY, SKIP, LIMIT, RETURN *, variable-length paths,
	// non-deterministic functions, time-triggered functions, ...). It is
	// wrapped by *SyntaxError or *SemanticError, which carry the position.
	ErrUnsupported = errors.New("unsupported in a continuous query")
	// ErrSemantic is wrapped by every *SemanticError that is not
	// ErrUnsupported: unknown variables and functions, misplaced
	// aggregates, wrong argument counts, ...
	ErrSemantic = errors.New("cypher semantic error")
	// ErrTooDeep is wrapped by the *SyntaxError for absurdly nested input
	// (more than MaxDepth levels).
	ErrTooDeep = errors.New("expression nested too deeply")

	// ErrType is wrapped by evaluation errors caused by operand or argument
	// types ("cannot add string and map").
	ErrType = errors.New("type error")
	// ErrOverflow is wrapped by integer overflow errors.
	ErrOverflow = errors.New("integer overflow")
	// ErrDivisionByZero is wrapped by integer division or modulo by zero.
	ErrDivisionByZero = errors.New("division by zero")
	// ErrInvalidArgument is wrapped by evaluation errors for a value of the
	// right type that a function cannot use (bad ISO date, bad number text
	// where an error is due, ...).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrMissingParameter is wrapped by the evaluation error for a $param
	// that Env.Params does not hold.
	ErrMissingParameter = errors.New("missing query parameter")
	// ErrInvalidValue is wrapped by FromJSON for input outside the value model.
	ErrInvalidValue = errors.New("invalid value")
)

// MaxDepth bounds the nesting of expressions and patterns the parser accepts.
const MaxDepth = 200

// Pos is a position in the query text: 1-based line and column (column
// counted in characters).
type Pos struct {
	Line, Column int
}

func (p Pos) String() string {
	return "line " + strconv.Itoa(p.Line) + ", column " + strconv.Itoa(p.Column)
}

// SyntaxError is a parse error: where it happened and what was expected.
// Error() reads like "line 2, column 14: expected ')' but found 'WHERE'".
// It wraps ErrSyntax, plus ErrUnsupported or ErrTooDeep when they apply.
type SyntaxError struct {
	Line, Column int
	Msg          string
	kind         error // ErrUnsupported, ErrTooDeep or nil
}

func (e *SyntaxError) Error() string {
	return Pos{e.Line, e.Column}.String() + ": " + e.Msg
}

// Unwrap returns ErrSyntax and, when it applies, ErrUnsupported or ErrTooDeep.
func (e *SyntaxError) Unwrap() []error {
	if e.kind != nil {
		return []error{ErrSyntax, e.kind}
	}
	return []error{ErrSyntax}
}

// SemanticError is an analysis error with the position of the offending
// expression: "line 1, column 8: unknown function 'foo'". It wraps
// ErrSemantic or ErrUnsupported.
type SemanticError struct {
	Line, Column int
	Msg          string
	kind         error
}

func (e *SemanticError) Error() string {
	return Pos{e.Line, e.Column}.String() + ": " + e.Msg
}

// Unwrap returns ErrSemantic or ErrUnsupported.
func (e *SemanticError) Unwrap() error { return e.kind }

func semErr(p Pos, format string, args ...any) error {
	return &SemanticError{Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, args...), kind: ErrSemantic}
}

func unsupportedErr(p Pos, format string, args ...any) error {
	return &SemanticError{Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, args...), kind: ErrUnsupported}
}

// EvalError is a runtime evaluation error. Error() names the operator or
// function and the offending types, e.g. "cannot add string and map" or
// "toInteger: ...". It wraps ErrType, ErrOverflow, ErrDivisionByZero,
// ErrInvalidArgument or ErrMissingParameter.
type EvalError struct {
	Msg  string
	kind error
}

func (e *EvalError) Error() string { return e.Msg }

// Unwrap returns the sentinel that classifies the error.
func (e *EvalError) Unwrap() error { return e.kind }

func typeErr(msg string) error { return &EvalError{Msg: msg, kind: ErrType} }
func argErr(msg string) error  { return &EvalError{Msg: msg, kind: ErrInvalidArgument} }
func overflowErr(op string) error {
	return &EvalError{Msg: "integer overflow in " + op, kind: ErrOverflow}
}
func divZeroErr(op string) error {
	return &EvalError{Msg: "integer " + op + " by zero", kind: ErrDivisionByZero}
}

// binTypeErr builds "cannot <verb> <type> and <type>".
func binTypeErr(verb string, a, b Value) error {
	return typeErr("cannot " + verb + " " + TypeName(a) + " and " + TypeName(b))
}

type valueError struct{ msg string }

func (e *valueError) Error() string { return "cypher value: " + e.msg }
func (e *valueError) Unwrap() error { return ErrInvalidValue }

func goTypeName(v any) string {
	if v == nil {
		return "nil"
	}
	return reflect.TypeOf(v).String()
}
