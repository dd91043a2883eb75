package cypher

import (
	"strconv"
	"strings"
)

// ExprString renders an expression as Cypher text, fully parenthesizing
// operators. It is meant for messages and debugging; re-parsing it yields an
// equivalent expression. Resolved grouping keys (*KeyRef) print as the
// expression they replaced.
func ExprString(e Expr) string {
	var b strings.Builder
	writeExpr(&b, e, false)
	return b.String()
}

// canonical renders e including how variables were resolved, so two
// expressions with equal canonical text compute the same value from the same
// row (used to match grouping keys and to share identical aggregates).
func canonical(e Expr) string {
	var b strings.Builder
	writeExpr(&b, e, true)
	return b.String()
}

// canonicalUpTo is canonical, giving up (ok false) once the text exceeds
// limit bytes; it keeps matching every subexpression against short keys
// linear in the expression size.
func canonicalUpTo(e Expr, limit int) (string, bool) {
	b := limitedBuilder{limit: limit}
	writeExpr(&b, e, true)
	if b.over {
		return "", false
	}
	return b.String(), true
}

// exprWriter is what writeExpr writes to.
type exprWriter interface {
	WriteString(string) (int, error)
	WriteByte(byte) error
	WriteRune(rune) (int, error)
	Len() int
}

// limitedBuilder stops accumulating once over its limit.
type limitedBuilder struct {
	strings.Builder
	limit int
	over  bool
}

func (b *limitedBuilder) check() bool {
	if b.Builder.Len() > b.limit {
		b.over = true
	}
	return !b.over
}

func (b *limitedBuilder) WriteString(s string) (int, error) {
	if !b.check() {
		return 0, nil
	}
	return b.Builder.WriteString(s)
}

func (b *limitedBuilder) WriteByte(c byte) error {
	if !b.check() {
		return nil
	}
	return b.Builder.WriteByte(c)
}

func (b *limitedBuilder) WriteRune(r rune) (int, error) {
	if !b.check() {
		return 0, nil
	}
	return b.Builder.WriteRune(r)
}

// Len reports a length beyond the limit once over it, so writeExpr stops
// descending.
func (b *limitedBuilder) Len() int {
	if b.over {
		return b.limit + 1
	}
	return b.Builder.Len()
}

func writeName(b exprWriter, s string) {
	simple := s != ""
	for i, r := range s {
		if !(isIdentStart(r) || (i > 0 && isIdentPart(r))) {
			simple = false
			break
		}
	}
	if simple && !reserved[strings.ToUpper(s)] {
		b.WriteString(s)
		return
	}
	b.WriteByte('`')
	b.WriteString(strings.ReplaceAll(s, "`", "``"))
	b.WriteByte('`')
}

func writeLiteral(b exprWriter, v Value) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		s := formatFloat(x)
		switch s {
		case "NaN":
			s = "(0.0/0.0)"
		case "Infinity":
			s = "(1.0/0.0)"
		case "-Infinity":
			s = "(-1.0/0.0)"
		}
		b.WriteString(s)
	case string:
		b.WriteByte('\'')
		for _, r := range x {
			switch r {
			case '\'':
				b.WriteString(`\'`)
			case '\\':
				b.WriteString(`\\`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('\'')
	case []Value:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeLiteral(b, e)
		}
		b.WriteByte(']')
	case map[string]Value:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteString(", ")
			}
			writeName(b, k)
			b.WriteString(": ")
			writeLiteral(b, x[k])
		}
		b.WriteByte('}')
	case Date:
		b.WriteString("date('" + x.String() + "')")
	case LocalDateTime:
		b.WriteString("localdatetime('" + x.String() + "')")
	case DateTime:
		b.WriteString("datetime('" + x.String() + "')")
	case Duration:
		b.WriteString("duration('" + x.String() + "')")
	default:
		b.WriteString("<" + TypeName(v) + ">")
	}
}

func writeExpr(b exprWriter, e Expr, canon bool) {
	if lb, ok := b.(*limitedBuilder); ok && !lb.check() {
		return
	}
	switch x := e.(type) {
	case nil:
		b.WriteString("<nil>")
	case *Literal:
		writeLiteral(b, x.Value)
	case *Param:
		b.WriteByte('$')
		writeName(b, x.Name)
	case *Variable:
		writeName(b, x.Name)
		if canon {
			if x.Scope == ScopeLocal {
				b.WriteString("#L")
			} else {
				b.WriteString("#R")
			}
			b.WriteString(strconv.Itoa(x.Index))
		}
	case *KeyRef:
		if canon {
			b.WriteString("#K" + strconv.Itoa(x.Key))
			return
		}
		writeExpr(b, x.Orig, canon)
	case *Property:
		writeOperand(b, x.X, canon)
		b.WriteByte('.')
		writeName(b, x.Key)
	case *Index:
		writeOperand(b, x.X, canon)
		b.WriteByte('[')
		writeExpr(b, x.Index, canon)
		b.WriteByte(']')
	case *Slice:
		writeOperand(b, x.X, canon)
		b.WriteByte('[')
		if x.From != nil {
			writeExpr(b, x.From, canon)
		}
		b.WriteString("..")
		if x.To != nil {
			writeExpr(b, x.To, canon)
		}
		b.WriteByte(']')
	case *Unary:
		b.WriteByte('(')
		switch x.Op {
		case OpNot:
			b.WriteString("NOT ")
		case OpNeg:
			b.WriteString("-")
		default:
			b.WriteString("+")
		}
		if x.Op != OpNot && isNumberLiteral(x.X) {
			// -(5) must not re-parse as the literal -5.
			b.WriteByte('(')
			writeExpr(b, x.X, canon)
			b.WriteByte(')')
		} else {
			writeExpr(b, x.X, canon)
		}
		b.WriteByte(')')
	case *Binary:
		b.WriteByte('(')
		writeExpr(b, x.L, canon)
		b.WriteByte(' ')
		b.WriteString(x.Op.String())
		b.WriteByte(' ')
		writeExpr(b, x.R, canon)
		b.WriteByte(')')
	case *IsNull:
		b.WriteByte('(')
		writeExpr(b, x.X, canon)
		if x.Not {
			b.WriteString(" IS NOT NULL)")
		} else {
			b.WriteString(" IS NULL)")
		}
	case *HasLabels:
		writeOperand(b, x.X, canon)
		for _, l := range x.Labels {
			b.WriteByte(':')
			writeName(b, l)
		}
	case *ListLit:
		b.WriteByte('[')
		for i, el := range x.Elems {
			if i > 0 {
				b.WriteString(", ")
			}
			writeExpr(b, el, canon)
		}
		b.WriteByte(']')
	case *MapLit:
		b.WriteByte('{')
		for i, k := range x.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeName(b, k)
			b.WriteString(": ")
			writeExpr(b, x.Values[i], canon)
		}
		b.WriteByte('}')
	case *Case:
		b.WriteString("CASE")
		if x.Subject != nil {
			b.WriteByte(' ')
			writeExpr(b, x.Subject, canon)
		}
		for i, w := range x.Whens {
			b.WriteString(" WHEN ")
			writeExpr(b, w, canon)
			b.WriteString(" THEN ")
			writeExpr(b, x.Thens[i], canon)
		}
		if x.Else != nil {
			b.WriteString(" ELSE ")
			writeExpr(b, x.Else, canon)
		}
		b.WriteString(" END")
	case *Comprehension:
		b.WriteByte('[')
		writeExpr(b, x.Var, canon)
		b.WriteString(" IN ")
		writeExpr(b, x.List, canon)
		if x.Where != nil {
			b.WriteString(" WHERE ")
			writeExpr(b, x.Where, canon)
		}
		if x.Project != nil {
			b.WriteString(" | ")
			writeExpr(b, x.Project, canon)
		}
		b.WriteByte(']')
	case *Quantifier:
		b.WriteString([...]string{QuantAll: "all", QuantAny: "any", QuantNone: "none", QuantSingle: "single"}[x.Kind])
		b.WriteByte('(')
		writeExpr(b, x.Var, canon)
		b.WriteString(" IN ")
		writeExpr(b, x.List, canon)
		b.WriteString(" WHERE ")
		writeExpr(b, x.Where, canon)
		b.WriteByte(')')
	case *Call:
		name := x.Name
		if canon && x.fn != nil {
			name = x.fn.name
		}
		for i, seg := range strings.Split(name, ".") {
			if i > 0 {
				b.WriteByte('.')
			}
			writeName(b, seg)
		}
		b.WriteByte('(')
		if x.Star {
			b.WriteByte('*')
		}
		if x.Distinct {
			b.WriteString("DISTINCT ")
		}
		for i, a := range x.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			writeExpr(b, a, canon)
		}
		b.WriteByte(')')
	default:
		b.WriteString("<?>")
	}
}

func isNumberLiteral(e Expr) bool {
	if l, ok := e.(*Literal); ok {
		return isNumber(l.Value)
	}
	return false
}

// writeOperand writes the operand of a postfix operator (.key, [i], :Label),
// parenthesizing a number literal: -5.x would re-parse as -(5.x).
func writeOperand(b exprWriter, e Expr, canon bool) {
	if isNumberLiteral(e) {
		b.WriteByte('(')
		writeExpr(b, e, canon)
		b.WriteByte(')')
		return
	}
	writeExpr(b, e, canon)
}
